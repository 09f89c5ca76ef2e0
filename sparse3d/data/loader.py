"""One entry point for multi-view data: detect the format of a folder and read it."""

from pathlib import Path
from typing import Literal, get_args

from sparse3d.data.blender import read_blender
from sparse3d.data.colmap import find_model_dir, read_colmap
from sparse3d.data.dataset import MultiViewDataset
from sparse3d.data.nerfstudio import read_nerfstudio
from sparse3d.data.splits import sparse_split

DataFormat = Literal["auto", "nerfstudio", "blender", "colmap", "colmap-bin", "colmap-txt"]
"""The names of the multi-view formats (what ``datamanager.format`` accepts): "auto"
detects the format (:func:`detect_format`); "colmap" reads the binary COLMAP model when
there is one, else the text one; "colmap-bin" / "colmap-txt" force that encoding."""
DATA_FORMATS: tuple[str, ...] = get_args(DataFormat)
_COLMAP_MODEL_FORMATS = {"colmap": "auto", "colmap-bin": "bin", "colmap-txt": "txt"}


def detect_format(root: Path) -> str:
    """ "nerfstudio" (transforms.json), "blender" (transforms_train.json) or "colmap"
    (cameras.{bin,txt} in sparse/0, sparse or the root), checked in that order."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root}")
    if (root / "transforms.json").is_file():
        return "nerfstudio"
    if (root / "transforms_train.json").is_file():
        return "blender"
    try:
        find_model_dir(root)
    except FileNotFoundError:
        raise ValueError(
            f"{root}: no multi-view data found (expected transforms.json, transforms_train.json, "
            "or a COLMAP model in sparse/0)"
        ) from None
    return "colmap"


def load_multiview(
    root: Path, data_format: DataFormat = "auto", num_train_views: int | None = None
) -> MultiViewDataset:
    """Reads the multi-view data set in folder ``root``.

    Args:
        data_format: one of :data:`DATA_FORMATS`: the format, or "auto" to detect it
            (:func:`detect_format`); "colmap-bin" / "colmap-txt" force one COLMAP model
            encoding.
        num_train_views: use ``sparse_<k>.txt`` / ``sparse_test.txt`` in ``root`` as the
            split (the sparse-view protocol); None keeps the format's own split.
    """
    if data_format not in DATA_FORMATS:
        valid = ", ".join(DATA_FORMATS)
        raise ValueError(f"load_multiview: unknown data_format {data_format!r}; valid formats: {valid}")
    root = Path(root)
    fmt = detect_format(root) if data_format == "auto" else data_format
    if fmt == "nerfstudio":
        data = read_nerfstudio(root)
    elif fmt == "blender":
        data = read_blender(root)
    else:
        data = read_colmap(root, _COLMAP_MODEL_FORMATS[fmt])
    if num_train_views is None:
        return data
    return data.with_split(*sparse_split(root, num_train_views, len(data)))
