"""Request counters: how many calls each endpoint got, and what came of them.

The product's headline promise is *exactly one* DigitalOcean call per credential lifetime, and
*zero* after a restart with fresh Secrets (design 4.4, 8). Tests prove that by reading these
counters, per endpoint and per outcome (an HTTP status, or ``dropped`` / ``hung``).
"""

from __future__ import annotations

import collections
import threading


class RequestStats:
    """Thread-safe counters keyed by endpoint and outcome."""

    def __init__(self) -> None:
        self._counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self._lock = threading.Lock()

    def record(self, *, endpoint: str, outcome: str) -> None:
        with self._lock:
            self._counts[endpoint, outcome] += 1

    def count(self, *, endpoint: str | None = None, outcome: str | int | None = None) -> int:
        """Requests to ``endpoint`` that ended with ``outcome`` (``None`` matches anything)."""
        wanted = None if outcome is None else str(outcome)
        with self._lock:
            return sum(
                n
                for (e, o), n in self._counts.items()
                if (endpoint is None or e == endpoint) and (wanted is None or o == wanted)
            )

    def snapshot(self) -> dict[str, dict[str, int]]:
        """``{endpoint: {outcome: count}}``, sorted, ready for JSON."""
        with self._lock:
            result: dict[str, dict[str, int]] = {}
            for (endpoint, outcome), n in sorted(self._counts.items()):
                result.setdefault(endpoint, {})[outcome] = n
            return result

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
