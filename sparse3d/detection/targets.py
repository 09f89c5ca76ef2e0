"""CenterPoint training targets on the BEV feature map: class heatmaps of Gaussian peaks
and the per-object regression code (OpenPCDet ``CenterHead.assign_targets``).

Boxes are LiDAR-frame float [M, 9] ``(x, y, z, dx, dy, dz, yaw, vx, vy)`` with ``dx``
along the heading (DESIGN.md, "Boxes"); labels are int64 [M], 0-based indices into the
detector's class list. The feature map is the BEV grid of :class:`BevGrid`: column ``ix``
covers x, row ``iy`` covers y, and an object's flat index is ``iy * W + ix``.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from sparse3d.core.voxelize import voxel_grid_shape

BOX_CODE_SIZE = 10
"""Regression values per object: (x offset, y offset, z, log dx, log dy, log dz, cos yaw,
sin yaw, vx, vy); offsets in feature-map cells, the rest in metres, radians and m/s."""


@dataclass(frozen=True)
class BevGrid:
    """The BEV feature map a dense head sees: cells of ``voxel_size * stride`` metres
    tiling ``pc_range`` in x and y.

    Examples:
        >>> grid = BevGrid((-54.0, -54.0, -5.0, 54.0, 54.0, 3.0), (0.075, 0.075, 0.2), 8)
        >>> grid.shape
        (180, 180)
    """

    pc_range: tuple[float, float, float, float, float, float]
    """Point-cloud range [x0, y0, z0, x1, y1, z1], metres (LiDAR frame)."""
    voxel_size: tuple[float, float, float]
    """Voxel size (x, y, z), metres."""
    stride: int = 8
    """Feature-map cells per voxel along x and y (OpenPCDet FEATURE_MAP_STRIDE)."""

    def __post_init__(self) -> None:
        voxel_grid_shape(self.pc_range, self.voxel_size)  # raises for a malformed or empty range
        if self.stride < 1:
            raise ValueError(f"BevGrid: stride must be >= 1, got {self.stride}")

    @property
    def shape(self) -> tuple[int, int]:
        """Feature-map size (H, W): cells along y and along x. Each is ceil(voxels / stride),
        the size that stride-2 convolutions with kernel 3 and padding 1 leave (e.g. 1440
        voxels -> 180 cells at stride 8)."""
        nx, ny, _ = voxel_grid_shape(self.pc_range, self.voxel_size)
        return -(-ny // self.stride), -(-nx // self.stride)

    def cells(self, xy: Tensor) -> Tensor:
        """Continuous feature-map coordinates of LiDAR-frame points.

        Args:
            xy: float [..., 2] (x, y), metres.

        Returns:
            float [..., 2] (column, row) = (xy - range min) / voxel / stride; the cell
            (ix, iy) spans [ix, ix + 1) x [iy, iy + 1).
        """
        low, voxel = xy.new_tensor(self.pc_range[:2]), xy.new_tensor(self.voxel_size[:2])
        return (xy - low) / voxel / self.stride  # OpenPCDet's operation order, for the same bits

    def metres(self, cells: Tensor) -> Tensor:
        """LiDAR-frame (x, y) of continuous feature-map coordinates (the inverse of :meth:`cells`).

        Args:
            cells: float [..., 2] (column, row).

        Returns:
            float [..., 2] (x, y), metres: cells * stride * voxel + range min.
        """
        low, voxel = cells.new_tensor(self.pc_range[:2]), cells.new_tensor(self.voxel_size[:2])
        return cells * self.stride * voxel + low

    def lengths_in_cells(self, lengths: Tensor) -> Tensor:
        """BEV lengths in feature-map cells.

        Args:
            lengths: float [..., 2] (along x, along y), metres.

        Returns:
            float [..., 2]: lengths / voxel / stride.
        """
        return lengths / lengths.new_tensor(self.voxel_size[:2]) / self.stride


@dataclass
class CenterTargets:
    """Training targets of one task group (head) for a batch of B samples, max_objs slots each.

    Slot k of a sample holds the k-th GT box of the head's classes (in input order); slots
    of skipped boxes (dx or dy <= 0) and unused slots have mask False, index 0 and a zero code.
    """

    heatmap: Tensor
    """float [B, n_cls, H, W]: Gaussian peaks (1 at each object's cell), channel = class
    index within the head."""
    inds: Tensor
    """int64 [B, max_objs]: flat feature-map index iy * W + ix of each object's cell."""
    mask: Tensor
    """bool [B, max_objs]: which slots hold an object."""
    boxes: Tensor
    """float [B, max_objs, BOX_CODE_SIZE]: the regression code (see :data:`BOX_CODE_SIZE`)."""


def gaussian_radius(width: Tensor, height: Tensor, min_overlap: float) -> Tensor:
    """Peak radius of CenterNet heatmaps, OpenPCDet's (= CornerNet's) formula, quirks included.

    With s = w + h, A = w * h and o = ``min_overlap`` it is the smallest of
    r1 = (s + sqrt(s^2 - 4 A (1 - o) / (1 + o))) / 2,
    r2 = (2 s + sqrt(4 s^2 - 16 (1 - o) A)) / 2 and
    r3 = (-2 o s + sqrt(4 o^2 s^2 + 16 o (1 - o) A)) / 2.
    The roots of the 2nd and 3rd quadratics (a = 4 and a = 4 o) are not divided by a, as
    the quadratic formula requires: the well-known CornerNet slip, kept so that targets
    match checkpoints trained with it. In practice r3 decides.

    Args:
        width, height: float [N] box lengths in feature-map cells (symmetric in the two).
        min_overlap: the IoU the shifted box must keep, in (0, 1).

    Returns:
        float [N] radius in cells (fractional; callers truncate), dtype of ``width``.
    """
    o, s = min_overlap, height + width
    # Each product is formed in OpenPCDet's order: float32 rounding decides where int() cuts.
    r1 = _quirk_root(1, s, width * height * (1 - o) / (1 + o))
    r2 = _quirk_root(4, 2 * s, (1 - o) * width * height)
    r3 = _quirk_root(4 * o, -2 * o * s, (o - 1) * width * height)
    return torch.minimum(torch.minimum(r1, r2), r3)


def _quirk_root(a: float, b: Tensor, c: Tensor) -> Tensor:
    """(b + sqrt(b^2 - 4ac)) / 2: a times the larger root of a x^2 - b x + c = 0 (the
    CornerNet slip leaves out the 1/a)."""
    return (b + (b**2 - 4 * a * c).sqrt()) / 2


def _gaussian(radius: int) -> Tensor:
    """float64 [2r+1, 2r+1]: exp(-(dx^2 + dy^2) / (2 sigma^2)), sigma = (2r + 1) / 6, centred.

    OpenPCDet also zeroes values below float64 eps * max; the corner value is at least
    exp(-9) (exponent -36 r^2 / (2r+1)^2), so that never applies."""
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    sigma = (2 * radius + 1) / 6
    squared = offsets[:, None] ** 2 + offsets[None, :] ** 2
    return torch.exp(-squared / (2 * sigma * sigma))


def draw_gaussian(heatmap: Tensor, center: tuple[int, int], radius: int) -> Tensor:
    """Stamps a Gaussian peak (1 at ``center``) into ``heatmap`` in place, keeping the
    elementwise maximum, clipped at the borders.

    Args:
        heatmap: float [H, W], modified in place.
        center: integer cell (ix, iy) with 0 <= ix < W and 0 <= iy < H.
        radius: half-width of the (2r+1)^2 patch, >= 0; sigma = (2r + 1) / 6 cells.

    Returns:
        ``heatmap``.
    """
    x, y = center
    height, width = heatmap.shape
    if not (0 <= x < width and 0 <= y < height) or radius < 0:
        raise ValueError(f"draw_gaussian: center {center} must lie on the {width} x {height} map, radius >= 0 (got {radius})")
    left, right = min(x, radius), min(width - x, radius + 1)
    top, bottom = min(y, radius), min(height - y, radius + 1)
    patch = _gaussian(radius)[radius - top : radius + bottom, radius - left : radius + right]
    region = heatmap[y - top : y + bottom, x - left : x + right]
    torch.maximum(region, patch.to(heatmap), out=region)
    return heatmap


def box_codes(boxes: Tensor, grid: BevGrid) -> tuple[Tensor, Tensor]:
    """The feature-map cell and the regression code of LiDAR-frame boxes.

    Args:
        boxes: float [N, 9] (x, y, z, dx, dy, dz, yaw, vx, vy); NaN velocities count as 0.
        grid: the feature map.

    Returns:
        cells: int64 [N, 2] (ix, iy), the centre clamped onto the map as OpenPCDet does
        (to [0, size - 0.5], then truncated).
        codes: float [N, BOX_CODE_SIZE] (see :data:`BOX_CODE_SIZE`); log of non-positive
        sizes is -inf / NaN (callers skip those boxes).
    """
    height, width = grid.shape
    centre = grid.cells(boxes[:, :2])  # [N, 2]
    # size - 0.5, not size - eps: the centre must truncate to a cell on the map.
    centre = torch.minimum(centre.clamp_min(0), centre.new_tensor([width - 0.5, height - 0.5]))
    cells = centre.long()  # truncation = floor: the centre is >= 0
    codes = torch.cat(
        [
            centre - cells.to(centre.dtype),
            boxes[:, 2:3],
            boxes[:, 3:6].log(),
            boxes[:, 6:7].cos(),
            boxes[:, 6:7].sin(),
            torch.nan_to_num(boxes[:, 7:9], nan=0.0),  # SET_NAN_VELOCITY_TO_ZEROS
        ],
        dim=1,
    )
    return cells, codes


def _head_targets(
    boxes: Tensor, labels: Tensor, class_ids: Sequence[int], grid: BevGrid, max_objs: int, gaussian_overlap: float, min_radius: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One sample's targets for one head: heatmap [n_cls, H, W], inds [max_objs],
    mask [max_objs], codes [max_objs, 10] (the fields of :class:`CenterTargets`)."""
    height, width = grid.shape
    member = labels[:, None] == labels.new_tensor(list(class_ids))[None, :]  # [M, n_cls]
    in_head = member.any(dim=1)
    boxes, channels = boxes[in_head][:max_objs], member[in_head][:max_objs].int().argmax(dim=1)
    n = boxes.shape[0]

    heatmap = boxes.new_zeros(len(class_ids), height, width)
    inds = torch.zeros(max_objs, dtype=torch.int64, device=boxes.device)
    mask = torch.zeros(max_objs, dtype=torch.bool, device=boxes.device)
    codes = boxes.new_zeros(max_objs, BOX_CODE_SIZE)

    valid = (boxes[:, 3] > 0) & (boxes[:, 4] > 0)
    cells, box_code = box_codes(boxes[valid], grid)
    size = grid.lengths_in_cells(boxes[valid, 3:5])
    radii = gaussian_radius(size[:, 0], size[:, 1], gaussian_overlap).int().clamp_min(min_radius)
    for (ix, iy), radius, channel in zip(cells.tolist(), radii.tolist(), channels[valid].tolist()):
        draw_gaussian(heatmap[channel], (ix, iy), radius)

    slots = torch.arange(n, device=boxes.device)[valid]
    inds[slots] = cells[:, 1] * width + cells[:, 0]
    mask[slots] = True
    codes[slots] = box_code
    return heatmap, inds, mask, codes


def center_targets(
    gt_boxes: Sequence[Tensor],
    gt_labels: Sequence[Tensor],
    grid: BevGrid,
    class_ids_each_head: Sequence[Sequence[int]],
    max_objs: int = 500,
    gaussian_overlap: float = 0.1,
    min_radius: int = 2,
) -> list[CenterTargets]:
    """Heatmap and regression targets of every task group for a batch.

    Per sample and head, the GT boxes whose label is one of the head's classes are taken
    in input order, the first ``max_objs`` kept. A box with dx <= 0 or dy <= 0 is skipped
    (its slot stays empty). Every other box stamps a Gaussian of radius
    max(int(gaussian_radius(dx, dy)), min_radius) (lengths in cells) at its centre cell
    into the channel of its class, and fills its slot.

    Args:
        gt_boxes: per sample float [M_b, 9] (x, y, z, dx, dy, dz, yaw, vx, vy), LiDAR
            frame; NaN velocities become 0.
        gt_labels: per sample int64 [M_b], 0-based global class ids.
        grid: the feature map the head predicts on.
        class_ids_each_head: per head, the global class ids of its heatmap channels, in
            channel order.
        max_objs: slots per sample and head (OpenPCDet NUM_MAX_OBJS).
        gaussian_overlap: ``min_overlap`` of :func:`gaussian_radius`.
        min_radius: smallest Gaussian radius, cells.

    Returns:
        one :class:`CenterTargets` per head, on the device of the boxes. Deterministic.
    """
    if len(gt_boxes) != len(gt_labels) or not gt_boxes:
        raise ValueError(f"center_targets: need boxes and labels for the same B >= 1 samples, got {len(gt_boxes)} and {len(gt_labels)}")
    for b, (boxes, labels) in enumerate(zip(gt_boxes, gt_labels)):
        if boxes.dim() != 2 or boxes.shape[1] != 9 or not boxes.is_floating_point():
            raise ValueError(f"center_targets: gt_boxes[{b}] must be float [M, 9], got {boxes.dtype} {list(boxes.shape)}")
        if labels.shape != boxes.shape[:1] or labels.dtype != torch.int64:
            raise ValueError(f"center_targets: gt_labels[{b}] must be int64 [{boxes.shape[0]}], got {labels.dtype} {list(labels.shape)}")
    targets = []
    for class_ids in class_ids_each_head:
        per_sample = [
            _head_targets(boxes, labels, class_ids, grid, max_objs, gaussian_overlap, min_radius)
            for boxes, labels in zip(gt_boxes, gt_labels)
        ]
        heatmap, inds, mask, codes = (torch.stack(parts) for parts in zip(*per_sample))
        targets.append(CenterTargets(heatmap, inds, mask, codes))
    return targets
