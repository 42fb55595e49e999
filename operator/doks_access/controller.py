"""What the operator knows of each DOClusterAccess, and how watch events become work.

The watch handlers call :meth:`Controller.observe` with each version of an object,
:meth:`Controller.forget` when it is gone and :meth:`Controller.secret_changed` when one of the
operator's Secrets changes. The controller keeps one :class:`~doks_access.reconciliation.Memory` per
object -- a trimmed record, never a body -- and wakes the object in the dispatcher only for news:
a new object, a new spec, a new refresh request, a Secret changed by someone else. Its own writes
(the status PATCH, the Secret it wrote) come back as watch events and are recognised as its own.
A change of a ClusterDOAccount (:meth:`Controller.account_changed`) wakes the objects using it.

The dispatcher calls :meth:`Controller.reconcile` for a due or woken object; a Kubernetes API
error there (the API server restarting, a write racing another) is retried after
:data:`KUBE_RETRY`.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable, Mapping

from doks_access import dispatch, failures, kube
from doks_access import reconcile as reconciliation
from doks_access.dependencies import Dependencies
from doks_access.objects import AccessObject, Key

__all__ = ["KUBE_RETRY", "Controller"]

logger = logging.getLogger(__name__)

KUBE_RETRY = datetime.timedelta(seconds=5)
Clock = Callable[[], datetime.datetime]


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Controller:
    """The objects being kept, fed by the watches and worked on by the dispatcher."""

    def __init__(
        self,
        *,
        deps: Dependencies,
        dispatcher: dispatch.Dispatcher[Key],
        clock: Clock = _utc_now,
    ) -> None:
        self._deps = deps
        self._dispatcher = dispatcher
        self._clock = clock
        self._memories: dict[Key, reconciliation.Memory] = {}
        # A Secret event that arrived while its object was being reconciled: judged at the end.
        self._secret_news: dict[Key, str] = {}

    # -- fed by the watches ----------------------------------------------------------------------

    def observe(self, obj: AccessObject) -> None:
        """A version of an object from the watch (or our own status write)."""
        if obj.deleting:
            self.forget(obj.key)  # its finalizers are not ours to wait for: nothing more to do
            return
        memory = self._memories.get(obj.key)
        if memory is None:
            self._memories[obj.key] = reconciliation.Memory(obj=obj)
            self._dispatcher.wake(obj.key)
            return
        if not obj.newer_than(memory.obj):
            return  # an older version than one we already know (our own write overtook it)
        news = obj.news(memory.obj)
        if obj.uid != memory.obj.uid:  # deleted and created again: nothing carries over
            memory = self._memories[obj.key] = reconciliation.Memory(obj=obj)
        memory.obj = obj
        if news:
            self._dispatcher.wake(obj.key)

    def forget(self, key: Key) -> None:
        """The object is gone: its work stops at once, its memory and metrics go."""
        self._dispatcher.forget(key)
        self._secret_news.pop(key, None)
        if self._memories.pop(key, None) is not None:
            self._deps.metrics.forget_object(namespace=key[0], name=key[1])

    def secret_changed(self, key: Key, *, name: str, resource_version: str) -> None:
        """A Secret the operator manages for ``key`` changed or was deleted."""
        memory = self._memories.get(key)
        if memory is None or memory.obj.spec is None:
            return  # not (yet) known: it is reconciled when its own watch event comes
        if name != memory.obj.spec.target.name:
            return  # a Secret it no longer targets (being removed after a rename)
        if resource_version and resource_version == memory.secret_version:
            return  # the version it read or wrote itself
        if self._dispatcher.is_running(key):
            self._secret_news[key] = resource_version  # judged when this reconciliation ends
            return
        self._dispatcher.wake(key)

    def account_changed(self, name: str) -> None:
        """The ClusterDOAccount ``name`` changed, appeared or went: every object using it is
        decided again at once (no DigitalOcean call), and a refusal waiting for its slow retry is
        tried now."""
        for key, memory in self._memories.items():
            access = memory.obj.spec
            if access is None or access.account != name:
                continue
            memory.account_changes += 1
            memory.failures = failures.account_changed(memory.failures)
            self._dispatcher.wake(key)

    # -- called by the dispatcher ----------------------------------------------------------------

    async def reconcile(self, key: Key) -> float | None:
        """Reconcile ``key``; return the loop time it is due next (None: only when woken)."""
        memory = self._memories.get(key)
        if memory is None:
            return None
        self._secret_news.pop(key, None)
        now = self._clock()
        try:
            outcome = await reconciliation.reconcile(memory, deps=self._deps, now=now)
        except kube.KubeError as exc:
            if isinstance(exc, kube.NotFoundError) and not await self._exists(key):
                # Deleted while the watch was away (a watch restarted after "410 Gone" lists
                # what exists; it never says what went).
                logger.info("%s/%s is gone", *key)
                self.forget(key)
                return None
            logger.warning("%s/%s: %s; retrying in %s", *key, exc, KUBE_RETRY)
            outcome = reconciliation.Outcome(wake_at=now + KUBE_RETRY)
        if outcome.written is not None:
            self.observe(AccessObject.from_body(outcome.written, known=memory.obj))
        news = self._secret_news.pop(key, None)
        if news is not None and news != memory.secret_version:
            self._dispatcher.wake(key)  # someone else changed the Secret meanwhile: once more
        return None if outcome.wake_at is None else self._loop_time(outcome.wake_at)

    async def _exists(self, key: Key) -> bool:
        try:
            return await self._deps.kube.access_exists(namespace=key[0], name=key[1])
        except kube.KubeError:
            return True  # cannot tell: keep it, and try again later

    # -- read by the liveness check and the tests ------------------------------------------------

    def in_flight(self) -> Mapping[Key, float]:
        return self._dispatcher.in_flight()

    def memory(self, key: Key) -> reconciliation.Memory | None:
        return self._memories.get(key)

    def __len__(self) -> int:
        return len(self._memories)

    def _loop_time(self, moment: datetime.datetime) -> float:
        """``moment`` (wall clock) on the loop's monotonic clock, which the dispatcher sleeps on."""
        loop = asyncio.get_running_loop()
        return loop.time() + max(0.0, (moment - self._clock()).total_seconds())
