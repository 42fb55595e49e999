"""Liveness: answer only while the operator makes progress.

"Alive" means more than "the process is up": the event loop turns (a blocked loop answers
nothing), and no reconciliation has been running for longer than :data:`STUCK_AFTER` (every API
call has a timeout, so one that runs that long is hung). Kopf's liveness endpoint asks the same
question through a probe handler.

Kopf serves its endpoint only while it runs; a standby replica (leader election) does not run
Kopf, yet must answer its probe, or Kubernetes would restart it over and over. So with leader
election the process serves :func:`serving` instead, with the same check.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping

from aiohttp import web

from doks_access import endpoints

STUCK_AFTER = 300.0  # seconds one reconciliation may take before the operator counts as stuck


def stuck(in_flight: Mapping[str, float], *, now: float, limit: float = STUCK_AFTER) -> list[str]:
    """The objects whose reconciliation started (loop time) more than ``limit`` seconds ago."""
    return sorted(key for key, started in in_flight.items() if now - started > limit)


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
