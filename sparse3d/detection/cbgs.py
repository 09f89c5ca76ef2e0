"""Class-balanced grouping and sampling (CBGS, Zhu et al. 2019, arXiv:1908.09492): the
training list resampled so that every class appears in about the same number of samples.

As OpenPCDet's ``NuScenesDataset.balanced_infos_resampling``: for each class ``c``, list
the samples that contain it (a sample enters one list per class it holds); with
``dist(c) = |list_c| / sum_c' |list_c'|`` and ``ratio(c) = (1 / K) / dist(c)``, draw
``int(|list_c| * ratio(c))`` samples of ``list_c`` with replacement, and concatenate the
draws in class order.
"""

import numpy as np


def cbgs_groups(sample_labels: list[np.ndarray], num_classes: int) -> list[tuple[np.ndarray, int]]:
    """Each class's member samples and how many draws it gets (the deterministic half of
    :func:`cbgs_indices`; the sum of the counts is the resampled length).

    A class that no sample holds gets no draws (the reference divides by zero there).

    Args:
        sample_labels: one int array per sample: the class ids (in ``[0, num_classes)``)
            of its GT boxes; repeats and empty arrays are fine.
        num_classes: K, the number of classes the ratio is taken over.

    Returns:
        K pairs (int64 [n_c] indices of the samples holding class c, ascending; draw count).
    """
    if num_classes < 1:
        raise ValueError(f"cbgs: num_classes must be >= 1, got {num_classes}")
    per_class: list[list[int]] = [[] for _ in range(num_classes)]
    for index, labels in enumerate(sample_labels):
        labels = np.asarray(labels)
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"cbgs: sample {index} has class ids {sorted(set(labels.tolist()))}, "
                             f"expected values in [0, {num_classes})")
        for c in np.unique(labels):
            per_class[int(c)].append(index)
    total = sum(len(members) for members in per_class)
    groups = []
    for members in per_class:
        # The reference's float operations, in its order, so that int() truncates alike.
        count = int(len(members) * ((1.0 / num_classes) / (len(members) / total))) if members else 0
        groups.append((np.asarray(members, np.int64), count))
    return groups


def cbgs_indices(sample_labels: list[np.ndarray], num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """The class-balanced resampled list of sample indices.

    Args:
        sample_labels: one int array per sample: the class ids (in ``[0, num_classes)``)
            of its GT boxes; repeats and empty arrays are fine.
        num_classes: K, the number of classes the ratio is taken over.
        rng: numpy random generator (consumed): the draws with replacement.

    Returns:
        int64 [N'] indices into ``sample_labels``, grouped by class (class 0's draws first).
    """
    draws = [np.zeros(0, np.int64)]
    for members, count in cbgs_groups(sample_labels, num_classes):
        if count:
            draws.append(rng.choice(members, count, replace=True))
    return np.concatenate(draws)
