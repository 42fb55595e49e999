"""What the emulated DigitalOcean account knows: API tokens, clusters, and credentials it issued.

Plain data and lookups, no HTTP and no clock of its own (callers pass "now"), so the rules are
testable on their own: a token sees only its own account's clusters (another account's cluster is
a 404, as on DigitalOcean); each issued cluster credential is remembered with its identity and
expiry, because the token webhook must later tell the apiserver who a bearer token is and whether
it still counts. Nothing is ever revoked (DigitalOcean has no revoke either), but a removed cluster
takes its bearer tokens with it: with the cluster gone, nothing can accept them.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import uuid
from collections.abc import Iterable
from typing import Literal

KUBERNETES_READ = "kubernetes:read"
KUBERNETES_ACCESS_CLUSTER = "kubernetes:access_cluster"
TAG_READ = "tag:read"  # without it, the API's cluster objects have no tags
ALL_SCOPES: frozenset[str] = frozenset({KUBERNETES_READ, KUBERNETES_ACCESS_CLUSTER, TAG_READ})
DEFAULT_ACCOUNT = "default"
DEFAULT_VERSION = "1.33.1-do.0"

CLUSTER_STATES = (
    "running",
    "provisioning",
    "degraded",
    "error",
    "deleted",
    "upgrading",
    "deleting",
)

# DigitalOcean's rule for tag names: letters, numbers, colons, dashes and underscores, 255 at most.
_TAG = re.compile(r"[A-Za-z0-9:_-]{1,255}")

ClusterMode = Literal["token", "certificate"]
CredentialKind = Literal["token", "certificate"]


class InvalidInputError(ValueError):
    """Bad data from a config file, the admin API or a request; the message says what."""


@dataclasses.dataclass(frozen=True)
class Identity:
    """The Kubernetes user a cluster credential authenticates as."""

    username: str
    groups: tuple[str, ...] = ()


DEFAULT_IDENTITY = Identity(username="doks-emulator-admin", groups=("system:masters",))


@dataclasses.dataclass(frozen=True)
class ApiToken:
    """A DigitalOcean API token of one account, with its scopes."""

    token: str
    account: str = DEFAULT_ACCOUNT
    scopes: frozenset[str] = ALL_SCOPES
    name: str = ""

    def __post_init__(self) -> None:
        if not self.token or any(c.isspace() for c in self.token):
            raise ValueError("an API token must be a non-empty string without whitespace")


@dataclasses.dataclass(frozen=True)
class Cluster:
    """A DOKS cluster; ``mode`` says whether it hands out bearer tokens or client certificates.

    ``tags`` are the user's own; the API adds the automatic ``k8s`` and ``k8s:<id>`` when showing
    them (see :func:`~doks_access_testkit.emulator.listing.cluster_resource`).
    """

    name: str
    region: str = "nyc1"
    id: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))
    version: str = DEFAULT_VERSION
    account: str = DEFAULT_ACCOUNT
    mode: ClusterMode = "token"
    sso: bool = False
    identity: Identity = DEFAULT_IDENTITY
    status: str = "running"
    tags: tuple[str, ...] = ()
    created_at: float | None = None  # epoch seconds; set when added if absent

    def __post_init__(self) -> None:
        uuid.UUID(self.id)  # raises ValueError for anything but a UUID
        if self.mode not in ("token", "certificate"):
            raise ValueError(f"cluster mode must be token or certificate, not {self.mode!r}")
        if not self.name or not self.region:
            raise ValueError("a cluster needs a name and a region")
        if self.status not in CLUSTER_STATES:
            raise ValueError(f"cluster status must be one of {', '.join(CLUSTER_STATES)}")
        _check_tags(self.tags)

    @property
    def endpoint(self) -> str:
        """The documented public endpoint of the cluster's API server."""
        return f"https://{self.id}.k8s.ondigitalocean.com"


def _check_tags(tags: object) -> None:
    """Refuse what DigitalOcean would refuse as a tag, so that no test comes to rely on one."""
    if not isinstance(tags, tuple):
        raise InvalidInputError(f"cluster tags must be a tuple of strings, not {tags!r}")
    for tag in tags:
        if not isinstance(tag, str) or not _TAG.fullmatch(tag):
            raise InvalidInputError(
                "a cluster tag must be 1 to 255 letters, numbers, colons, dashes or underscores,"
                f" not {tag!r}"
            )


@dataclasses.dataclass(frozen=True)
class IssuedCredential:
    """One credential minted by a kubeconfig or credentials call.

    ``token`` (token mode) or ``client_key_pem`` (certificate mode) is the secret.
    """

    id: str
    cluster_id: str
    kind: CredentialKind
    identity: Identity
    issued_at: float
    expires_at: float
    token: str | None = None
    client_key_pem: bytes | None = dataclasses.field(default=None, repr=False)

    def valid_at(self, now: float) -> bool:
        return now < self.expires_at


class AccountState:
    """Tokens, clusters and issued credentials; thread-safe."""

    def __init__(self) -> None:
        self._tokens: dict[str, ApiToken] = {}
        self._clusters: dict[str, Cluster] = {}
        self._credentials: dict[str, IssuedCredential] = {}
        self._by_secret: dict[str, str] = {}
        self._removed: set[str] = set()  # cluster ids, never reused
        self._lock = threading.Lock()

    def add_token(self, token: ApiToken) -> ApiToken:
        with self._lock:
            self._tokens[token.token] = token
            return token

    def add_cluster(self, cluster: Cluster, *, now: float) -> Cluster:
        (added,) = self.add_clusters([cluster], now=now)
        return added

    def add_clusters(self, clusters: Iterable[Cluster], *, now: float) -> list[Cluster]:
        """Add all of ``clusters``, in order, or none of them if one's id is taken."""
        batch = [
            c if c.created_at is not None else dataclasses.replace(c, created_at=now)
            for c in clusters
        ]
        with self._lock:
            seen: set[str] = set()
            for cluster in batch:
                if cluster.id in self._clusters or cluster.id in seen:
                    raise ValueError(f"a cluster with id {cluster.id} exists already")
                if cluster.id in self._removed:
                    raise ValueError(f"the cluster id {cluster.id} was removed; ids are not reused")
                seen.add(cluster.id)
            self._clusters.update((c.id, c) for c in batch)
            return batch

    def update_cluster(
        self,
        cluster_id: str,
        *,
        name: str | None = None,
        tags: Iterable[str] | None = None,
        status: str | None = None,
        region: str | None = None,
    ) -> Cluster | None:
        """Change a cluster in place (same id, same place in listings); None if there is none.

        The new cluster is validated like a new one, so a bad change leaves the old one as it was.
        """
        if isinstance(tags, str):  # a string is an iterable of one-letter tags: surely a mistake
            raise InvalidInputError(f"cluster tags must be a list of strings, not {tags!r}")
        new_tags = None if tags is None else tuple(tags)
        with self._lock:
            cluster = self._clusters.get(cluster_id)
            if cluster is None:
                return None
            cluster = dataclasses.replace(
                cluster,
                name=cluster.name if name is None else name,
                tags=cluster.tags if new_tags is None else new_tags,
                status=cluster.status if status is None else status,
                region=cluster.region if region is None else region,
            )
            self._clusters[cluster_id] = cluster
            return cluster

    def remove_cluster(self, cluster_id: str) -> bool:
        """Forget a cluster; its bearer tokens stop authenticating. False if there was none."""
        with self._lock:
            if self._clusters.pop(cluster_id, None) is None:
                return False
            self._removed.add(cluster_id)
            return True

    def tokens(self) -> list[ApiToken]:
        with self._lock:
            return list(self._tokens.values())

    def authenticate(self, bearer: str | None) -> ApiToken | None:
        if not bearer:
            return None
        with self._lock:
            return self._tokens.get(bearer)

    def clusters(self, *, account: str | None = None) -> list[Cluster]:
        """Clusters in creation order, all or one account's."""
        with self._lock:
            return [c for c in self._clusters.values() if account is None or c.account == account]

    def cluster(self, cluster_id: str, *, account: str) -> Cluster | None:
        with self._lock:
            cluster = self._clusters.get(cluster_id)
        return cluster if cluster is not None and cluster.account == account else None

    def record(self, credential: IssuedCredential) -> None:
        with self._lock:
            self._credentials[credential.id] = credential
            if credential.token is not None:
                self._by_secret[credential.token] = credential.id

    def review(self, bearer: str, *, now: float) -> IssuedCredential | None:
        """The credential behind a cluster bearer token, if it exists, has not expired, and its
        cluster has not been removed."""
        with self._lock:
            credential_id = self._by_secret.get(bearer)
            credential = self._credentials.get(credential_id) if credential_id else None
            if credential is None or credential.cluster_id in self._removed:
                return None
        return credential if credential.valid_at(now) else None

    def credentials(self, *, cluster_id: str | None = None) -> list[IssuedCredential]:
        with self._lock:
            return [
                c
                for c in self._credentials.values()
                if cluster_id is None or c.cluster_id == cluster_id
            ]
