"""Injected failures: what a flaky or hostile upstream does to a client.

The operator must survive slow answers, 5xx, 429 storms, dropped connections, requests that never
return, and responses that parse badly or would make consumers run commands (design 4.2 and 4.5).
A :class:`Fault` describes one such behaviour, optionally scoped to one endpoint and to the next N
requests; a :class:`FaultPlan` holds the active ones and decides, request by request and with a
seeded random generator, which of them strike. Faults fall into three groups, applied at three
points of a request: network faults before anything else, status faults after authentication and
rate limiting (so they carry real ``ratelimit-*`` headers), body faults to a successful answer.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import itertools
import random
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Literal, cast, get_args

FaultKind = Literal[
    "latency",
    "drop",
    "hang",
    "status",
    "error_rate",
    "malformed_body",
    "oversized_body",
    "exec_kubeconfig",
    "auth_provider_kubeconfig",
    "wrong_server",
    "body",
]
Endpoint = Literal["list_clusters", "get_cluster", "kubeconfig", "credentials"]

KINDS: tuple[str, ...] = get_args(FaultKind)
ENDPOINTS: tuple[str, ...] = get_args(Endpoint)
NETWORK_KINDS = frozenset({"latency", "drop", "hang"})
STATUS_KINDS = frozenset({"status", "error_rate"})
BODY_KINDS = frozenset(
    {
        "malformed_body",
        "oversized_body",
        "exec_kubeconfig",
        "auth_provider_kubeconfig",
        "wrong_server",
        "body",
    }
)
_CREDENTIAL_ENDPOINTS = frozenset({"kubeconfig", "credentials"})
_KUBECONFIG_ONLY = frozenset({"exec_kubeconfig", "auth_provider_kubeconfig"})
# Body faults a listing can get too, when the fault names that endpoint.
_LISTING_TOO = frozenset({"body", "malformed_body"})
DEFAULT_HANG_SECONDS = 3600.0
DEFAULT_ERROR_STATUS = 500


@dataclasses.dataclass(frozen=True)
class Fault:
    """One injected behaviour. ``count`` limits it to that many requests (``None``: until removed).

    - ``latency``: answer ``seconds`` later.
    - ``drop``: close the connection without answering.
    - ``hang``: answer nothing until the faults are changed or ``seconds`` (default 1 h) pass.
    - ``status``: answer ``status`` (an error body, ``retry-after`` for a 429 if given). The body's
      ``message`` is the status's usual one, or ``message`` when given: DigitalOcean's 400s and
      422s say what was wrong (``expiry_seconds must be at most 604800``), and a client that
      shows or parses that text needs a test that can write it.
    - ``error_rate``: like ``status`` (default 500), for a ``probability`` of the requests; it
      takes a ``message`` too.
    - ``malformed_body``: a 200 whose body does not parse (YAML or JSON).
    - ``oversized_body``: a 200 whose body is larger than 1 MiB (and otherwise valid).
    - ``exec_kubeconfig`` / ``auth_provider_kubeconfig``: a kubeconfig whose user runs a command
      or uses an auth provider instead of carrying a token.
    - ``wrong_server``: credentials whose server is ``server`` (default: the right one over http).
    - ``body``: a 200 whose body is exactly ``body`` (text is sent as UTF-8), with the endpoint's
      own content type or ``content_type``: any answer a test can write down, hostile or not.
      In the dict form, a ``bytes`` body travels as ``body_base64``.
    """

    kind: FaultKind
    endpoint: Endpoint | None = None
    count: int | None = None
    status: int | None = None
    probability: float | None = None
    seconds: float | None = None
    server: str | None = None
    retry_after: int | None = None
    body: str | bytes | None = None
    content_type: str | None = None
    message: str | None = None
    id: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {', '.join(KINDS)}")
        if self.endpoint is not None and self.endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {self.endpoint!r}; one of {', '.join(ENDPOINTS)}")
        if self.count is not None and self.count < 1:
            raise ValueError("count must be at least 1 (or absent: until removed)")
        self._check_kind_fields()

    def _check_kind_fields(self) -> None:
        kind = self.kind
        if kind == "latency" and (self.seconds is None or self.seconds < 0):
            raise ValueError("a latency fault needs seconds >= 0")
        if kind == "hang" and self.seconds is not None and self.seconds <= 0:
            raise ValueError("a hang fault's seconds must be positive")
        if kind == "status" and self.status is None:
            raise ValueError("a status fault needs a status")
        if self.status is not None and not 400 <= self.status <= 599:
            raise ValueError("an injected status must be a 4xx or 5xx")
        if kind == "error_rate" and (self.probability is None or not 0 <= self.probability <= 1):
            raise ValueError("an error_rate fault needs a probability between 0 and 1")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("retry_after must be >= 0")
        if kind == "body" and not isinstance(self.body, str | bytes):
            raise ValueError("a body fault needs a body (text or bytes)")
        if self.message is not None and (kind not in STATUS_KINDS or not self.message.strip()):
            raise ValueError("message is for status and error_rate faults only, and not empty")
        if self.content_type is not None and (
            kind != "body" or _HEADER_BREAK & set(self.content_type)
        ):
            raise ValueError("content_type is for body faults only, on one line")
        if kind in BODY_KINDS and self.endpoint is not None:
            allowed = {"kubeconfig"} if kind in _KUBECONFIG_ONLY else set(_CREDENTIAL_ENDPOINTS)
            if kind in _LISTING_TOO:
                allowed.add("list_clusters")
            if self.endpoint not in allowed:
                raise ValueError(f"a {kind} fault applies to {' or '.join(sorted(allowed))} only")

    @property
    def body_bytes(self) -> bytes:
        """The body of a ``body`` fault as sent (empty for every other kind)."""
        if isinstance(self.body, str):
            return self.body.encode()
        return self.body or b""

    @property
    def error_status(self) -> int:
        return self.status if self.status is not None else DEFAULT_ERROR_STATUS

    def applies_to(self, endpoint: str) -> bool:
        if self.endpoint is not None and self.endpoint != endpoint:
            return False
        if self.kind in _KUBECONFIG_ONLY:
            return endpoint == "kubeconfig"
        if self.kind in BODY_KINDS:
            return endpoint in _CREDENTIAL_ENDPOINTS or (
                endpoint == "list_clusters" and self.endpoint == endpoint
            )
        return True

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        """A fault from its JSON/YAML form; unknown keys are an error, not silently ignored."""
        names = {field.name for field in dataclasses.fields(cls)} | {"body_base64"}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(unknown)}")
        if "kind" not in data:
            raise ValueError("a fault needs a kind")
        for name, value in data.items():
            if value is not None and not _FIELD_TYPES[name](value):
                raise ValueError(f"fault field {name!r} has the wrong type: {value!r}")
        fields = dict(data)
        if fields.get("body_base64") is not None:
            if fields.get("body") is not None:
                raise ValueError("give body or body_base64, not both")
            try:
                fields["body"] = base64.b64decode(fields["body_base64"], validate=True)
            except binascii.Error:
                raise ValueError("body_base64 is not valid base64") from None
        fields.pop("body_base64", None)
        return cls(**fields)

    def to_dict(self) -> dict[str, Any]:
        found = {k: v for k, v in dataclasses.asdict(self).items() if v is not None and v != ""}
        if isinstance(self.body, bytes):  # JSON has no bytes
            found["body_base64"] = base64.b64encode(found.pop("body")).decode()
        return found


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return _is_int(value) or isinstance(value, float)


def _is_str(value: object) -> bool:
    return isinstance(value, str)


_FIELD_TYPES = {
    "kind": _is_str,
    "endpoint": _is_str,
    "count": _is_int,
    "status": _is_int,
    "probability": _is_number,
    "seconds": _is_number,
    "server": _is_str,
    "retry_after": _is_int,
    "body": _is_str,
    "body_base64": _is_str,
    "content_type": _is_str,
    "message": _is_str,
    "id": _is_str,
}
_HEADER_BREAK = frozenset("\r\n")


@dataclasses.dataclass(frozen=True)
class NetworkFaults:
    """What happens to a request before it is even read: a delay, then maybe drop or hang."""

    delay: float = 0.0
    action: Literal["drop", "hang"] | None = None
    hang_seconds: float = DEFAULT_HANG_SECONDS


class FaultPlan:
    """The active faults; thread-safe, since tests change them while the server answers."""

    def __init__(self, *, faults: Iterable[Fault] = (), seed: int = 0) -> None:
        self._faults: dict[str, Fault] = {}
        self._remaining: dict[str, int | None] = {}
        self._ids = itertools.count(1)
        self._random = random.Random(seed)  # noqa: S311 - reproducible, not secret
        self._generation = 0
        self._lock = threading.Lock()
        for fault in faults:
            self.add(fault)

    @property
    def generation(self) -> int:
        """Changes whenever faults are removed or cleared; hung requests wait for a change."""
        with self._lock:
            return self._generation

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            fault = dataclasses.replace(fault, id=fault.id or f"fault-{next(self._ids)}")
            if fault.id in self._faults:
                raise ValueError(f"a fault with id {fault.id!r} exists already")
            self._faults[fault.id] = fault
            self._remaining[fault.id] = fault.count
            return fault

    def remove(self, fault_id: str) -> bool:
        with self._lock:
            found = self._faults.pop(fault_id, None) is not None
            self._remaining.pop(fault_id, None)
            self._generation += 1
            return found

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._remaining.clear()
            self._generation += 1

    def faults(self) -> list[Fault]:
        """The active faults, ``count`` being what is left of it."""
        with self._lock:
            return [
                dataclasses.replace(fault, count=self._remaining[fault.id])
                for fault in self._faults.values()
            ]

    def take_network(self, endpoint: str) -> NetworkFaults:
        with self._lock:
            delay = 0.0
            for fault in self._matching(endpoint, {"latency"}):
                delay += fault.seconds or 0.0
                self._consume(fault)
            for fault in self._matching(endpoint, {"drop", "hang"}):
                self._consume(fault)
                action = cast(Literal["drop", "hang"], fault.kind)
                return NetworkFaults(
                    delay=delay, action=action, hang_seconds=fault.seconds or DEFAULT_HANG_SECONDS
                )
            return NetworkFaults(delay=delay)

    def take_status(self, endpoint: str) -> Fault | None:
        with self._lock:
            for fault in self._matching(endpoint, STATUS_KINDS):
                if fault.kind == "error_rate" and self._random.random() >= (fault.probability or 0):
                    continue
                self._consume(fault)
                return fault
            return None

    def take_body(self, endpoint: str) -> tuple[Fault, ...]:
        with self._lock:
            taken = tuple(self._matching(endpoint, BODY_KINDS))
            for fault in taken:
                self._consume(fault)
            return taken

    def _matching(self, endpoint: str, kinds: Iterable[str]) -> list[Fault]:
        wanted = set(kinds)
        return [f for f in self._faults.values() if f.kind in wanted and f.applies_to(endpoint)]

    def _consume(self, fault: Fault) -> None:
        remaining = self._remaining[fault.id]
        if remaining is None:
            return
        if remaining <= 1:
            # Used up, not removed by hand: hung requests keep waiting (generation unchanged).
            del self._faults[fault.id]
            del self._remaining[fault.id]
        else:
            self._remaining[fault.id] = remaining - 1
