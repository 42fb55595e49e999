"""One small HTTP endpoint on the operator's event loop (liveness, metrics).

aiohttp, like Kopf and ``kubernetes.aio``: serving never blocks reconciliation.
"""

from __future__ import annotations

import contextlib
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def serve(endpoint: str, handler: Handler, *, what: str) -> AsyncIterator[None]:
    """Answer ``GET`` on the path of ``endpoint`` (``http://HOST:PORT/PATH``) while inside.

    Without a host (``http://:PORT/PATH``) every address of the machine is served, IPv4 and IPv6
    alike, as far as the machine has them: one endpoint for single-stack IPv4, IPv6-only and
    dual-stack clusters. ``0.0.0.0`` is IPv4 only; ``[::]`` needs IPv6 in the kernel.
    """
    url = urllib.parse.urlsplit(endpoint)
    if url.scheme != "http" or url.port is None:
        raise ValueError(f"a {what} endpoint is http://HOST:PORT/PATH, not {endpoint!r}")
    app = web.Application()
    app.router.add_get(url.path or "/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        # host None: asyncio binds every address getaddrinfo offers, one socket per family.
        await web.TCPSite(runner, url.hostname or None, url.port).start()
        yield
    finally:
        await runner.cleanup()
