"""A liveness endpoint that exists for the whole life of the process.

Kopf serves its own liveness endpoint only while it runs; a standby replica (leader election) does
not run Kopf, yet must answer its probe, or Kubernetes would restart it over and over. So with
leader election the process serves this one instead: it answers 200 while the event loop turns.
"""

from __future__ import annotations

import contextlib
import urllib.parse
from collections.abc import AsyncIterator

from aiohttp import web


@contextlib.asynccontextmanager
async def serving(endpoint: str) -> AsyncIterator[None]:
    """Serve ``GET <path>`` → 200 at ``endpoint`` (e.g. ``http://0.0.0.0:8080/healthz``)."""
    url = urllib.parse.urlsplit(endpoint)
    if url.scheme != "http" or url.port is None:
        raise ValueError(f"a liveness endpoint is http://HOST:PORT/PATH, not {endpoint!r}")

    async def alive(request: web.Request) -> web.Response:
        del request
        return web.json_response({"status": "alive"})

    app = web.Application()
    app.router.add_get(url.path or "/", alive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, url.hostname or "0.0.0.0", url.port).start()  # noqa: S104
        yield
    finally:
        await runner.cleanup()
