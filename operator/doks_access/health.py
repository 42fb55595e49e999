"""Liveness: answer only while the operator makes progress.

"Alive" means more than "the process is up": the event loop turns (a blocked loop answers
nothing), and no reconciliation has held its worker for longer than :data:`STUCK_AFTER` (every API
call has a timeout, so one that runs that long is hung).

The process serves :func:`serving` itself rather than through Kopf's liveness endpoint: a standby
replica (leader election) does not run Kopf, yet must answer its probe, or Kubernetes would restart
it over and over; and a port that cannot be bound is then a start-up error like any other, one
line and exit 1, not a traceback from inside Kopf.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping

from aiohttp import web

from doks_access import endpoints

STUCK_AFTER = 300.0  # seconds one reconciliation may take before the operator counts as stuck


def stuck(
    in_flight: Mapping[tuple[str, str], float], *, now: float, limit: float = STUCK_AFTER
) -> list[str]:
    """The objects (``namespace/name``) whose reconciliation has held its worker since more than
    ``limit`` seconds before ``now`` (loop times)."""
    return sorted(f"{ns}/{name}" for (ns, name), since in in_flight.items() if now - since > limit)


def loop_time() -> float:
    """The running loop's clock, which the dispatcher's times are on."""
    return asyncio.get_running_loop().time()


def serving(
    endpoint: str, *, problems: Callable[[], list[str]] = list
) -> contextlib.AbstractAsyncContextManager[None]:
    """Serve ``GET <path>`` at ``endpoint`` (e.g. ``http://0.0.0.0:8080/healthz``): 200, or 500
    naming what ``problems`` reports."""

    async def alive(request: web.Request) -> web.Response:
        del request
        found = problems()
        if found:
            return web.json_response({"status": "stuck", "problems": found}, status=500)
        return web.json_response({"status": "alive"})

    return endpoints.serve(endpoint, alive, what="liveness")
