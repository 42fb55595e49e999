"""The refusal filter the RBAC tests use: other suites' leftovers never count, ours always do."""

from tests.chart.operator_as import refusals

OURS = {"test-0123456789"}


def test_a_refusal_about_our_namespace_counts() -> None:
    entry = "[test-0123456789/prod] Failed to post an event. Code: 403. Forbidden"
    assert refusals([entry], ours=OURS) == [entry]


def test_a_refusal_naming_no_namespace_counts() -> None:
    entry = "Request to /apis/doks-access.dev/v1alpha1/clusterdoaccounts failed: 403 Forbidden"
    assert refusals([entry], ours=OURS) == [entry]


def test_refusals_in_other_tests_or_bench_namespaces_do_not_count() -> None:
    entries = [
        "[test-abcdefabcd/prod] Failed to post an event. Code: 403. Forbidden",
        "[bench-fleet/c-0001] Failed to post an event. Code: 403. Forbidden",
        "[bench-latency/x] events is forbidden: namespace bench-latency is being terminated",
    ]
    assert refusals(entries, ours=OURS) == []


def test_entries_that_are_not_refusals_never_count() -> None:
    assert refusals(["[test-0123456789/prod] Ready"], ours=OURS) == []
