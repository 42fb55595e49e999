"""The end-to-end tests run against the session's operator (see ``tests/running_operator.py``)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.import_plugin("tests.running_operator")
