"""What the day-2 commands show, computed from API objects (pure): ``status`` rows, their table and
JSON, the progress of a ``renew``, the verdicts of ``check``, and the exit statuses.

The commands themselves (:mod:`doks_access.day2`) only fetch and patch; everything a test can
compute without a cluster is here, with the time as an argument.

The JSON of ``status -o json`` is a contract for scripts (README "Day 2"): ``{"items": [...],
"allReady": bool}``, each item with the keys of :meth:`Row.to_json`, times in RFC 3339 UTC, absent
values as null. Keys are only ever added.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import re
from collections.abc import Mapping, Sequence

from doks_access import bookkeeping
from doks_access.conditions import Condition, ConditionType, ReadyReason, StalledReason
from doks_access.setstatus import SetStatus
from doks_access.status import Status

__all__ = [
    "ACCESS_KIND",
    "EXIT_NOT_READY",
    "EXIT_OK",
    "EXIT_USAGE",
    "SET_KIND",
    "Baseline",
    "Check",
    "Progress",
    "Row",
    "State",
    "access_row",
    "checks_text",
    "exit_status",
    "lease_holder",
    "parse_duration",
    "parse_target",
    "progress_of",
    "refresh_value",
    "set_row",
    "status_json",
    "table",
]

ACCESS_KIND = "DOClusterAccess"
SET_KIND = "DOClusterAccessSet"
EXIT_OK = 0
EXIT_NOT_READY = 1  # something shown is not Ready, a renewal failed, a check failed, an API error
EXIT_USAGE = 2  # argparse's own status for usage errors
_SHORT_KIND = {ACCESS_KIND: "access", SET_KIND: "set"}
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
# A fetch can only fail this way before any request: a refresh changes nothing about it.
_HOPELESS = frozenset({StalledReason.INVALID_SPEC.value, StalledReason.SECRET_CONFLICT.value})


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    """One object as ``status`` shows it; set-only fields are None for a DOClusterAccess."""

    kind: str
    namespace: str
    name: str
    ready: str  # True, False or Unknown, as the Ready condition says
    reason: str | None  # the Ready condition's reason
    message: str | None
    stalled: str | None = None  # the Stalled condition's reason, while True
    reconciling: str | None = None  # the Reconciling condition's reason, while True
    issued_at: datetime.datetime | None = None
    expires_at: datetime.datetime | None = None
    renewal_time: datetime.datetime | None = None
    secret_name: str | None = None
    cluster_id: str | None = None
    failed_attempts: int = 0
    last_failure_reason: str | None = None
    last_failure_time: datetime.datetime | None = None
    matched: int | None = None
    ready_count: int | None = None
    pending: int | None = None

    def to_json(self) -> dict[str, object]:
        failure = None
        if self.last_failure_reason is not None:
            failure = {
                "reason": self.last_failure_reason,
                "time": _stamp(self.last_failure_time),
                "attempts": self.failed_attempts,
            }
        clusters = None
        if self.kind == SET_KIND:
            clusters = {"matched": self.matched, "ready": self.ready_count, "pending": self.pending}
        return {
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "ready": self.ready,
            "reason": self.reason,
            "message": self.message,
            "stalled": self.stalled,
            "reconciling": self.reconciling,
            "issuedAt": _stamp(self.issued_at),
            "expiresAt": _stamp(self.expires_at),
            "renewalTime": _stamp(self.renewal_time),
            "secretName": self.secret_name,
            "clusterID": self.cluster_id,
            "lastFailure": failure,
            "clusters": clusters,
        }


def access_row(body: Mapping[str, object]) -> Row:
    """The row of a DOClusterAccess as the API serves it."""
    namespace, name = _identity(body)
    status = Status.from_dict(_mapping(body.get("status")))
    ready = status.condition(ConditionType.READY)
    return Row(
        kind=ACCESS_KIND,
        namespace=namespace,
        name=name,
        ready=status.ready,
        reason=ready.reason if ready is not None else None,
        message=ready.message if ready is not None else None,
        stalled=_while_true(status.condition(ConditionType.STALLED)),
        reconciling=_while_true(status.condition(ConditionType.RECONCILING)),
        issued_at=status.issued_at,
        expires_at=status.expires_at,
        renewal_time=status.renewal_time,
        secret_name=status.secret_name,
        cluster_id=status.cluster_id,
        failed_attempts=status.failed_attempts,
        last_failure_reason=status.last_failure_reason,
        last_failure_time=status.last_failure_time,
    )


def set_row(body: Mapping[str, object]) -> Row:
    """The row of a DOClusterAccessSet as the API serves it."""
    namespace, name = _identity(body)
    status = SetStatus.from_dict(_mapping(body.get("status")))
    ready = status.condition(ConditionType.READY)
    return Row(
        kind=SET_KIND,
        namespace=namespace,
        name=name,
        ready="Unknown" if ready is None else ("True" if ready.status else "False"),
        reason=ready.reason if ready is not None else None,
        message=ready.message if ready is not None else None,
        stalled=_while_true(status.condition(ConditionType.STALLED)),
        reconciling=_while_true(status.condition(ConditionType.RECONCILING)),
        matched=status.matched,
        ready_count=status.ready,
        pending=status.pending,
    )


def exit_status(rows: Sequence[Row]) -> int:
    """0 when every row shown is Ready (nothing shown included), else 1."""
    return EXIT_OK if all(row.ready == "True" for row in rows) else EXIT_NOT_READY


def status_json(rows: Sequence[Row]) -> dict[str, object]:
    return {"items": [row.to_json() for row in rows], "allReady": exit_status(rows) == EXIT_OK}


def table(rows: Sequence[Row], *, now: datetime.datetime, wide: bool = False) -> str:
    """The rows as a table with a header, times relative to ``now`` (``wide``: absolute too)."""
    header = ["NAMESPACE", "KIND", "NAME", "READY", "REASON", "EXPIRES", "RENEWAL", "LAST FAILURE"]
    header += ["CLUSTERS"]
    if wide:
        header += ["EXPIRES AT", "SECRET", "MESSAGE"]
    lines = [header] + [_cells(row, now=now, wide=wide) for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _cells(row: Row, *, now: datetime.datetime, wide: bool) -> list[str]:
    clusters = "-"
    if row.kind == SET_KIND:
        clusters = f"{_count(row.ready_count)}/{_count(row.matched)} ready"
        if row.pending:
            clusters += f", {row.pending} pending"
    failure = "-"
    if row.last_failure_reason is not None:
        failure = f"{row.last_failure_reason} (x{row.failed_attempts}"
        failure += f", {_relative(row.last_failure_time, now)})"
    cells = [
        row.namespace,
        _SHORT_KIND.get(row.kind, row.kind),
        row.name,
        row.ready,
        row.stalled or row.reconciling or row.reason or "-",
        _relative(row.expires_at, now),
        _relative(row.renewal_time, now),
        failure,
        clusters,
    ]
    if wide:
        cells += [_stamp(row.expires_at) or "-", row.secret_name or "-", row.message or "-"]
    return cells


def _relative(moment: datetime.datetime | None, now: datetime.datetime) -> str:
    """``in 3h12m`` or ``5m ago``; ``-`` for no time."""
    if moment is None:
        return "-"
    seconds = int((moment - now).total_seconds())
    span = _span(abs(seconds))
    return f"in {span}" if seconds > 0 else f"{span} ago"


def _span(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes}m"
    if minutes:
        return f"{minutes}m{seconds}s" if minutes < 10 else f"{minutes}m"
    return f"{seconds}s"


# -- renew ---------------------------------------------------------------------------------------


def refresh_value(now: datetime.datetime) -> str:
    """The refresh annotation's new value: ``now`` in RFC 3339 UTC with microseconds, so that two
    requests in the same second still differ (the operator serves each value once)."""
    return now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class State(enum.StrEnum):
    WAITING = "waiting"
    RENEWED = "renewed"
    FAILED = "failed"


@dataclasses.dataclass(frozen=True, slots=True)
class Progress:
    """Where one requested renewal stands; ``text`` is the line ``renew`` prints about it."""

    state: State
    text: str


@dataclasses.dataclass(frozen=True, slots=True)
class Baseline:
    """What a DOClusterAccess said about its credential and failures when a refresh was
    requested: any change of it afterwards is the operator's answer. Comparing with the status
    rather than the clock keeps a client whose clock is off from waiting for ever."""

    issued_at: datetime.datetime | None
    last_failure_time: datetime.datetime | None
    failed_attempts: int

    @classmethod
    def of(cls, body: Mapping[str, object]) -> Baseline:
        row = access_row(body)
        return cls(row.issued_at, row.last_failure_time, row.failed_attempts)


def progress_of(body: Mapping[str, object], *, before: Baseline) -> Progress:
    """Whether the DOClusterAccess ``body`` has answered a refresh requested when its status said
    ``before``: a new credential and Ready, a failure since that needs a human (Stalled), or still
    waiting."""
    row = access_row(body)
    issued = row.issued_at
    if issued is not None and issued != before.issued_at and row.ready == "True":
        expires = _stamp(row.expires_at)
        return Progress(State.RENEWED, f"renewed: issued at {_stamp(issued)}, expires at {expires}")
    if row.reason == ReadyReason.SUSPENDED.value:
        return Progress(State.FAILED, "not renewed: suspended (spec.suspend is true)")
    failed_since = (row.last_failure_time, row.failed_attempts) != (
        before.last_failure_time,
        before.failed_attempts,
    ) and row.last_failure_reason is not None
    if row.stalled is not None and (row.stalled in _HOPELESS or failed_since):
        return Progress(State.FAILED, f"failed: Stalled {row.stalled}: {row.message or ''}".strip())
    waiting = "waiting"
    if row.reconciling is not None:
        waiting += f" (Reconciling {row.reconciling}"
        if failed_since:
            waiting += f", last failure {row.last_failure_reason}"
        waiting += ")"
    return Progress(State.WAITING, waiting)


def parse_duration(text: str) -> datetime.timedelta:
    """``90s``, ``2m``, ``1h30m`` or plain seconds; ValueError otherwise."""
    if text.isdigit():
        return datetime.timedelta(seconds=int(text))
    match = _DURATION.match(text)
    if not text or match is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 2m, 1h30m)")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return datetime.timedelta(hours=hours, minutes=minutes, seconds=seconds)


def parse_target(text: str, *, namespace: str | None, default: str) -> tuple[str, str]:
    """``NS/NAME``, or ``NAME`` in ``namespace`` (-n), else in ``default``; ValueError for
    anything else, and for ``NS/NAME`` with a different -n."""
    parts = text.split("/")
    if len(parts) == 2 and all(parts):
        found, name = parts
        if namespace is not None and found != namespace:
            raise ValueError(f"{text} is not in namespace {namespace} (-n)")
        return found, name
    if len(parts) == 1 and text:
        return namespace or default, text
    raise ValueError(f"not NS/NAME or NAME: {text!r}")


# -- check ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Check:
    """One verdict of ``check``: what was found, and how to fix it when it fails."""

    title: str
    ok: bool
    found: tuple[str, ...]
    fix: str | None = None


def checks_text(checks: Sequence[Check]) -> str:
    lines = []
    for check in checks:
        lines.append(f"[{'ok' if check.ok else 'FAIL'}] {check.title}")
        lines.extend(f"       {line}" for line in check.found)
        if not check.ok and check.fix:
            lines.append(f"       fix: {check.fix}")
    return "\n".join(lines)


def lease_holder(lease: Mapping[str, object], *, now: datetime.datetime) -> tuple[bool, str]:
    """Whether the Lease has a current holder, and a sentence about it."""
    metadata, spec = _mapping(lease.get("metadata")), _mapping(lease.get("spec"))
    where = f"Lease {metadata.get('namespace')}/{metadata.get('name')}"
    holder = spec.get("holderIdentity")
    renewed = bookkeeping.parse_timestamp(spec.get("renewTime"))
    duration = spec.get("leaseDurationSeconds")
    if not holder or renewed is None or not isinstance(duration, int):
        return False, f"{where} has no holder (released: no operator leads)"
    age = _relative(renewed, now)
    if renewed + datetime.timedelta(seconds=duration) < now:
        return False, f"{where} is expired: last renewed {age} by {holder}"
    return True, f"{where} is held by {holder}, renewed {age}"


# -- helpers -------------------------------------------------------------------------------------


def _identity(body: Mapping[str, object]) -> tuple[str, str]:
    metadata = _mapping(body.get("metadata"))
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


def _while_true(condition: Condition | None) -> str | None:
    if condition is None or not condition.status:
        return None
    return condition.reason or None


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def _count(value: int | None) -> str:
    return "?" if value is None else str(value)


def _stamp(moment: datetime.datetime | None) -> str | None:
    return None if moment is None else bookkeeping.format_timestamp(moment)
