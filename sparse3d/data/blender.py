"""Blender / NeRF-synthetic ``transforms_{train,val,test}.json`` with RGBA PNGs.

Each file holds ``camera_angle_x`` (horizontal field of view, radians) and frames with
``file_path`` (".png" appended when it has no extension) and ``transform_matrix``
(OpenGL camera-to-world). Pixels are square and the principal point is the image centre.
RGBA images are composited over white, their alpha is kept as the data set's ``alphas``
and alpha > 50 % becomes the mask. Views are ordered train, val, test; train and test
frames give the split (val frames are in neither).
"""

import math
from pathlib import Path

import numpy as np
import torch

from sparse3d.data.camera_models import check_poses
from sparse3d.data.dataset import MultiViewDataset
from sparse3d.data.fields import finite_number, pose_matrix, require
from sparse3d.data.images import (
    ViewFiles,
    load_views,
    read_image,
    straight_rgb_under,
    view_names,
    write_png,
)
from sparse3d.geometry.cameras import (
    Cameras,
    opengl_c2w_from_viewmats,
    viewmats_from_opengl_c2w,
)
from sparse3d.io.atomic import write_json_atomic
from sparse3d.io.read import read_json

SPLITS = ("train", "val", "test")


def read_blender(root: Path) -> MultiViewDataset:
    """Reads the Blender transforms files in directory ``root`` (train required)."""
    root = Path(root)
    train_json = root / "transforms_train.json"
    if not train_json.is_file():
        raise FileNotFoundError(f"Blender data set {root}: transforms_train.json not found")
    views, c2ws, fovs, split_of = [], [], [], []
    for split in SPLITS:
        path = root / f"transforms_{split}.json"
        if not path.is_file():
            continue
        meta = read_json(path)
        fov = finite_number(require(meta, "camera_angle_x", str(path)), f"{path}: camera_angle_x", positive=True)
        if fov >= math.pi:
            raise ValueError(f"{path}: camera_angle_x must be below pi radians, got {fov}")
        frames = require(meta, "frames", str(path))
        if not isinstance(frames, list):
            raise ValueError(f"{path}: 'frames' must be a list")
        for i, frame in enumerate(frames):
            where = f"{path}: frames[{i}]"
            file_path = str(require(frame, "file_path", where))
            image = root / (file_path if Path(file_path).suffix else f"{file_path}.png")
            views.append(ViewFiles(image=image, mask=None, depth=None, named_in=f"{where}.file_path"))
            c2ws.append(pose_matrix(require(frame, "transform_matrix", where), f"{where}.transform_matrix"))
            fovs.append(fov)
            split_of.append(split)
    if not views:
        raise ValueError(f"Blender data set {root}: no frames in any transforms_*.json")
    names = view_names([v.image for v in views], root)
    viewmats = viewmats_from_opengl_c2w(torch.stack(c2ws))
    check_poses(viewmats, names, f"Blender data set {root} (transform_matrix)")
    first = views[0].image
    if not first.is_file():
        raise FileNotFoundError(f"{views[0].named_in}: image file not found: {first}")
    height, width = read_image(first).shape[:2]
    focal = 0.5 * width / np.tan(np.asarray(fovs, np.float64) / 2)
    Ks = torch.zeros(len(views), 3, 3, dtype=torch.float64)
    Ks[:, 0, 0], Ks[:, 1, 1] = torch.from_numpy(focal), torch.from_numpy(focal)
    Ks[:, 0, 2], Ks[:, 1, 2], Ks[:, 2, 2] = width / 2, height / 2, 1.0
    loaded = load_views(views, width, height)
    train = torch.tensor([i for i, s in enumerate(split_of) if s == "train"], dtype=torch.int64)
    test = torch.tensor([i for i, s in enumerate(split_of) if s == "test"], dtype=torch.int64)
    return MultiViewDataset(
        Cameras(viewmats.float(), Ks.float(), width, height),
        loaded.images,
        names,
        train,
        test,
        loaded.masks,
        alphas=loaded.alphas,
        source=f"{root} (blender)",
    )


def write_blender(data: MultiViewDataset, root: Path) -> list[Path]:
    """Writes ``transforms_train.json`` / ``transforms_test.json`` and RGBA PNGs
    (``train/<name>``, ``test/<name>``) under ``root``. Views in neither split are not
    written.

    The alpha is ``data.alphas`` when set, else the mask (0 / 255), else opaque. The
    straight colours are chosen so that :func:`read_blender` composites them back to
    exactly ``data.images`` (:func:`sparse3d.data.images.straight_rgb_under`).

    Raises:
        ValueError: the cameras are not Blender-compatible (non-square pixels, an
            off-centre principal point, distortion, or different fields of view), or a
            view's image cannot come from its alpha over white.

    Returns:
        The two JSON paths.
    """
    cams = data.cameras
    K = cams.Ks.to(torch.float64)
    centred = torch.tensor([cams.width / 2, cams.height / 2], dtype=torch.float64)
    if (
        cams.distortion is not None
        or not torch.allclose(K[:, 0, 0], K[:, 1, 1])
        or not torch.allclose(K[:, :2, 2], centred.expand(len(cams), 2))
        or not torch.allclose(K[:, 0, 0], K[0, 0, 0].expand(len(cams)))
    ):
        raise ValueError(
            "write_blender: needs one focal length, square pixels, a centred principal point, no distortion"
        )
    fov = 2 * math.atan(0.5 * cams.width / float(K[0, 0, 0]))
    c2w = opengl_c2w_from_viewmats(cams.viewmats)
    outputs = []
    for split, indices in (("train", data.train_indices), ("test", data.test_indices)):
        frames = []
        for i in indices.tolist():
            stem = Path(data.image_names[i]).stem
            alpha = _alpha_to_write(data, i).numpy()
            rgb = straight_rgb_under(data.images[i].numpy(), alpha, f"write_blender: view {data.image_names[i]}")
            write_png(Path(root) / split / f"{stem}.png", np.concatenate([rgb, alpha[..., None]], -1))
            frames.append({"file_path": f"./{split}/{stem}", "transform_matrix": c2w[i].tolist()})
        path = Path(root) / f"transforms_{split}.json"
        write_json_atomic(path, {"camera_angle_x": fov, "frames": frames})
        outputs.append(path)
    return outputs


def _alpha_to_write(data: MultiViewDataset, i: int) -> torch.Tensor:
    """uint8 [H, W] alpha of view ``i``: its coverage, else its mask, else opaque."""
    if data.alphas is not None:
        return data.alphas[i]
    if data.masks is not None:
        return data.masks[i].to(torch.uint8) * 255
    return torch.full((data.cameras.height, data.cameras.width), 255, dtype=torch.uint8)
