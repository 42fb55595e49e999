"""One reconciliation of one DOClusterAccess: read → plan → fetch → write → publish.

The orchestration of DESIGN 4, reading top to bottom; each step is a small part elsewhere:
the plan is ``scheduling`` (pure), what a failure changes is ``failures`` (pure), the Secret is
rendered by ``rendering`` (pure) and written by ``secrets``, and the status, events and metrics
are rendered from one typed :class:`~doks_access.status.Report` and written by ``publishing``.
I/O goes through the :class:`~doks_access.dependencies.Dependencies` built once at start-up. No
Kopf here: the dispatcher calls :func:`reconcile` when an object is due or woken.

Every failure this module expects is mapped to a :class:`~doks_access.failures.FailureReason` in
one place (:func:`doks_access.issuance.failure_of`); a Kubernetes API error (the apiserver
restarting, a write racing another) propagates, and the caller looks again shortly.

The lifetime guard (``spec.verify``): the expiry is computed, not told (a kubeconfig carries none),
so a lifetime DigitalOcean capped below the request, or a revoked token, would leave consumers
with 401s while the object says Ready. At the quarter marks of the held credential's lifetime
(``scheduling.guard_marks``) one SelfSubjectReview is made with it -- on the target cluster, no
DigitalOcean call. A 401 marks the object ``Ready=False`` (``CredentialRejected``, with an event),
and the next reconciliation, at once, fetches a new credential. What was checked is kept in
:class:`Memory` only: after a restart the guard resumes at the next mark, so a restart costs no
call of any kind.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
from collections.abc import Mapping
from typing import Any

from doks_access import (
    accounts,
    failures,
    issuance,
    kube,
    logs,
    lookup,
    publishing,
    rendering,
    scheduling,
    secrets,
    spec,
    tenancy,
    verify,
)
from doks_access.bookkeeping import ObservedSecret
from doks_access.conditions import StalledReason, sentence
from doks_access.dependencies import Dependencies
from doks_access.kubeconfig import Credential
from doks_access.objects import AccessObject
from doks_access.status import Held, Issued, Report

__all__ = ["Memory", "Outcome", "reconcile"]

logger = logging.getLogger(__name__)

# The DigitalOcean API token, or why it cannot be read from its Secret.
_Token = str | kube.TokenSecretError


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
    # The lifetime guard: (issued-at of the held credential, the time it was checked up to).
    guarded: tuple[datetime.datetime, datetime.datetime] | None = None
    # issued-at of the held credential the cluster refused; a new one is fetched at once.
    rejected: datetime.datetime | None = None
    # spec.accountRef: how many changes of its account were seen, and how many of them the
    # policy was last found to allow the object at (its renewals go on while they are equal).
    account_changes: int = 0
    policy_allowed_at: int | None = None


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
            memory.policy_allowed_at = None  # a new spec is a new request to the account
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
    account_changes = memory.account_changes
    plan = scheduling.next_action(
        now=now,
        spec=access,
        observed=observed,
        last_secret_name=obj.status.secret_name,
        refresh_request=obj.refresh_request,
        jitter_fraction=_jitter(owner, observed),
    )
    rejected = current is not None and memory.rejected == current.issued_at
    if rejected and isinstance(plan, scheduling.WaitUntil):
        plan = scheduling.FetchNow(scheduling.FetchReason.REJECTED)
    gated = failures.postpone(plan, memory.failures, now=now, refresh_request=obj.refresh_request)
    base = dataclasses.replace(
        base, held=_held(current), failures=memory.failures, rejected=rejected
    )
    if isinstance(gated, scheduling.Suspended):
        return dataclasses.replace(base, suspended=True), None
    if isinstance(gated, scheduling.WaitUntil):
        logger.debug("nothing to fetch until %s", gated.time)
        if existing is not None and current is not None:  # labels or annotations may have changed
            desired = rendering.reapply_metadata(existing, spec=access, owner=owner)
            await _write_secret(memory, obj, existing, desired, deps=deps)
        if gated is not plan:
            # Waiting for the retry of a failure: it is still the situation.
            report = dataclasses.replace(base, renewal_time=gated.time, failing=True)
            return report, failures.next_look(memory.failures, wait_until=gated.time, now=now)
        if current is not None and access.account is not None:
            refused = await _account_refusal(memory, obj, access, deps=deps)
            if refused is not None:
                return _renewals_stopped(base, refused), min(
                    gated.time, now + scheduling.STALLED_RETRY
                )
        report = dataclasses.replace(base, renewal_time=gated.time)
        if existing is None or current is None or not access.verify:
            return report, gated.time
        return await _guard(memory, existing, current, access, report, deps=deps, now=now)
    logger.info("fetching a credential (%s)", gated.reason.value)
    try:
        credential, cluster_id, identity = await _new_credential(
            memory, obj, access, current, token, deps
        )
    except issuance.FETCH_ERRORS as exc:
        failure = issuance.failure_of(exc)
        held = None if rejected else current
        return await _failed(memory, obj, access, failure, base, held, deps, now)
    desired = rendering.render_secret(
        credential=credential,
        spec=access,
        owner=owner,
        cluster_id=cluster_id,
        refresh_request=obj.refresh_request,
    )
    await _write_secret(memory, obj, existing, desired, deps=deps)
    memory.failures = failures.succeeded(memory.failures)
    memory.rejected = None
    if access.account is not None:
        memory.policy_allowed_at = account_changes  # decided by the fetch itself
    deps.metrics.renewal_result("success")
    logger.info("wrote a credential valid until %s", credential.expires_at)
    report, renewal = _issued(
        base, credential, access, owner, cluster_id=cluster_id, identity=identity
    )
    if not access.verify or report.held is None:
        return report, renewal
    return report, _guard_from_the_start(memory, report.held, renewal=renewal)


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
    prefetch = memory.rejected is not None or _fetch_likely(obj, memory.failures, now=now)
    if access.token_secret is None or not prefetch:  # an account's token is read with its policy
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
    if ref is None:
        raise ValueError("an object with accountRef has no token Secret of its own")
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
    decision = None
    if access.account is not None:
        token, decision = await tenancy.account_token(
            deps.kube,
            access=access,
            namespace=obj.namespace,
            account_namespace=deps.account_namespace,
        )
    elif token is None:
        token = await _read_token(obj, access, deps=deps)
    if isinstance(token, kube.TokenSecretError):
        raise token
    cluster_id = await _cluster_id(memory, access, token=token, current=current, deps=deps)
    if decision is not None and decision.by_tags:
        await tenancy.granted_by_tags(
            deps.digitalocean, decision, token=token, cluster_id=cluster_id
        )
    credential, identity = await issuance.fetch_credential(
        deps.digitalocean,
        token=token,
        cluster_id=cluster_id,
        expiry_seconds=access.expiry_seconds,
        verifier=deps.verifier if access.verify else None,
    )
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
    if failure.reason.concerns_the_token and access.token_secret is not None:
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
        refresh_request=obj.refresh_request,
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


async def _notice_token_change(
    memory: Memory, obj: AccessObject, access: spec.AccessSpec, *, deps: Dependencies
) -> None:
    """While a token failure waits for its retry, a changed token Secret is tried at once."""
    if not memory.failures.watching_token or memory.failures.retry_at is None:
        return
    if access.token_secret is None:  # an account's token lives where tenants do not look
        return
    version = await deps.kube.secret_version(namespace=obj.namespace, name=access.token_secret.name)
    changed = failures.token_changed(memory.failures, version=version)
    if changed is not memory.failures:
        logger.info("the token Secret changed; retrying now")
        memory.failures = changed


async def _account_refusal(
    memory: Memory, obj: AccessObject, access: spec.AccessSpec, *, deps: Dependencies
) -> accounts.AccountError | None:
    """Whether the account still serves an object that holds a credential, decided again after
    a change of the account (or a restart): two reads, no DigitalOcean call."""
    changes = memory.account_changes
    if memory.policy_allowed_at == changes:
        return None
    refused = await tenancy.refusal(deps.kube, access=access, namespace=obj.namespace)
    if refused is None:
        memory.policy_allowed_at = changes
    else:
        logger.warning("the ClusterDOAccount no longer serves this object: %s", refused)
    return refused


def _renewals_stopped(base: Report, refused: accounts.AccountError) -> Report:
    """The account took the permission away: the credential held stays (and expires), renewals
    stop, and the object says which rule refused it (decided in docs/decisions.md)."""
    detail = f"{sentence(str(refused))}: renewals stop, and the credential held is left to expire."
    return dataclasses.replace(base, stalled=StalledReason(refused.refusal.value), detail=detail)


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
        # The listing says whether the cluster requires SSO: no token is asked for in vain.
        refusal = issuance.sso_refusal(next(c for c in clusters if c.id == resolved))
        if refusal is not None:
            raise refusal
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
        rejected=False,  # whatever was refused, this one is new
        issued=Issued(
            server=credential.server, cluster_name=access.cluster_name, identity=identity
        ),
    )
    return report, renewal


async def _guard(
    memory: Memory,
    existing: Mapping[str, Any],
    current: ObservedSecret,
    access: spec.AccessSpec,
    report: Report,
    *,
    deps: Dependencies,
    now: datetime.datetime,
) -> tuple[Report, datetime.datetime]:
    """The lifetime guard: at a quarter mark, prove the held credential still authenticates."""
    issued_at = current.issued_at
    if memory.guarded is None or memory.guarded[0] != issued_at:
        # First sight of this credential (a restart, or another replica wrote it): from now on.
        memory.guarded = (issued_at, now)
    mark = _next_guard(memory, current)
    if mark is not None and mark <= now:
        memory.guarded = (issued_at, now)
        if await _held_credential_refused(existing, current, access, deps=deps):
            memory.rejected = issued_at
            return _refused(report, current, now=now), now
    wait_until = report.renewal_time or current.expires_at
    mark = _next_guard(memory, current)
    return report, wait_until if mark is None else min(wait_until, mark)


def _guard_from_the_start(
    memory: Memory, written: Held, *, renewal: datetime.datetime
) -> datetime.datetime:
    """A credential just written is guarded from its first quarter mark: when to wake."""
    memory.guarded = (written.issued_at, written.issued_at)
    first = scheduling.next_guard(
        issued_at=written.issued_at, expires_at=written.expires_at, after=written.issued_at
    )
    return renewal if first is None else min(renewal, first)


def _next_guard(memory: Memory, current: ObservedSecret) -> datetime.datetime | None:
    checked = memory.guarded[1] if memory.guarded is not None else current.issued_at
    return scheduling.next_guard(
        issued_at=current.issued_at, expires_at=current.expires_at, after=checked
    )


async def _held_credential_refused(
    existing: Mapping[str, Any],
    current: ObservedSecret,
    access: spec.AccessSpec,
    *,
    deps: Dependencies,
) -> bool:
    """One SelfSubjectReview with the credential the Secret holds: whether the cluster said 401.

    Anything else (the cluster unreachable, a 5xx) says nothing about the credential: counted as
    ``unknown`` and left to the next mark.
    """
    credential = rendering.held_credential(existing, spec=access, observed=current)
    if credential is None:
        logger.warning("the lifetime guard cannot read the credential back from the Secret")
        return False
    try:
        await deps.verifier(credential)
    except verify.CredentialRejectedError:
        deps.metrics.guard_check("rejected")
        return True
    except verify.VerificationError as exc:
        deps.metrics.guard_check("unknown")
        logger.info("the lifetime guard could not check the held credential: %s", exc)
        return False
    deps.metrics.guard_check("accepted")
    return False


def _refused(report: Report, current: ObservedSecret, *, now: datetime.datetime) -> Report:
    age = int((now - current.issued_at).total_seconds())
    lifetime = int((current.expires_at - current.issued_at).total_seconds())
    logger.warning(
        "the cluster refuses the held credential %ds into its %ds; fetching a new one",
        age,
        lifetime,
    )
    detail = (
        f"It was refused {age}s into its {lifetime}s lifetime; if DigitalOcean caps lifetimes "
        "below spec.expirySeconds, lower it."
    )
    return dataclasses.replace(report, rejected=True, detail=detail, renewal_time=now)


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
