"""Which injected faults strike which request: scoping, counts, seeded randomness, validation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from doks_access_testkit.emulator.faults import Fault, FaultPlan


def test_a_fault_without_endpoint_applies_to_every_endpoint_until_removed() -> None:
    plan = FaultPlan(faults=[Fault(kind="status", status=503)])
    for endpoint in ("list_clusters", "get_cluster", "kubeconfig", "credentials"):
        taken = plan.take_status(endpoint)
        assert taken is not None
        assert taken.status == 503
    assert len(plan.faults()) == 1


def test_a_scoped_fault_leaves_other_endpoints_alone() -> None:
    plan = FaultPlan(faults=[Fault(kind="status", status=500, endpoint="kubeconfig")])
    assert plan.take_status("list_clusters") is None
    assert plan.take_status("kubeconfig") is not None


def test_a_counted_fault_strikes_that_many_times_then_disappears() -> None:
    plan = FaultPlan(faults=[Fault(kind="status", status=429, count=2, retry_after=7)])
    assert plan.faults()[0].count == 2
    assert plan.take_status("kubeconfig") is not None
    assert plan.faults()[0].count == 1
    assert plan.take_status("kubeconfig") is not None
    assert plan.take_status("kubeconfig") is None
    assert plan.faults() == []


def test_the_error_rate_is_reproducible_with_a_seed() -> None:
    def pattern(seed: int) -> list[bool]:
        plan = FaultPlan(faults=[Fault(kind="error_rate", probability=0.5)], seed=seed)
        return [plan.take_status("credentials") is not None for _ in range(200)]

    assert pattern(1) == pattern(1)
    assert pattern(1) != pattern(2)
    assert 60 < sum(pattern(1)) < 140


def test_error_rate_extremes_and_default_status() -> None:
    never = FaultPlan(faults=[Fault(kind="error_rate", probability=0.0)])
    assert all(never.take_status("kubeconfig") is None for _ in range(50))
    always = FaultPlan(faults=[Fault(kind="error_rate", probability=1.0)])
    taken = always.take_status("kubeconfig")
    assert taken is not None
    assert taken.error_status == 500


def test_latencies_add_up_and_drop_or_hang_is_the_action() -> None:
    plan = FaultPlan(
        faults=[
            Fault(kind="latency", seconds=0.25),
            Fault(kind="latency", seconds=0.5, endpoint="kubeconfig"),
            Fault(kind="hang", seconds=9, count=1),
        ]
    )
    first = plan.take_network("kubeconfig")
    assert (first.delay, first.action, first.hang_seconds) == (0.75, "hang", 9)
    second = plan.take_network("list_clusters")
    assert (second.delay, second.action) == (0.25, None)


def test_body_faults_only_touch_the_credential_endpoints() -> None:
    plan = FaultPlan(faults=[Fault(kind="malformed_body"), Fault(kind="exec_kubeconfig")])
    assert plan.take_body("list_clusters") == ()
    assert [f.kind for f in plan.take_body("credentials")] == ["malformed_body"]
    assert [f.kind for f in plan.take_body("kubeconfig")] == ["malformed_body", "exec_kubeconfig"]


def test_removing_or_clearing_changes_the_generation_but_using_up_does_not() -> None:
    plan = FaultPlan()
    hang = plan.add(Fault(kind="hang", count=1))
    start = plan.generation
    plan.take_network("kubeconfig")
    assert plan.generation == start  # used up: a hung request keeps hanging
    other = plan.add(Fault(kind="drop"))
    assert plan.remove(other.id)
    assert not plan.remove(hang.id)
    assert plan.generation == start + 2
    plan.clear()
    assert plan.generation == start + 3


def test_faults_get_ids_and_ids_are_unique() -> None:
    plan = FaultPlan()
    first, second = plan.add(Fault(kind="drop")), plan.add(Fault(kind="drop"))
    assert first.id != second.id
    assert plan.add(Fault(kind="drop", id="mine")).id == "mine"
    with pytest.raises(ValueError, match="exists already"):
        plan.add(Fault(kind="drop", id="mine"))


def test_a_fault_round_trips_through_its_dict_form() -> None:
    fault = Fault(kind="status", status=503, endpoint="credentials", count=3, id="x")
    assert Fault.from_dict(fault.to_dict()) == fault
    assert fault.to_dict() == {
        "kind": "status",
        "status": 503,
        "endpoint": "credentials",
        "count": 3,
        "id": "x",
    }


def test_a_status_fault_carries_its_message_through_the_dict_form() -> None:
    message = "expiry_seconds must be at most 604800"
    fault = Fault.from_dict({"kind": "status", "status": 422, "message": message})
    assert fault.message == message
    assert fault.to_dict() == {"kind": "status", "status": 422, "message": message}
    rate = Fault(kind="error_rate", probability=0.5, message="flaky")
    assert Fault.from_dict(rate.to_dict()) == rate


@pytest.mark.parametrize("body", ["text: é", b"\x00\xff binary"], ids=["text", "bytes"])
def test_a_body_fault_round_trips_through_json(body: str | bytes) -> None:
    fault = Fault(kind="body", body=body, content_type="text/html", endpoint="kubeconfig")
    assert Fault.from_dict(json.loads(json.dumps(fault.to_dict()))) == fault


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"kind": "earthquake"}, "unknown fault kind"),
        ({"kind": "drop", "endpoint": "droplets"}, "unknown endpoint"),
        ({"kind": "drop", "count": 0}, "count must be at least 1"),
        ({"kind": "latency"}, "needs seconds"),
        ({"kind": "status"}, "needs a status"),
        ({"kind": "status", "status": 200}, "4xx or 5xx"),
        ({"kind": "error_rate", "probability": 1.5}, "between 0 and 1"),
        ({"kind": "exec_kubeconfig", "endpoint": "credentials"}, "kubeconfig only"),
        (
            {"kind": "malformed_body", "endpoint": "get_cluster"},
            "credentials or kubeconfig or list",
        ),
        ({"kind": "status", "status": "500"}, "wrong type"),
        ({"kind": "drop", "colour": "red"}, "unknown fault field"),
        ({"status": 500}, "needs a kind"),
        ({"kind": "body"}, "needs a body"),
        ({"kind": "body", "body": "x", "body_base64": "eA=="}, "not both"),
        ({"kind": "body", "body_base64": "not base64!"}, "not valid base64"),
        ({"kind": "body", "body": "x", "content_type": "a\r\nx-injected: 1"}, "on one line"),
        ({"kind": "drop", "content_type": "text/html"}, "body faults only"),
        ({"kind": "body", "body": "x", "endpoint": "get_cluster"}, "kubeconfig or list_clusters"),
        ({"kind": "oversized_body", "endpoint": "list_clusters"}, "credentials or kubeconfig"),
        ({"kind": "drop", "message": "x"}, "status and error_rate faults only"),
        ({"kind": "status", "status": 422, "message": ""}, "not empty"),
        ({"kind": "status", "status": 422, "message": 7}, "wrong type"),
    ],
)
def test_invalid_faults_are_refused_with_a_reason(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Fault.from_dict(data)
