"""Leader election on a ``coordination.k8s.io/v1`` Lease: of several replicas, exactly one works.

Replicas run for availability, but only one may reconcile: two would fetch and write the same
credentials concurrently. The replica holding the Lease runs the work; the others stand by and do
nothing but poll the Lease. A leader that cannot renew in time, or finds someone else in the
Lease, cancels its work at once and returns, so the process exits and Kubernetes restarts it as a
standby: what cert-manager and External Secrets do (DESIGN 6). Kopf's own peering only pauses
peers, and fails over after about a minute.

The protocol is client-go's (``tools/leaderelection``), so its reasoning carries over:

* Expiry is judged on the local monotonic clock: a standby takes the Lease over once it has seen
  no change to the record for ``leaseDurationSeconds`` of its own time. ``renewTime`` is written
  for people to read and never compared with this host's wall clock, so clock skew is harmless.
* Writes are optimistic: a create, or a replace carrying the ``resourceVersion`` just read. Of two
  standbys racing for an expired Lease, the apiserver lets exactly one win.
* ``lease_duration > renew_deadline``: a leader gives up (after ``renew_deadline`` without a
  successful renewal) before any standby may take over (``lease_duration`` after the last change
  it saw); the difference is the time the cancelled work has to stop.
* When the work ends, the Lease is released (empty holder, ``leaseDurationSeconds: 1``), as
  client-go's ``ReleaseOnCancel`` does, so a standby takes over within one retry period.

One deliberate difference: a leader that *reads* another holder in the Lease gives up at once
instead of retrying until its renew deadline. Nothing it could do would make it leader again, and
every further second of work would overlap with the new leader's.

``kubernetes.aio.leaderelection`` is not used: it judges expiry by the wall clock, rejects retry
periods under a second, never releases the Lease, keeps renewing after the work has ended, lets one
hung request outlast the renew deadline, and writes local times labelled as UTC.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import enum
import logging
import math
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aiohttp
from kubernetes.aio import client
from kubernetes.aio.client.exceptions import ApiException

logger = logging.getLogger(__name__)

T = TypeVar("T")

JITTER_FACTOR = 1.2
"""client-go's: a standby waits ``retry_period * (1 + up to 1.2)`` between tries."""

RELEASED_LEASE_SECONDS = 1
"""``leaseDurationSeconds`` of a released Lease, as client-go writes it."""


class LeadershipEvent(enum.StrEnum):
    """What ``on_event`` is told, for metrics or tests."""

    STANDING_BY = "standing-by"  # someone else holds the Lease; told again when the holder changes
    ACQUIRED = "acquired"  # this replica became leader; the work starts now
    LOST = "lost"  # leadership lost; the work has been cancelled
    RELEASED = "released"  # the work ended and the Lease was handed back


@dataclasses.dataclass(frozen=True, kw_only=True)
class LeadershipOutcome:
    """How a term as leader ended, when ``run_while_leading`` returns rather than raises."""

    lost: bool  # True: leadership was lost and the work cancelled; the process should exit
    reason: str  # for the log line and the exit message


async def run_while_leading(
    *,
    api: client.ApiClient,
    namespace: str,
    lease_name: str,
    identity: str,
    work: Callable[[], Awaitable[None]],
    lease_duration: float = 15,
    renew_deadline: float = 10,
    retry_period: float = 2,
    on_event: Callable[[str], None] | None = None,
) -> LeadershipOutcome:
    """Stand by until this replica holds the Lease, then run ``work`` while it keeps holding it.

    Returns ``lost=True`` as soon as leadership is lost, after cancelling ``work`` (and waiting,
    for at most ``lease_duration - renew_deadline``, for it to unwind). When ``work`` returns or
    raises, the Lease is released and the result returned or the exception propagated. Cancelling
    this coroutine cancels the work and releases the Lease too. ``identity`` must be unique per
    replica; ``f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"`` is a good one.
    """
    timing = _Timing(
        lease_duration=lease_duration, renew_deadline=renew_deadline, retry_period=retry_period
    )
    if not identity:
        raise ValueError("the identity must not be empty: an empty holder means a free Lease")
    leases = _Leases(api=api, namespace=namespace, name=lease_name, timeout=renew_deadline)
    elector = _Elector(leases=leases, identity=identity, timing=timing, notify=on_event)
    await elector.acquire()
    logger.info("became leader: lease %s is held by %s", leases.where, identity)
    elector.notify(LeadershipEvent.ACQUIRED)
    return await _lead(elector, work=work, timing=timing)


async def _lead(
    elector: _Elector, *, work: Callable[[], Awaitable[None]], timing: _Timing
) -> LeadershipOutcome:
    working = asyncio.ensure_future(work())
    renewing = asyncio.create_task(elector.keep_renewing())
    try:
        await asyncio.wait({working, renewing}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        working.cancel()
        renewing.cancel()
        await asyncio.wait({renewing})
        await _wait_stopped(working, grace=timing.stop_grace)
        await elector.release()
        raise
    if renewing.done():
        working.cancel()  # before anything else: not one more step of work without the Lease
        try:
            reason = renewing.result()
            logger.info("lost leadership of lease %s: %s", elector.where, reason)
        finally:
            await _wait_stopped(working, grace=timing.stop_grace)
        elector.notify(LeadershipEvent.LOST)
        return LeadershipOutcome(lost=True, reason=reason)
    renewing.cancel()
    await asyncio.wait({renewing})  # no renewal may land after the release
    await elector.release()
    working.result()  # the work's exception, if any, propagates once the Lease is handed back
    return LeadershipOutcome(lost=False, reason="the work finished")


async def _wait_stopped(task: asyncio.Future[None], *, grace: float) -> None:
    """Wait for the cancelled work to unwind; work that ignores cancelling is left behind."""
    done, _ = await asyncio.wait({task}, timeout=grace)
    if not done:
        logger.error("the work did not stop within %gs of being cancelled", grace)
    elif not task.cancelled() and (error := task.exception()) is not None:
        logger.warning("the work failed while stopping: %r", error)


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Timing:
    lease_duration: float
    renew_deadline: float
    retry_period: float

    def __post_init__(self) -> None:
        # client-go's rules: each period must fit in the next with room to spare.
        if self.retry_period <= 0:
            raise ValueError(f"retry_period must be positive, not {self.retry_period}")
        if self.renew_deadline <= JITTER_FACTOR * self.retry_period:
            raise ValueError(
                f"renew_deadline ({self.renew_deadline}s) must exceed"
                f" {JITTER_FACTOR} * retry_period ({self.retry_period}s)"
            )
        if self.lease_duration <= self.renew_deadline:
            raise ValueError(
                f"lease_duration ({self.lease_duration}s) must exceed"
                f" renew_deadline ({self.renew_deadline}s)"
            )

    @property
    def lease_seconds(self) -> int:
        """``leaseDurationSeconds`` to advertise: rounded up, never shorter than we rely on."""
        return math.ceil(self.lease_duration)

    @property
    def stop_grace(self) -> float:
        """How long cancelled work may take to unwind before a standby could take over."""
        return self.lease_duration - self.renew_deadline

    def standby_pause(self) -> float:
        return self.retry_period * (1 + JITTER_FACTOR * random.random())  # noqa: S311 - jitter


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Record:
    """The leader-election fields of a Lease's spec."""

    holder: str  # empty: nobody holds the Lease
    lease_seconds: int
    acquire_time: datetime.datetime | None
    renew_time: datetime.datetime | None
    transitions: int

    @classmethod
    def of(cls, lease: client.V1Lease) -> _Record:
        spec = lease.spec or client.V1LeaseSpec()
        return cls(
            holder=spec.holder_identity or "",
            lease_seconds=spec.lease_duration_seconds or 0,
            acquire_time=spec.acquire_time,
            renew_time=spec.renew_time,
            transitions=spec.lease_transitions or 0,
        )

    def spec(self) -> client.V1LeaseSpec:
        return client.V1LeaseSpec(
            holder_identity=self.holder,
            lease_duration_seconds=self.lease_seconds,
            acquire_time=self.acquire_time,
            renew_time=self.renew_time,
            lease_transitions=self.transitions,
        )


def _micro_time(now: datetime.datetime) -> datetime.datetime:
    """``now`` as it can be written to ``acquireTime``/``renewTime``.

    These are ``MicroTime``, which the apiserver parses only with six fraction digits, and the
    client serialises with ``isoformat()``, which drops a zero fraction (HTTP 400 "cannot parse
    '+00:00' as '.000000'"): a whole second is nudged by one microsecond to keep its digits.
    """
    return now if now.microsecond else now.replace(microsecond=1)


def _wall_clock_now() -> datetime.datetime:
    return _micro_time(datetime.datetime.now(datetime.UTC))


class _LeaseError(Exception):
    """A Lease call failed; ``status`` is the HTTP status (0: no answer)."""

    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class _Leases:
    """Reads and writes of the one Lease; API and transport errors become ``_LeaseError`` here."""

    def __init__(self, *, api: client.ApiClient, namespace: str, name: str, timeout: float) -> None:
        self._api = client.CoordinationV1Api(api)
        self.namespace = namespace
        self.name = name
        self.where = f"{namespace}/{name}"
        self._timeout = timeout

    async def read(self) -> client.V1Lease | None:
        """The Lease, or None when there is none."""
        try:
            return await self._call(
                "reading", self._api.read_namespaced_lease(self.name, self.namespace)
            )
        except _LeaseError as exc:
            if exc.status == 404:
                return None
            raise

    async def create(self, record: _Record) -> client.V1Lease | None:
        """The created Lease, or None when another replica created it first."""
        body = client.V1Lease(
            api_version="coordination.k8s.io/v1",
            kind="Lease",
            metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
            spec=record.spec(),
        )
        return await self._unless_conflict(
            "creating", self._api.create_namespaced_lease(self.namespace, body)
        )

    async def replace(self, lease: client.V1Lease, record: _Record) -> client.V1Lease | None:
        """The replaced Lease, or None when it changed since ``lease`` was read."""
        body = client.V1Lease(
            api_version="coordination.k8s.io/v1",
            kind="Lease",
            metadata=lease.metadata,  # its resourceVersion makes the write conditional
            spec=record.spec(),
        )
        return await self._unless_conflict(
            "renewing", self._api.replace_namespaced_lease(self.name, self.namespace, body)
        )

    async def _unless_conflict(
        self, verb: str, request: Awaitable[client.V1Lease]
    ) -> client.V1Lease | None:
        try:
            return await self._call(verb, request)
        except _LeaseError as exc:
            if exc.status == 409:
                return None
            raise

    async def _call(self, verb: str, request: Awaitable[T]) -> T:
        what = f"{verb} lease {self.where}"
        try:
            async with asyncio.timeout(self._timeout):
                return await request
        except ApiException as exc:
            # The body can echo the request; only the status and reason are kept.
            status = int(exc.status or 0)
            message = f"{what}: HTTP {status} {exc.reason or ''}".strip()
            raise _LeaseError(message, status=status) from None
        except TimeoutError:
            raise _LeaseError(f"{what}: no answer within {self._timeout:g}s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise _LeaseError(f"{what}: {type(exc).__name__}: {exc}") from None


class _Attempt(enum.Enum):
    HELD = "held"  # this replica holds the Lease now: acquired or renewed
    TAKEN = "taken"  # another replica holds a Lease that has not expired
    FAILED = "failed"  # no answer, an error, or a lost race: try again


class _Elector:
    """One contender's view of the Lease: what it last saw, and when on its own clock."""

    def __init__(
        self,
        *,
        leases: _Leases,
        identity: str,
        timing: _Timing,
        notify: Callable[[str], None] | None,
    ) -> None:
        self._leases = leases
        self._identity = identity
        self._timing = timing
        self._notify = notify
        self._loop = asyncio.get_running_loop()
        self._observed: _Record | None = None
        self._observed_at = 0.0  # loop time at which the record was last seen to change
        self._lease: client.V1Lease | None = None  # as last written: guards the release
        self._reported_holder = ""
        self._failure = ""  # the last failure, for the log and the reason of a loss

    @property
    def where(self) -> str:
        return self._leases.where

    def notify(self, event: LeadershipEvent) -> None:
        if self._notify is not None:
            self._notify(event)

    async def acquire(self) -> None:
        """Return once this replica holds the Lease."""
        while (attempt := await self._attempt()) is not _Attempt.HELD:
            if attempt is _Attempt.TAKEN and self._observed is not None:
                self._report_holder(self._observed.holder)
            await asyncio.sleep(self._timing.standby_pause())

    async def keep_renewing(self) -> str:
        """Renew every retry period for as long as possible; return why it no longer is."""
        while True:
            await asyncio.sleep(self._timing.retry_period)
            loss = await self._renew()
            if loss is not None:
                return loss

    async def _renew(self) -> str | None:
        """None once renewed; why leadership is lost if not renewed within the renew deadline."""
        deadline = self._timing.renew_deadline
        try:
            async with asyncio.timeout(deadline):
                attempt = await self._attempt()
                while attempt is _Attempt.FAILED:  # polling: a Lease write has no event to await
                    await asyncio.sleep(self._timing.retry_period)
                    attempt = await self._attempt()
        except TimeoutError:
            return f"not renewed within {deadline:g}s; last failure: {self._failure or 'none'}"
        if attempt is _Attempt.TAKEN:
            holder = self._observed.holder if self._observed else "?"
            return f"the lease is now held by {holder}"
        return None

    async def release(self) -> None:
        """Hand the Lease back so a standby need not wait for it to expire; best effort."""
        if self._lease is None or self._observed is None or not self._leading():
            return
        now = _wall_clock_now()
        released = _Record(
            holder="",
            lease_seconds=RELEASED_LEASE_SECONDS,
            acquire_time=now,
            renew_time=now,
            transitions=self._observed.transitions,
        )
        try:
            written = await self._release(self._lease, released)
        except _LeaseError as exc:
            logger.warning("could not release lease %s, it will expire: %s", self.where, exc)
            return
        if written is not None:
            self._saw(written, written=True)
            logger.info("released lease %s", self.where)
            self.notify(LeadershipEvent.RELEASED)

    async def _release(self, lease: client.V1Lease, released: _Record) -> client.V1Lease | None:
        # A renewal cancelled mid-flight may have landed, leaving our copy stale: re-read once.
        written = await self._leases.replace(lease, released)
        if written is not None:
            return written
        current = await self._leases.read()
        if current is None or _Record.of(current).holder != self._identity:
            return None
        return await self._leases.replace(current, released)

    async def _attempt(self) -> _Attempt:
        try:
            attempt = await self._try_acquire_or_renew()
        except _LeaseError as exc:
            if str(exc) != self._failure:
                logger.warning("leader election: %s", exc)
            self._failure = str(exc)
            return _Attempt.FAILED
        self._failure = ""  # an answer that makes sense: the next failure is news again
        return attempt

    async def _try_acquire_or_renew(self) -> _Attempt:
        now = _wall_clock_now()
        lease = await self._leases.read()
        if lease is None:
            wanted = _Record(
                holder=self._identity,
                lease_seconds=self._timing.lease_seconds,
                acquire_time=now,
                renew_time=now,
                transitions=0,
            )
            return self._outcome_of_write(await self._leases.create(wanted))
        current = self._saw(lease, written=False)
        if current.holder and current.holder != self._identity and self._valid(current):
            return _Attempt.TAKEN
        ours = current.holder == self._identity
        wanted = _Record(
            holder=self._identity,
            lease_seconds=self._timing.lease_seconds,
            acquire_time=current.acquire_time if ours else now,
            renew_time=now,
            transitions=current.transitions if ours else current.transitions + 1,
        )
        return self._outcome_of_write(await self._leases.replace(lease, wanted))

    def _outcome_of_write(self, written: client.V1Lease | None) -> _Attempt:
        if written is None:
            logger.debug("lease %s changed under us: another replica wrote first", self.where)
            self._failure = "another replica wrote the lease first"
            return _Attempt.FAILED
        self._saw(written, written=True)
        return _Attempt.HELD

    def _saw(self, lease: client.V1Lease, *, written: bool) -> _Record:
        """Note the record and, if it changed (or we wrote it), when on our own clock."""
        record = _Record.of(lease)
        if written or record != self._observed:
            self._observed = record
            self._observed_at = self._loop.time()
        if written:
            self._lease = lease
        return record

    def _valid(self, record: _Record) -> bool:
        return self._loop.time() < self._observed_at + record.lease_seconds

    def _leading(self) -> bool:
        return self._observed is not None and self._observed.holder == self._identity

    def _report_holder(self, holder: str) -> None:
        if holder != self._reported_holder:
            self._reported_holder = holder
            logger.info("standing by: lease %s held by %s", self.where, holder)
            self.notify(LeadershipEvent.STANDING_BY)
