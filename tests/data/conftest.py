"""A small synthetic object folder (all three formats), generated once per test session."""

from pathlib import Path

import pytest

from sparse3d.data.synthetic import SyntheticObjectsConfig, write_synthetic_objects

SMALL = SyntheticObjectsConfig(objects=("torus",), resolution=48, num_test_views=4)


@pytest.fixture(scope="session")
def small_config() -> SyntheticObjectsConfig:
    """The config of :func:`synthetic_folder`: one object, 48 x 48, 9 + 4 views."""
    return SMALL


@pytest.fixture(scope="session")
def synthetic_folder(tmp_path_factory) -> Path:
    """The generated "torus" folder (read-only: copy it before corrupting files)."""
    return write_synthetic_objects(tmp_path_factory.mktemp("synthetic"), SMALL)[0]
