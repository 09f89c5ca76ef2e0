"""nerfstudio ``transforms.json``: OpenGL camera-to-world poses, intrinsics in pixels.

Read: global or per-frame ``fl_x``, ``fl_y``, ``cx``, ``cy``, ``w``, ``h``,
``camera_model`` (PINHOLE, SIMPLE_PINHOLE or OPENCV with ``k1``, ``k2``, ``p1``, ``p2``;
nerfstudio's default is OPENCV), frames with ``file_path``, ``transform_matrix``,
optional ``mask_path`` and ``depth_file_path``; the split comes from
``train_filenames`` / ``test_filenames`` when present. Frames are ordered by file name.
RGBA images are composited over white; their alpha is kept as the data set's ``alphas``
(and is the mask of frames without ``mask_path``).
"""

import os
from pathlib import Path

import torch

from sparse3d.data.camera_models import (
    check_poses,
    distortion_or_none,
    intrinsics_from_params,
)
from sparse3d.data.dataset import MultiViewDataset
from sparse3d.data.fields import finite_number, pose_matrix, positive_int, require
from sparse3d.data.images import ViewFiles, load_views, view_names
from sparse3d.geometry.cameras import (
    Cameras,
    opengl_c2w_from_viewmats,
    viewmats_from_opengl_c2w,
)
from sparse3d.io.atomic import write_json_atomic
from sparse3d.io.read import read_json


def read_nerfstudio(root: Path) -> MultiViewDataset:
    """Reads ``root/transforms.json`` (or ``root`` itself if it is the JSON file).

    Returns:
        A :class:`MultiViewDataset`; every frame is a training view unless the file lists
        ``test_filenames``.
    """
    path = Path(root)
    path = path / "transforms.json" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"metadata file not found: {path}")
    meta = read_json(path)
    frames = require(meta, "frames", str(path))
    if not isinstance(frames, list) or not frames:
        raise ValueError(f"{path}: 'frames' must be a non-empty list")
    base = path.parent
    for i, frame in enumerate(frames):
        require(frame, "file_path", f"{path}: frames[{i}]")
    order = sorted(range(len(frames)), key=lambda i: Path(str(frames[i]["file_path"])).name)
    viewmats, Ks, dists, views, sizes = [], [], [], [], set()
    for i in order:
        frame = frames[i]
        where = f"{path}: frames[{i}] ({frame['file_path']})"
        K, dist, size = _frame_intrinsics(meta, frame, where)
        sizes.add(size)
        c2w = pose_matrix(require(frame, "transform_matrix", where), f"{where}.transform_matrix")
        viewmats.append(viewmats_from_opengl_c2w(c2w[None])[0])
        Ks.append(K)
        dists.append(dist)
        views.append(
            ViewFiles(
                image=base / frame["file_path"],
                mask=base / frame["mask_path"] if "mask_path" in frame else None,
                depth=base / frame["depth_file_path"] if "depth_file_path" in frame else None,
                named_in=where,
            )
        )
    if len(sizes) != 1:
        raise ValueError(f"{path}: all frames must share one image size (w, h), got {sorted(sizes)}")
    width, height = sizes.pop()
    names = view_names([v.image for v in views], base)
    viewmats = torch.stack(viewmats)
    check_poses(viewmats, names, f"{path} (transform_matrix)")
    cameras = Cameras(viewmats.float(), torch.stack(Ks).float(), width, height, distortion_or_none(torch.stack(dists)))
    loaded = load_views(views, width, height)
    train, test = _split(meta, [v.image for v in views], path)
    return MultiViewDataset(
        cameras,
        loaded.images,
        names,
        train,
        test,
        loaded.masks,
        loaded.depths,
        alphas=loaded.alphas,
        source=f"{path} (nerfstudio)",
    )


def write_nerfstudio(data: MultiViewDataset, root: Path) -> Path:
    """Writes ``root/transforms.json`` for ``data``; the frames reference the files that
    :func:`sparse3d.data.images.write_view_files` writes (``images/``, ``masks/``,
    ``depths/``), which the caller writes. Returns the JSON path."""
    cams = data.cameras
    c2w = opengl_c2w_from_viewmats(cams.viewmats)
    model = "OPENCV" if cams.distortion is not None else "PINHOLE"
    shared = bool((cams.Ks == cams.Ks[0]).all()) and (
        cams.distortion is None or bool((cams.distortion == cams.distortion[0]).all())
    )
    meta = {"camera_model": model, "w": cams.width, "h": cams.height}
    if shared:  # top-level intrinsics, as nerfstudio itself writes them
        meta.update(_intrinsics_dict(data, 0, model))
    frames = []
    for i, name in enumerate(data.image_names):
        frame = {"file_path": f"images/{name}", "transform_matrix": c2w[i].tolist()}
        if not shared:
            frame.update(_intrinsics_dict(data, i, model))
        if data.masks is not None:
            frame["mask_path"] = f"masks/{name}"
        if data.depths is not None:
            frame["depth_file_path"] = f"depths/{Path(name).stem}.npy"
        frames.append(frame)
    meta["frames"] = frames
    meta["train_filenames"] = [f"images/{data.image_names[i]}" for i in data.train_indices.tolist()]
    meta["test_filenames"] = [f"images/{data.image_names[i]}" for i in data.test_indices.tolist()]
    out = Path(root) / "transforms.json"
    write_json_atomic(out, meta)
    return out


def _intrinsics_dict(data: MultiViewDataset, i: int, model: str) -> dict:
    K = data.cameras.Ks[i].to(torch.float64)
    out = {"fl_x": float(K[0, 0]), "fl_y": float(K[1, 1]), "cx": float(K[0, 2]), "cy": float(K[1, 2])}
    if model == "OPENCV":
        out.update(zip(("k1", "k2", "p1", "p2"), data.cameras.distortion[i].to(torch.float64).tolist()))
    return out


def _frame_intrinsics(meta: dict, frame: dict, where: str):
    """K float64 [3, 3], distortion float64 [4], and (w, h) of one frame (per-frame keys
    override the top-level ones)."""

    def get(key: str, default=None):
        if key in frame:
            return frame[key]
        if key in meta:
            return meta[key]
        if default is None:
            raise ValueError(f"{where}: missing intrinsic '{key}' (neither in the frame nor at the top level)")
        return default

    model = get("camera_model", "OPENCV")
    width, height = positive_int(get("w"), f"{where}.w"), positive_int(get("h"), f"{where}.h")
    fx = finite_number(get("fl_x"), f"{where}.fl_x", positive=True)
    fy = finite_number(get("fl_y"), f"{where}.fl_y", positive=True)
    cx, cy = finite_number(get("cx"), f"{where}.cx"), finite_number(get("cy"), f"{where}.cy")
    params = {"SIMPLE_PINHOLE": [fx, cx, cy], "PINHOLE": [fx, fy, cx, cy]}.get(model)
    if model == "OPENCV":
        params = [fx, fy, cx, cy] + [finite_number(get(k, 0.0), f"{where}.{k}") for k in ("k1", "k2", "p1", "p2")]
    elif model == "SIMPLE_PINHOLE" and fx != fy:
        raise ValueError(f"{where}: SIMPLE_PINHOLE needs fl_x == fl_y, got {fx} and {fy}")
    K, dist = intrinsics_from_params(model, params or [], f"{where}.camera_model")
    return K, dist, (width, height)


def _split(meta: dict, images: list[Path], path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test) indices from ``train_filenames`` / ``test_filenames`` (paths relative
    to the JSON file, like ``file_path``); without them every frame trains."""
    index = {os.path.normpath(p): i for i, p in enumerate(images)}

    def indices(key: str) -> list[int] | None:
        if key not in meta:
            return None
        out = []
        for file_path in meta[key]:
            resolved = os.path.normpath(path.parent / str(file_path))
            if resolved not in index:
                raise ValueError(f"{path}: {key} names {file_path!r}, which is not among the frames")
            out.append(index[resolved])
        return out

    test = indices("test_filenames") or []
    train = indices("train_filenames")
    if train is None:
        train = [i for i in range(len(images)) if i not in set(test)]
    return torch.tensor(train, dtype=torch.int64), torch.tensor(test, dtype=torch.int64)
