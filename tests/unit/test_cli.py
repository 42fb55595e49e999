"""The ``doks-access`` command answers --version and --help, also as ``python -m doks_access``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from doks_access import __version__, cli


def test_version_names_the_program_and_the_installed_version(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"doks-access {__version__}\n"


def test_the_version_is_the_distribution_metadata_version() -> None:
    from importlib import metadata

    assert __version__ == metadata.version("doks-access-operator")


def test_help_describes_the_program(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])
    assert exited.value.code == 0
    assert "DigitalOcean Kubernetes" in capsys.readouterr().out


def test_no_arguments_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "usage: doks-access" in capsys.readouterr().err


def test_python_dash_m_runs_the_same_command() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "doks_access", "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert completed.stdout == f"doks-access {__version__}\n"


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("DOKS_ACCESS_RATE_LIMIT_PER_MINUTE", "abc", "'abc' is not a whole number"),
        ("DOKS_ACCESS_RATE_LIMIT_PER_HOUR", "0", "'0' is not at least 1"),
        ("DOKS_ACCESS_RATE_LIMIT_MARGIN", "1.5", "'1.5' is not a fraction"),
        ("DOKS_ACCESS_WORKERS", "many", "'many' is not a whole number"),
        ("DOKS_ACCESS_LEADER_ELECTION", "maybe", "'maybe' is not true or false"),
        ("DOKS_ACCESS_LOG_LEVEL", "LOUD", "'LOUD' is not one of DEBUG, INFO, WARNING, ERROR"),
        ("DOKS_ACCESS_METRICS_ENDPOINT", "0.0.0.0:9090", "is not of the form http://HOST:PORT"),
    ],
)
def test_a_bad_environment_value_is_a_usage_error_naming_the_variable(
    variable: str, value: str, problem: str
) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "doks_access", "--version"],
        env={**os.environ, variable: value},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    assert completed.stderr.startswith("usage: doks-access run")
    assert f"error: environment variable {variable}: " in completed.stderr
    assert problem in completed.stderr


@pytest.mark.parametrize(
    ("flag", "problem"),
    [
        ("--workers=0", "argument --workers: '0' is not at least 1"),
        ("--rate-limit-per-minute=-5", "argument --rate-limit-per-minute: '-5' is not at least 1"),
        ("--liveness-endpoint=:8080", "argument --liveness-endpoint: ':8080' is not of the form"),
    ],
)
def test_a_bad_flag_is_a_usage_error_naming_the_flag(
    flag: str, problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["run", flag])

    assert exited.value.code == 2
    assert problem in capsys.readouterr().err
