"""Small strivec and tensorf runs for the tests of the radiance-field methods and their viewer."""

from pathlib import Path

from sparse3d.engine.registry import discover_methods
from sparse3d.fields.strivec import StrivecFieldConfig


def field_run_config(method: str, data: Path, out: Path, steps: int):
    """A strivec or tensorf config small enough to learn the tiny many-view object within
    a few dozen steps (conftest's ``dense_object``), trained into ``out``."""
    config = discover_methods()[method].default_config()
    config.data, config.output = data, out
    t = config.trainer
    t.max_steps, t.progress, t.log_every, t.eval_every, t.ckpt_every = steps, False, 5, 0, steps
    r = config.render
    # A higher rate than the preset's: the tiny fields must learn within a few dozen steps.
    r.batch_rays, r.alpha_mask_steps, r.occupancy_voxel, r.eval_chunk, r.lr = 512, (2 * steps // 3,), 0.1, 4096, 0.1
    if method == "strivec":
        config.model.tensors = StrivecFieldConfig(
            dims=(5, 4, 3), final_dims=(9, 7, 5), density_components=(4, 4, 4), app_components=(4, 4, 4), app_dim=8, hidden=16
        )
        config.model.coarse.steps, config.model.coarse.voxels = 30, 24**3
    else:
        vm = config.model.vm
        vm.voxels, vm.final_voxels, vm.density_components, vm.app_components, vm.app_dim, vm.hidden = 16**3, 24**3, 4, 4, 8, 16
    config.model.upsample_steps = (steps // 4, steps // 2)
    return config
