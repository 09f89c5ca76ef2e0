"""SparseVoxels: validation of bad input with clear errors, dense round trips, shapes."""

import pytest
import torch
from sparse_cases import random_voxels

from sparse3d.core.coords import conv_output_shape, coord_keys, keys_to_coords
from sparse3d.core.sparse_voxels import SparseVoxels


def _voxels(coords, feats=None, shape=(4, 4, 4), batch_size=1):
    coords = torch.tensor(coords, dtype=torch.int32) if not isinstance(coords, torch.Tensor) else coords
    feats = torch.ones(coords.shape[0], 2) if feats is None else feats
    return SparseVoxels(coords, feats, shape, batch_size)


@pytest.mark.parametrize(
    "coords,error,match",
    [
        ([[0, 4, 0, 0]], ValueError, r"column 1 must lie in \[0, 4\).*got range \[4, 4\]"),
        ([[0, 0, 0, -1]], ValueError, r"column 3 must lie in \[0, 4\)"),
        ([[-1, 0, 0, 0]], ValueError, r"batch indices must lie in \[0, 1\)"),
        ([[1, 0, 0, 0]], ValueError, r"batch indices must lie in \[0, 1\)"),
        ([[0, 1, 2, 3], [0, 0, 0, 0], [0, 1, 2, 3]], ValueError, r"1 duplicate coordinate rows, e.g. \[0, 1, 2, 3\]"),
    ],
)
def test_bad_coordinates_are_rejected(coords, error, match):
    with pytest.raises(error, match=match):
        _voxels(coords)


def test_bad_dtypes_and_shapes_are_rejected():
    with pytest.raises(TypeError, match="coords must be int32"):
        SparseVoxels(torch.zeros(1, 4, dtype=torch.int64), torch.ones(1, 2), (4, 4, 4), 1)
    with pytest.raises(ValueError, match=r"coords must have shape \[N, 4\], got \[1, 3\]"):
        SparseVoxels(torch.zeros(1, 3, dtype=torch.int32), torch.ones(1, 2), (4, 4, 4), 1)
    with pytest.raises(ValueError, match=r"feats must be \[N, C\] with N = 1, got \[2, 2\]"):
        SparseVoxels(torch.zeros(1, 4, dtype=torch.int32), torch.ones(2, 2), (4, 4, 4), 1)
    with pytest.raises(TypeError, match="feats must be floating point"):
        SparseVoxels(torch.zeros(1, 4, dtype=torch.int32), torch.ones(1, 2, dtype=torch.int64), (4, 4, 4), 1)
    with pytest.raises(ValueError, match="spatial_shape must be an int or 3 ints"):
        SparseVoxels(torch.zeros(1, 4, dtype=torch.int32), torch.ones(1, 2), (4, 4), 1)


def test_empty_voxels_are_valid():
    x = _voxels(torch.zeros(0, 4, dtype=torch.int32))
    assert x.num_voxels == 0 and x.dense().shape == (1, 2, 4, 4, 4)


def test_dense_round_trip():
    x = random_voxels(0, dtype=torch.float32)
    grid = x.dense()
    assert grid.shape == (2, 3, 7, 8, 9)
    y = SparseVoxels.from_dense(grid)
    keys_x, keys_y = coord_keys(x.coords, x.spatial_shape), coord_keys(y.coords, y.spatial_shape)
    order_x = keys_x.argsort()
    assert torch.equal(keys_x[order_x], keys_y)  # from_dense returns sites in key order
    assert torch.equal(x.feats[order_x], y.feats)
    assert torch.equal(x.dense(channels_first=False), grid.permute(0, 2, 3, 4, 1))


def test_keys_round_trip_and_output_shape_formula():
    x = random_voxels(1)
    assert torch.equal(keys_to_coords(coord_keys(x.coords, x.spatial_shape), x.spatial_shape), x.coords)
    # spconv / torch: (in + 2p - d(k - 1) - 1) // s + 1; nuScenes encoder shapes.
    assert conv_output_shape((41, 1440, 1440), (3, 3, 3), (2, 2, 2), (1, 1, 1), (1, 1, 1)) == (21, 720, 720)
    assert conv_output_shape((11, 360, 360), (3, 3, 3), (2, 2, 2), (0, 1, 1), (1, 1, 1)) == (5, 180, 180)
    assert conv_output_shape((5, 180, 180), (3, 1, 1), (2, 1, 1), (0, 0, 0), (1, 1, 1)) == (2, 180, 180)
    with pytest.raises(ValueError, match="empty axis"):
        conv_output_shape((2, 8, 8), (3, 3, 3), (1, 1, 1), (0, 0, 0), (1, 1, 1))
