"""DigitalOcean's API as the operator uses it: fetch kubeconfigs, find clusters.

One async client (:class:`DigitalOceanClient`) with its configuration as small value objects
(:class:`Timeouts`, :class:`RetryPolicy`, :class:`RateLimits`), the records it returns
(:class:`Cluster`, and :class:`doks_access.kubeconfig.Credential`), and one error hierarchy rooted
at :class:`DigitalOceanError` (drawn in ``_errors``). The private modules hold one concept each;
import from here.
"""

from doks_access.digitalocean._client import (
    CLUSTERS_PER_PAGE,
    DEFAULT_BASE_URL,
    MAX_RESPONSE_BYTES,
    USER_AGENT,
    DigitalOceanClient,
    ResponseObserver,
    Timeouts,
)
from doks_access.digitalocean._clusters import Cluster, is_cluster_id
from doks_access.digitalocean._errors import (
    DigitalOceanError,
    InvalidResponseError,
    NotFoundError,
    RateLimitedError,
    RequestRefusedError,
    ServerError,
    TransportError,
    UnauthorizedError,
)
from doks_access.digitalocean._ratelimit import (
    RateLimiter,
    RateLimits,
    ServerQuota,
    TokenBudget,
    token_key,
)
from doks_access.digitalocean._retry import RetryPolicy

__all__ = [
    "CLUSTERS_PER_PAGE",
    "DEFAULT_BASE_URL",
    "MAX_RESPONSE_BYTES",
    "USER_AGENT",
    "Cluster",
    "DigitalOceanClient",
    "DigitalOceanError",
    "InvalidResponseError",
    "NotFoundError",
    "RateLimitedError",
    "RateLimiter",
    "RateLimits",
    "RequestRefusedError",
    "ResponseObserver",
    "RetryPolicy",
    "ServerError",
    "ServerQuota",
    "Timeouts",
    "TokenBudget",
    "TransportError",
    "UnauthorizedError",
    "is_cluster_id",
    "token_key",
]
