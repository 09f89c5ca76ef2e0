"""TensoRF-VM's shrink: cropped to the nodes round a box, the field is unchanged inside it."""

import torch

from sparse3d.fields.tensorf import TensorVMConfig, TensorVMField


def test_shrink_keeps_the_field_inside_the_box_with_fewer_parameters():
    config = TensorVMConfig(voxels=20**3, density_components=3, app_components=4, hidden=8, density_shift=0.0)
    lower, upper = torch.full((3,), -1.5), torch.full((3,), 1.5)
    field = TensorVMField(config, lower, upper, torch.Generator().manual_seed(0))
    box_lower, box_upper = torch.tensor([-0.6, -0.2, 0.1]), torch.tensor([0.5, 0.9, 1.0])
    points = box_lower + (box_upper - box_lower) * torch.rand(500, 3, generator=torch.Generator().manual_seed(1))
    dirs = torch.nn.functional.normalize(torch.randn(500, 3, generator=torch.Generator().manual_seed(2)), dim=1)
    before = field.num_parameters(), field.sigma(points), field.rgb(points, dirs)
    cell = 3.0 / (torch.tensor(field.resolution) - 1)
    field.shrink(box_lower, box_upper)
    assert field.num_parameters() < before[0]
    assert (field.lower <= box_lower).all() and (field.upper >= box_upper).all()
    assert ((box_lower - field.lower) < cell + 1e-6).all() and ((field.upper - box_upper) < cell + 1e-6).all()
    assert torch.allclose(field.sigma(points), before[1], atol=1e-5)
    assert torch.allclose(field.rgb(points, dirs), before[2], atol=1e-5)
    x, y, z = field.resolution
    assert [tuple(p.shape[2:]) for p in field.app_planes] == [(y, x), (z, x), (z, y)]
