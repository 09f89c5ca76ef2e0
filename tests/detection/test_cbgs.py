"""CBGS: the reference formula on hand-worked label distributions."""

import numpy as np
import pytest

from sparse3d.detection.cbgs import cbgs_groups, cbgs_indices

# 7 samples, 3 classes: class 0 in samples 0-3, class 1 in 3-4, class 2 in 5; sample 6 empty.
LABELS = [np.array([0]), np.array([0, 0]), np.array([0]), np.array([0, 1]), np.array([1]), np.array([2]),
          np.array([], np.int64)]


def test_hand_worked_counts():
    # total = 4 + 2 + 1 = 7 list entries; ratio(c) = (1/3) / (n_c / 7), draws = int(n_c * ratio):
    # class 0: int(4 * 7/12) = int(2.33) = 2; class 1: int(2 * 7/6) = 2; class 2: int(1 * 7/3) = 2.
    groups = cbgs_groups(LABELS, 3)
    assert [members.tolist() for members, _ in groups] == [[0, 1, 2, 3], [3, 4], [5]]
    assert [count for _, count in groups] == [2, 2, 2]
    out = cbgs_indices(LABELS, 3, np.random.default_rng(0))
    assert out.dtype == np.int64 and out.shape == (6,)
    assert set(out[:2]) <= {0, 1, 2, 3} and set(out[2:4]) <= {3, 4} and set(out[4:]) <= {5}


def test_unbalanced_distribution_and_an_absent_class():
    # 10 classes, class 9 absent: class 0 in 40 samples, classes 1..8 in 2 each.
    labels = [np.array([0])] * 40 + [np.array([c]) for c in range(1, 9) for _ in range(2)]
    groups = cbgs_groups(labels, 10)
    total = 40 + 16
    expected = [int(n * ((1.0 / 10) / (n / total))) for n in [40] + [2] * 8] + [0]
    assert [count for _, count in groups] == expected == [5] * 9 + [0]  # int(5.6) for each class
    out = cbgs_indices(labels, 10, np.random.default_rng(1))
    assert len(out) == 45
    per_class = [np.isin(out, members).sum() for members, _ in groups[:9]]
    assert per_class == [5] * 9  # balanced: the rare classes now appear as often as class 0


def test_truncation_follows_the_reference_float_operations():
    """Class 0 in 9 samples, class 1 in 5: exactly 14 / 2 = 7 draws each, but the
    reference's float expression gives 9 * (0.5 / (9 / 14)) = 6.999... -> 6 for class 0."""
    labels = [np.array([0])] * 9 + [np.array([1])] * 5
    assert [count for _, count in cbgs_groups(labels, 2)] == [6, 7]
    assert len(cbgs_indices(labels, 2, np.random.default_rng(0))) == 13


def test_deterministic_from_the_generator_and_with_replacement():
    labels = [np.array([0])] * 3 + [np.array([1])] * 30
    a = cbgs_indices(labels, 2, np.random.default_rng(7))
    b = cbgs_indices(labels, 2, np.random.default_rng(7))
    c = cbgs_indices(labels, 2, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # class 0 has 3 members and gets int(33 / 2) = 16 draws: repeats are unavoidable.
    assert (a < 3).sum() == 16 and len(a) == 32


def test_bad_labels_are_reported():
    with pytest.raises(ValueError, match=r"sample 1 has class ids \[0, 5\]"):
        cbgs_indices([np.array([0]), np.array([5, 0])], 3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        cbgs_indices([], 0, np.random.default_rng(0))
