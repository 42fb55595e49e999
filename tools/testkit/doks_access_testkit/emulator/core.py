"""The emulator's moving parts in one place, shared by the API, admin and webhook applications.

Each part is thread-safe on its own, because two threads use them: the server's event loop
answering requests, and the test calling :class:`~doks_access_testkit.emulator.server.Emulator`
methods (adding clusters, injecting faults, reading counters) while requests are in flight.
``backend`` and ``quirks`` are immutable values replaced whole, so a request sees the old or the
new one, never half of each.
"""

from __future__ import annotations

import dataclasses

from doks_access_testkit.emulator import issuing
from doks_access_testkit.emulator.clock import Clock
from doks_access_testkit.emulator.faults import FaultPlan
from doks_access_testkit.emulator.issuing import Issued, KubernetesBackend
from doks_access_testkit.emulator.ratelimit import SlidingWindowLimiter
from doks_access_testkit.emulator.state import AccountState, Cluster
from doks_access_testkit.emulator.stats import RequestStats


@dataclasses.dataclass
class Emulation:
    """State, limits, faults and counters of one emulator, and where its credentials work."""

    state: AccountState
    limiter: SlidingWindowLimiter
    faults: FaultPlan
    stats: RequestStats
    clock: Clock
    admin_token: str
    backend: KubernetesBackend
    quirks: frozenset[str] = frozenset()  # names from quirks.QUIRKS
    stopping: bool = False

    def issue(self, cluster: Cluster, *, lifetime: int) -> Issued:
        """Mint a credential for ``cluster`` and remember it for the token webhook."""
        issued = issuing.issue(
            cluster=cluster, backend=self.backend, now=self.clock(), lifetime=lifetime
        )
        self.state.record(issued.credential)
        return issued
