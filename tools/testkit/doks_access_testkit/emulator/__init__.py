"""A DigitalOcean API emulator for tests and demos (never imported by the operator).

It serves the four DOKS endpoints the operator uses, as documented in DigitalOcean's OpenAPI
specification (status codes, error bodies, rate-limit headers and windows, pagination,
``expiry_seconds`` and ``type``), with injectable faults, and issues cluster credentials that a
real local kube-apiserver accepts until they expire: bearer tokens checked through a TokenReview
webhook, or short-lived client certificates (no longer issued by DigitalOcean for new clusters;
kept as robustness coverage). Clusters may cap credential lifetimes (``max_lifetime``) and require
SSO; bearer tokens can be revoked; realism quirks (:mod:`.quirks`) reproduce ways the real API
departs from its description. Start it from Python with :class:`Emulator`, or from a shell with
``doks-access-emulator``.
"""

from doks_access_testkit.emulator.clock import Clock, JumpingClock, ManualClock, system_clock
from doks_access_testkit.emulator.config import (
    DEMO_CLUSTER_IDS,
    DEMO_READ_ONLY_TOKEN,
    DEMO_TOKEN,
    EmulatorConfig,
)
from doks_access_testkit.emulator.faults import Fault
from doks_access_testkit.emulator.issuing import KubernetesBackend
from doks_access_testkit.emulator.quirks import QUIRKS
from doks_access_testkit.emulator.ratelimit import RateLimits
from doks_access_testkit.emulator.server import Emulator
from doks_access_testkit.emulator.state import (
    ALL_SCOPES,
    KUBERNETES_ACCESS_CLUSTER,
    KUBERNETES_READ,
    TAG_READ,
    ApiToken,
    Cluster,
    Identity,
    IssuedCredential,
)

__all__ = [
    "ALL_SCOPES",
    "DEMO_CLUSTER_IDS",
    "DEMO_READ_ONLY_TOKEN",
    "DEMO_TOKEN",
    "KUBERNETES_ACCESS_CLUSTER",
    "KUBERNETES_READ",
    "QUIRKS",
    "TAG_READ",
    "ApiToken",
    "Clock",
    "Cluster",
    "Emulator",
    "EmulatorConfig",
    "Fault",
    "Identity",
    "IssuedCredential",
    "JumpingClock",
    "KubernetesBackend",
    "ManualClock",
    "RateLimits",
    "system_clock",
]
