"""Shared fixtures: the small synthetic object folders and the test-only method plugin."""

from pathlib import Path

import pytest
from clirun import PLUGINS, plugin_environment

from sparse3d.synthetic.objects import SyntheticObjectsConfig, write_synthetic_objects

SMALL = SyntheticObjectsConfig(objects=("torus",), resolution=48, num_test_views=4)
DENSE = SyntheticObjectsConfig(objects=("capsule",), resolution=32, num_test_views=2, num_dense_views=12, supersampling=1)


@pytest.fixture(scope="session")
def small_config() -> SyntheticObjectsConfig:
    """The config of :func:`synthetic_folder`: one object, 48 x 48, 9 + 4 views."""
    return SMALL


@pytest.fixture(scope="session")
def synthetic_folder(tmp_path_factory) -> Path:
    """The generated "torus" folder (read-only: copy it before corrupting files)."""
    return write_synthetic_objects(tmp_path_factory.mktemp("synthetic"), SMALL)[0]


@pytest.fixture(scope="session")
def dense_object(tmp_path_factory) -> Path:
    """A many-view "capsule" folder for the radiance fields: 32 x 32, 9 + 12 training views,
    2 held-out ones (read-only)."""
    return write_synthetic_objects(tmp_path_factory.mktemp("dense"), DENSE)[0]


@pytest.fixture
def plugin_env() -> dict[str, str]:
    """Environment for a subprocess that sees the test-only `fitcheck` method plugin."""
    return plugin_environment()


@pytest.fixture
def plugin_path(monkeypatch):
    """Makes the test-only `fitcheck` plugin importable and discoverable in this process."""
    monkeypatch.syspath_prepend(str(PLUGINS))
    return PLUGINS
