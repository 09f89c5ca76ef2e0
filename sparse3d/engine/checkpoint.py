"""Checkpoints of a run: ``<run>/ckpt/step-XXXXXX.pt``, written atomically and loaded with
``weights_only=True``."""

import re
from pathlib import Path
from typing import Any

import torch

from sparse3d.io.atomic import save_torch_atomic

_NAME = re.compile(r"^step-(\d{6,})\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read."""


def checkpoint_path(run_dir: Path, step: int) -> Path:
    """Where the checkpoint after ``step`` completed steps lives."""
    return Path(run_dir) / "ckpt" / f"step-{step:06d}.pt"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint in the run, oldest first."""
    folder = Path(run_dir) / "ckpt"
    if not folder.is_dir():
        return []
    found = ((_NAME.match(p.name), p) for p in folder.iterdir())
    return sorted((int(m.group(1)), p) for m, p in found if m)


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Writes ``state`` as the checkpoint of ``step``, then drops all but the ``keep`` newest
    (``keep`` = 0 keeps all)."""
    path = checkpoint_path(run_dir, step)
    save_torch_atomic(path, state)
    if keep > 0:
        for _, old in list_checkpoints(run_dir)[:-keep]:
            old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Reads a checkpoint (tensors and plain containers only: ``weights_only=True``)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or foreign files
        raise CheckpointError(f"{path}: not a readable sparse3d checkpoint ({err})") from err
