"""One heap of due times and a fixed pool of worker slots: who is reconciled next, and when.

The operator keeps thousands of objects that are idle almost all the time: a credential is renewed
once per lifetime. So an idle object costs a heap entry and nothing else -- no task, no coroutine,
no timer -- and the work happens in at most ``workers`` reconciliations at a time, whatever the
number of objects. Objects are keys here; what a reconciliation does is the ``work`` function's
business (``controller``), which returns when the key is due next (loop time; None: when woken).

Guarantees, each tested in ``tests/unit/test_dispatch.py`` on virtual time:

- **Due-time order**: keys run when their time comes, earliest first.
- **One at a time per key**: a key woken while it runs runs once more right after, never twice
  at once.
- **Wake**: :meth:`Dispatcher.wake` (a watch event) makes a key run as soon as a slot is free.
- **Fair under a burst**: while keys that were woken and keys that fell due both wait, the two
  queues take turns, so an event is never stuck behind a thousand due renewals, nor the reverse.
- **Forget**: :meth:`Dispatcher.forget` (the object was deleted) drops the key at once and cancels
  its reconciliation if one runs.
- **Parking**: a reconciliation that must wait for permission rather than for an answer (the
  DigitalOcean rate limit, a retry's pause) gives its slot back while it waits
  (:func:`parked`), so that one token's queue cannot hold every worker while other objects wait.

Time is the event loop's monotonic clock, so nothing here is confused by wall-clock jumps, and the
tests run on ``looptime``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import dataclasses
import heapq
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Mapping
from typing import Generic, TypeVar

__all__ = ["DEFAULT_WORKERS", "ERROR_RETRY", "Dispatcher", "Work", "parked"]

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
Work = Callable[[K], Awaitable[float | None]]

# Reconciliations are I/O-bound (two to six API round trips each), so a few per core keep both
# cores busy during a burst without queueing more requests at the API server than it can answer.
DEFAULT_WORKERS = 8
# When `work` raises (a bug: it maps every failure it expects), the key is tried again this late.
ERROR_RETRY = 60.0


@dataclasses.dataclass(slots=True)
class _Slot:
    """The worker slot one reconciliation holds; parking hands it back for a while."""

    slots: asyncio.Semaphore
    since: float  # loop time it was (last) taken: the liveness check's "running for"
    held: bool = True


_current_slot: contextvars.ContextVar[_Slot | None] = contextvars.ContextVar(
    "doks_access_worker_slot", default=None
)


@contextlib.asynccontextmanager
async def parked() -> AsyncIterator[None]:
    """Give the current reconciliation's worker slot back while inside; take one again after.

    Outside a dispatched reconciliation (the ``fetch`` command, tests) it does nothing. A
    reconciliation cancelled while parked (its object was deleted) ends without a slot.
    """
    slot = _current_slot.get()
    if slot is None or not slot.held:
        yield
        return
    slot.held = False
    slot.slots.release()
    try:
        yield
    except asyncio.CancelledError:
        raise
    except BaseException:
        await _take(slot)
        raise
    await _take(slot)


async def _take(slot: _Slot) -> None:
    await slot.slots.acquire()
    slot.held = True
    slot.since = asyncio.get_running_loop().time()


@dataclasses.dataclass(slots=True)
class _Entry:
    """What the dispatcher knows of a key that is due, woken or running."""

    due: float | None = None  # loop time it falls due; None: not scheduled
    woken: bool = False  # waiting in the woken queue
    again: bool = False  # woken while running: run once more right after
    later: float | None = None  # scheduled while running: due no later than this after the run
    task: asyncio.Task[None] | None = None  # the running reconciliation
    slot: _Slot | None = None


class Dispatcher(Generic[K]):
    """Runs ``work(key)`` for due and woken keys in at most ``workers`` reconciliations at once."""

    def __init__(self, *, workers: int = DEFAULT_WORKERS) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.workers = workers
        self._entries: dict[K, _Entry] = {}
        self._running: dict[K, _Entry] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._woken: collections.deque[K] = collections.deque()
        self._order = itertools.count()  # ties in the heap: first scheduled, first run
        self._stale = 0  # heap items that no longer match their entry
        self._woken_turn = True  # which queue goes first when both have work
        self._changed = asyncio.Event()
        self._slots = asyncio.Semaphore(workers)

    # -- what the watch handlers call ------------------------------------------------------------

    def wake(self, key: K) -> None:
        """Run ``key`` as soon as a slot is free (once more after the current run, if running)."""
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry()
        if entry.task is not None:
            entry.again = True
        elif not entry.woken:
            entry.woken = True
            self._woken.append(key)
            self._changed.set()

    def schedule(self, key: K, at: float) -> None:
        """Run ``key`` no later than loop time ``at`` (sooner if it is already due or woken)."""
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry()
        if entry.task is not None:
            entry.later = at if entry.later is None else min(entry.later, at)
            return
        if entry.woken or (entry.due is not None and entry.due <= at):
            return
        if entry.due is not None:
            self._stale += 1  # its heap item: superseded by the earlier one
        entry.due = at
        heapq.heappush(self._heap, (at, next(self._order), key))
        self._changed.set()

    def forget(self, key: K) -> None:
        """Drop ``key``: nothing more runs for it, and a running reconciliation is cancelled."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        if entry.due is not None:
            self._stale += 1
        if entry.task is not None:
            entry.task.cancel()

    # -- what the liveness check and the tests read ----------------------------------------------

    def in_flight(self) -> Mapping[K, float]:
        """The keys holding a worker slot, with the loop time they took it (parked ones wait for
        permission, not for an answer, and are not counted)."""
        return {
            key: entry.slot.since
            for key, entry in self._running.items()
            if entry.slot is not None and entry.slot.held
        }

    def is_running(self, key: K) -> bool:
        """Whether a reconciliation of ``key`` is under way (parked ones included)."""
        return key in self._running

    def due(self, key: K) -> float | None:
        """When ``key`` is due next (loop time), if it is scheduled."""
        entry = self._entries.get(key)
        return None if entry is None else entry.due

    def __len__(self) -> int:
        """Keys due, woken or running."""
        return len(self._entries)

    # -- running ---------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self, work: Work[K]) -> AsyncIterator[None]:
        """Dispatch while inside; on the way out, cancel every reconciliation and wait for it."""
        pump = asyncio.create_task(self._pump(work), name="doks-access-dispatcher")
        try:
            yield
        finally:
            pump.cancel()
            tasks = [e.task for e in self._running.values() if e.task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(pump, *tasks, return_exceptions=True)

    async def _pump(self, work: Work[K]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._work_waiting()
            # No slot is held while waiting for work, so that a parked reconciliation can always
            # take its slot back.
            await self._slots.acquire()
            key = self._pick(loop.time())
            if key is None:  # forgotten meanwhile
                self._slots.release()
                continue
            self._start(key, work)

    async def _work_waiting(self) -> None:
        """Return once a key is woken or due."""
        loop = asyncio.get_running_loop()
        while True:
            self._changed.clear()
            now = loop.time()
            if self._first_woken() is not None or self._first_due(now) is not None:
                return
            timeout = self._heap[0][0] - now if self._heap else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._changed.wait()

    def _pick(self, now: float) -> K | None:
        woken, due = self._first_woken(), self._first_due(now)
        if woken is not None and (due is None or self._woken_turn):
            self._woken.popleft()
            self._woken_turn = False
            entry = self._entries[woken]
            if entry.due is not None:
                self._stale += 1  # its heap item: it runs now instead
            entry.due, entry.woken = None, False
            return woken
        if due is not None:
            heapq.heappop(self._heap)
            self._woken_turn = True
            self._entries[due].due = None
            return due
        return None

    def _first_woken(self) -> K | None:
        while self._woken:
            key = self._woken[0]
            entry = self._entries.get(key)
            if entry is not None and entry.woken and entry.task is None:
                return key
            self._woken.popleft()  # forgotten, or picked from the heap meanwhile
        return None

    def _first_due(self, now: float) -> K | None:
        while self._heap:
            due, _, key = self._heap[0]
            entry = self._entries.get(key)
            if entry is not None and entry.due == due and entry.task is None:
                return key if due <= now else None
            heapq.heappop(self._heap)
            self._stale -= 1
        return None

    def _start(self, key: K, work: Work[K]) -> None:
        entry = self._entries[key]
        entry.slot = _Slot(self._slots, since=asyncio.get_running_loop().time())
        entry.task = asyncio.create_task(self._run(key, entry, work))
        self._running[key] = entry

    async def _run(self, key: K, entry: _Entry, work: Work[K]) -> None:
        slot = entry.slot
        assert slot is not None  # noqa: S101 - set by _start
        _current_slot.set(slot)
        due: float | None = None
        try:
            due = await work(key)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception(
                "reconciling %s failed unexpectedly; retrying in %gs", key, ERROR_RETRY
            )
            due = asyncio.get_running_loop().time() + ERROR_RETRY
        finally:
            if slot.held:
                slot.held = False
                self._slots.release()
            entry.task = entry.slot = None
            if self._running.get(key) is entry:
                del self._running[key]
        if self._entries.get(key) is entry:
            self._settle(key, entry, due)

    def _settle(self, key: K, entry: _Entry, due: float | None) -> None:
        """After a run: again if woken meanwhile, else at ``due`` (or when it was scheduled for
        meanwhile, if sooner), else forget the key."""
        if entry.later is not None:
            due = entry.later if due is None else min(due, entry.later)
            entry.later = None
        if entry.again:
            entry.again, entry.woken = False, True
            self._woken.append(key)
        elif due is not None:
            entry.due = due
            heapq.heappush(self._heap, (due, next(self._order), key))
            self._compact()
        else:
            del self._entries[key]  # idle until woken: nothing kept
        self._changed.set()

    def _compact(self) -> None:
        """Rebuild the heap once most of it is stale (keys woken or forgotten before their time)."""
        if self._stale <= len(self._heap) // 2 or len(self._heap) < 64:
            return
        self._heap = [
            item
            for item in self._heap
            if (entry := self._entries.get(item[2])) is not None and entry.due == item[0]
        ]
        heapq.heapify(self._heap)
        self._stale = 0
