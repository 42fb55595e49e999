"""``ClusterDOAccount``: a platform team's DigitalOcean token, and who may use it for what (pure).

A DigitalOcean API token with ``kubernetes:access_cluster`` mints admin credentials for every
cluster of its account. A ``ClusterDOAccount`` (cluster-scoped, like cert-manager's
``ClusterIssuer``) keeps that token in one namespace the platform team controls and says, rule by
rule, which namespaces may ask for credentials of which clusters, for how long at most, and
whether ``verify`` is required. A ``DOClusterAccess`` or ``DOClusterAccessSet`` names the account
(``accountRef``) instead of holding a token; the operator decides here, before any DigitalOcean
call, whether the request is within the policy, and says which rule refused it when it is not.

The rules (issue 18, docs/decisions.md "Tenancy"):

- A namespace may use the account when at least one rule admits it: by name (``namespaces``) or
  by its labels (``namespaceSelector``, Kubernetes' label selector: ``matchLabels`` and
  ``matchExpressions`` with In, NotIn, Exists, DoesNotExist). A rule that names neither admits no
  namespace: there is no "everyone" by omission.
- A rule grants clusters by ID, by name and by tags (all of the given tags). A cluster is granted
  when any admitting rule grants it; a rule with no cluster criteria grants every cluster of the
  account, which must be written on purpose (``clusters: {all: true}``).
- ``maxExpirySeconds`` caps the requested lifetime (DigitalOcean's default of 7 days counts as
  604,800 s); ``requireVerify`` refuses a request without ``verify: true``.
- What can be decided from the request alone (the namespace, the lifetime, ``verify``, a cluster
  granted or refused by ID or name) is decided without any DigitalOcean call. Only a grant by
  tags needs the cluster's tags, which come from a listing (one call per token and resync,
  shared, as for sets).

Nothing here does I/O: the caller passes the namespace's labels and, when needed, the cluster.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Iterable, Mapping
from typing import Protocol

from doks_access.spec import InvalidSpecError, SecretKeyRef, parse_token_secret

__all__ = [
    "DEFAULT_EXPIRY_SECONDS",
    "Account",
    "AccountError",
    "ClusterGrant",
    "Decision",
    "Expression",
    "NamespaceRule",
    "Refusal",
    "Request",
    "Rule",
    "admitting",
    "decide",
    "namespace_refused",
    "parse_account",
]

# What DigitalOcean issues when no expiry is asked for: 7 days.
DEFAULT_EXPIRY_SECONDS = 7 * 24 * 3600
_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_MAX_RULES = 100
_MAX_ITEMS = 1000


class Listed(Protocol):
    """What a cluster listing says about a cluster (``digitalocean.Cluster`` has it)."""

    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def tags(self) -> tuple[str, ...] | None: ...


@dataclasses.dataclass(frozen=True)
class Expression:
    """One ``matchExpressions`` entry of a label selector."""

    key: str
    operator: str  # In, NotIn, Exists, DoesNotExist
    values: frozenset[str] = frozenset()

    def holds(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.operator == "Exists":
            return present
        if self.operator == "DoesNotExist":
            return not present
        if self.operator == "In":
            return present and labels[self.key] in self.values
        return not present or labels[self.key] not in self.values  # NotIn


@dataclasses.dataclass(frozen=True)
class NamespaceRule:
    """Which namespaces a rule admits: by name, or by a label selector (either admits)."""

    names: frozenset[str] = frozenset()
    match_labels: Mapping[str, str] | None = None  # None: no selector given
    expressions: tuple[Expression, ...] = ()

    def admits(self, namespace: str, labels: Mapping[str, str]) -> bool:
        if namespace in self.names:
            return True
        if self.match_labels is None and not self.expressions:
            return False
        wanted = self.match_labels or {}
        return all(labels.get(key) == value for key, value in wanted.items()) and all(
            expression.holds(labels) for expression in self.expressions
        )


@dataclasses.dataclass(frozen=True)
class ClusterGrant:
    """Which clusters a rule grants: any of ``ids`` or ``names``, or all of ``tags`` -- or every
    cluster, with ``all``."""

    everything: bool = False
    ids: frozenset[str] = frozenset()
    names: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()

    def grants_by_identity(self, *, cluster_id: str | None, cluster_name: str | None) -> bool:
        """Granted without knowing the cluster's tags."""
        if self.everything:
            return True
        by_id = cluster_id is not None and cluster_id.lower() in self.ids
        return by_id or (cluster_name is not None and cluster_name in self.names)

    def grants(self, cluster: Listed) -> bool:
        if self.grants_by_identity(cluster_id=cluster.id, cluster_name=cluster.name):
            return True
        return bool(self.tags) and self.tags <= set(cluster.tags or ())


@dataclasses.dataclass(frozen=True)
class Rule:
    """One entry of ``spec.tenants``: these namespaces may have these clusters."""

    index: int  # its place in spec.tenants, for messages
    namespaces: NamespaceRule
    clusters: ClusterGrant


@dataclasses.dataclass(frozen=True)
class Account:
    """A valid ``ClusterDOAccount`` spec."""

    token_secret: SecretKeyRef  # in the operator's account namespace, never a tenant's
    rules: tuple[Rule, ...]
    max_expiry_seconds: int | None = None
    require_verify: bool = False


@dataclasses.dataclass(frozen=True)
class Request:
    """What a tenant's object asks of an account."""

    namespace: str
    namespace_labels: Mapping[str, str]
    cluster_id: str | None  # spec.clusterID, or None with spec.clusterName
    cluster_name: str | None
    expiry_seconds: int | None  # None: DigitalOcean's default
    verify: bool


class Refusal(enum.StrEnum):
    """Why an account refuses a request; the value is the object's Stalled reason."""

    NAMESPACE_NOT_ALLOWED = "NamespaceNotAllowed"
    CLUSTER_NOT_ALLOWED = "ClusterNotAllowed"
    EXPIRY_TOO_LONG = "ExpiryTooLong"
    VERIFY_REQUIRED = "VerifyRequired"
    ACCOUNT_NOT_FOUND = "AccountNotFound"  # no such ClusterDOAccount, or its token is missing
    INVALID_ACCOUNT = "InvalidAccount"  # the ClusterDOAccount's spec cannot be acted on


class AccountError(Exception):
    """An account does not serve a request; ``refusal`` says why, the message which rule."""

    def __init__(self, refusal: Refusal, message: str) -> None:
        super().__init__(message)
        self.refusal = refusal


@dataclasses.dataclass(frozen=True)
class Decision:
    """The account's answer: refused (with the reason and a sentence naming the rule), allowed,
    or -- when only a grant by tags could allow it -- allowed if the cluster's tags say so."""

    refusal: Refusal | None = None
    message: str = ""
    # Rules that may still grant the cluster by its tags (a listing tells).
    by_tags: tuple[Rule, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.refusal is None and not self.by_tags

    def for_cluster(self, cluster: Listed) -> Decision:
        """The final answer once the cluster's listing is known."""
        if self.refusal is not None or not self.by_tags:
            return self
        if any(rule.clusters.grants(cluster) for rule in self.by_tags):
            return Decision()
        return _cluster_refused(cluster.id, self.by_tags)


def admitting(account: Account, namespace: str, labels: Mapping[str, str]) -> tuple[Rule, ...]:
    """The rules of ``account`` that admit ``namespace`` (with ``labels``)."""
    return tuple(rule for rule in account.rules if rule.namespaces.admits(namespace, labels))


def namespace_refused(account_name: str, namespace: str) -> AccountError:
    return AccountError(
        Refusal.NAMESPACE_NOT_ALLOWED,
        f"no rule of ClusterDOAccount {account_name} admits namespace {namespace}",
    )


def decide(account: Account, request: Request, *, account_name: str) -> Decision:
    """Whether ``account`` serves ``request``, as far as the request alone tells."""
    admitted = admitting(account, request.namespace, request.namespace_labels)
    if not admitted:
        refused = namespace_refused(account_name, request.namespace)
        return Decision(refused.refusal, str(refused))
    lifetime = request.expiry_seconds or DEFAULT_EXPIRY_SECONDS
    if account.max_expiry_seconds is not None and lifetime > account.max_expiry_seconds:
        return Decision(
            Refusal.EXPIRY_TOO_LONG,
            f"ClusterDOAccount {account_name} allows at most {account.max_expiry_seconds}s; "
            f"this asks for {lifetime}s (set spec.expirySeconds)",
        )
    if account.require_verify and not request.verify:
        return Decision(
            Refusal.VERIFY_REQUIRED,
            f"ClusterDOAccount {account_name} requires spec.verify: true",
        )
    identity = {"cluster_id": request.cluster_id, "cluster_name": request.cluster_name}
    if any(rule.clusters.grants_by_identity(**identity) for rule in admitted):
        return Decision()
    by_tags = tuple(rule for rule in admitted if rule.clusters.tags)
    if by_tags:
        return Decision(by_tags=by_tags)
    return _cluster_refused(request.cluster_id or request.cluster_name or "", admitted)


def _cluster_refused(cluster: str, rules: Iterable[Rule]) -> Decision:
    indexes = ", ".join(f"tenants[{rule.index}]" for rule in rules)
    return Decision(
        Refusal.CLUSTER_NOT_ALLOWED,
        f"cluster {cluster} is granted by none of the rules that admit this namespace ({indexes})",
    )


# -- parsing ---------------------------------------------------------------------------------------


def parse_account(body: Mapping[str, object]) -> Account:
    """A valid :class:`Account` from a ``ClusterDOAccount`` body, or :class:`InvalidSpecError`."""
    spec = _object(body.get("spec"), "spec")
    tenants = spec.get("tenants")
    if not isinstance(tenants, list) or not tenants:
        raise InvalidSpecError("spec.tenants", "must be a non-empty list of rules")
    if len(tenants) > _MAX_RULES:
        raise InvalidSpecError("spec.tenants", f"has more than {_MAX_RULES} rules")
    return Account(
        token_secret=parse_token_secret(spec.get("tokenSecretRef")),
        rules=tuple(_rule(i, value) for i, value in enumerate(tenants)),
        max_expiry_seconds=_max_expiry(spec.get("maxExpirySeconds")),
        require_verify=_flag(spec.get("requireVerify"), "spec.requireVerify"),
    )


def _rule(index: int, value: object) -> Rule:
    field = f"spec.tenants[{index}]"
    rule = _object(value, field)
    names = _strings(rule.get("namespaces"), f"{field}.namespaces")
    selector = rule.get("namespaceSelector")
    labels, expressions = (None, ()) if selector is None else _selector(selector, field)
    if not names and labels is None and not expressions:
        raise InvalidSpecError(field, "admits no namespace: give namespaces or namespaceSelector")
    return Rule(
        index=index,
        namespaces=NamespaceRule(names=names, match_labels=labels, expressions=expressions),
        clusters=_grant(rule.get("clusters"), f"{field}.clusters"),
    )


def _selector(value: object, field: str) -> tuple[Mapping[str, str], tuple[Expression, ...]]:
    selector = _object(value, f"{field}.namespaceSelector")
    labels = _object(selector.get("matchLabels", {}), f"{field}.namespaceSelector.matchLabels")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise InvalidSpecError(f"{field}.namespaceSelector.matchLabels", "must map strings")
    raw = selector.get("matchExpressions", [])
    if not isinstance(raw, list):
        raise InvalidSpecError(f"{field}.namespaceSelector.matchExpressions", "is not a list")
    expressions = tuple(
        _expression(entry, f"{field}.namespaceSelector.matchExpressions[{i}]")
        for i, entry in enumerate(raw)
    )
    return {str(k): str(v) for k, v in labels.items()}, expressions


def _expression(value: object, field: str) -> Expression:
    entry = _object(value, field)
    key, operator = entry.get("key"), entry.get("operator")
    if not isinstance(key, str) or not key:
        raise InvalidSpecError(f"{field}.key", "is not a non-empty string")
    if operator not in _OPERATORS:
        raise InvalidSpecError(f"{field}.operator", f"is not one of {', '.join(_OPERATORS)}")
    values = _strings(entry.get("values"), f"{field}.values")
    if operator in ("In", "NotIn") and not values:
        raise InvalidSpecError(f"{field}.values", f"must not be empty with {operator}")
    if operator in ("Exists", "DoesNotExist") and values:
        raise InvalidSpecError(f"{field}.values", f"must be empty with {operator}")
    return Expression(key=key, operator=str(operator), values=values)


def _grant(value: object, field: str) -> ClusterGrant:
    clusters = _object(value, field)
    everything = _flag(clusters.get("all"), f"{field}.all")
    ids = _strings(clusters.get("ids"), f"{field}.ids")
    if any(not _UUID.fullmatch(cluster_id.lower()) for cluster_id in ids):
        raise InvalidSpecError(f"{field}.ids", "holds something that is not a cluster UUID")
    grant = ClusterGrant(
        everything=everything,
        ids=frozenset(cluster_id.lower() for cluster_id in ids),
        names=_strings(clusters.get("names"), f"{field}.names"),
        tags=_strings(clusters.get("tags"), f"{field}.tags"),
    )
    given = bool(grant.ids or grant.names or grant.tags)
    if everything == given:
        raise InvalidSpecError(
            field, "must grant clusters by ids, names or tags, or every cluster with all: true"
        )
    return grant


def _max_expiry(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidSpecError("spec.maxExpirySeconds", "is not a positive integer")
    return value


def _object(value: object, field: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise InvalidSpecError(field, "is missing" if value is None else "is not an object")
    return value


def _strings(value: object, field: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidSpecError(field, "is not a list of non-empty strings")
    if len(value) > _MAX_ITEMS:
        raise InvalidSpecError(field, f"has more than {_MAX_ITEMS} entries")
    return frozenset(value)


def _flag(value: object, field: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidSpecError(field, "is not true or false")
    return value
