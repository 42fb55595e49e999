"""Pagination like DigitalOcean's, and the cluster object's shape."""

from __future__ import annotations

import pytest

from doks_access_testkit.emulator.listing import cluster_resource, paginate, parse_page
from doks_access_testkit.emulator.state import Cluster

URL = "https://api.example/v2/kubernetes/clusters"


def test_one_page_has_no_links() -> None:
    items, links = paginate(list(range(3)), page=1, per_page=20, url=URL)
    assert items == [0, 1, 2]
    assert links == {}


def test_the_first_page_links_only_forward() -> None:
    items, links = paginate(list(range(45)), page=1, per_page=20, url=URL)
    assert items == list(range(20))
    assert links == {
        "pages": {
            "next": f"{URL}?page=2&per_page=20",
            "last": f"{URL}?page=3&per_page=20",
        }
    }


def test_a_middle_page_links_both_ways_and_keeps_per_page() -> None:
    items, links = paginate(list(range(45)), page=2, per_page=20, url=URL)
    assert items == list(range(20, 40))
    assert links["pages"] == {
        "first": f"{URL}?page=1&per_page=20",
        "prev": f"{URL}?page=1&per_page=20",
        "next": f"{URL}?page=3&per_page=20",
        "last": f"{URL}?page=3&per_page=20",
    }


def test_the_last_page_links_only_backward() -> None:
    items, links = paginate(list(range(45)), page=3, per_page=20, url=URL)
    assert items == list(range(40, 45))
    assert set(links["pages"]) == {"first", "prev"}
    assert links["pages"]["prev"] == f"{URL}?page=2&per_page=20"


def test_a_page_past_the_end_is_empty_and_points_back_to_the_last() -> None:
    items, links = paginate(list(range(5)), page=4, per_page=2, url=URL)
    assert items == []
    assert links["pages"] == {
        "first": f"{URL}?page=1&per_page=2",
        "prev": f"{URL}?page=3&per_page=2",
    }


def test_an_empty_collection_has_one_empty_page() -> None:
    assert paginate([], page=1, per_page=20, url=URL) == ([], {})


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, (1, 20)),
        ({"page": "3", "per_page": "7"}, (3, 7)),
        ({"per_page": "200"}, (1, 200)),
        ({"per_page": "1000"}, (1, 200)),
        ({"page": "", "per_page": ""}, (1, 20)),
    ],
)
def test_page_parameters_default_to_1_and_20_and_per_page_is_capped_at_200(
    query: dict[str, str], expected: tuple[int, int]
) -> None:
    assert parse_page(query) == expected


@pytest.mark.parametrize(
    "query", [{"page": "0"}, {"page": "-1"}, {"per_page": "x"}, {"page": "1.5"}]
)
def test_page_parameters_must_be_positive_integers(query: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="positive integer"):
        parse_page(query)


def test_a_cluster_carries_the_documented_fields_and_automatic_tags() -> None:
    cluster = Cluster(name="prod", region="ams3", id="bd5f5959-5e1e-4205-a714-a914373942af")
    resource = cluster_resource(cluster)
    assert (
        resource["endpoint"]
        == "https://bd5f5959-5e1e-4205-a714-a914373942af.k8s.ondigitalocean.com"
    )
    assert resource["tags"] == ["k8s", "k8s:bd5f5959-5e1e-4205-a714-a914373942af"]
    assert {"name", "region", "version", "node_pools"} <= set(resource)
    assert resource["status"] == {"state": "running"}
    assert resource == cluster_resource(cluster)  # derived ids are stable


def test_a_clusters_own_tags_follow_the_automatic_ones_once_each() -> None:
    cluster = Cluster(name="prod", tags=("production", "k8s", "team:a"))
    resource = cluster_resource(cluster)
    assert resource["tags"] == ["k8s", f"k8s:{cluster.id}", "production", "team:a"]
    assert resource["node_pools"][0]["tags"] == ["k8s", f"k8s:{cluster.id}", "k8s:worker"]


def test_without_tag_read_the_tags_key_is_absent_not_empty() -> None:
    cluster = Cluster(name="prod", tags=("production",))
    hidden = cluster_resource(cluster, show_tags=False)
    assert "tags" not in hidden
    assert hidden == {k: v for k, v in cluster_resource(cluster).items() if k != "tags"}


@pytest.mark.parametrize("tag", ["", "a b", "tab\there", "x" * 256, "a/b", "émoji", "a.b"])
def test_a_tag_digitalocean_would_refuse_is_refused(tag: str) -> None:
    with pytest.raises(ValueError, match="letters, numbers, colons, dashes or underscores"):
        Cluster(name="c", tags=(tag,))


def test_a_tag_may_use_every_allowed_character_up_to_255() -> None:
    tags = ("x" * 255, "Team_A:prod-01")
    assert Cluster(name="c", tags=tags).tags == tags
