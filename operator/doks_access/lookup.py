"""``spec.clusterName``: which cluster a name means, as doctl decides it (pure).

DigitalOcean's API has no filter by name, so the caller lists every cluster the token can see and
this module picks the one whose name matches exactly. No match and several matches are both
errors that need a human: guessing would hand out a credential for the wrong cluster.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class Cluster(Protocol):
    """What a cluster listing says about each cluster (``digitalocean.Cluster`` has it)."""

    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...


class ClusterNameError(Exception):
    """The name matches no cluster, or several; ``ambiguous`` says which."""

    def __init__(self, message: str, *, ambiguous: bool) -> None:
        super().__init__(message)
        self.ambiguous = ambiguous


def cluster_id_for(name: str, clusters: Iterable[Cluster]) -> str:
    """The ID of the one cluster called exactly ``name`` (case and spaces matter)."""
    matches = sorted(cluster.id for cluster in clusters if cluster.name == name)
    if not matches:
        raise ClusterNameError(
            f"no cluster named {name!r} is visible to this API token", ambiguous=False
        )
    if len(matches) > 1:
        raise ClusterNameError(
            f"{len(matches)} clusters are named {name!r}: {', '.join(matches)}; "
            "set spec.clusterID to one of them",
            ambiguous=True,
        )
    return matches[0]
