"""Fixtures of the method tests."""

from pathlib import Path

import pytest
from tiny_detectors import write_tiny_world


@pytest.fixture(scope="session")
def lidar_world(tmp_path_factory) -> Path:
    """The tiny synthetic nuScenes world of :mod:`tiny_detectors` (read-only)."""
    return write_tiny_world(tmp_path_factory.mktemp("lidar_world"))
