"""Hostile and malformed input: hypothesis profiles, and the session's operator.

Two profiles, chosen with ``HYPOTHESIS_PROFILE``: ``default`` (the regular suite: few examples,
derandomized so that CI sees the same inputs on every run, nothing written to a database) and
``long`` (hundreds of examples, random, for a separate run whose figures go into a report).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, Phase, settings

# Generating a 200 KiB annotation or a 1 MiB kubeconfig is deliberate, not a slow strategy.
_SLOW_DATA = [HealthCheck.too_slow, HealthCheck.large_base_example, HealthCheck.data_too_large]

settings.register_profile(
    "default",
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    # A failing cluster example costs a timeout per shrinking step; the first one found is shown.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=_SLOW_DATA,
)
settings.register_profile(
    "long",
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=_SLOW_DATA,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.import_plugin("tests.running_operator")
