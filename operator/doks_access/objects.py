"""What the operator keeps of one DOClusterAccess between watch events: a small typed record.

A watched body is mostly what the operator never reads: ``managedFields`` (often the bulk of it),
the last-applied annotation, every label. Keeping bodies is what made memory grow with the number
of objects, so a body is turned into an :class:`AccessObject` as it arrives -- the identity, the
parsed spec (or why it is invalid), the refresh request and the typed status -- and dropped.

Reconciliation works on the record; the status a reconciliation writes replaces the record's
(:meth:`AccessObject.with_status`), and a watch event older than what the record already holds does
not undo it (:meth:`AccessObject.newer_than`): the daemon-era bug where a stale event made the
status and its event be written twice cannot come back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from doks_access import spec as specs
from doks_access.bookkeeping import REFRESH_REQUESTED_AT
from doks_access.status import Status

__all__ = ["AccessObject", "Key", "is_newer", "key_of"]

Key = tuple[str, str]  # namespace, name


@dataclasses.dataclass(frozen=True, slots=True)
class AccessObject:
    """One DOClusterAccess as the operator needs it (never its whole body)."""

    namespace: str
    name: str
    uid: str
    generation: int
    resource_version: str
    refresh_request: str | None  # the doks-access.dev/refresh-requested-at annotation
    spec: specs.AccessSpec | None  # None: invalid, see ``spec_error``
    spec_error: str | None
    status: Status
    deleting: bool  # metadata.deletionTimestamp is set

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)

    @classmethod
    def from_body(
        cls, body: Mapping[str, object], *, known: AccessObject | None = None
    ) -> AccessObject:
        """The record of ``body``; the spec is parsed again only for a new generation (``known``
        is the record kept so far)."""
        metadata = _mapping(body.get("metadata"))
        annotations = _mapping(metadata.get("annotations"))
        generation = metadata.get("generation")
        uid = str(metadata.get("uid") or "")
        record = cls(
            namespace=str(metadata.get("namespace") or ""),
            name=str(metadata.get("name") or ""),
            uid=uid,
            generation=generation if isinstance(generation, int) else 0,
            resource_version=str(metadata.get("resourceVersion") or ""),
            refresh_request=_text(annotations.get(REFRESH_REQUESTED_AT)),
            spec=None,
            spec_error=None,
            status=Status.from_dict(_mapping(body.get("status"))),
            deleting=metadata.get("deletionTimestamp") is not None,
        )
        if known is not None and known.uid == uid and known.generation == record.generation:
            return dataclasses.replace(record, spec=known.spec, spec_error=known.spec_error)
        try:
            return dataclasses.replace(record, spec=specs.parse_spec(body))
        except specs.InvalidSpecError as exc:
            return dataclasses.replace(record, spec_error=str(exc))

    def news(self, known: AccessObject | None) -> bool:
        """Whether this version deserves a reconciliation that ``known`` did not get: a new
        object, a new spec, a new refresh request. Status writes (ours) are no news."""
        return (
            known is None
            or known.uid != self.uid
            or known.generation != self.generation
            or known.refresh_request != self.refresh_request
        )

    def newer_than(self, other: AccessObject) -> bool:
        """Whether this is a later version of the same object than ``other``.

        resourceVersions are compared as numbers, which they are on every etcd-backed API server;
        should one not be, the newcomer wins, as a watch event would.
        """
        return is_newer((self.uid, self.resource_version), than=(other.uid, other.resource_version))

    def with_status(self, status: Status, *, resource_version: str) -> AccessObject:
        """This record after our own status write, which the API server answered with
        ``resource_version``."""
        return dataclasses.replace(self, status=status, resource_version=resource_version)

    @property
    def default_secret_name(self) -> str:
        """Where the credential goes when the spec cannot say (it is invalid)."""
        return self.status.secret_name or f"{self.name}-kubeconfig"


def is_newer(version: tuple[str, str], *, than: tuple[str, str]) -> bool:
    """Whether ``version`` (uid, resourceVersion) is a later one than ``than``: another object
    (a new uid) always is; resourceVersions are compared as numbers, which they are on every
    etcd-backed API server, and should one not be, the newcomer wins, as a watch event would."""
    (uid, mine), (other_uid, theirs) = version, than
    if uid != other_uid:
        return True
    if mine.isdigit() and theirs.isdigit():
        return int(mine) > int(theirs)
    return True


def key_of(body: Mapping[str, object]) -> Key:
    metadata = _mapping(body.get("metadata"))
    return (str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
