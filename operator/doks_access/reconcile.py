"""One reconciliation of one DOClusterAccess: read → plan → fetch → write → publish.

The orchestration of DESIGN 4, reading top to bottom; each step is a small part elsewhere:
the plan is ``scheduling`` (pure), what a failure changes is ``failures`` (pure), the Secret is
rendered by ``rendering`` (pure) and written by ``secrets``, and the status, events and metrics
are rendered from one typed :class:`~doks_access.status.Report` and written by ``publishing``.
I/O goes through the :class:`~doks_access.dependencies.Dependencies` built once at start-up. No
Kopf here: the dispatcher calls :func:`reconcile` when an object is due or woken.

Every failure this module expects is mapped to a :class:`~doks_access.failures.FailureReason` in
one place (:func:`_failure_of`); a Kubernetes API error (the apiserver restarting, a write racing
another) propagates, and the caller looks again shortly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
from collections.abc import Mapping
from typing import Any

from doks_access import (
    digitalocean,
    failures,
    kube,
    logs,
    lookup,
    publishing,
    rendering,
    scheduling,
    secrets,
    spec,
    verify,
)
from doks_access.bookkeeping import ObservedSecret
from doks_access.conditions import StalledReason
from doks_access.dependencies import Dependencies
from doks_access.kubeconfig import Credential
from doks_access.objects import AccessObject
from doks_access.status import Held, Issued, Report

__all__ = ["Memory", "Outcome", "reconcile"]

logger = logging.getLogger(__name__)

# The DigitalOcean API token, or why it cannot be read from its Secret.
_Token = str | kube.TokenSecretError
# What a fetch can fail with, short of a bug; _failure_of maps each to a reason.
_FETCH_ERRORS = (
    kube.TokenSecretError,
    lookup.ClusterNameError,
    digitalocean.DigitalOceanError,
    verify.VerificationError,
)


@dataclasses.dataclass(slots=True)
class Memory:
    """What the operator remembers of one object between reconciliations.

    Lost on restart, on purpose: a restarted operator re-plans from the Secrets, and tries a
    failing object once before it backs off again.
    """

    obj: AccessObject  # the newest version known, from the watch or our own status write
    failures: failures.FailureState = failures.CLEAR
    generation: int | None = None  # the spec generation ``failures`` are about
    # spec.clusterName resolved: (credential hash of the spec it was resolved for, cluster ID).
    resolved: tuple[str, str] | None = None
    # The target Secret's resourceVersion as last read or written: its watch events are no news.
    secret_version: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """When the object wants attention again (None: only when something about it changes)."""

    wake_at: datetime.datetime | None
    written: Mapping[str, Any] | None = None  # the object as our status PATCH returned it


async def reconcile(memory: Memory, *, deps: Dependencies, now: datetime.datetime) -> Outcome:
    """Bring one DOClusterAccess's Secret and status up to date; say when to look again."""
    obj = memory.obj
    subject = logs.current_object.set(f"{obj.namespace}/{obj.name}")
    try:
        if memory.generation != obj.generation:
            memory.generation = obj.generation
            memory.failures = failures.spec_changed(memory.failures)
        if obj.spec is None:
            report = Report(
                generation=obj.generation,
                secret_name=obj.default_secret_name,
                failures=memory.failures,
                stalled=StalledReason.INVALID_SPEC,
                detail=obj.spec_error,
            )
            return Outcome(wake_at=None, written=await _publish(obj, report, deps=deps, now=now))
        report, wake_at = await _bring_up_to_date(memory, obj, obj.spec, deps=deps, now=now)
        if report.held is not None:
            await _remove_previous_secret(obj, report, deps=deps)
        written = await _publish(obj, report, deps=deps, now=now)
        return Outcome(wake_at=_earliest(wake_at, report.held, now), written=written)
    finally:
        logs.current_object.reset(subject)


async def _bring_up_to_date(
    memory: Memory,
    obj: AccessObject,
    access: spec.AccessSpec,
    *,
    deps: Dependencies,
    now: datetime.datetime,
) -> tuple[Report, datetime.datetime | None]:
    """Read the Secret, plan, and fetch if the plan says so: what was found, and when to look
    again."""
    owner = rendering.Owner(namespace=obj.namespace, name=obj.name, uid=obj.uid)
    existing, token = await _read_secrets(memory, obj, access, deps=deps, now=now)
    memory.secret_version = _version_of(existing)
    base = Report(
        generation=obj.generation, secret_name=access.target.name, failures=memory.failures
    )
    if rendering.ownership(existing=existing, owner=owner, adopt=access.target.adopt).is_conflict:
        report = dataclasses.replace(base, stalled=StalledReason.SECRET_CONFLICT)
        return report, now + scheduling.STALLED_RETRY
    observed = rendering.observe_secret(existing, owner=owner)
    current = observed if observed and observed.spec_hash == access.credential_hash() else None
    await _notice_token_change(memory, obj, access, deps=deps)
    plan = scheduling.next_action(
        now=now,
        spec=access,
        observed=observed,
        last_secret_name=obj.status.secret_name,
        refresh_request=obj.refresh_request,
        jitter_fraction=_jitter(owner, observed),
    )
    gated = failures.postpone(plan, memory.failures, now=now)
    base = dataclasses.replace(base, held=_held(current), failures=memory.failures)
    if isinstance(gated, scheduling.Suspended):
        return dataclasses.replace(base, suspended=True), None
    if isinstance(gated, scheduling.WaitUntil):
        logger.debug("nothing to fetch until %s", gated.time)
        if existing is not None and current is not None:  # labels or annotations may have changed
            desired = rendering.reapply_metadata(existing, spec=access, owner=owner)
            await _write_secret(memory, obj, existing, desired, deps=deps)
        if gated is plan:
            return dataclasses.replace(base, renewal_time=gated.time), gated.time
        # Waiting for the retry of a failure: it is still the situation.
        report = dataclasses.replace(base, renewal_time=gated.time, failing=True)
        return report, failures.next_look(memory.failures, wait_until=gated.time, now=now)
    logger.info("fetching a credential (%s)", gated.reason.value)
    try:
        credential, cluster_id, identity = await _new_credential(
            memory, obj, access, current, token, deps
        )
    except _FETCH_ERRORS as exc:
        return await _failed(memory, obj, access, _failure_of(exc), base, current, deps, now)
    desired = rendering.render_secret(
        credential=credential,
        spec=access,
        owner=owner,
        cluster_id=cluster_id,
        refresh_request=obj.refresh_request,
    )
    await _write_secret(memory, obj, existing, desired, deps=deps)
    memory.failures = failures.succeeded(memory.failures)
    deps.metrics.renewal_result("success")
    logger.info("wrote a credential valid until %s", credential.expires_at)
    return _issued(base, credential, access, owner, cluster_id=cluster_id, identity=identity)


async def _read_secrets(
    memory: Memory,
    obj: AccessObject,
    access: spec.AccessSpec,
    *,
    deps: Dependencies,
    now: datetime.datetime,
) -> tuple[dict[str, Any] | None, _Token | None]:
    """The target Secret; and when a fetch is likely, the token too, read at the same time (one
    round trip less before a new object gets its credential). A wrong guess costs one read."""
    target = deps.kube.read_secret(namespace=obj.namespace, name=access.target.name)
    if not _fetch_likely(obj, memory.failures, now=now):
        return await target, None
    existing, token = await asyncio.gather(target, _read_token(obj, access, deps=deps))
    return existing, token


def _fetch_likely(
    obj: AccessObject, state: failures.FailureState, *, now: datetime.datetime
) -> bool:
    """Whether the status says a fetch is due: no credential yet, a new spec, a renewal due."""
    if state.retry_at is not None and now < state.retry_at:
        return False
    status = obj.status
    if status.issued_at is None or status.observed_generation != obj.generation:
        return True
    return status.renewal_time is not None and status.renewal_time <= now


async def _read_token(obj: AccessObject, access: spec.AccessSpec, *, deps: Dependencies) -> _Token:
    ref = access.token_secret
    try:
        return await deps.kube.read_token(namespace=obj.namespace, name=ref.name, key=ref.key)
    except kube.TokenSecretError as exc:
        return exc


async def _new_credential(
    memory: Memory,
    obj: AccessObject,
    access: spec.AccessSpec,
    current: ObservedSecret | None,
    token: _Token | None,
    deps: Dependencies,
) -> tuple[Credential, str, str | None]:
    """Fetch (and, with ``spec.verify``, prove) a credential: it, its cluster ID and identity.

    ``token`` is the token read already, or why it could not be (None: not read yet).
    """
    if token is None:
        token = await _read_token(obj, access, deps=deps)
    if isinstance(token, kube.TokenSecretError):
        raise token
    cluster_id = await _cluster_id(memory, access, token=token, current=current, deps=deps)
    credential = await deps.digitalocean.fetch_kubeconfig(
        token=token, cluster_id=cluster_id, expiry_seconds=access.expiry_seconds
    )
    identity = await deps.verifier(credential) if access.verify else None
    return credential, cluster_id, identity


async def _failed(
    memory: Memory,
    obj: AccessObject,
    access: spec.AccessSpec,
    failure: failures.Failure,
    base: Report,
    current: ObservedSecret | None,
    deps: Dependencies,
    now: datetime.datetime,
) -> tuple[Report, datetime.datetime]:
    """Record the failure (the old Secret stays as it is) and plan the retry."""
    token_version = None
    if failure.reason.concerns_the_token:
        # Looked at again every few seconds (failures.TOKEN_POLL): the operator never watches
        # Secrets it does not own (DESIGN 4.8), so polling this one by name is how a fixed or
        # newly created token is noticed without waiting for the slow retry.
        token_version = await deps.kube.secret_version(
            namespace=obj.namespace, name=access.token_secret.name
        )
    memory.failures = failures.failed(
        memory.failures,
        failure,
        now=now,
        expires_at=current.expires_at if current else None,
        jitter_fraction=deps.rng.random(),
        token_version=token_version,
    )
    deps.metrics.renewal_result(failure.reason.value)
    retry_at = memory.failures.retry_at or now
    if failure.reason.stalled is not None:
        logger.warning(
            "fetching a credential needs attention (%s): %s", failure.reason, failure.detail
        )
    else:
        logger.warning(
            "fetching a credential failed (%s); retrying in %s", failure.detail, retry_at - now
        )
    report = dataclasses.replace(
        base, failures=memory.failures, renewal_time=retry_at, failing=True
    )
    return report, failures.next_look(memory.failures, wait_until=retry_at, now=now)


def _failure_of(exc: Exception) -> failures.Failure:
    """The reason a fetch failed, from what it raised: the one place errors become reasons."""
    reason = failures.FailureReason.INVALID_RESPONSE
    retry_after = None
    if isinstance(exc, kube.TokenSecretError):
        reason = failures.FailureReason.TOKEN_SECRET_MISSING
    elif isinstance(exc, lookup.ClusterNameError):
        reason = (
            failures.FailureReason.AMBIGUOUS_CLUSTER_NAME
            if exc.ambiguous
            else failures.FailureReason.CLUSTER_NOT_FOUND
        )
    elif isinstance(exc, digitalocean.UnauthorizedError):
        reason = failures.FailureReason.UNAUTHORIZED
    elif isinstance(exc, digitalocean.NotFoundError):
        reason = failures.FailureReason.CLUSTER_NOT_FOUND
    elif isinstance(exc, digitalocean.RateLimitedError):
        reason = failures.FailureReason.RATE_LIMITED
        retry_after = datetime.timedelta(seconds=exc.retry_after)
    elif isinstance(exc, digitalocean.ServerError):
        reason = failures.FailureReason.SERVER
    elif isinstance(exc, digitalocean.TransportError):
        reason = failures.FailureReason.TRANSPORT
    # InvalidResponseError and a failed verification (verify.VerificationError) keep the default:
    # an answer that cannot be used, the old Secret kept (DESIGN 4.6).
    return failures.Failure(reason=reason, detail=str(exc), retry_after=retry_after)


async def _notice_token_change(
    memory: Memory, obj: AccessObject, access: spec.AccessSpec, *, deps: Dependencies
) -> None:
    """While a token failure waits for its retry, a changed token Secret is tried at once."""
    if not memory.failures.watching_token or memory.failures.retry_at is None:
        return
    version = await deps.kube.secret_version(namespace=obj.namespace, name=access.token_secret.name)
    changed = failures.token_changed(memory.failures, version=version)
    if changed is not memory.failures:
        logger.info("the token Secret changed; retrying now")
        memory.failures = changed


async def _cluster_id(
    memory: Memory,
    access: spec.AccessSpec,
    *,
    token: str,
    current: ObservedSecret | None,
    deps: Dependencies,
) -> str:
    """The cluster to fetch for: the spec's ID, or the ID its name was resolved to.

    A name is resolved once per credential-shaping spec (API economy): the resolution is kept in
    memory and, across restarts, read back from the Secret written for the same spec.
    """
    if access.cluster_id is not None:
        return access.cluster_id
    key = access.credential_hash()
    if memory.resolved is not None and memory.resolved[0] == key:
        return memory.resolved[1]
    if current is not None:
        resolved = current.cluster_id
    else:
        clusters = await deps.digitalocean.list_clusters(token=token)
        resolved = lookup.cluster_id_for(access.cluster_name or "", clusters)
    memory.resolved = (key, resolved)
    return resolved


def _issued(
    base: Report,
    credential: Credential,
    access: spec.AccessSpec,
    owner: rendering.Owner,
    *,
    cluster_id: str,
    identity: str | None,
) -> tuple[Report, datetime.datetime]:
    # Plan from the times as the Secret records them (whole seconds), so that re-planning from
    # the Secret later, or after a restart, gives exactly this renewal time and no status change.
    issued_at = credential.issued_at.replace(microsecond=0)
    expires_at = credential.expires_at.replace(microsecond=0)
    renewal = scheduling.renewal_time(
        issued_at=issued_at,
        expires_at=expires_at,
        renew_before=access.renew_before,
        jitter_fraction=_jitter_for(owner, issued_at),
    )
    report = dataclasses.replace(
        base,
        held=Held(cluster_id=cluster_id, issued_at=issued_at, expires_at=expires_at),
        renewal_time=renewal,
        failures=failures.CLEAR,
        issued=Issued(
            server=credential.server, cluster_name=access.cluster_name, identity=identity
        ),
    )
    return report, renewal


async def _write_secret(
    memory: Memory,
    obj: AccessObject,
    existing: Mapping[str, Any] | None,
    desired: rendering.SecretManifest,
    *,
    deps: Dependencies,
) -> None:
    version = await secrets.write(
        deps.kube, namespace=obj.namespace, existing=existing, desired=desired
    )
    if version is not None:
        memory.secret_version = version


async def _remove_previous_secret(obj: AccessObject, report: Report, *, deps: Dependencies) -> None:
    """The target was renamed and the new Secret holds a credential: the old one goes, if ours."""
    previous = obj.status.secret_name
    if previous and previous != report.secret_name:
        await secrets.delete_if_owned(
            deps.kube, namespace=obj.namespace, name=previous, owner_name=obj.name
        )


async def _publish(
    obj: AccessObject, report: Report, *, deps: Dependencies, now: datetime.datetime
) -> Mapping[str, Any] | None:
    return await publishing.publish(obj, report, api=deps.kube, collected=deps.metrics, now=now)


def _held(current: ObservedSecret | None) -> Held | None:
    if current is None:
        return None
    return Held(
        cluster_id=current.cluster_id, issued_at=current.issued_at, expires_at=current.expires_at
    )


def _earliest(
    wake_at: datetime.datetime | None, held: Held | None, now: datetime.datetime
) -> datetime.datetime | None:
    """Wake at expiry too, if that comes first: Ready must turn False the moment it runs out."""
    if held is None or held.expires_at <= now:
        return wake_at
    return held.expires_at if wake_at is None else min(wake_at, held.expires_at)


def _version_of(secret: Mapping[str, Any] | None) -> str | None:
    return None if secret is None else str(secret["metadata"].get("resourceVersion"))


def _jitter(owner: rendering.Owner, observed: ObservedSecret | None) -> float:
    return _jitter_for(owner, observed.issued_at) if observed else 0.0


def _jitter_for(owner: rendering.Owner, issued_at: datetime.datetime) -> float:
    # Stable per credential: re-planning after a restart lands on the same renewal time.
    return scheduling.renewal_jitter(seed=f"{owner.uid}/{issued_at.isoformat()}")
