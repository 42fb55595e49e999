"""The errors of the DigitalOcean client, and the one place that turns an HTTP status into one.

Callers catch these and nothing else: every httpx, JSON, YAML and decoding error is translated at
the client's boundary (``raise ... from exc``), so the operator never needs to know which library
failed. The tree, with ``retryable`` -- whether the client itself tries the same request again::

    DigitalOceanError                  retryable
    ├── UnauthorizedError               no        401, 403: the token is wrong or lacks a scope
    ├── NotFoundError                   no        404: no such cluster (for this token)
    ├── RequestRefusedError             no        400, 422: DigitalOcean will not serve this
                                                  request as asked; its message says why
    ├── RateLimitedError                yes       429: wait ``retry_after`` seconds, then retry
    ├── ServerError                     yes       5xx
    ├── TransportError                  yes       timeout, connection or protocol failure
    └── InvalidResponseError            no        unexpected status or content type, a body that
                                                  is not JSON/UTF-8, an invalid kubeconfig

``retryable`` is a class attribute set here and read only by the retry policy. An invalid response
is not retried at once on purpose: DigitalOcean answered, and asking again immediately would most
likely get the same answer while minting another token that can never be revoked; the operator's
slower backoff (DESIGN 4.5) tries again later.

Messages name the request, the status and DigitalOcean's short error id and request id. They never
carry the API token or a response body; DESIGN 4.8 forbids logging any of it, and exception messages
end up in logs, events and status conditions. DigitalOcean's free-text message is quoted only for a
400 or 422, where it is the one thing that tells a person what to change, and only when it passes
:func:`explanation` (short, printable, nothing that could be a credential). Even an id is left out
when it could be a credential (see ``quotable``): an echo of the token (legacy tokens are 64 plain
hex digits), or anything with a long opaque run, which no error id, UUID or media type has.
"""

from __future__ import annotations

import contextlib
import datetime
import email.utils
import json
import math
import re
from collections.abc import Mapping
from typing import ClassVar

__all__ = [
    "DEFAULT_RETRY_AFTER",
    "MAX_RETRY_AFTER",
    "DigitalOceanError",
    "InvalidResponseError",
    "NotFoundError",
    "RateLimitedError",
    "RequestRefusedError",
    "ServerError",
    "TransportError",
    "UnauthorizedError",
    "error_for_status",
    "explanation",
    "quotable",
    "retry_after_seconds",
]

# A 429 that says nothing about when to come back: the per-minute window is the short one.
DEFAULT_RETRY_AFTER = 60.0
# No window of DigitalOcean's is longer than an hour, so no wait needs to be either.
MAX_RETRY_AFTER = 3600.0

# DigitalOcean's error ids (`not_found`) and request ids (UUIDs) are short and plain; anything else
# is not an id and is left out of messages rather than echoed.
_IDENTIFIER = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
# Random tokens and keys are long runs of letters and digits; words and UUID groups are short.
_OPAQUE_RUN = re.compile(r"[A-Za-z0-9]{16,}")
# Any 8 characters in common with the token: an echo, or part of one.
_ECHO_LENGTH = 8
# DigitalOcean's messages are one sentence; a longer one is cut rather than quoted whole.
_MAX_EXPLANATION = 200


class DigitalOceanError(Exception):
    """A DigitalOcean API call failed; subclasses say how."""

    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error_id: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_id = error_id
        self.request_id = request_id


class UnauthorizedError(DigitalOceanError):
    """401 or 403: the token is invalid, expired, or lacks the ``kubernetes`` scopes."""


class NotFoundError(DigitalOceanError):
    """404: the cluster does not exist, or this token's team cannot see it."""


class RequestRefusedError(DigitalOceanError):
    """400 or 422: DigitalOcean will not serve the request as asked (a lifetime it does not
    allow, a cluster that issues no token credential). Asking again unchanged gets the same
    answer; ``explanation`` is DigitalOcean's own message, when it may be shown."""

    def __init__(
        self,
        message: str,
        *,
        explanation: str | None,
        status: int | None = None,
        error_id: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, status=status, error_id=error_id, request_id=request_id)
        self.explanation = explanation


class RateLimitedError(DigitalOceanError):
    """429: DigitalOcean asks to come back in ``retry_after`` seconds."""

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        retry_after: float,
        status: int | None = None,
        error_id: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, status=status, error_id=error_id, request_id=request_id)
        self.retry_after = retry_after


class ServerError(DigitalOceanError):
    """5xx: DigitalOcean failed; the same request may well succeed later."""

    retryable = True


class TransportError(DigitalOceanError):
    """No HTTP answer: a timeout, a refused or reset connection, a protocol violation."""

    retryable = True


class InvalidResponseError(DigitalOceanError):
    """An answer we cannot use: unexpected status or content type, an undecodable body."""


def error_for_status(
    *,
    what: str,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    now: datetime.datetime,
    token: str,
) -> DigitalOceanError:
    """The error for a non-2xx answer to ``what`` (``"GET /v2/..."``) received at ``now``, for
    a request that carried ``token`` (which the message must not quote)."""
    error_id, request_id = _error_identifiers(headers=headers, body=body, token=token)
    message = _describe(what=what, status=status, error_id=error_id, request_id=request_id)
    if status == 429:
        retry_after = retry_after_seconds(headers=headers, now=now)
        return RateLimitedError(
            f"{message}; retry after {retry_after:.0f}s",
            retry_after=retry_after,
            status=status,
            error_id=error_id,
            request_id=request_id,
        )
    if status in (400, 422):
        said = explanation(_body_field(body, "message"), token=token)
        return RequestRefusedError(
            f"{message}: {said}" if said else f"{message}: DigitalOcean gave no usable reason",
            explanation=said,
            status=status,
            error_id=error_id,
            request_id=request_id,
        )
    error_class = _error_class(status)
    if error_class is InvalidResponseError:
        message += ": unexpected status"
    return error_class(message, status=status, error_id=error_id, request_id=request_id)


def _error_class(status: int) -> type[DigitalOceanError]:
    if status in (401, 403):
        return UnauthorizedError
    if status == 404:
        return NotFoundError
    if 500 <= status <= 599:
        return ServerError
    return InvalidResponseError


def retry_after_seconds(*, headers: Mapping[str, str], now: datetime.datetime) -> float:
    """How long a 429 asks us to wait: ``retry-after``, else ``ratelimit-reset``, else a default.

    ``retry-after`` is seconds (or, per RFC 9110, an HTTP date); ``ratelimit-reset`` is the epoch
    second when the oldest counted request leaves DigitalOcean's window. The result is clamped to
    ``[0, MAX_RETRY_AFTER]`` so that a garbled header cannot park a request for days.
    """
    seconds = _parse_retry_after(headers.get("retry-after"), now=now)
    if seconds is None:
        reset = _parse_number(headers.get("ratelimit-reset"))
        seconds = None if reset is None else reset - now.timestamp()
    if seconds is None:
        seconds = DEFAULT_RETRY_AFTER
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _parse_retry_after(value: str | None, *, now: datetime.datetime) -> float | None:
    if value is None:
        return None
    seconds = _parse_number(value)
    if seconds is not None:
        return seconds
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:  # an HTTP date is always GMT
        moment = moment.replace(tzinfo=datetime.UTC)
    return (moment - now).total_seconds()


def _parse_number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _error_identifiers(
    *, headers: Mapping[str, str], body: bytes, token: str
) -> tuple[str | None, str | None]:
    """DigitalOcean's ``id`` and ``request_id`` from a JSON error body (or the header)."""
    error_id = _identifier(_body_field(body, "id"), token=token)
    request_id = _identifier(_body_field(body, "request_id"), token=token) or _identifier(
        headers.get("x-request-id"), token=token
    )
    return error_id, request_id


def _body_field(body: bytes, name: str) -> object:
    """A top-level field of a JSON error body; None when the body is not a JSON object."""
    parsed: object = None
    # An error body we cannot read still has a status that says enough.
    with contextlib.suppress(UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        parsed = json.loads(body.decode("utf-8"))
    return parsed.get(name) if isinstance(parsed, dict) else None


def explanation(value: object, *, token: str) -> str | None:
    """DigitalOcean's free-text ``message``, if it may be shown: one line of printable text,
    cut to 200 characters, and nothing that :func:`quotable` rules out as possibly a credential."""
    if not isinstance(value, str):
        return None
    text = " ".join(value.split())
    if not text or not text.isprintable() or not quotable(text, token=token):
        return None
    return text if len(text) <= _MAX_EXPLANATION else text[: _MAX_EXPLANATION - 1] + "…"


def _identifier(value: object, *, token: str) -> str | None:
    if isinstance(value, str) and _IDENTIFIER.fullmatch(value) and quotable(value, token=token):
        return value
    return None


def quotable(value: str, *, token: str) -> bool:
    """Whether a short string from an answer may appear in a message: not if it could be a
    credential, that is, if it shares 8 characters with ``token`` or has a long opaque run."""
    if _OPAQUE_RUN.search(value):
        return False
    pieces = (token[i : i + _ECHO_LENGTH] for i in range(len(token) - _ECHO_LENGTH + 1))
    return not any(piece in value for piece in pieces)


def _describe(*, what: str, status: int, error_id: str | None, request_id: str | None) -> str:
    message = f"{what}: HTTP {status}"
    if error_id:
        message += f" {error_id}"
    if request_id:
        message += f" (request {request_id})"
    return message
