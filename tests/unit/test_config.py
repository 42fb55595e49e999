"""Operator settings come from flags, else DOKS_ACCESS_* environment variables, else defaults."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from doks_access import config, digitalocean


def _load(argv: list[str]) -> config.OperatorConfig:
    parser = argparse.ArgumentParser()
    config.add_run_arguments(parser)
    return config.from_arguments(parser.parse_args(argv))


def test_defaults_watch_everything_against_the_real_api(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NAMESPACES", "DIGITALOCEAN_API_URL", "KUBECONFIG", "LOG_FORMAT"):
        monkeypatch.delenv(f"DOKS_ACCESS_{name}", raising=False)
    loaded = _load([])
    assert loaded.namespaces == ()
    assert loaded.digitalocean_api_url == digitalocean.DEFAULT_BASE_URL
    assert loaded.log_format == "text"
    assert loaded.rate_limits == digitalocean.RateLimits()


def test_environment_variables_configure_every_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOKS_ACCESS_NAMESPACES", "platform,ci")
    monkeypatch.setenv("DOKS_ACCESS_DIGITALOCEAN_API_URL", "https://proxy.internal")
    monkeypatch.setenv("DOKS_ACCESS_DIGITALOCEAN_CA_FILE", "/etc/proxy/ca.crt")
    monkeypatch.setenv("DOKS_ACCESS_RATE_LIMIT_PER_MINUTE", "100")
    monkeypatch.setenv("DOKS_ACCESS_RATE_LIMIT_MARGIN", "0.5")
    monkeypatch.setenv("DOKS_ACCESS_LOG_FORMAT", "json")
    monkeypatch.setenv("DOKS_ACCESS_LIVENESS_ENDPOINT", "http://0.0.0.0:8080/healthz")

    loaded = _load([])

    assert loaded.namespaces == ("platform", "ci")
    assert loaded.digitalocean_api_url == "https://proxy.internal"
    assert loaded.digitalocean_ca_file == Path("/etc/proxy/ca.crt")
    assert loaded.rate_limits.minute_budget == 50
    assert loaded.log_format == "json"
    assert loaded.liveness_endpoint == "http://0.0.0.0:8080/healthz"


def test_flags_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOKS_ACCESS_NAMESPACES", "ignored")
    monkeypatch.setenv("DOKS_ACCESS_LOG_LEVEL", "WARNING")

    loaded = _load(["--namespace=a", "--namespace=b", "--namespace=a", "--log-level=DEBUG"])

    assert loaded.namespaces == ("a", "b")
    assert loaded.log_level == "DEBUG"


def test_the_number_of_workers_comes_from_the_flag_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DOKS_ACCESS_WORKERS", raising=False)
    assert _load([]).workers == config.DEFAULT_WORKERS

    monkeypatch.setenv("DOKS_ACCESS_WORKERS", "3")
    assert _load([]).workers == 3
    assert _load(["--workers=12"]).workers == 12


def test_boolean_environment_values_read_like_yaml_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    for text, expected in [("true", True), ("True", True), ("1", True), ("false", False)]:
        monkeypatch.setenv("DOKS_ACCESS_LEADER_ELECTION", text)
        assert _load([]).leader_election is expected
