"""The dispatcher, on virtual time: due-time order, one run per key at a time, wake, schedule,
fairness, forget, a fixed number of workers, and parking while waiting for permission."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterable

import pytest
import pytest_asyncio

from doks_access import dispatch
from doks_access.dispatch import Dispatcher

pytestmark = [pytest.mark.asyncio, pytest.mark.looptime]


def now() -> float:
    return asyncio.get_running_loop().time()


@dataclasses.dataclass
class Script:
    """What each key's reconciliation does: how long it takes and when it is due next (from
    ``plans``, one run after the other, then ``next_in``)."""

    takes: dict[str, float] = dataclasses.field(default_factory=dict)
    next_in: dict[str, float | None] = dataclasses.field(default_factory=dict)
    plans: dict[str, list[float | None]] = dataclasses.field(default_factory=dict)
    park_for: dict[str, float] = dataclasses.field(default_factory=dict)
    fails: set[str] = dataclasses.field(default_factory=set)
    started: list[tuple[float, str]] = dataclasses.field(default_factory=list)
    finished: list[tuple[float, str]] = dataclasses.field(default_factory=list)
    cancelled: list[tuple[float, str]] = dataclasses.field(default_factory=list)
    running: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    most_at_once: int = 0
    most_of_one_key: int = 0

    async def work(self, key: str) -> float | None:
        self.started.append((now(), key))
        self.running[key] += 1
        self.most_of_one_key = max(self.most_of_one_key, self.running[key])
        self.most_at_once = max(self.most_at_once, sum(self.running.values()))
        try:
            if key in self.park_for:
                async with dispatch.parked():
                    self.running[key] -= 1  # waiting for permission is not work
                    await asyncio.sleep(self.park_for[key])
                    self.running[key] += 1
            await asyncio.sleep(self.takes.get(key, 0.0))
            if key in self.fails:
                raise RuntimeError(f"a bug in reconciling {key}")
        except asyncio.CancelledError:
            self.cancelled.append((now(), key))
            raise
        finally:
            self.running[key] -= 1
        self.finished.append((now(), key))
        planned = self.plans.get(key)
        delay = planned.pop(0) if planned else self.next_in.get(key)
        return None if delay is None else now() + delay

    def starts_of(self, key: str) -> list[float]:
        return [when for when, started in self.started if started == key]

    def order(self) -> list[str]:
        return [key for _, key in self.started]


@pytest_asyncio.fixture
async def script() -> Script:
    return Script()


@contextlib.asynccontextmanager
async def dispatching(script: Script, *, workers: int = 1) -> AsyncIterator[Dispatcher[str]]:
    dispatcher: Dispatcher[str] = Dispatcher(workers=workers)
    async with dispatcher.running(script.work):
        yield dispatcher


@pytest_asyncio.fixture
async def one_worker(script: Script) -> AsyncIterator[Dispatcher[str]]:
    async with dispatching(script, workers=1) as dispatcher:
        yield dispatcher


def wake_all(dispatcher: Dispatcher[str], keys: Iterable[str]) -> None:
    for key in keys:
        dispatcher.wake(key)


# --- due times ----------------------------------------------------------------------------------


async def test_keys_run_when_they_fall_due_earliest_first(
    one_worker: Dispatcher[str], script: Script
) -> None:
    script.plans.update(a=[30.0], b=[10.0], c=[20.0])
    wake_all(one_worker, "abc")

    await asyncio.sleep(40)

    assert script.started == [
        (0, "a"),
        (0, "b"),
        (0, "c"),
        (10, "b"),
        (20, "c"),
        (30, "a"),
    ]


async def test_a_key_is_run_again_at_the_time_its_reconciliation_returned(
    one_worker: Dispatcher[str], script: Script
) -> None:
    script.next_in["renewing"] = 60.0
    one_worker.wake("renewing")

    await asyncio.sleep(200)

    assert script.starts_of("renewing") == [0, 60, 120, 180]


async def test_an_idle_key_costs_no_task_and_no_entry(
    one_worker: Dispatcher[str], script: Script
) -> None:
    wake_all(one_worker, [f"idle-{i}" for i in range(100)])
    await asyncio.sleep(1)
    tasks_while_idle = len(asyncio.all_tasks())

    assert len(script.finished) == 100
    assert len(one_worker) == 0  # returned None: only a wake brings them back
    assert tasks_while_idle == 2  # this test and the dispatcher's own loop


async def test_a_scheduled_key_costs_no_task_while_it_waits(
    one_worker: Dispatcher[str], script: Script
) -> None:
    for i in range(100):
        script.next_in[f"due-{i}"] = 3600.0
    wake_all(one_worker, script.next_in)
    await asyncio.sleep(1)

    assert len(one_worker) == 100
    assert len(asyncio.all_tasks()) == 2
    assert one_worker.due("due-0") == 3600.0


# --- one at a time per key ----------------------------------------------------------------------


async def test_a_key_woken_while_it_runs_runs_once_more_right_after(
    one_worker: Dispatcher[str], script: Script
) -> None:
    script.takes["slow"] = 10.0
    one_worker.wake("slow")
    await asyncio.sleep(1)
    one_worker.wake("slow")
    await asyncio.sleep(1)
    one_worker.wake("slow")

    await asyncio.sleep(30)

    assert script.starts_of("slow") == [0, 10]
    assert script.most_of_one_key == 1


async def test_a_key_is_never_reconciled_twice_at_once_even_with_many_workers(
    script: Script,
) -> None:
    script.takes["slow"] = 10.0
    async with dispatching(script, workers=4) as dispatcher:
        for _ in range(5):
            dispatcher.wake("slow")
            await asyncio.sleep(3)
        await asyncio.sleep(30)

    assert script.most_of_one_key == 1
    assert script.starts_of("slow") == [0, 10, 20]


# --- wake ---------------------------------------------------------------------------------------


async def test_a_woken_key_runs_as_soon_as_a_worker_is_free(
    one_worker: Dispatcher[str], script: Script
) -> None:
    script.takes["busy"] = 5.0
    one_worker.wake("busy")
    await asyncio.sleep(1)

    one_worker.wake("news")
    await asyncio.sleep(10)

    assert script.starts_of("news") == [5]


async def test_a_wake_brings_a_scheduled_key_forward_and_replaces_its_old_time(
    one_worker: Dispatcher[str], script: Script
) -> None:
    script.next_in["planned"] = 100.0
    one_worker.wake("planned")
    await asyncio.sleep(10)
    script.next_in["planned"] = 500.0

    one_worker.wake("planned")  # its Secret was deleted, say
    await asyncio.sleep(300)

    assert script.starts_of("planned") == [0, 10]  # not again at 100
    assert one_worker.due("planned") == 510.0


# --- schedule -----------------------------------------------------------------------------------


async def test_a_scheduled_key_runs_at_the_time_given(
    one_worker: Dispatcher[str], script: Script
) -> None:
    one_worker.schedule("settling", 30.0)
    due = one_worker.due("settling")

    await asyncio.sleep(40)

    assert due == 30.0
    assert script.starts_of("settling") == [30]
    assert len(one_worker) == 0


async def test_a_time_already_past_runs_the_key_at_once(
    one_worker: Dispatcher[str], script: Script
) -> None:
    await asyncio.sleep(10)

    one_worker.schedule("late", 5.0)
    await asyncio.sleep(1)

    assert script.starts_of("late") == [10]


async def test_scheduling_later_than_a_key_is_due_keeps_the_earlier_time(
    one_worker: Dispatcher[str], script: Script
) -> None:
    script.plans["renewing"] = [20.0, None]
    one_worker.wake("renewing")
    await asyncio.sleep(1)

    one_worker.schedule("renewing", 50.0)
    due = one_worker.due("renewing")
    await asyncio.sleep(100)

    assert due == 20.0
    assert script.starts_of("renewing") == [0, 20]  # not again at 50


async def test_scheduling_earlier_than_a_key_is_due_brings_it_forward_once(
    one_worker: Dispatcher[str], script: Script
) -> None:
    script.plans["renewing"] = [100.0, None]
    one_worker.wake("renewing")
    await asyncio.sleep(1)

    one_worker.schedule("renewing", 50.0)
    one_worker.schedule("renewing", 30.0)
    one_worker.schedule("renewing", 40.0)
    await asyncio.sleep(200)

    assert script.starts_of("renewing") == [0, 30]  # neither at 40, 50 nor 100
    assert len(one_worker) == 0


async def test_a_key_scheduled_while_it_runs_runs_at_that_time_after_the_run(
    one_worker: Dispatcher[str], script: Script
) -> None:
    script.takes["busy"] = 10.0
    one_worker.wake("busy")
    await asyncio.sleep(1)

    one_worker.schedule("busy", 40.0)
    one_worker.schedule("busy", 30.0)
    running_due = one_worker.due("busy")
    await asyncio.sleep(100)

    assert running_due is None  # nothing is queued while it runs
    assert script.starts_of("busy") == [0, 30]
    assert script.most_of_one_key == 1


async def test_a_key_scheduled_while_it_runs_for_a_time_already_past_runs_right_after(
    one_worker: Dispatcher[str], script: Script
) -> None:
    script.takes["busy"] = 10.0
    one_worker.wake("busy")
    await asyncio.sleep(1)

    one_worker.schedule("busy", 5.0)
    await asyncio.sleep(30)

    assert script.starts_of("busy") == [0, 10]
    assert script.most_of_one_key == 1


async def test_a_key_scheduled_while_it_runs_keeps_its_own_due_time_when_sooner(
    one_worker: Dispatcher[str], script: Script
) -> None:
    script.takes["busy"] = 10.0
    script.plans["busy"] = [15.0, None]  # due at 25 after its first run
    one_worker.wake("busy")
    await asyncio.sleep(1)

    one_worker.schedule("busy", 60.0)
    await asyncio.sleep(100)

    assert script.starts_of("busy") == [0, 25]  # no later than 60; not again at 60


async def test_scheduling_a_woken_key_changes_nothing(
    one_worker: Dispatcher[str], script: Script
) -> None:
    script.takes["busy"] = 5.0
    wake_all(one_worker, ["busy", "woken"])
    await asyncio.sleep(1)

    one_worker.schedule("woken", 100.0)
    due = one_worker.due("woken")
    await asyncio.sleep(200)

    assert due is None
    assert script.starts_of("woken") == [5]  # as woken, and only then
    assert len(one_worker) == 0


async def test_a_scheduled_key_that_is_forgotten_does_not_run(
    one_worker: Dispatcher[str], script: Script
) -> None:
    one_worker.schedule("deleted", 30.0)
    await asyncio.sleep(10)

    one_worker.forget("deleted")
    await asyncio.sleep(100)

    assert script.started == []
    assert len(one_worker) == 0


# --- fairness under a burst ---------------------------------------------------------------------


async def test_an_event_is_not_starved_by_a_thousand_due_renewals(
    one_worker: Dispatcher[str], script: Script
) -> None:
    due = [f"due-{i:04d}" for i in range(1000)]
    for key in due:
        script.next_in[key] = 100.0  # the first runs (instant) plan them all for t=100
    wake_all(one_worker, due)
    await asyncio.sleep(1)
    for key in due:
        script.takes[key] = 1.0
        script.next_in[key] = None
    await asyncio.sleep(100 - now() + 0.5)  # the thousand are due, and run one by one

    one_worker.wake("event")
    await asyncio.sleep(5)

    (started,) = script.starts_of("event")
    assert started == 101  # right after the renewal that was running
    assert len(script.starts_of("due-0999")) == 1  # the renewals are far from done


async def test_due_renewals_are_not_starved_by_a_flood_of_events(
    one_worker: Dispatcher[str], script: Script
) -> None:
    script.next_in["renewal"] = 10.0
    one_worker.wake("renewal")
    await asyncio.sleep(5)
    script.next_in["renewal"] = None
    events = [f"event-{i:04d}" for i in range(1000)]
    for key in events:
        script.takes[key] = 1.0
    wake_all(one_worker, events)

    await asyncio.sleep(20)

    assert script.starts_of("renewal") == [0, 10]  # its turn came between two events


async def test_woken_keys_run_in_the_order_they_were_woken(
    one_worker: Dispatcher[str], script: Script
) -> None:
    script.takes["first"] = 1.0
    wake_all(one_worker, ["first", "b", "c", "a"])

    await asyncio.sleep(5)

    assert script.order() == ["first", "b", "c", "a"]


# --- forget -------------------------------------------------------------------------------------


async def test_a_forgotten_key_never_runs_again(
    one_worker: Dispatcher[str], script: Script
) -> None:
    script.next_in["deleted"] = 50.0
    one_worker.wake("deleted")
    await asyncio.sleep(10)

    one_worker.forget("deleted")
    await asyncio.sleep(100)

    assert script.starts_of("deleted") == [0]
    assert len(one_worker) == 0


async def test_forgetting_a_running_key_cancels_its_reconciliation_at_once(
    one_worker: Dispatcher[str], script: Script
) -> None:
    script.takes["deleted"] = 100.0
    one_worker.wake("deleted")
    one_worker.wake("next")
    await asyncio.sleep(5)

    one_worker.forget("deleted")
    await asyncio.sleep(1)

    assert script.cancelled == [(5, "deleted")]
    assert script.starts_of("next") == [5]  # its worker was free again at once
    assert one_worker.in_flight() == {}


async def test_a_woken_key_that_is_forgotten_does_not_run(
    one_worker: Dispatcher[str], script: Script
) -> None:
    script.takes["busy"] = 5.0
    wake_all(one_worker, ["busy", "deleted"])
    await asyncio.sleep(1)

    one_worker.forget("deleted")
    await asyncio.sleep(10)

    assert script.order() == ["busy"]


# --- a fixed pool of workers --------------------------------------------------------------------


async def test_at_most_the_given_number_of_reconciliations_run_at_once(script: Script) -> None:
    keys = [f"new-{i}" for i in range(10)]
    for key in keys:
        script.takes[key] = 10.0
    async with dispatching(script, workers=3) as dispatcher:
        wake_all(dispatcher, keys)
        await asyncio.sleep(5)
        running = dispatcher.in_flight()
        await asyncio.sleep(100)

    assert script.most_at_once == 3
    assert running == {"new-0": 0, "new-1": 0, "new-2": 0}
    assert sorted(when for when, _ in script.finished) == [10] * 3 + [20] * 3 + [30] * 3 + [40]


async def test_a_reconciliation_waiting_for_permission_lends_its_worker(
    one_worker: Dispatcher[str], script: Script
) -> None:
    script.park_for["throttled"] = 60.0
    script.takes["throttled"] = 1.0
    one_worker.wake("throttled")
    await asyncio.sleep(1)

    one_worker.wake("other")
    await asyncio.sleep(0)
    in_flight_while_parked = one_worker.in_flight()
    await asyncio.sleep(100)

    assert script.starts_of("other") == [1]  # not after the 60 s wait
    assert in_flight_while_parked == {"other": 1}  # parked is not stuck
    assert ("throttled" in one_worker.in_flight()) is False
    assert (61, "throttled") in script.finished
    assert script.most_at_once == 1  # the worker was lent, not added


async def test_parking_outside_a_dispatched_reconciliation_does_nothing() -> None:
    async with dispatch.parked():
        await asyncio.sleep(1)

    assert now() == 1


# --- what goes wrong ----------------------------------------------------------------------------


async def test_a_reconciliation_that_raises_is_tried_again_later_and_others_go_on(
    one_worker: Dispatcher[str], script: Script, caplog: pytest.LogCaptureFixture
) -> None:
    script.fails.add("buggy")
    wake_all(one_worker, ["buggy", "fine"])

    await asyncio.sleep(dispatch.ERROR_RETRY + 1)

    assert script.starts_of("buggy") == [0, dispatch.ERROR_RETRY]
    assert script.starts_of("fine") == [0]
    assert "a bug in reconciling buggy" in caplog.text


async def test_stopping_cancels_every_reconciliation_and_leaves_no_task(script: Script) -> None:
    script.takes.update(a=100.0, b=100.0)
    async with dispatching(script, workers=2) as dispatcher:
        wake_all(dispatcher, "ab")
        await asyncio.sleep(5)

    await asyncio.sleep(0)
    assert sorted(script.cancelled) == [(5, "a"), (5, "b")]
    assert len(asyncio.all_tasks()) == 1


async def test_a_dispatcher_needs_at_least_one_worker() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Dispatcher[str](workers=0)
