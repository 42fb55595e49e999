"""What the emulated DigitalOcean account knows: API tokens, clusters, and credentials it issued.

Plain data and lookups, no HTTP and no clock of its own (callers pass "now"), so the rules are
testable on their own: a token sees only its own account's clusters (another account's cluster is
a 404, as on DigitalOcean); each issued cluster credential is remembered with its identity and
expiry, because the token webhook must later tell the apiserver who a bearer token is and whether
it still counts. A removed cluster takes its bearer tokens with it: with the cluster gone, nothing
can accept them. DigitalOcean has no revoke, but a test may need a token to die early (a leaked
credential, a rotated cluster), so :meth:`AccountState.revoke` exists here; it applies to bearer
tokens only, because client certificates are checked by the apiserver's TLS, not by the webhook.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import uuid
from collections.abc import Iterable
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

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

# The documented example values (models/sso.yml); a cluster with SSO enabled always has both.
DEFAULT_SSO_ISSUER_URL = "https://sso.example.com"
DEFAULT_SSO_CLIENT_ID = "doks-cluster-client"

ClusterMode = Literal["token", "certificate"]
CredentialKind = Literal["token", "certificate"]
# How a cluster that requires SSO refuses token credentials; see Cluster.
SsoRefusal = Literal["api", "cluster"]
SSO_REFUSALS: tuple[str, ...] = get_args(SsoRefusal)


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

    ``mode="certificate"`` is robustness coverage, not today's DigitalOcean: new clusters no longer
    get certificate kubeconfigs (the ``client_*_data`` fields of ``/credentials`` are deprecated),
    but a client should still cope with one from an old cluster.

    ``max_lifetime`` (seconds; ``None``: no cap) caps every credential the cluster issues at
    ``min(expiry_seconds, max_lifetime)``: the token webhook refuses the token, and a certificate's
    NotAfter falls, at the capped time, and ``/credentials`` reports it in ``expires_at``. The
    kubeconfig carries no expiry, as on DigitalOcean, so a client reading only the kubeconfig
    cannot see the cap: it is how a test models a cluster that ends credentials sooner than asked.

    ``sso`` enables single sign-on (``type`` then defaults to ``sso``, and the cluster object shows
    ``sso_issuer_url`` and ``sso_client_id`` as its ``sso.issuer_url`` and ``sso.client_id``);
    ``sso_required`` (only with ``sso``) disallows every other authentication. How such a
    cluster refuses a token credential is ``sso_refusal``: ``"api"`` answers the token
    kubeconfig and ``/credentials`` with a 422 and mints nothing; ``"cluster"`` mints as usual
    but the token webhook refuses every token of the cluster, so its apiserver answers 401.
    Neither is documented by DigitalOcean: both are models of what a client may meet. A
    certificate-mode cluster can only refuse at the API (TLS, not the webhook, checks its
    certificates).
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
    max_lifetime: int | None = None
    sso_required: bool = False
    sso_issuer_url: str = DEFAULT_SSO_ISSUER_URL
    sso_client_id: str = DEFAULT_SSO_CLIENT_ID
    sso_refusal: SsoRefusal = "api"

    def __post_init__(self) -> None:
        uuid.UUID(self.id)  # raises ValueError for anything but a UUID
        if self.mode not in ("token", "certificate"):
            raise ValueError(f"cluster mode must be token or certificate, not {self.mode!r}")
        if not self.name or not self.region:
            raise ValueError("a cluster needs a name and a region")
        if self.status not in CLUSTER_STATES:
            raise ValueError(f"cluster status must be one of {', '.join(CLUSTER_STATES)}")
        _check_tags(self.tags)
        _check_max_lifetime(self.max_lifetime)
        self._check_sso()

    def _check_sso(self) -> None:
        for name in ("sso", "sso_required"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidInputError(f"cluster {name} must be true or false")
        if self.sso_required and not self.sso:
            raise InvalidInputError("sso_required can only be true when sso is enabled")
        if self.sso_refusal not in SSO_REFUSALS:
            raise InvalidInputError(
                f"sso_refusal must be one of {', '.join(SSO_REFUSALS)}, not {self.sso_refusal!r}"
            )
        if self.sso_required and self.sso_refusal == "cluster" and self.mode == "certificate":
            raise InvalidInputError(
                "a certificate-mode cluster cannot refuse at the cluster (its apiserver checks"
                " certificates by TLS, not through the webhook): use sso_refusal 'api'"
            )
        url = urlsplit(self.sso_issuer_url) if isinstance(self.sso_issuer_url, str) else None
        if url is None or url.scheme not in ("https", "http") or not url.netloc:
            raise InvalidInputError(
                f"sso_issuer_url must be an absolute http(s) URL, not {self.sso_issuer_url!r}"
            )
        if not isinstance(self.sso_client_id, str) or not self.sso_client_id.strip():
            raise InvalidInputError("sso_client_id must be a non-empty string")

    @property
    def endpoint(self) -> str:
        """The documented public endpoint of the cluster's API server."""
        return f"https://{self.id}.k8s.ondigitalocean.com"

    @property
    def refuses_tokens_at_api(self) -> bool:
        """The API answers a request for a token credential with a 422 and mints nothing."""
        return self.sso_required and self.sso_refusal == "api"

    @property
    def refuses_tokens_at_cluster(self) -> bool:
        """The API mints token credentials, but the cluster (the webhook) accepts none of them."""
        return self.sso_required and self.sso_refusal == "cluster"

    def capped_lifetime(self, requested: int) -> int:
        """The lifetime a credential asked to last ``requested`` seconds actually gets."""
        return requested if self.max_lifetime is None else min(requested, self.max_lifetime)


def _check_max_lifetime(value: object) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidInputError(
            f"max_lifetime must be a positive number of seconds (or none: no cap), not {value!r}"
        )


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

    ``token`` (token mode) or ``client_key_pem`` (certificate mode) is the secret. ``revoked``
    is set by :meth:`AccountState.revoke` (the record is replaced, never changed in place).
    """

    id: str
    cluster_id: str
    kind: CredentialKind
    identity: Identity
    issued_at: float
    expires_at: float
    token: str | None = None
    client_key_pem: bytes | None = dataclasses.field(default=None, repr=False)
    revoked: bool = False

    def valid_at(self, now: float) -> bool:
        """Not expired at ``now`` (revocation is judged apart: see :meth:`AccountState.review`)."""
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
        max_lifetime: int | None = None,
        sso: bool | None = None,
        sso_required: bool | None = None,
        sso_issuer_url: str | None = None,
        sso_client_id: str | None = None,
        sso_refusal: SsoRefusal | None = None,
    ) -> Cluster | None:
        """Change a cluster in place (same id, same place in listings); None if there is none.

        ``None`` leaves a field as it is, so ``max_lifetime=0`` is how a cap is cleared. The new
        cluster is validated like a new one, so a bad change leaves the old one as it was. The
        credentials already issued keep their expiry; a new cap applies to the next ones.
        """
        if isinstance(tags, str):  # a string is an iterable of one-letter tags: surely a mistake
            raise InvalidInputError(f"cluster tags must be a list of strings, not {tags!r}")
        new_tags = None if tags is None else tuple(tags)
        changes: dict[str, Any] = {
            "name": name,
            "tags": new_tags,
            "status": status,
            "region": region,
            "sso": sso,
            "sso_required": sso_required,
            "sso_issuer_url": sso_issuer_url,
            "sso_client_id": sso_client_id,
            "sso_refusal": sso_refusal,
        }
        given = {key: value for key, value in changes.items() if value is not None}
        if max_lifetime is not None:
            given["max_lifetime"] = _lifetime_change(max_lifetime)
        with self._lock:
            cluster = self._clusters.get(cluster_id)
            if cluster is None:
                return None
            cluster = dataclasses.replace(cluster, **given)
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
        """The credential behind a cluster bearer token, if it exists, has not expired nor been
        revoked, and its cluster has neither been removed nor refuses tokens at the cluster."""
        with self._lock:
            credential_id = self._by_secret.get(bearer)
            credential = self._credentials.get(credential_id) if credential_id else None
            if credential is None or credential.revoked:
                return None
            if credential.cluster_id in self._removed:
                return None
            cluster = self._clusters.get(credential.cluster_id)
            if cluster is not None and cluster.refuses_tokens_at_cluster:
                return None
        return credential if credential.valid_at(now) else None

    def revoke(self, *, cluster_id: str | None = None, token: str | None = None) -> int:
        """Revoke the bearer tokens of a cluster, or the one bearer token ``token``; give exactly
        one. Returns how many were revoked now (one revoked before is not counted again).

        The webhook refuses a revoked token from the next review on (a real apiserver may still
        accept one it has accepted in the last ~10 s, from its own cache). Client certificates
        cannot be revoked: the apiserver checks them by TLS against its client CA, and nothing
        the emulator does reaches that, so a certificate-mode cluster is an InvalidInputError
        rather than a revoke that silently does nothing. An unknown cluster is a KeyError; an
        unknown token revokes nothing.
        """
        if (cluster_id is None) == (token is None):
            raise InvalidInputError("revoke needs exactly one of a cluster_id or a token")
        with self._lock:
            if cluster_id is not None:
                cluster = self._clusters.get(cluster_id)
                if cluster is None:
                    raise KeyError(f"no cluster with id {cluster_id}")
                if cluster.mode == "certificate":
                    raise InvalidInputError(
                        "client certificates cannot be revoked: the apiserver checks them by TLS,"
                        " not through the token webhook; they stop at their NotAfter"
                    )
                chosen = [c for c in self._credentials.values() if c.cluster_id == cluster_id]
            else:
                found = self._by_secret.get(token or "")
                chosen = [self._credentials[found]] if found else []
            revoked = [c for c in chosen if c.kind == "token" and not c.revoked]
            for credential in revoked:
                self._credentials[credential.id] = dataclasses.replace(credential, revoked=True)
            return len(revoked)

    def credentials(self, *, cluster_id: str | None = None) -> list[IssuedCredential]:
        with self._lock:
            return [
                c
                for c in self._credentials.values()
                if cluster_id is None or c.cluster_id == cluster_id
            ]


def _lifetime_change(value: int) -> int | None:
    """``update_cluster``'s ``max_lifetime``: 0 clears the cap, anything else must be valid."""
    if value == 0 and not isinstance(value, bool):
        return None
    _check_max_lifetime(value)
    return value
