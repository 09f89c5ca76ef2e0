"""The native extension loads, and without it sparse3d says so and falls back to torch."""

import os
import subprocess
import sys

import sparse3d

# Runs before `import sparse3d` in a fresh interpreter: None in sys.modules makes any
# import of sparse3d._C fail, as a missing or broken build would.
_HIDE_NATIVE = "import sys; sys.modules['sparse3d._C'] = None\n"
_USE_OPS = (
    "import torch, sparse3d\n"
    "from sparse3d.core.segment import segment_reduce\n"
    "out = segment_reduce(torch.ones(3, 2), torch.tensor([0, 1, 3]), 'sum')\n"
    "print('native', sparse3d.HAS_NATIVE, out[:, 0].tolist())\n"
)


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "SPARSE3D_REQUIRE_NATIVE"} | env
    return subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True)


def test_native_extension_is_loaded_when_required():
    if os.environ.get("SPARSE3D_REQUIRE_NATIVE") == "1":
        assert sparse3d.HAS_NATIVE
    assert _python(_USE_OPS).stdout.startswith(f"native {sparse3d.HAS_NATIVE}")


def test_missing_extension_warns_and_falls_back():
    result = _python(_HIDE_NATIVE + _USE_OPS)
    assert result.returncode == 0, result.stderr
    assert "native extension sparse3d._C could not be loaded" in result.stderr
    assert "falling back to the pure-torch reference ops" in result.stderr
    assert result.stdout.strip() == "native False [1.0, 2.0]"


def test_missing_extension_is_an_error_when_required():
    result = _python(_HIDE_NATIVE + _USE_OPS, SPARSE3D_REQUIRE_NATIVE="1")
    assert result.returncode != 0
    assert "NativeExtensionError" in result.stderr and "SPARSE3D_REQUIRE_NATIVE=1" in result.stderr
