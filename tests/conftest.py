"""Shared fixtures (the small synthetic object folders, the test-only method plugin) and
the `cuda` marker: CUDA tests skip without a usable GPU, except under
SPARSE3D_REQUIRE_CUDA=1 (`make test-cuda`), where the run refuses to start without one and
a CUDA test that skips fails."""

import os
from pathlib import Path

import pytest
from clirun import PLUGINS, plugin_environment
from devices import cuda_unavailable

from sparse3d.synthetic.objects import SyntheticObjectsConfig, write_synthetic_objects

SMALL = SyntheticObjectsConfig(objects=("torus",), resolution=48, num_test_views=4)
DENSE = SyntheticObjectsConfig(objects=("capsule",), resolution=32, num_test_views=2, num_dense_views=12, supersampling=1)
REQUIRE_CUDA = os.environ.get("SPARSE3D_REQUIRE_CUDA") == "1"


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "cuda: needs a CUDA device and the extension's CUDA kernels; skipped without them, "
        "run by `make test-cuda` (SPARSE3D_REQUIRE_CUDA=1 -m cuda), where they must not skip",
    )
    if REQUIRE_CUDA and (reason := cuda_unavailable()) is not None:
        raise pytest.UsageError(f"SPARSE3D_REQUIRE_CUDA=1, but the CUDA tests cannot run here: {reason}")


def pytest_collection_modifyitems(config, items):
    reason = cuda_unavailable()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"needs CUDA: {reason}")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Under SPARSE3D_REQUIRE_CUDA=1 a `cuda` test that skips (a missing gsplat, a CUDA
    build of spconv, any skipif) is reported as failed, so nothing passes by not running."""
    report = yield
    if REQUIRE_CUDA and report.skipped and not hasattr(report, "wasxfail") and item.get_closest_marker("cuda") is not None:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"SPARSE3D_REQUIRE_CUDA=1: this cuda test skipped, which counts as a failure: {reason}"
    return report


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
