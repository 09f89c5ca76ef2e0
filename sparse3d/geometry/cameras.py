"""Pinhole cameras: the one camera representation used inside sparse3d.

Frames: ``viewmats`` map world points to the camera frame of OpenCV (+x right, +y down,
+z forward). Pixel (u, v) covers ``[u, u + 1) x [v, v + 1)``, so its centre is at
``(u + 0.5, v + 0.5)`` and a centred principal point is ``(W / 2, H / 2)`` (the COLMAP,
nerfstudio and gsplat convention). Loaders convert other conventions (OpenGL/Blender
camera-to-world) here, once, with :func:`viewmats_from_opengl_c2w`.
"""

import math
from dataclasses import dataclass

import torch
from torch import Tensor

# Rotation blocks further than this from orthonormal are not poses but scaled or sheared
# matrices; float32 round trips of real poses stay below 1e-5.
_ORTHONORMAL_TOL = 1e-3
# OpenGL cameras look along -z with +y up: flipping y and z gives the OpenCV axes.
_GL_TO_CV = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))


@dataclass(frozen=True)
class Cameras:
    """A batch of C pinhole cameras sharing one image size.

    Examples:
        >>> eyes = torch.tensor([[0.0, -4.0, 1.0]])
        >>> cams = Cameras(look_at_viewmats(eyes, torch.zeros(1, 3)),
        ...                intrinsics_from_fov(40.0, 128, 128)[None], 128, 128)
        >>> cams.project(torch.zeros(1, 3))[0]  # the origin lands on the image centre
        tensor([[64., 64.]])
    """

    viewmats: Tensor
    """float32 [C, 4, 4] world-to-camera transforms, OpenCV axes, rigid (rotation + translation)."""
    Ks: Tensor
    """float32 [C, 3, 3] intrinsics [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] in pixels."""
    width: int
    """Image width W in pixels, the same for every camera."""
    height: int
    """Image height H in pixels, the same for every camera."""
    distortion: Tensor | None = None
    """float32 [C, 4] OpenCV radial-tangential coefficients (k1, k2, p1, p2), or None for
    an ideal pinhole. Kept for loaders of OPENCV models; renderers ignore it."""

    def __post_init__(self) -> None:
        c = self.viewmats.shape[0] if self.viewmats.dim() == 3 else -1
        if self.viewmats.shape != (c, 4, 4):
            raise ValueError(f"Cameras: viewmats must be [C, 4, 4], got {list(self.viewmats.shape)}")
        if self.Ks.shape != (c, 3, 3):
            raise ValueError(f"Cameras: Ks must be [{c}, 3, 3] to match viewmats, got {list(self.Ks.shape)}")
        if self.distortion is not None and self.distortion.shape != (c, 4):
            raise ValueError(
                f"Cameras: distortion must be [{c}, 4] (k1, k2, p1, p2), got {list(self.distortion.shape)}"
            )
        if not (isinstance(self.width, int) and isinstance(self.height, int)) or min(self.width, self.height) < 1:
            raise ValueError(f"Cameras: width and height must be positive ints, got {self.width} x {self.height}")
        bad = first_invalid_pose(self.viewmats)
        if bad is not None:
            raise ValueError(f"Cameras: viewmats[{bad[0]}] is not a finite rigid transform: {bad[1]}")
        if not torch.isfinite(self.Ks).all() or (self.Ks[:, 0, 0] <= 0).any() or (self.Ks[:, 1, 1] <= 0).any():
            raise ValueError("Cameras: Ks must be finite with positive focal lengths fx, fy")

    def __len__(self) -> int:
        return self.viewmats.shape[0]

    def __getitem__(self, index: Tensor | slice | list[int] | int) -> "Cameras":
        """Returns the cameras selected by ``index``; a single index keeps a batch of one."""
        if self.viewmats[index].dim() == 2:  # an int, numpy or 0-d tensor index
            index = [int(index)]
        dist = None if self.distortion is None else self.distortion[index]
        return Cameras(self.viewmats[index], self.Ks[index], self.width, self.height, dist)

    def to(self, device: torch.device | str) -> "Cameras":
        """Returns the same cameras with every tensor on ``device``."""
        dist = None if self.distortion is None else self.distortion.to(device)
        return Cameras(self.viewmats.to(device), self.Ks.to(device), self.width, self.height, dist)

    @property
    def centers(self) -> Tensor:
        """float32 [C, 3] camera centres in the world frame."""
        return camera_centers(self.viewmats)

    @property
    def fovs_y(self) -> Tensor:
        """float [C] vertical fields of view in radians."""
        return 2 * torch.atan(0.5 * self.height / self.Ks[:, 1, 1])

    def project(self, points: Tensor) -> Tensor:
        """Projects world points into every camera (no distortion).

        Args:
            points: float [P, 3] world-frame points.

        Returns:
            float [C, P, 2] pixel coordinates (u, v); points behind a camera give
            meaningless values, check :meth:`depths` > 0.
        """
        cam = self.to_camera(points)
        uvw = cam @ self.Ks.transpose(1, 2).to(cam.dtype)
        return uvw[..., :2] / uvw[..., 2:3]

    def to_camera(self, points: Tensor) -> Tensor:
        """float [C, P, 3] camera-frame coordinates of world points ``points`` [P, 3]."""
        rot, trans = self.viewmats[:, :3, :3].to(points.dtype), self.viewmats[:, :3, 3].to(points.dtype)
        return points[None] @ rot.transpose(1, 2) + trans[:, None, :]


def first_invalid_pose(viewmats: Tensor) -> tuple[int, str] | None:
    """Finds the first transform in ``viewmats`` [C, 4, 4] that is not finite and rigid.

    Returns:
        (index, reason), or None when every transform has finite entries, an orthonormal
        rotation with determinant +1 and a last row of (0, 0, 0, 1).
    """
    mats = viewmats.to(torch.float64)
    finite = torch.isfinite(mats).flatten(1).all(1)
    if not finite.all():
        return int((~finite).nonzero()[0]), "non-finite entries"
    rot = mats[:, :3, :3]
    eye = torch.eye(3, dtype=torch.float64)
    ortho_err = (rot @ rot.transpose(1, 2) - eye).abs().flatten(1).amax(1)
    dets = torch.linalg.det(rot) if len(rot) else rot.new_zeros(0)
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    bottom_err = (mats[:, 3] - bottom).abs().amax(1) if len(mats) else ortho_err
    bad = (ortho_err > _ORTHONORMAL_TOL) | (dets < 0) | (bottom_err > _ORTHONORMAL_TOL)
    if bad.any():
        i = int(bad.nonzero()[0])
        return i, f"rotation error {float(ortho_err[i]):.3g}, det {float(dets[i]):.4f}, last row {mats[i, 3].tolist()}"
    return None


def camera_centers(viewmats: Tensor) -> Tensor:
    """World positions of the camera centres, -R^T t: float [C, 3] from viewmats [C, 4, 4]."""
    rot, trans = viewmats[:, :3, :3], viewmats[:, :3, 3]
    return -(rot.transpose(-1, -2) @ trans[..., None])[..., 0]


def invert_rigid(mats: Tensor) -> Tensor:
    """Inverts rigid transforms ``mats`` [..., 4, 4] exactly (R^T, -R^T t); same dtype."""
    rot_t = mats[..., :3, :3].transpose(-1, -2)
    out = torch.zeros_like(mats)
    out[..., :3, :3] = rot_t
    out[..., :3, 3] = -(rot_t @ mats[..., :3, 3:4])[..., 0]
    out[..., 3, 3] = 1.0
    return out


def viewmats_from_opengl_c2w(c2w: Tensor) -> Tensor:
    """Converts OpenGL/Blender camera-to-world poses [C, 4, 4] (+y up, looking along -z)
    to OpenCV world-to-camera ``viewmats`` [C, 4, 4], computed in float64."""
    return invert_rigid(c2w.to(torch.float64) @ _GL_TO_CV)


def opengl_c2w_from_viewmats(viewmats: Tensor) -> Tensor:
    """Inverse of :func:`viewmats_from_opengl_c2w`: float64 [C, 4, 4] OpenGL camera-to-world."""
    return invert_rigid(viewmats.to(torch.float64)) @ _GL_TO_CV


def look_at_viewmats(eyes: Tensor, targets: Tensor, up: tuple[float, float, float] = (0.0, 0.0, 1.0)) -> Tensor:
    """World-to-camera transforms of cameras at ``eyes`` [C, 3] looking at ``targets`` [C, 3].

    The image's "up" (-y in OpenCV) is the projection of the world vector ``up``; the
    cameras must not look exactly along it.

    Returns:
        float32 [C, 4, 4] OpenCV ``viewmats`` (computed in float64).
    """
    eyes, targets = eyes.to(torch.float64), targets.to(torch.float64)
    forward = torch.nn.functional.normalize(targets - eyes, dim=-1)
    world_up = torch.tensor(up, dtype=torch.float64).expand_as(forward)
    right = torch.linalg.cross(forward, world_up)
    if (right.norm(dim=-1) < 1e-9).any():
        raise ValueError("look_at_viewmats: a camera looks along the up vector; its roll is undefined")
    right = torch.nn.functional.normalize(right, dim=-1)
    down = torch.linalg.cross(forward, right)
    c2w = torch.zeros(eyes.shape[0], 4, 4, dtype=torch.float64)
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = right, down, forward, eyes
    c2w[:, 3, 3] = 1.0
    return invert_rigid(c2w).to(torch.float32)


def intrinsics_from_fov(fov_x_deg: float, width: int, height: int) -> Tensor:
    """float32 [3, 3] intrinsics with square pixels, horizontal field of view ``fov_x_deg``
    and the principal point at the image centre (W / 2, H / 2)."""
    focal = 0.5 * width / math.tan(math.radians(fov_x_deg) / 2)
    return torch.tensor([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])
