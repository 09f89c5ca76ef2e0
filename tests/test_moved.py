"""Old import paths of moved public modules still work for one release, with a warning
that names the new home."""

import importlib
import sys

import pytest

from sparse3d._moved import MOVED


@pytest.mark.parametrize("old, new", sorted(MOVED.items()))
def test_old_path_warns_and_gives_the_new_module(old, new):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)


@pytest.mark.parametrize("name", ["dsvt_p_nuscenes", "dsvt_v_waymo"])
def test_old_dsvt_preset_functions_warn_and_give_the_yaml_presets(name):
    import sparse3d.nn.dsvt as dsvt

    with pytest.warns(DeprecationWarning, match=rf"dsvt_preset\('{name}'\)"):
        old = getattr(dsvt, name)
    assert old() == dsvt.dsvt_preset(name)
