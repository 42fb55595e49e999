"""The ``doks-access`` command answers --version and --help, also as ``python -m doks_access``."""

from __future__ import annotations

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
