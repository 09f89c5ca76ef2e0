"""The camera models the readers accept (COLMAP names and ids) and their parameters."""

import torch
from torch import Tensor

from sparse3d.geometry.cameras import first_invalid_pose

# name -> (COLMAP model id, parameter names in COLMAP order).
CAMERA_MODELS: dict[str, tuple[int, tuple[str, ...]]] = {
    "SIMPLE_PINHOLE": (0, ("f", "cx", "cy")),
    "PINHOLE": (1, ("fx", "fy", "cx", "cy")),
    "OPENCV": (4, ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2")),
}
MODEL_NAMES_BY_ID = {model_id: name for name, (model_id, _) in CAMERA_MODELS.items()}


def check_model(name: str, where: str) -> tuple[str, ...]:
    """Parameter names of camera model ``name``; a ValueError naming ``where`` if unsupported."""
    if name not in CAMERA_MODELS:
        raise ValueError(f"{where}: unsupported camera model {name!r}; supported: {', '.join(CAMERA_MODELS)}")
    return CAMERA_MODELS[name][1]


def intrinsics_from_params(name: str, params: list[float], where: str) -> tuple[Tensor, Tensor]:
    """K float64 [3, 3] and distortion float64 [4] (k1, k2, p1, p2; zeros for pinholes)
    from a model's parameter list in COLMAP order."""
    names = check_model(name, where)
    if len(params) != len(names):
        raise ValueError(f"{where}: camera model {name} needs {len(names)} parameters {names}, got {len(params)}")
    p = dict(zip(names, params))
    fx, fy = (p["f"], p["f"]) if name == "SIMPLE_PINHOLE" else (p["fx"], p["fy"])
    if not (fx > 0 and fy > 0):
        raise ValueError(f"{where}: focal lengths must be positive, got fx={fx}, fy={fy}")
    K = torch.tensor([[fx, 0.0, p["cx"]], [0.0, fy, p["cy"]], [0.0, 0.0, 1.0]], dtype=torch.float64)
    dist = torch.tensor([p.get(k, 0.0) for k in ("k1", "k2", "p1", "p2")], dtype=torch.float64)
    if not (torch.isfinite(K).all() and torch.isfinite(dist).all()):
        raise ValueError(f"{where}: non-finite camera parameters {params}")
    return K, dist


def distortion_or_none(dist: Tensor) -> Tensor | None:
    """float32 [C, 4] distortion, or None when every coefficient is zero (ideal pinholes)."""
    return dist.to(torch.float32) if bool((dist != 0).any()) else None


def check_poses(viewmats: Tensor, names: list[str], where: str) -> None:
    """Raises a ValueError naming the view and ``where`` if a pose is not finite and rigid."""
    bad = first_invalid_pose(viewmats)
    if bad is not None:
        raise ValueError(f"{where}: the pose of image {names[bad[0]]!r} is not a finite rigid transform ({bad[1]})")
