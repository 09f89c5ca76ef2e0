"""Shared fixtures."""

import pytest

from clirun import PLUGINS, plugin_environment


@pytest.fixture
def plugin_env() -> dict[str, str]:
    """Environment for a subprocess that sees the test-only `fitcheck` method plugin."""
    return plugin_environment()


@pytest.fixture
def plugin_path(monkeypatch):
    """Makes the test-only `fitcheck` plugin importable and discoverable in this process."""
    monkeypatch.syspath_prepend(str(PLUGINS))
    return PLUGINS
