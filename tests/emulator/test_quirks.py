"""Realism quirks: each off by default, each on by config, at run time, or by the admin API."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from doks_access_testkit.emulator import (
    DEMO_CLUSTER_IDS,
    QUIRKS,
    Emulator,
    EmulatorConfig,
    Fault,
)
from doks_access_testkit.emulator.quirks import parse_quirks
from tests.emulator.conftest import client_for

PROD = DEMO_CLUSTER_IDS["prod-cluster-01"]
LIST = "/v2/kubernetes/clusters"
KUBECONFIG = f"/v2/kubernetes/clusters/{PROD}/kubeconfig"
CREDENTIALS = f"/v2/kubernetes/clusters/{PROD}/credentials"


def test_the_known_quirks() -> None:
    assert set(QUIRKS) == {
        "no_links_on_single_page",
        "no_request_id_in_errors",
        "no_x_request_id",
        "zero_expiry_500",
    }
    assert EmulatorConfig().quirks == frozenset()


@pytest.mark.parametrize("names", [["no_links"], "zero_expiry_500", [3]])
def test_an_unknown_quirk_or_a_bare_string_is_refused(names: object) -> None:
    with pytest.raises(ValueError, match="quirk"):
        parse_quirks(names)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="quirk"):
        EmulatorConfig.from_dict({"quirks": names})


def test_an_unknown_quirk_in_python_config_fails_at_once() -> None:
    with pytest.raises(ValueError, match="unknown quirk"):
        EmulatorConfig(quirks=frozenset({"typo"}))


def test_a_config_file_names_quirks(tmp_path: Path) -> None:
    path = tmp_path / "emulator.yaml"
    path.write_text("quirks: [no_x_request_id, zero_expiry_500]\n")
    config = EmulatorConfig.from_yaml(path)
    assert config.quirks == {"no_x_request_id", "zero_expiry_500"}
    with Emulator(config=config) as emulator:
        assert emulator.quirks() == {"no_x_request_id", "zero_expiry_500"}


class TestNoLinksOnSinglePage:
    def test_off_a_single_page_has_empty_links(self, do_api: httpx.Client) -> None:
        assert do_api.get(LIST).json()["links"] == {}

    def test_on_a_single_page_has_no_links_key(
        self, do_api: httpx.Client, emulator: Emulator
    ) -> None:
        emulator.set_quirks(["no_links_on_single_page"])
        body = do_api.get(LIST).json()
        assert "links" not in body
        assert body["meta"] == {"total": 4}

    def test_on_several_pages_still_link(self, do_api: httpx.Client, emulator: Emulator) -> None:
        emulator.set_quirks(["no_links_on_single_page"])
        assert set(do_api.get(LIST, params={"per_page": 3}).json()["links"]["pages"]) == {
            "next",
            "last",
        }


class TestRequestIds:
    def test_off_errors_and_headers_carry_the_request_id(self, do_api: httpx.Client) -> None:
        refused = do_api.get(KUBECONFIG, params={"expiry_seconds": "-1"})
        assert refused.json()["request_id"] == refused.headers["x-request-id"]

    def test_no_request_id_in_errors_keeps_id_and_message_only(
        self, do_api: httpx.Client, emulator: Emulator
    ) -> None:
        emulator.set_quirks(["no_request_id_in_errors"])
        emulator.add_fault(Fault(kind="status", status=503, count=1, endpoint="list_clusters"))
        answers = [
            do_api.get(KUBECONFIG, params={"expiry_seconds": "-1"}),  # the endpoint's own 400
            do_api.get(LIST),  # an injected 503
            do_api.get(LIST, headers={"Authorization": "Bearer nope"}),  # a 401
            do_api.get("/v2/droplets"),  # no such route
        ]
        for answer in answers:
            assert set(answer.json()) == {"id", "message"}, answer.json()
            assert "x-request-id" in answer.headers

    def test_no_x_request_id_takes_the_header_away_from_every_answer(
        self, do_api: httpx.Client, emulator: Emulator
    ) -> None:
        emulator.set_quirks(["no_x_request_id"])
        good, bad = do_api.get(LIST), do_api.get(KUBECONFIG, params={"expiry_seconds": "x"})
        for answer in (good, bad):
            assert "x-request-id" not in answer.headers
            assert answer.headers["ratelimit-remaining"].isdigit()
        assert "request_id" in bad.json()  # the quirks are independent


class TestZeroExpiry500:
    @pytest.mark.parametrize("path", [KUBECONFIG, CREDENTIALS])
    def test_an_explicit_zero_is_a_500_and_mints_nothing(
        self, do_api: httpx.Client, emulator: Emulator, path: str
    ) -> None:
        emulator.set_quirks(["zero_expiry_500"])
        for zero in ("0", "00"):
            answer = do_api.get(path, params={"expiry_seconds": zero})
            assert answer.status_code == 500
            assert answer.json()["id"] == "server_error"
        assert emulator.issued_credentials() == []

    @pytest.mark.parametrize("params", [{}, {"expiry_seconds": ""}])
    def test_an_absent_expiry_still_means_seven_days(
        self, do_api: httpx.Client, emulator: Emulator, params: dict[str, str]
    ) -> None:
        emulator.set_quirks(["zero_expiry_500"])
        assert do_api.get(KUBECONFIG, params=params).status_code == 200
        (credential,) = emulator.issued_credentials()
        assert credential.expires_at - credential.issued_at == 7 * 24 * 3600

    def test_off_an_explicit_zero_means_seven_days(
        self, do_api: httpx.Client, emulator: Emulator
    ) -> None:
        assert do_api.get(CREDENTIALS, params={"expiry_seconds": "0"}).status_code == 200

    def test_a_malformed_expiry_is_still_a_400(
        self, do_api: httpx.Client, emulator: Emulator
    ) -> None:
        emulator.set_quirks(["zero_expiry_500"])
        assert do_api.get(KUBECONFIG, params={"expiry_seconds": "-0.5"}).status_code == 400


class TestSwitching:
    def test_set_quirks_replaces_the_whole_set(
        self, do_api: httpx.Client, emulator: Emulator
    ) -> None:
        assert emulator.set_quirks(["no_x_request_id"]) == {"no_x_request_id"}
        assert "x-request-id" not in do_api.get(LIST).headers
        assert emulator.set_quirks(()) == frozenset()
        assert "x-request-id" in do_api.get(LIST).headers
        with pytest.raises(ValueError, match="unknown quirk"):
            emulator.set_quirks(["typo"])
        assert emulator.quirks() == frozenset()

    def test_the_admin_api_reads_and_sets_them(
        self, admin: httpx.Client, do_api: httpx.Client
    ) -> None:
        assert admin.get("/_emulator/quirks").json() == {"quirks": [], "known": list(QUIRKS)}
        chosen = ["zero_expiry_500", "no_links_on_single_page"]
        response = admin.put("/_emulator/quirks", json={"quirks": chosen})
        assert response.status_code == 200
        assert response.json()["quirks"] == sorted(chosen)
        assert "links" not in do_api.get(LIST).json()
        assert admin.put("/_emulator/quirks", json={"quirks": []}).json()["quirks"] == []
        assert do_api.get(LIST).json()["links"] == {}

    @pytest.mark.parametrize(
        "body",
        [{"quirks": ["typo"]}, {"quirks": "zero_expiry_500"}, {"quirk": []}, ["zero_expiry_500"]],
    )
    def test_the_admin_api_refuses_a_bad_set_and_keeps_the_old(
        self, admin: httpx.Client, emulator: Emulator, body: object
    ) -> None:
        emulator.set_quirks(["no_x_request_id"])
        response = admin.put("/_emulator/quirks", json=body)
        assert (response.status_code, response.json()["id"]) == (400, "bad_request")
        assert emulator.quirks() == {"no_x_request_id"}

    def test_the_admin_api_needs_the_admin_token(self, emulator: Emulator) -> None:
        with client_for(emulator, None) as client:
            response = client.put("/_emulator/quirks", json={"quirks": ["no_x_request_id"]})
            assert response.status_code == 401
        assert emulator.quirks() == frozenset()
