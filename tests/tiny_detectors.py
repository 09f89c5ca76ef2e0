"""The tiny synthetic world and the tiny networks the LiDAR detector tests train (a plain
module: the DDP test imports it in its torchrun processes too)."""

from pathlib import Path

from sparse3d.engine.config import update_config
from sparse3d.engine.registry import discover_methods
from sparse3d.synthetic.lidar import SpinningLidarConfig
from sparse3d.synthetic.nuscenes import NuScenesSynthConfig, write_synthetic_nuscenes

CLASSES = ("car", "truck", "construction_vehicle", "bus", "trailer", "barrier", "motorcycle", "bicycle", "pedestrian",
           "traffic_cone")
DATA = {"num_sweeps": 2, "point_cloud_range": [-25.6, -25.6, -5.0, 25.6, 25.6, 3.0],
        # the tiny world's objects are seen by few points
        "gt_sampling": {"min_points": [f"{n}:1" for n in CLASSES]}}
TRAINING = {"batch_size": 2, "eval_batch_size": 3, "optim": {"lr": 3e-3}}
MODELS = {
    "centerpoint": {"voxel_size": [0.2, 0.2, 0.25], "encoder_channels": [4, 8, 8, 16],
                    "bev": {"layer_nums": [1, 1], "num_filters": [16, 16], "num_upsample_filters": [16, 16]},
                    "head": {"shared_channels": 8}},
    # over the cpu preset: 128 x 128 pillars of 0.4 m, width 16, sets of 32 in 16 x 16 windows
    "dsvt": {"vfe_filters": [16, 16], "num_heads": 2, "ffn_channels": 32, "window": [16, 16, 1],
             "window_shift": [8, 8, 0], "set_size": 32,
             "bev": {"num_filters": [16, 16, 16], "num_upsample_filters": [16, 16, 16]},
             "head": {"shared_channels": 8}},
}
NO_AUGMENTATION = {"cbgs": False, "gt_sampling": {"enabled": False},
                   "augment": {"flip_axes": [], "rotation_range": [0.0, 0.0], "scale_range": [1.0, 1.0],
                               "translation_std": [0.0, 0.0, 0.0]}}
"""Data settings that feed each training sample as it is (with ``val_split`` = the training
split, a short run must fit what it saw)."""


def write_tiny_world(root: Path) -> Path:
    """2 scenes of 3 keyframes, one sweep between keyframes, 16 objects each, a 16-beam LiDAR."""
    lidar = SpinningLidarConfig(num_beams=16, azimuth_steps=540, max_range=40.0)
    config = NuScenesSynthConfig(seed=3, num_scenes=2, samples_per_scene=3, sweeps_per_sample=1, objects_per_scene=16,
                                 lidar=lidar)
    return write_synthetic_nuscenes(root, config)


def tiny_config(method: str, world: Path, out: Path, steps: int, data: dict | None = None, **changes):
    """``method``'s cpu preset with the tiny network, on ``world``, writing to ``out``: ``steps``
    steps, no periodic evaluation; ``data`` updates the tiny data settings, ``changes`` any
    other section."""
    config = discover_methods()[method].default_config("cpu")
    tiny = {"datamanager": {**DATA, **(data or {})}, "training": TRAINING, "model": MODELS[method]}
    config = update_config(config, {**tiny, **changes}, "test")
    config.data, config.output = world, out
    config.trainer.max_steps, config.trainer.eval_every, config.trainer.progress = steps, 0, False
    return config
