"""The names and value formats of the operator's bookkeeping on Kubernetes objects.

The target Secret is the operator's memory: its annotations say when the credential in it was
issued, when it expires, which spec shaped it and which object owns it (DESIGN 4.4), so that a
restarted operator re-plans every renewal without a single DigitalOcean call. Writing and reading
those values must agree to the character, so both directions live here, next to the keys.

The ``doks-access.dev/`` prefix belongs to the operator: users' own labels and annotations under it
are ignored, and the operator removes stale entries under it from Secrets it manages.

Times are written as RFC 3339 in UTC with a ``Z`` and whole seconds, the form Kubernetes itself
uses for ``metav1.Time``. Truncating to the second moves an expiry *earlier*, never later.
"""

from __future__ import annotations

import dataclasses
import datetime

__all__ = [
    "CLUSTER_ID",
    "CONTENT_HASH",
    "EXPIRES_AT",
    "HANDLED_REFRESH_REQUEST",
    "ISSUED_AT",
    "MANAGED_BY_LABEL",
    "MANAGED_BY_VALUE",
    "MANAGED_KEYS",
    "OWNER",
    "PREFIX",
    "REFRESH_REQUESTED_AT",
    "SPEC_HASH",
    "ObservedSecret",
    "format_timestamp",
    "is_reserved",
    "owner_value",
    "parse_timestamp",
]

PREFIX = "doks-access.dev/"

# On the target Secret: the bookkeeping that lets a restart re-plan without an API call.
ISSUED_AT = PREFIX + "issued-at"
EXPIRES_AT = PREFIX + "expires-at"
CLUSTER_ID = PREFIX + "cluster-id"
SPEC_HASH = PREFIX + "spec-hash"  # the spec fields that shape the content (AccessSpec)
OWNER = PREFIX + "owner"  # "<namespace>/<name>" of the DOClusterAccess that writes the Secret
# A digest of the data keys the operator wrote: a mismatch means someone changed them (drift).
CONTENT_HASH = PREFIX + "content-hash"
# Which data keys, labels and annotations the operator set, so it can remove the ones it no
# longer sets (a format or label change) without touching what users added.
MANAGED_KEYS = PREFIX + "managed-keys"
# The refresh-requested-at value the credential in the Secret answered: a request is handled
# exactly once, and remembering it on the Secret survives restarts.
HANDLED_REFRESH_REQUEST = PREFIX + "handled-refresh-request"

# On the DOClusterAccess: set to a new value (any string, usually a time) to fetch a credential now.
REFRESH_REQUESTED_AT = PREFIX + "refresh-requested-at"

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "doks-access-operator"

_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@dataclasses.dataclass(frozen=True, slots=True)
class ObservedSecret:
    """What a target Secret that is ours, and intact, says about the credential it holds: its
    bookkeeping annotations, read back (``rendering.observe_secret``)."""

    issued_at: datetime.datetime
    expires_at: datetime.datetime
    cluster_id: str
    spec_hash: str
    handled_refresh_request: str | None  # the refresh-requested-at value this credential answered


def owner_value(*, namespace: str, name: str) -> str:
    """The owner annotation's value for the DOClusterAccess ``namespace/name``.

    The name and not the uid: a DOClusterAccess deleted and created again (a GitOps replace, a
    backup restored) is the same intent, and with ``deletionPolicy: Retain`` it should pick up its
    still-valid Secret instead of reporting a conflict or minting a new token. The namespace keeps a
    Secret copied into another namespace from being claimed by a namesake there.
    """
    return f"{namespace}/{name}"


def is_reserved(key: str) -> bool:
    """Whether a label or annotation key is the operator's to set."""
    return key.startswith(PREFIX) or key == MANAGED_BY_LABEL


def format_timestamp(moment: datetime.datetime) -> str:
    """``moment`` as RFC 3339 in UTC, whole seconds: ``2030-01-01T00:00:00Z``."""
    if moment.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(datetime.UTC).strftime(_TIMESTAMP_FORMAT)


def parse_timestamp(text: object) -> datetime.datetime | None:
    """The aware time in an RFC 3339 string, or None when ``text`` is not one."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.astimezone(datetime.UTC)
