"""A cluster name resolves to exactly one ID, or to a clear error."""

from __future__ import annotations

import pytest

from doks_access.digitalocean import Cluster
from doks_access.lookup import ClusterNameError, cluster_id_for

A = "bd5f5959-5e1e-4205-a714-a914373942af"
B = "0c8d5a27-3f61-4b6c-9a55-6f3e2d1b7c40"
C = "5f2b7e0a-91d4-4c3e-8b6a-2d9c4e1f0a83"


def _cluster(cluster_id: str, name: str) -> Cluster:
    return Cluster(id=cluster_id, name=name, region="nyc1", endpoint=f"https://{cluster_id}.k8s")


def test_an_exact_name_gives_its_id() -> None:
    clusters = [_cluster(A, "prod"), _cluster(B, "prod-2"), _cluster(C, "staging")]
    assert cluster_id_for("prod", clusters) == A


@pytest.mark.parametrize("name", ["Prod", "prod ", "pro", ""])
def test_only_an_exact_match_counts(name: str) -> None:
    with pytest.raises(ClusterNameError, match="no cluster named") as raised:
        cluster_id_for(name, [_cluster(A, "prod")])
    assert raised.value.ambiguous is False


def test_a_name_used_twice_is_ambiguous_and_names_both_ids() -> None:
    with pytest.raises(ClusterNameError) as raised:
        cluster_id_for("prod", [_cluster(B, "prod"), _cluster(C, "x"), _cluster(A, "prod")])
    assert raised.value.ambiguous is True
    assert f"{B}, {A}" in str(raised.value)  # sorted, so the message is stable
