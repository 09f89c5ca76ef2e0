"""MeanVFE: voxel means of the first points of each voxel, on hand-worked cases."""

import pytest
import torch

from sparse3d.nn.vfe import MeanVFE


def test_mean_of_the_first_points_of_each_voxel():
    vfe = MeanVFE(4, [0, 0, 0, 2, 2, 2], [1, 1, 1], max_points_per_voxel=2)
    points = torch.tensor([
        [0.1, 0.1, 0.1, 1.0],
        [0.3, 0.5, 0.9, 3.0],
        [0.9, 0.9, 0.9, 100.0],  # third point of voxel (0, 0, 0): beyond the cap
        [1.5, 0.5, 0.5, 7.0],
        [5.0, 0.5, 0.5, 9.0],  # outside the range
    ])
    voxels = vfe(points, batch_size=1)
    assert voxels.coords.tolist() == [[0, 0, 0, 0], [0, 1, 0, 0]]
    torch.testing.assert_close(voxels.feats, torch.tensor([[0.2, 0.3, 0.5, 2.0], [1.5, 0.5, 0.5, 7.0]]))
    assert voxels.spatial_shape == (2, 2, 2)


def test_batches_stay_apart_and_bad_input_is_refused():
    vfe = MeanVFE(3, [0, 0, 0, 1, 1, 1], [1, 1, 1])
    points = torch.tensor([[0.5, 0.5, 0.5], [0.25, 0.25, 0.25]])
    voxels = vfe(points, batch_size=2, batch=torch.tensor([0, 1], dtype=torch.int32))
    assert voxels.coords[:, 0].tolist() == [0, 1]
    with pytest.raises(ValueError, match=r"points must be \[P, 3\]"):
        vfe(torch.zeros(2, 4), batch_size=1)
    with pytest.raises(ValueError, match="batch indices"):
        vfe(points, batch_size=1, batch=torch.tensor([0, 1], dtype=torch.int32))
