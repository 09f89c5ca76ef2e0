"""Small splat runs and free ports for the viewer's tests."""

import socket

from sparse3d.engine.distributed import World
from sparse3d.engine.registry import discover_methods
from sparse3d.engine.trainer import Trainer


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_splat(data, out, steps):
    """Trains (or continues) a 300-Gaussian splat run on ``data`` to ``steps`` steps, a checkpoint every 2."""
    config = discover_methods()["splat"].default_config()
    config.data, config.output = data, out
    config.trainer.max_steps, config.trainer.ckpt_every, config.trainer.progress = steps, 2, False
    config.model.num_random = 300
    Trainer(config, "splat", out, World()).train()
