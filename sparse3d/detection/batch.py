"""LiDAR detection samples and their collation into batches.

A :class:`LidarBatch` holds the points of all samples stacked, with a separate int32
sample index per point (the ``batch`` argument of :func:`sparse3d.core.voxelize.voxelize`),
and the GT boxes padded to the largest count with the per-sample count beside them.

Examples:
    >>> batch = collate([sample_a, sample_b])
    >>> voxels = voxelize(batch.points, pc_range, voxel_size, batch=batch.batch_index)
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from sparse3d.geometry.poses import Pose


@dataclass(frozen=True)
class DetectionSample:
    """One processed sample (LiDAR frame of its keyframe, after any augmentation)."""

    token: str
    """Sample token."""
    points: np.ndarray
    """float32 [P, F] (x, y, z, intensity, time_lag for nuScenes)."""
    gt_boxes: np.ndarray
    """float [M, 9] (x, y, z, dx, dy, dz, yaw, vx, vy)."""
    gt_labels: np.ndarray
    """int64 [M] indices into the data config's class names."""
    lidar_to_global: Pose
    """Keyframe LiDAR -> global frame (to write predictions as a submission); for an
    augmented training sample it is the pose of the original, un-augmented frame."""


@dataclass(frozen=True)
class LidarBatch:
    """A batch of LiDAR samples as tensors."""

    points: Tensor
    """float32 [P, F], every sample's points stacked in sample order."""
    batch_index: Tensor
    """int32 [P] sample index of each point (``voxelize(..., batch=batch_index)``)."""
    gt_boxes: Tensor
    """float32 [B, Mmax, 9] (x, y, z, dx, dy, dz, yaw, vx, vy); rows past ``gt_counts[b]`` are 0."""
    gt_labels: Tensor
    """int64 [B, Mmax] class indices; -1 past ``gt_counts[b]``."""
    gt_counts: Tensor
    """int64 [B] number of GT boxes of each sample."""
    tokens: list[str]
    """[B] sample tokens."""
    lidar_to_global: list[Pose]
    """[B] keyframe LiDAR -> global poses."""

    @property
    def batch_size(self) -> int:
        """B, the number of samples."""
        return len(self.tokens)

    def to(self, device: torch.device | str) -> "LidarBatch":
        """The batch with its tensors on ``device``."""
        return LidarBatch(self.points.to(device), self.batch_index.to(device), self.gt_boxes.to(device),
                          self.gt_labels.to(device), self.gt_counts.to(device), self.tokens, self.lidar_to_global)


def collate(samples: list[DetectionSample]) -> LidarBatch:
    """Stacks samples into a :class:`LidarBatch` (on the CPU).

    Args:
        samples: B >= 1 samples with the same number of point features F.

    Returns:
        The batch: points float32 [sum P, F], batch_index int32 [sum P], GT padded to
        [B, Mmax, 9] / [B, Mmax].
    """
    if not samples:
        raise ValueError("collate: needs at least one sample")
    widths = {s.points.shape[1] if s.points.ndim == 2 else None for s in samples}
    if len(widths) != 1 or None in widths:
        raise ValueError(f"collate: every sample's points must be [P, F] with the same F, got shapes "
                         f"{[list(s.points.shape) for s in samples]}")
    for s in samples:
        if s.gt_boxes.ndim != 2 or s.gt_boxes.shape[1] != 9 or s.gt_labels.shape != (len(s.gt_boxes),):
            raise ValueError(f"collate: sample {s.token}: gt_boxes must be [M, 9] and gt_labels [M], got "
                             f"{list(s.gt_boxes.shape)} and {list(s.gt_labels.shape)}")
    counts = [len(s.gt_boxes) for s in samples]
    boxes = np.zeros((len(samples), max(counts), 9), np.float32)
    labels = np.full((len(samples), max(counts)), -1, np.int64)
    for b, s in enumerate(samples):
        boxes[b, : counts[b]] = s.gt_boxes
        labels[b, : counts[b]] = s.gt_labels
    batch_index = np.repeat(np.arange(len(samples), dtype=np.int32), [len(s.points) for s in samples])
    return LidarBatch(
        points=torch.from_numpy(np.concatenate([s.points for s in samples]).astype(np.float32, copy=False)),
        batch_index=torch.from_numpy(batch_index),
        gt_boxes=torch.from_numpy(boxes),
        gt_labels=torch.from_numpy(labels),
        gt_counts=torch.tensor(counts, dtype=torch.int64),
        tokens=[s.token for s in samples],
        lidar_to_global=[s.lidar_to_global for s in samples],
    )
