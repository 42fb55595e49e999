"""One reconciliation of one DOClusterAccess: plan → fetch → validate → render → write → status.

This is the operator's behaviour (DESIGN 4) with its I/O injected: a :class:`~doks_access.kube.Kube`
for the Kubernetes API and a :class:`~doks_access.digitalocean.DigitalOceanClient`. No Kopf here:
the handlers call :func:`reconcile` from a per-object daemon and sleep until the time it returns.

What a failure changes is decided here, in one place: transient DigitalOcean errors back off with
jitter and leave a still-valid Secret untouched; 401/404, a missing token Secret, an invalid spec
and a Secret conflict stall the object (retried slowly, or at once when its spec changes).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from doks_access import (
    conditions,
    digitalocean,
    kube,
    logs,
    lookup,
    metrics,
    rendering,
    scheduling,
    spec,
    verify,
)
from doks_access.bookkeeping import REFRESH_REQUESTED_AT
from doks_access.kubeconfig import Credential

logger = logging.getLogger(__name__)

# How often a missing or refused token's Secret is looked at again (a GET, no DigitalOcean call).
TOKEN_POLL = datetime.timedelta(seconds=5)


@dataclasses.dataclass
class Memory:
    """What one object's daemon remembers between reconciliations (lost on restart, on purpose:
    a restarted operator retries a failing object once, then backs off again)."""

    failures: int = 0
    retry_at: datetime.datetime | None = None
    last_failure_time: datetime.datetime | None = None
    last_failure_reason: str | None = None
    generation: int | None = None
    # The failure's conditions (Reconciling or Stalled and a message), shown until the retry.
    failure: dict[str, Any] = dataclasses.field(default_factory=dict)
    # While the token is missing or refused: the token Secret's resourceVersion when that was seen,
    # so that a fixed Secret is tried at once rather than after the slow retry.
    token_version: str | None = None
    watching_token: bool = False
    # spec.clusterName resolved: (credential hash of the spec it was resolved for, cluster ID).
    resolved: tuple[str, str] | None = None
    # The object as our last status write returned it. The body a watch event brings can be older
    # (the daemon may wake, say for the Secret it just wrote, before the object's own event
    # arrives); judged against that, the status would be written and its event sent twice.
    published: Mapping[str, Any] | None = None

    def forget_failures(self) -> None:
        self.failures, self.retry_at = 0, None
        self.last_failure_time = self.last_failure_reason = None
        self.failure = {}
        self.token_version, self.watching_token = None, False


@dataclasses.dataclass(frozen=True)
class Outcome:
    """When the object wants attention again (None: only when something about it changes)."""

    wake_at: datetime.datetime | None


@dataclasses.dataclass(frozen=True)
class Dependencies:
    kube: kube.Kube
    digitalocean: digitalocean.DigitalOceanClient
    rng: random.Random
    verifier: Callable[[Credential], Awaitable[str]] = verify.identity_of
    metrics: metrics.Metrics = dataclasses.field(default_factory=metrics.Metrics)


@dataclasses.dataclass
class _Report:
    """What this reconciliation found, turned into status and events at the end."""

    situation_kwargs: dict[str, Any]
    fields: dict[str, Any]
    wake_at: datetime.datetime | None


async def reconcile(
    body: Mapping[str, Any], *, deps: Dependencies, memory: Memory, now: datetime.datetime
) -> Outcome:
    """Bring one DOClusterAccess's Secret and status up to date; say when to look again."""
    metadata = body["metadata"]
    subject = logs.current_object.set(f"{metadata['namespace']}/{metadata['name']}")
    try:
        return await _reconcile(_latest(body, memory.published), deps=deps, memory=memory, now=now)
    finally:
        logs.current_object.reset(subject)


async def _reconcile(
    body: Mapping[str, Any], *, deps: Dependencies, memory: Memory, now: datetime.datetime
) -> Outcome:
    metadata = body["metadata"]
    generation = int(metadata.get("generation") or 0)
    if memory.generation != generation:
        memory.generation = generation
        memory.forget_failures()  # DESIGN 4.5: a spec change resets backoff and retries at once
    status: Mapping[str, Any] = body.get("status") or {}
    try:
        access = spec.parse_spec(body)
    except spec.InvalidSpecError as exc:
        report = _Report(
            situation_kwargs={"stalled": conditions.StalledReason.INVALID_SPEC, "detail": str(exc)},
            fields={},
            wake_at=None,
        )
        target = status.get("secretName") or f"{metadata['name']}-kubeconfig"
        await _publish(body, report, deps=deps, memory=memory, now=now, secret_name=target)
        return Outcome(wake_at=None)
    report = await _reconcile_spec(body, access, deps=deps, memory=memory, now=now)
    await _publish(body, report, deps=deps, memory=memory, now=now, secret_name=access.target.name)
    return Outcome(
        wake_at=_earliest(report.wake_at, report.situation_kwargs.get("expires_at"), now)
    )


def _earliest(
    wake_at: datetime.datetime | None, expires_at: datetime.datetime | None, now: datetime.datetime
) -> datetime.datetime | None:
    """Wake at expiry too, if that comes first: Ready must turn False the moment it runs out."""
    if expires_at is None or expires_at <= now:
        return wake_at
    return expires_at if wake_at is None else min(wake_at, expires_at)


async def _reconcile_spec(
    body: Mapping[str, Any],
    access: spec.AccessSpec,
    *,
    deps: Dependencies,
    memory: Memory,
    now: datetime.datetime,
) -> _Report:
    metadata = body["metadata"]
    namespace: str = metadata["namespace"]
    owner = rendering.Owner(namespace=namespace, name=metadata["name"], uid=metadata["uid"])
    existing = await deps.kube.read_secret(namespace=namespace, name=access.target.name)
    claim = rendering.ownership(existing=existing, owner=owner, adopt=access.target.adopt)
    if claim.is_conflict:
        return _stalled(conditions.StalledReason.SECRET_CONFLICT, now=now, detail=None)
    observed = rendering.observe_secret(existing, owner=owner)
    current = observed if observed and observed.spec_hash == access.credential_hash() else None
    refresh_request = (metadata.get("annotations") or {}).get(REFRESH_REQUESTED_AT)
    if memory.watching_token and memory.retry_at is not None:
        version = await deps.kube.secret_version(namespace=namespace, name=access.token_secret.name)
        if version != memory.token_version:
            logger.info("the token Secret changed; retrying now")
            memory.retry_at = None
    plan = scheduling.next_action(
        now=now,
        spec=access,
        observed=observed,
        last_secret_name=(body.get("status") or {}).get("secretName"),
        refresh_request=refresh_request,
        jitter_fraction=_jitter(owner, observed),
        retry_at=memory.retry_at,
    )
    if isinstance(plan, scheduling.Suspended):
        return _holding(current, suspended=True, wake_at=None, memory=memory)
    if isinstance(plan, scheduling.WaitUntil):
        logger.debug("nothing to fetch until %s", plan.time)
        if existing is not None and current is not None:
            await _write(
                deps,
                namespace,
                existing,
                rendering.reapply_metadata(existing, spec=access, owner=owner),
            )
        report = _holding(current, suspended=False, wake_at=plan.time, memory=memory)
        if memory.retry_at is not None and plan.time == memory.retry_at:
            report.situation_kwargs.update(memory.failure)  # still failing: say so until the retry
            report.fields["renewal_time"] = plan.time
            if memory.watching_token:
                report.wake_at = min(plan.time, now + TOKEN_POLL)
        elif current is not None:
            report.fields["renewal_time"] = plan.time
        return report
    logger.info("fetching a credential (%s)", plan.reason.value)
    report = await _fetch_and_write(
        access,
        owner=owner,
        existing=existing,
        current=current,
        refresh_request=refresh_request,
        deps=deps,
        memory=memory,
        now=now,
    )
    deps.metrics.renewal_result(
        "success" if memory.failures == 0 else memory.last_failure_reason or "Unknown"
    )
    return report


async def _fetch_and_write(
    access: spec.AccessSpec,
    *,
    owner: rendering.Owner,
    existing: Mapping[str, Any] | None,
    current: scheduling.ObservedSecret | None,
    refresh_request: str | None,
    deps: Dependencies,
    memory: Memory,
    now: datetime.datetime,
) -> _Report:
    try:
        token = await deps.kube.read_token(
            namespace=owner.namespace,
            name=access.token_secret.name,
            key=access.token_secret.key,
        )
    except kube.TokenSecretError as exc:
        reason = conditions.StalledReason.TOKEN_SECRET_MISSING
        report = _failed_permanently(reason, str(exc), current, memory, now)
        return await _watch_token(report, access, owner=owner, deps=deps, memory=memory, now=now)
    try:
        cluster_id = await _cluster_id(
            access, token=token, current=current, deps=deps, memory=memory
        )
        credential = await deps.digitalocean.fetch_kubeconfig(
            token=token, cluster_id=cluster_id, expiry_seconds=access.expiry_seconds
        )
    except lookup.ClusterNameError as exc:
        reason = (
            conditions.StalledReason.AMBIGUOUS_CLUSTER_NAME
            if exc.ambiguous
            else conditions.StalledReason.CLUSTER_NOT_FOUND
        )
        return _failed_permanently(reason, str(exc), current, memory, now)
    except digitalocean.DigitalOceanError as exc:
        report = _failed_fetch(exc, current=current, deps=deps, memory=memory, now=now)
        if isinstance(exc, digitalocean.UnauthorizedError):
            return await _watch_token(
                report, access, owner=owner, deps=deps, memory=memory, now=now
            )
        return report
    identity = None
    if access.verify:
        try:
            identity = await deps.verifier(credential)
        except verify.VerificationError as exc:
            invalid = digitalocean.InvalidResponseError(str(exc))
            return _failed_fetch(invalid, current=current, deps=deps, memory=memory, now=now)
    desired = rendering.render_secret(
        credential=credential,
        spec=access,
        owner=owner,
        cluster_id=cluster_id,
        refresh_request=refresh_request,
    )
    await _write(deps, owner.namespace, existing, desired)
    memory.forget_failures()
    logger.info("wrote a credential valid until %s", credential.expires_at)
    report = _issued(credential, access=access, owner=owner, cluster_id=cluster_id)
    report.fields["identity"] = identity
    if access.cluster_name is not None:
        report.fields["cluster_name"] = access.cluster_name
    return report


async def _watch_token(
    report: _Report,
    access: spec.AccessSpec,
    *,
    owner: rendering.Owner,
    deps: Dependencies,
    memory: Memory,
    now: datetime.datetime,
) -> _Report:
    """Look at the token Secret every few seconds (one GET, no DigitalOcean call) until it changes.

    The operator never watches Secrets it does not own (DESIGN 4.8), so polling this one Secret by
    name is how a fixed or newly created token is noticed without waiting for the slow retry.
    """
    memory.watching_token = True
    memory.token_version = await deps.kube.secret_version(
        namespace=owner.namespace, name=access.token_secret.name
    )
    if report.wake_at is not None:
        report.wake_at = min(report.wake_at, now + TOKEN_POLL)
    return report


async def _cluster_id(
    access: spec.AccessSpec,
    *,
    token: str,
    current: scheduling.ObservedSecret | None,
    deps: Dependencies,
    memory: Memory,
) -> str:
    """The cluster to fetch for: the spec's ID, or the ID its name was resolved to.

    A name is resolved once per credential-shaping spec (API economy): the resolution is kept in
    memory and, across restarts, read back from the Secret written for the same spec.
    """
    if access.cluster_id is not None:
        return access.cluster_id
    name = access.cluster_name or ""
    key = access.credential_hash()
    if memory.resolved is not None and memory.resolved[0] == key:
        return memory.resolved[1]
    if current is not None:
        resolved = current.cluster_id
    else:
        resolved = lookup.cluster_id_for(name, await deps.digitalocean.list_clusters(token=token))
    memory.resolved = (key, resolved)
    return resolved


def _issued(
    credential: Credential, *, access: spec.AccessSpec, owner: rendering.Owner, cluster_id: str
) -> _Report:
    # Plan from the times as the Secret records them (whole seconds), so that re-planning from
    # the Secret later, or after a restart, gives exactly this renewal time and no status change.
    issued_at = _as_recorded(credential.issued_at)
    expires_at = _as_recorded(credential.expires_at)
    renewal = scheduling.renewal_time(
        issued_at=issued_at,
        expires_at=expires_at,
        renew_before=access.renew_before,
        jitter_fraction=_jitter_for(owner, issued_at),
    )
    return _Report(
        situation_kwargs={"expires_at": expires_at},
        fields={
            "cluster_id": cluster_id,
            "server": credential.server,
            "issued_at": issued_at,
            "expires_at": expires_at,
            "renewal_time": renewal,
        },
        wake_at=renewal,
    )


def _as_recorded(moment: datetime.datetime) -> datetime.datetime:
    return moment.replace(microsecond=0)


def _failed_fetch(
    exc: digitalocean.DigitalOceanError,
    *,
    current: scheduling.ObservedSecret | None,
    deps: Dependencies,
    memory: Memory,
    now: datetime.datetime,
) -> _Report:
    if isinstance(exc, digitalocean.UnauthorizedError):
        reason = conditions.StalledReason.UNAUTHORIZED
        return _failed_permanently(reason, str(exc), current, memory, now)
    if isinstance(exc, digitalocean.NotFoundError):
        reason = conditions.StalledReason.CLUSTER_NOT_FOUND
        return _failed_permanently(reason, str(exc), current, memory, now)
    memory.failures += 1
    memory.last_failure_time = now
    if isinstance(exc, digitalocean.RateLimitedError):
        memory.last_failure_reason = "RateLimited"
        wait = datetime.timedelta(seconds=exc.retry_after)
        reconciling = conditions.ReconcilingReason.RATE_LIMITED
    else:
        memory.last_failure_reason = type(exc).__name__.removesuffix("Error")
        wait = scheduling.failure_backoff(
            failures=memory.failures,
            now=now,
            expires_at=current.expires_at if current else None,
            jitter_fraction=deps.rng.random(),
        )
        reconciling = conditions.ReconcilingReason.RETRYING_AFTER_ERROR
    memory.retry_at = now + max(wait, datetime.timedelta(milliseconds=100))
    logger.warning("fetching a credential failed (%s); retrying in %s", exc, wait)
    report = _holding(current, suspended=False, wake_at=memory.retry_at, memory=memory)
    memory.failure = {"reconciling": reconciling, "detail": str(exc)}
    report.situation_kwargs.update(memory.failure)
    report.fields["renewal_time"] = memory.retry_at
    return report


def _failed_permanently(
    reason: conditions.StalledReason,
    detail: str,
    current: scheduling.ObservedSecret | None,
    memory: Memory,
    now: datetime.datetime,
) -> _Report:
    memory.failures += 1
    memory.last_failure_time = now
    memory.last_failure_reason = reason.value
    memory.retry_at = now + scheduling.STALLED_RETRY
    logger.warning("fetching a credential needs attention (%s): %s", reason.value, detail)
    report = _holding(current, suspended=False, wake_at=memory.retry_at, memory=memory)
    memory.failure = {"stalled": reason, "detail": detail}
    report.situation_kwargs.update(memory.failure)
    report.fields["renewal_time"] = memory.retry_at
    return report


def _stalled(
    reason: conditions.StalledReason, *, now: datetime.datetime, detail: str | None
) -> _Report:
    return _Report(
        situation_kwargs={"stalled": reason, "detail": detail},
        fields={},
        wake_at=now + scheduling.STALLED_RETRY,
    )


def _holding(
    current: scheduling.ObservedSecret | None,
    *,
    suspended: bool,
    wake_at: datetime.datetime | None,
    memory: Memory,
) -> _Report:
    """A report that keeps what the Secret already holds (no fetch happened or it failed)."""
    fields: dict[str, Any] = {}
    if current is not None:
        fields = {
            "cluster_id": current.cluster_id,
            "issued_at": current.issued_at,
            "expires_at": current.expires_at,
        }
    expires_at = current.expires_at if current else None
    return _Report(
        situation_kwargs={"expires_at": expires_at, "suspended": suspended},
        fields=fields,
        wake_at=wake_at,
    )


async def _write(
    deps: Dependencies,
    namespace: str,
    existing: Mapping[str, Any] | None,
    desired: rendering.SecretManifest,
) -> None:
    write = rendering.write_for(existing, desired)
    if write.action is rendering.WriteAction.UNCHANGED:
        return
    if write.action is rendering.WriteAction.CREATE:
        await deps.kube.create_secret(namespace=namespace, manifest=write.manifest)
    elif write.action is rendering.WriteAction.REPLACE:
        await deps.kube.replace_secret(namespace=namespace, manifest=write.manifest)
    else:  # RECREATE: the type of a Secret cannot change in place
        uid = (existing or {}).get("metadata", {}).get("uid")
        await deps.kube.delete_secret(
            namespace=namespace, name=desired["metadata"]["name"], uid=uid
        )
        deps.metrics.kubernetes_write("Secret")
        await deps.kube.create_secret(namespace=namespace, manifest=write.manifest)
    deps.metrics.kubernetes_write("Secret")


async def _publish(
    body: Mapping[str, Any],
    report: _Report,
    *,
    deps: Dependencies,
    memory: Memory,
    now: datetime.datetime,
    secret_name: str,
) -> None:
    metadata = body["metadata"]
    namespace, name = metadata["namespace"], metadata["name"]
    previous: Mapping[str, Any] = body.get("status") or {}
    situation = conditions.Situation(
        generation=int(metadata.get("generation") or 0),
        secret_name=secret_name,
        **report.situation_kwargs,
    )
    fields = {
        "cluster_id": previous.get("clusterID"),
        "cluster_name": previous.get("clusterName"),
        "server": previous.get("server"),
        "identity": previous.get("identity"),
        **report.fields,
    }
    holds = report.situation_kwargs.get("expires_at") is not None
    current = conditions.Status(
        observed_generation=situation.generation,
        conditions=conditions.conditions_for(
            situation=situation, now=now, previous=previous.get("conditions") or ()
        ),
        secret_name=secret_name if holds else previous.get("secretName"),
        failed_attempts=memory.failures,
        last_failure_time=memory.last_failure_time,
        last_failure_reason=memory.last_failure_reason,
        **fields,
    )
    old_secret = previous.get("secretName")
    if holds and old_secret and old_secret != secret_name:
        await _delete_if_ours(deps, namespace=namespace, name=old_secret, owner_name=name)
    patch = conditions.status_patch(previous=previous, current=current)
    if patch is not None:
        memory.published = _without_managed_fields(
            await deps.kube.patch_status(namespace=namespace, name=name, patch=patch)
        )
        deps.metrics.kubernetes_write("Status")
    ready = current.condition(conditions.ConditionType.READY)
    deps.metrics.observe_object(
        namespace=namespace,
        name=name,
        state=metrics.ObjectState(
            cluster_id=current.cluster_id or "",
            expires_at=current.expires_at,
            renewal_time=current.renewal_time,
            ready="Unknown" if ready is None else str(ready.status),
            failures=memory.failures,
        ),
        now=now,
    )
    for event in conditions.events_for(previous=previous, current=current):
        await deps.kube.emit_event(
            involved=body,
            type_=event.type.value,
            reason=event.reason,
            message=event.message,
            now=now,
        )
        deps.metrics.kubernetes_write("Event")


def _without_managed_fields(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """The object without ``metadata.managedFields``: the bulk of it, and nothing we read."""
    metadata = {k: v for k, v in obj.get("metadata", {}).items() if k != "managedFields"}
    return {**obj, "metadata": metadata}


def _latest(body: Mapping[str, Any], published: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The newer of the watched body and the object our last status write returned.

    resourceVersions are compared as numbers, which they are on every etcd-backed API server;
    should one not be, the watched body wins, as it would without this.
    """
    if published is None:
        return body
    ours = str(published.get("metadata", {}).get("resourceVersion", ""))
    theirs = str(body.get("metadata", {}).get("resourceVersion", ""))
    if ours.isdigit() and theirs.isdigit() and int(ours) > int(theirs):
        return published
    return body


async def _delete_if_ours(
    deps: Dependencies, *, namespace: str, name: str, owner_name: str
) -> None:
    secret = await deps.kube.read_secret(namespace=namespace, name=name)
    owner = rendering.Owner(namespace=namespace, name=owner_name, uid="")
    if (
        secret is not None
        and rendering.ownership(existing=secret, owner=owner, adopt=False)
        is rendering.Ownership.OURS
    ):
        await deps.kube.delete_secret(namespace=namespace, name=name, uid=secret["metadata"]["uid"])
        deps.metrics.kubernetes_write("Secret")


def _jitter(owner: rendering.Owner, observed: scheduling.ObservedSecret | None) -> float:
    return _jitter_for(owner, observed.issued_at) if observed else 0.0


def _jitter_for(owner: rendering.Owner, issued_at: datetime.datetime) -> float:
    # Stable per credential: re-planning after a restart lands on the same renewal time.
    return scheduling.renewal_jitter(seed=f"{owner.uid}/{issued_at.isoformat()}")
