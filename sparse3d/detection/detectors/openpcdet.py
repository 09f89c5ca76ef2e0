"""OpenPCDet checkpoints: a detector's weights read from, and written to, OpenPCDet's
checkpoint layout (``{"model_state": state_dict, "epoch", "it", "optimizer_state", "version"}``,
``module.`` prefixes of DDP stripped), with the sparse-conv weights in whichever spconv
layout they were saved (:func:`sparse3d.nn.spconv_compat.load_spconv_state_dict`)."""

from pathlib import Path

import torch
from torch import Tensor, nn

from sparse3d.io.atomic import save_torch_atomic
from sparse3d.nn.spconv_compat import load_spconv_state_dict

DDP_PREFIX = "module."


def openpcdet_model_state(source: str | Path | dict) -> dict[str, Tensor]:
    """The detector state dict of an OpenPCDet checkpoint file (or of its loaded dict, or
    of a bare state dict), without DDP's ``module.`` prefixes.

    Raises:
        ValueError: naming the file, when it holds no tensors under ``model_state``.
    """
    name = str(source) if not isinstance(source, dict) else "the checkpoint dict"
    checkpoint = torch.load(source, map_location="cpu", weights_only=True) if not isinstance(source, dict) else source
    state = checkpoint.get("model_state", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{name}: not an OpenPCDet checkpoint (expected a dict with a 'model_state' state dict of tensors)")
    return {k.removeprefix(DDP_PREFIX): v for k, v in state.items()}


def load_openpcdet_checkpoint(detector: nn.Module, source: str | Path | dict) -> None:
    """Loads an OpenPCDet checkpoint into ``detector`` name for name (strict: every key of
    the detector must be present and no other key may be).

    Raises:
        ValueError: not a checkpoint, or sparse-conv weights in no spconv layout.
        KeyError: naming the missing and unexpected keys (e.g. a checkpoint of another
            architecture or class list).
    """
    load_spconv_state_dict(detector, openpcdet_model_state(source))


def save_openpcdet_checkpoint(detector: nn.Module, path: str | Path, epoch: int = 0, it: int = 0) -> Path:
    """Writes ``detector``'s weights as an OpenPCDet checkpoint (spconv >= 2.2 KRSC
    layout; no optimizer state), atomically; returns the path."""
    state = {k: v.detach().cpu().clone() for k, v in detector.state_dict().items()}
    save_torch_atomic(Path(path), {"model_state": state, "epoch": epoch, "it": it, "optimizer_state": None, "version": "sparse3d"})
    return Path(path)
