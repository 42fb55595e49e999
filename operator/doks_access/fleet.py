"""DOClusterAccessSet: keep one DOClusterAccess per DigitalOcean cluster a selector matches.

The watch handlers feed :class:`SetController` with each version of a set (:meth:`observe`), its
deletion (:meth:`forget`) and news of its children (:meth:`child_changed`: a child's status
changed, a child was edited or deleted by hand). Sets are reconciled by a dispatcher of their own,
so a fleet's work never queues behind the credentials, nor the reverse. One reconciliation:

1. reads the token and gets the account's clusters from :class:`~.listings.ClusterListings`
   (a listing younger than the set's ``resyncInterval`` is reused, also across sets sharing the
   token, so waking a set for a child's news costs no DigitalOcean call);
2. lists the set's children (one Kubernetes LIST, by the set's UID label);
3. plans (:func:`doks_access.selection.plan`) and writes: creates, puts hand edits back, removes;
4. publishes the status, one event per change, and the set's metrics.

Each child is an ordinary DOClusterAccess: renewal, restart economy, formats, conditions and
metrics are all the single object's. A listing that fails changes nothing; a child's news is
looked at after :data:`SETTLE` so that a fleet being issued is summed up every few seconds, not
once per child.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from doks_access import (
    accounts,
    bookkeeping,
    digitalocean,
    dispatch,
    kube,
    selection,
    setspec,
    setstatus,
    tenancy,
)
from doks_access.conditions import ConditionType, sentence
from doks_access.dependencies import Dependencies
from doks_access.listings import ClusterListings, Listing
from doks_access.objects import Key, is_newer
from doks_access.spec import InvalidSpecError

__all__ = ["SETTLE", "SetController", "SetObject"]

logger = logging.getLogger(__name__)

SETTLE = 2.0  # seconds between a child's news and the set's look at it
# Children written at once: a thousand new clusters are created in a few seconds, not one by one,
# without queueing more requests at the API server than it answers promptly.
WRITES_AT_ONCE = 16
KUBE_RETRY = datetime.timedelta(seconds=5)
TOKEN_RETRY = datetime.timedelta(minutes=1)  # a token Secret may be created any moment
LIST_RETRY_FIRST = datetime.timedelta(seconds=15)  # then doubling, up to the interval
Clock = Callable[[], datetime.datetime]


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclasses.dataclass(frozen=True)
class SetObject:
    """One DOClusterAccessSet as the operator needs it."""

    namespace: str
    name: str
    uid: str
    generation: int
    resource_version: str
    refresh_request: str | None  # the doks-access.dev/refresh-requested-at annotation
    spec: setspec.SetSpec | None
    spec_error: str | None
    status: setstatus.SetStatus
    deleting: bool

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)

    @classmethod
    def from_body(cls, body: Mapping[str, Any], *, known: SetObject | None = None) -> SetObject:
        metadata = body.get("metadata") or {}
        generation = metadata.get("generation")
        refresh = (metadata.get("annotations") or {}).get(bookkeeping.REFRESH_REQUESTED_AT)
        record = cls(
            namespace=str(metadata.get("namespace") or ""),
            name=str(metadata.get("name") or ""),
            uid=str(metadata.get("uid") or ""),
            generation=generation if isinstance(generation, int) else 0,
            resource_version=str(metadata.get("resourceVersion") or ""),
            refresh_request=refresh if isinstance(refresh, str) else None,
            spec=None,
            spec_error=None,
            status=setstatus.SetStatus.from_dict(body.get("status") or {}),
            deleting=metadata.get("deletionTimestamp") is not None,
        )
        if known is not None and known.uid == record.uid and known.generation == generation:
            return dataclasses.replace(record, spec=known.spec, spec_error=known.spec_error)
        try:
            return dataclasses.replace(record, spec=setspec.parse_set_spec(body))
        except InvalidSpecError as exc:
            return dataclasses.replace(record, spec_error=str(exc))

    def newer_than(self, other: SetObject) -> bool:
        return is_newer((self.uid, self.resource_version), than=(other.uid, other.resource_version))


@dataclasses.dataclass
class _Memory:
    obj: SetObject
    refused: frozenset[str] = frozenset()  # clusters reported as refused (one event each)
    list_failures: int = 0
    pending: bool = False  # clusters were pending at the last listing: list again sooner
    refreshed: str | None = None  # the refresh request last served with a listing of its own


@dataclasses.dataclass(frozen=True)
class _Result:
    report: setstatus.SetReport
    plan_applied: selection.Plan | None
    wake_at: datetime.datetime | None


class SetController:
    """The sets being kept, fed by the watches and worked on by their dispatcher."""

    def __init__(
        self,
        *,
        deps: Dependencies,
        dispatcher: dispatch.Dispatcher[Key],
        listings: ClusterListings | None = None,
        clock: Clock = _utc_now,
    ) -> None:
        self._deps = deps
        self._dispatcher = dispatcher
        self._listings = listings or ClusterListings(deps.digitalocean)
        self._clock = clock
        self._memories: dict[Key, _Memory] = {}
        self._news: set[Key] = set()  # child news during a reconciliation

    # -- fed by the watches ----------------------------------------------------------------------

    def observe(self, obj: SetObject) -> None:
        if obj.deleting:
            self.forget(obj.key)  # its children go with it (garbage collection)
            return
        memory = self._memories.get(obj.key)
        if memory is None or memory.obj.uid != obj.uid:
            self._memories[obj.key] = _Memory(obj=obj)
            self._dispatcher.wake(obj.key)
            return
        if not obj.newer_than(memory.obj):
            return
        news = (obj.generation, obj.refresh_request) != (
            memory.obj.generation,
            memory.obj.refresh_request,
        )
        memory.obj = obj
        if news:
            self._dispatcher.wake(obj.key)

    def forget(self, key: Key) -> None:
        self._dispatcher.forget(key)
        self._news.discard(key)
        if self._memories.pop(key, None) is not None:
            self._deps.metrics.forget_set(namespace=key[0], name=key[1])

    def child_changed(self, key: Key) -> None:
        """A child of ``key`` changed or went: look at the set again shortly."""
        if key not in self._memories:
            return
        if self._dispatcher.is_running(key):
            self._news.add(key)
            return
        self._dispatcher.schedule(key, asyncio.get_running_loop().time() + SETTLE)

    def account_changed(self, name: str) -> None:
        """The ClusterDOAccount ``name`` changed: its sets look again (their listing is cached,
        so this costs no DigitalOcean call)."""
        for key, memory in self._memories.items():
            parsed = memory.obj.spec
            if parsed is not None and parsed.account == name:
                self._dispatcher.wake(key)

    def memory(self, key: Key) -> SetObject | None:
        memory = self._memories.get(key)
        return None if memory is None else memory.obj

    def __len__(self) -> int:
        return len(self._memories)

    # -- called by the dispatcher ----------------------------------------------------------------

    async def reconcile(self, key: Key) -> float | None:
        memory = self._memories.get(key)
        if memory is None:
            return None
        self._news.discard(key)
        now = self._clock()
        try:
            result = await self._reconcile(memory, now=now)
            written = await self._publish(memory, result, now=now)
        except kube.KubeError as exc:
            if isinstance(exc, kube.NotFoundError) and not await self._exists(key):
                logger.info("set %s/%s is gone", *key)
                self.forget(key)
                return None
            logger.warning("set %s/%s: %s; retrying in %s", *key, exc, KUBE_RETRY)
            return self._loop_time(now + KUBE_RETRY)
        if written is not None:
            self.observe(SetObject.from_body(written, known=memory.obj))
        due = None if result.wake_at is None else self._loop_time(result.wake_at)
        if key in self._news:
            self._news.discard(key)
            soon = asyncio.get_running_loop().time() + SETTLE
            due = soon if due is None else min(due, soon)
        return due

    async def _token(self, namespace: str, parsed: setspec.SetSpec) -> str:
        """The token to list with: the set's own Secret, or its account's."""
        if parsed.token_secret is None:
            return await tenancy.set_token(
                self._deps.kube,
                account_name=parsed.account or "",
                namespace=namespace,
                account_namespace=self._deps.account_namespace,
            )
        ref = parsed.token_secret
        return await self._deps.kube.read_token(namespace=namespace, name=ref.name, key=ref.key)

    async def _reconcile(self, memory: _Memory, *, now: datetime.datetime) -> _Result:
        obj = memory.obj
        parsed = obj.spec
        if parsed is None:
            report = setstatus.SetReport(
                generation=obj.generation,
                plan=None,
                stalled=setstatus.SetStalledReason.INVALID_SPEC,
                detail=f"The spec is invalid: {obj.spec_error}.",
            )
            return _Result(report, None, wake_at=None)  # until the spec changes
        try:
            token = await self._token(obj.namespace, parsed)
        except accounts.AccountError as exc:
            report = setstatus.SetReport(
                generation=obj.generation,
                plan=None,
                stalled=setstatus.SetStalledReason(exc.refusal.value),
                detail=f"{sentence(str(exc))}.",
            )
            return _Result(report, None, wake_at=now + parsed.resync_interval)
        except kube.TokenSecretError as exc:
            report = setstatus.SetReport(
                generation=obj.generation,
                plan=None,
                stalled=setstatus.SetStalledReason.TOKEN_SECRET_MISSING,
                detail=f"{sentence(str(exc))}.",
            )
            return _Result(report, None, wake_at=now + TOKEN_RETRY)
        max_age = _listing_age(parsed, memory)
        if obj.refresh_request is not None and obj.refresh_request != memory.refreshed:
            max_age = datetime.timedelta(0)  # asked for: list now, whatever the interval
        try:
            listing = await self._listings.get(token=token, max_age=max_age)
        except digitalocean.UnauthorizedError as exc:
            memory.list_failures = 0
            report = setstatus.SetReport(
                generation=obj.generation,
                plan=None,
                stalled=setstatus.SetStalledReason.UNAUTHORIZED,
                detail=f"DigitalOcean refused to list the clusters ({exc}); the token needs "
                "the kubernetes:read scope (and tag:read to select by tags).",
            )
            return _Result(report, None, wake_at=now + parsed.resync_interval)
        except digitalocean.DigitalOceanError as exc:
            memory.list_failures += 1
            backoff = min(
                LIST_RETRY_FIRST * 2 ** (memory.list_failures - 1), parsed.resync_interval
            )
            report = setstatus.SetReport(
                generation=obj.generation, plan=None, list_failed=True, detail=f"{exc}."
            )
            return _Result(report, None, wake_at=now + backoff)
        memory.list_failures = 0
        memory.refreshed = obj.refresh_request
        if parsed.selector.uses_tags and any(c.tags is None for c in listing.clusters):
            report = setstatus.SetReport(
                generation=obj.generation,
                plan=None,
                synced_at=listing.listed_at,
                stalled=setstatus.SetStalledReason.TAGS_NOT_VISIBLE,
                detail="DigitalOcean lists the clusters without their tags: the token needs "
                "the tag:read scope to select by tags.",
            )
            return _Result(report, None, wake_at=listing.listed_at + parsed.resync_interval)
        plan = await self._plan(obj, parsed, listing)
        if len(plan.create) > WRITES_AT_ONCE:
            # Many children to create (a first sync over a fleet): say what is coming first, so
            # that the counts show while they are created.
            interim = setstatus.SetReport(
                generation=obj.generation, plan=plan, synced_at=listing.listed_at
            )
            _status, written = await self._write_status(obj, interim, now=now)
            if written is not None:  # kept as the record's, so that the final status builds on it
                self.observe(SetObject.from_body(written, known=obj))
        plan = await self._write(obj, parsed, plan)
        memory.pending = plan.count(selection.ClusterState.PENDING) > 0
        report = setstatus.SetReport(
            generation=obj.generation, plan=plan, synced_at=listing.listed_at
        )
        return _Result(report, plan, wake_at=listing.listed_at + _listing_age(parsed, memory))

    async def _plan(
        self, obj: SetObject, parsed: setspec.SetSpec, listing: Listing
    ) -> selection.Plan:
        """Plan against the children that exist."""
        identity = selection.SetIdentity(namespace=obj.namespace, name=obj.name, uid=obj.uid)
        bodies = await self._deps.kube.list_access(
            namespace=obj.namespace, label_selector=f"{selection.SET_UID_LABEL}={obj.uid}"
        )
        children = [
            child
            for body in bodies
            if (child := selection.Child.from_body(body, set_uid=obj.uid)) is not None
        ]
        return selection.plan(identity, parsed, listing.clusters, children)

    async def _write(
        self, obj: SetObject, parsed: setspec.SetSpec, plan: selection.Plan
    ) -> selection.Plan:
        """Make the children match ``plan``; a name taken by an object the set does not control
        is reported as a collision, never overwritten."""
        api = self._deps.kube
        taken: dict[str, str] = {}
        created: list[dict[str, Any]] = []
        orphan = parsed.deletion_policy is setspec.SetDeletionPolicy.ORPHAN

        async def create(manifest: dict[str, Any]) -> None:
            name = manifest["metadata"]["name"]
            try:
                await api.create_access(namespace=obj.namespace, manifest=manifest)
            except kube.ConflictError:
                taken[name] = f"a DOClusterAccess named {name} exists and is not this set's"
                return
            created.append(manifest)

        async def update(child: selection.Child, patch: dict[str, Any]) -> None:
            await api.patch_access(
                namespace=obj.namespace, name=child.name, uid=child.uid, patch=patch
            )

        async def remove(child: selection.Child) -> None:
            await api.delete_access(
                namespace=obj.namespace, name=child.name, uid=child.uid, orphan=orphan
            )

        await _bounded([create(manifest) for manifest in plan.create])
        await _bounded([update(child, patch) for child, patch in plan.update])
        await _bounded([remove(child) for child in plan.remove])
        if not taken:
            return plan
        entries = tuple(
            dataclasses.replace(
                entry,
                state=selection.ClusterState.COLLISION,
                message=taken[entry.child],
                secret_name=None,
            )
            if entry.child in taken
            else entry
            for entry in plan.entries
        )
        return dataclasses.replace(plan, create=tuple(created), entries=entries)

    async def _write_status(
        self, obj: SetObject, report: setstatus.SetReport, *, now: datetime.datetime
    ) -> tuple[setstatus.SetStatus, dict[str, Any] | None]:
        """The status ``report`` calls for, written if it changed; and the object as the PATCH
        returned it (None: nothing to write)."""
        current = setstatus.status_for(previous=obj.status, report=report, now=now)
        patch = setstatus.status_patch(previous=obj.status, current=current)
        if patch is None:
            return current, None
        written = await self._deps.kube.patch_set_status(
            namespace=obj.namespace, name=obj.name, patch=patch
        )
        return current, written

    async def _publish(
        self, memory: _Memory, result: _Result, *, now: datetime.datetime
    ) -> dict[str, Any] | None:
        obj = memory.obj
        current, written = await self._write_status(obj, result.report, now=now)
        plan = result.plan_applied
        events = setstatus.events_for(
            previous=obj.status, current=current, plan=plan, reported=memory.refused
        )
        memory.refused = setstatus.refused(plan, before=memory.refused)
        if events:
            version = (written or {}).get("metadata", {}).get("resourceVersion")
            involved = kube.Involved(
                namespace=obj.namespace,
                name=obj.name,
                uid=obj.uid,
                resource_version=version or obj.resource_version,
                kind=kube.SET_KIND,
            )
            for event in events:
                await self._deps.kube.emit_event(
                    involved=involved,
                    type_=event.type,
                    reason=event.reason,
                    message=event.message,
                    now=now,
                )
        stalled = current.condition(ConditionType.STALLED) is not None
        self._deps.metrics.observe_set(
            namespace=obj.namespace,
            name=obj.name,
            counts={
                "matched": current.matched or 0,
                "ready": current.ready or 0,
                "pending": current.pending or 0,
                "refused": len(memory.refused),
            },
            stalled=stalled,
        )
        return written

    async def _exists(self, key: Key) -> bool:
        try:
            return await self._deps.kube.set_exists(namespace=key[0], name=key[1])
        except kube.KubeError:
            return True

    def _loop_time(self, moment: datetime.datetime) -> float:
        loop = asyncio.get_running_loop()
        return loop.time() + max(0.0, (moment - self._clock()).total_seconds())


async def _bounded(writes: list[Coroutine[Any, Any, None]]) -> None:
    """Run ``writes`` :data:`WRITES_AT_ONCE` at a time; the first error is raised once all
    have ended (so that none is left running)."""
    gate = asyncio.Semaphore(WRITES_AT_ONCE)

    async def gated(write: Coroutine[Any, Any, None]) -> None:
        async with gate:
            await write

    outcomes = await asyncio.gather(*(gated(write) for write in writes), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


def _listing_age(parsed: setspec.SetSpec, memory: _Memory) -> datetime.timedelta:
    """How long until the next listing: the interval, or a minute while clusters are pending
    (they get their credential within a minute of running, for one listing a minute)."""
    if memory.pending:
        return min(parsed.resync_interval, setspec.MIN_RESYNC)
    return parsed.resync_interval
