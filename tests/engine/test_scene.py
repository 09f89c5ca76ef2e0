"""Scene layers check their shapes and dtypes, and name the layer and field that is wrong."""

import pytest
import torch

from sparse3d.engine.scene import (
    Boxes3D,
    CameraFrusta,
    Mesh,
    PointCloud,
    SceneLayer,
    Splats,
)
from sparse3d.geometry.cameras import Cameras, intrinsics_from_fov, look_at_viewmats


def test_layers_are_scene_layers():
    cams = Cameras(look_at_viewmats(torch.tensor([[0.0, -3.0, 1.0]]), torch.zeros(1, 3)),
                   intrinsics_from_fov(40.0, 8, 6)[None], 8, 6)
    layers = [
        Splats(torch.zeros(2, 3), torch.eye(3).expand(2, 3, 3), torch.ones(2, 3), torch.ones(2)),
        PointCloud(torch.zeros(4, 3)),
        Boxes3D(torch.zeros(3, 7), labels=torch.zeros(3, dtype=torch.int64)),
        CameraFrusta(cams, torch.zeros(1, 6, 8, 3, dtype=torch.uint8)),
        Mesh(torch.eye(3), torch.tensor([[0, 1, 2]])),
    ]
    assert all(isinstance(layer, SceneLayer) for layer in layers)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Splats(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2, 3), torch.ones(2)),
         r"Splats 'splats': covariances must be float \[2, 3, 3\], got torch.float32 \[2, 3\]"),
        (lambda: PointCloud(torch.zeros(4, 3), colors=torch.zeros(4, 3)), r"colors must be uint8 \[4, 3\]"),
        (lambda: Boxes3D(torch.zeros(3, 9)), r"boxes must be float \[3, 7\]"),
        (lambda: Boxes3D(torch.zeros(3, 7), labels=torch.zeros(3, dtype=torch.int32)), r"labels must be int64 \[3\]"),
        (lambda: Mesh(torch.eye(3), torch.tensor([[0, 1, 3]])), "faces must index the 3 vertices"),
        (lambda: PointCloud(torch.zeros(4, 3, requires_grad=True)), "requires grad"),
    ],
)
def test_wrong_shapes_and_dtypes_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()
