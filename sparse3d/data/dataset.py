"""The in-memory multi-view data set every reader produces and every method consumes."""

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import Tensor

from sparse3d.geometry.cameras import Cameras


@dataclass(frozen=True)
class MultiViewDataset:
    """N posed images of one scene, with optional masks, depths and initial points.

    All readers (nerfstudio, Blender, COLMAP) return this, already converted to the
    library conventions: OpenCV world-to-camera ``cameras.viewmats``, RGB composited over
    white where the source had alpha (:func:`sparse3d.data.images.rgb_over_white_and_mask`,
    the coverage kept in ``alphas``), and masks as booleans (True = object).
    """

    cameras: Cameras
    """N cameras of one image size W x H."""
    images: Tensor
    """uint8 [N, H, W, 3] RGB images."""
    image_names: list[str]
    """N file names (e.g. "000.png"), the key shared by every format."""
    train_indices: Tensor
    """int64 [T] indices of the training views."""
    test_indices: Tensor
    """int64 [E] indices of the held-out views (may be empty)."""
    masks: Tensor | None = None
    """bool [N, H, W] object masks (True = object), or None."""
    depths: Tensor | None = None
    """float32 [N, H, W] camera-frame z per pixel (0 = no surface), or None."""
    points: Tensor | None = None
    """float32 [P, 3] initial world-frame points (e.g. COLMAP points3D), or None."""
    point_colors: Tensor | None = None
    """uint8 [P, 3] RGB of ``points``, or None."""
    alphas: Tensor | None = None
    """uint8 [N, H, W] coverage of each pixel by the scene (255 = opaque, 0 = background),
    where the source images had alpha, or None. ``images`` are already composited over
    white with it; fractional values mark partly covered (anti-aliased) pixels."""
    source: str = field(default="")
    """Where the data was read from (a path and format), for messages."""

    def __post_init__(self) -> None:
        n, h, w = len(self.cameras), self.cameras.height, self.cameras.width
        where = f" ({self.source})" if self.source else ""
        if self.images.dtype != torch.uint8 or self.images.shape != (n, h, w, 3):
            raise ValueError(
                f"MultiViewDataset{where}: images must be uint8 [{n}, {h}, {w}, 3] to match the cameras, "
                f"got {self.images.dtype} {list(self.images.shape)}"
            )
        if len(self.image_names) != n or len(set(self.image_names)) != n:
            raise ValueError(
                f"MultiViewDataset{where}: need {n} distinct image names, got {len(set(self.image_names))}"
            )
        for name, value, dtype in (
            ("masks", self.masks, torch.bool),
            ("depths", self.depths, torch.float32),
            ("alphas", self.alphas, torch.uint8),
        ):
            if value is not None and (value.dtype != dtype or value.shape != (n, h, w)):
                got = f"{value.dtype} {list(value.shape)}"
                raise ValueError(f"MultiViewDataset{where}: {name} must be {dtype} [{n}, {h}, {w}], got {got}")
        for name, idx in (("train_indices", self.train_indices), ("test_indices", self.test_indices)):
            if idx.dtype != torch.int64 or idx.dim() != 1 or (idx.numel() and (idx.min() < 0 or idx.max() >= n)):
                raise ValueError(f"MultiViewDataset{where}: {name} must be int64 [K] with values in [0, {n})")
        if self.points is not None:
            p = self.points.shape[0]
            if self.points.shape != (p, 3) or not torch.isfinite(self.points).all():
                raise ValueError(f"MultiViewDataset{where}: points must be finite float [P, 3]")
            if self.point_colors is not None and (
                self.point_colors.shape != (p, 3) or self.point_colors.dtype != torch.uint8
            ):
                raise ValueError(f"MultiViewDataset{where}: point_colors must be uint8 [{p}, 3]")

    def __len__(self) -> int:
        return len(self.cameras)

    def coverage(self) -> Tensor | None:
        """uint8 [N, H, W] how much of each pixel the object covers: the soft alphas when
        the images had them, else the masks (0 / 255), else None."""
        if self.alphas is not None:
            return self.alphas
        return None if self.masks is None else self.masks.to(torch.uint8) * 255

    def with_split(self, train_indices: Tensor, test_indices: Tensor) -> "MultiViewDataset":
        """The same data with another train/test split (int64 index tensors)."""
        return dataclasses.replace(self, train_indices=train_indices, test_indices=test_indices)
