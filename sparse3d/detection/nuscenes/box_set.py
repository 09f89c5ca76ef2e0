"""Columnar storage of evaluation boxes (GT or predictions) of many samples."""

from dataclasses import dataclass, fields

import numpy as np


@dataclass(frozen=True)
class EvalBoxSet:
    """Global-frame boxes, one row per box, grouped by sample in evaluation order.

    Rows keep the order the devkit gives them (samples in eval order, boxes in file / table
    order within a sample): the matching's tie-breaking depends on it.
    """

    sample: np.ndarray
    """int64 [N] index of each box's sample in the evaluation's sample list."""
    label: np.ndarray
    """int64 [N] index into DETECTION_NAMES."""
    translation: np.ndarray
    """float64 [N, 3] box centre, global frame."""
    size: np.ndarray
    """float64 [N, 3] (w, l, h)."""
    rotation: np.ndarray
    """float64 [N, 4] quaternion (w, x, y, z)."""
    velocity: np.ndarray
    """float64 [N, 2] global-frame (vx, vy); NaN where unknown."""
    attribute: np.ndarray
    """int64 [N] index into ATTRIBUTE_NAMES, -1 for ''."""
    score: np.ndarray
    """float64 [N] detection score (-1 for GT)."""
    num_pts: np.ndarray
    """int64 [N] LiDAR + radar points (-1 for predictions without the field)."""

    def __len__(self) -> int:
        return len(self.sample)

    def select(self, index: np.ndarray) -> "EvalBoxSet":
        """The rows picked by a bool mask [N] or an index array, in that order."""
        return EvalBoxSet(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def with_samples(self, new_index: np.ndarray) -> "EvalBoxSet":
        """The same rows on another sample list: box i's sample becomes
        ``new_index[sample[i]]`` (int64 [S] old sample index -> new)."""
        return EvalBoxSet(**{**vars(self), "sample": np.asarray(new_index, np.int64)[self.sample]})

    @staticmethod
    def empty() -> "EvalBoxSet":
        """A set with no boxes."""
        return EvalBoxSet(
            sample=np.zeros(0, np.int64), label=np.zeros(0, np.int64), translation=np.zeros((0, 3)),
            size=np.ones((0, 3)), rotation=np.zeros((0, 4)), velocity=np.zeros((0, 2)),
            attribute=np.zeros(0, np.int64), score=np.zeros(0), num_pts=np.zeros(0, np.int64),
        )


def same_sample_pairs(samples_a: np.ndarray, samples_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (a, b) pair of rows on the same sample, without an [A, B] comparison matrix.

    Args:
        samples_a: int64 [A] sample of each row of the first set.
        samples_b: int64 [B] sample of each row of the second set.

    Returns:
        pair_a, pair_b: int64 [Q] row indices; sorted by a, then by b.
    """
    order_b = np.argsort(samples_b, kind="stable")  # stable: b's order is kept within a sample
    sorted_b = samples_b[order_b]
    lo = np.searchsorted(sorted_b, samples_a, side="left")
    counts = np.searchsorted(sorted_b, samples_a, side="right") - lo
    pair_a = np.repeat(np.arange(len(samples_a)), counts)
    # Position of each pair within its run of a's pairs, shifted to where a's b rows start.
    starts = np.repeat(lo - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    pair_b = order_b[np.arange(len(pair_a)) + starts]
    return pair_a, pair_b
