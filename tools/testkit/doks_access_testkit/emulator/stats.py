"""Request counters: how many calls each endpoint got, and what came of them.

The product's headline promise is *exactly one* DigitalOcean call per credential lifetime, and
*zero* after a restart with fresh Secrets (design 4.4, 8). Tests prove that by reading these
counters, per endpoint and per outcome (an HTTP status, or ``dropped`` / ``hung``).
"""

from __future__ import annotations

import collections
import threading


class RequestStats:
    """Thread-safe counters keyed by endpoint, outcome and the calling token's account (so that
    a test with an account of its own counts only its own calls)."""

    def __init__(self) -> None:
        self._counts: collections.Counter[tuple[str, str, str | None]] = collections.Counter()
        self._lock = threading.Lock()

    def record(self, *, endpoint: str, outcome: str, account: str | None = None) -> None:
        with self._lock:
            self._counts[endpoint, outcome, account] += 1

    def count(
        self,
        *,
        endpoint: str | None = None,
        outcome: str | int | None = None,
        account: str | None = None,
    ) -> int:
        """Requests to ``endpoint`` that ended with ``outcome``, made with a token of
        ``account`` (``None`` matches anything)."""
        wanted = None if outcome is None else str(outcome)
        with self._lock:
            return sum(
                n
                for (e, o, a), n in self._counts.items()
                if (endpoint is None or e == endpoint)
                and (wanted is None or o == wanted)
                and (account is None or a == account)
            )

    def snapshot(self) -> dict[str, dict[str, int]]:
        """``{endpoint: {outcome: count}}``, sorted, ready for JSON."""
        with self._lock:
            totals: collections.Counter[tuple[str, str]] = collections.Counter()
            for (endpoint, outcome, _account), n in self._counts.items():
                totals[endpoint, outcome] += n
            result: dict[str, dict[str, int]] = {}
            for (endpoint, outcome), n in sorted(totals.items()):
                result.setdefault(endpoint, {})[outcome] = n
            return result

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
