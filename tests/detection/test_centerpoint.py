"""CenterPoint: OpenPCDet's parameter names, counts and checkpoints; a tiny network learns."""

import pytest
import torch

from sparse3d.detection.detectors.centerpoint import CenterPoint, CenterPointConfig
from sparse3d.detection.detectors.openpcdet import (
    load_openpcdet_checkpoint,
    save_openpcdet_checkpoint,
)
from sparse3d.detection.heads.center_head import CenterHeadConfig
from sparse3d.detection.necks.bev_backbone import BevBackboneConfig


def test_full_network_has_openpcdets_entries_and_parameter_counts():
    model = CenterPoint(CenterPointConfig(), (-54.0, -54.0, -5.0, 54.0, 54.0, 3.0))
    state = model.state_dict()
    per_module = {m: sum(1 for k in state if k.startswith(m + ".")) for m in ("backbone_3d", "backbone_2d", "dense_head")}
    assert per_module == {"backbone_3d": 142, "backbone_2d": 84, "dense_head": 331} and len(state) == 557
    assert sum(k.endswith("num_batches_tracked") for k in state) == 72
    params = {m: sum(p.numel() for n, p in model.named_parameters() if n.startswith(m + ".")) for m in per_module}
    # detectors.md §2: the counts derived from OpenPCDet's module definitions
    assert params == {"backbone_3d": 2_695_312, "backbone_2d": 4_576_768, "dense_head": 1_669_510}
    assert model.grid.shape == (180, 180)


TINY_RANGE = (-12.8, -12.8, -3.0, 12.8, 12.8, 3.0)


def tiny_model() -> CenterPoint:
    return CenterPoint(tiny_config(), TINY_RANGE)


def tiny_config() -> CenterPointConfig:
    return CenterPointConfig(
        voxel_size=(0.2, 0.2, 0.2), encoder_channels=(4, 8, 8, 16),
        bev=BevBackboneConfig(layer_nums=(1, 1), num_filters=(16, 16), num_upsample_filters=(16, 16)),
        head=CenterHeadConfig(shared_channels=8, max_objs=20, max_obj_per_sample=50),
    )


@pytest.mark.parametrize("layout_of_spconv", ["1.x", "2.2"])
def test_openpcdet_checkpoint_round_trips_from_either_spconv_layout(tmp_path, layout_of_spconv):
    torch.manual_seed(0)
    source, target = tiny_model(), tiny_model()
    path = save_openpcdet_checkpoint(source, tmp_path / "checkpoint_epoch_20.pth", epoch=20)
    if layout_of_spconv == "1.x":  # [k, k, k, C_in, C_out] under DDP's module. prefix
        saved = torch.load(path, weights_only=True)
        saved["model_state"] = {"module." + k: v.permute(1, 2, 3, 4, 0) if v.dim() == 5 else v
                                for k, v in saved["model_state"].items()}
        torch.save(saved, path)
    load_openpcdet_checkpoint(target, path)
    for (name, a), b in zip(source.state_dict().items(), target.state_dict().values()):
        assert torch.equal(a, b), name


def test_checkpoint_of_another_network_names_the_keys(tmp_path):
    state = tiny_model().state_dict()
    del state["dense_head.heads_list.0.hm.1.bias"]
    with pytest.raises(KeyError, match="heads_list.0.hm.1.bias"):
        load_openpcdet_checkpoint(tiny_model(), {"model_state": state})
    with pytest.raises(ValueError, match="not an OpenPCDet checkpoint"):
        load_openpcdet_checkpoint(tiny_model(), {"epoch": 3})


def _scene(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Points on the surfaces of two boxes (a car and a pedestrian) plus ground points."""
    g = torch.Generator().manual_seed(seed)
    boxes = torch.tensor([[4.0, -3.0, -0.8, 4.6, 1.9, 1.7, 0.3, 2.0, 0.0],
                          [-5.0, 6.0, -0.9, 0.7, 0.7, 1.8, 0.0, 0.0, 1.0]])
    labels = torch.tensor([0, 8])  # car, pedestrian (DETECTION_NAMES)
    parts = []
    for box in boxes:
        local = (torch.rand(400, 3, generator=g) - 0.5) * box[3:6]
        c, s = torch.cos(box[6]), torch.sin(box[6])
        xy = torch.stack([c * local[:, 0] - s * local[:, 1], s * local[:, 0] + c * local[:, 1]], 1) + box[:2]
        parts.append(torch.cat([xy, local[:, 2:] + box[2]], 1))
    ground = torch.cat([(torch.rand(800, 2, generator=g) - 0.5) * 25, torch.full((800, 1), -1.8)], 1)
    xyz = torch.cat([*parts, ground])
    return torch.cat([xyz, torch.rand(len(xyz), 1, generator=g), torch.zeros(len(xyz), 1)], 1), boxes, labels


def test_tiny_network_fits_a_scene_and_detects_its_objects():
    torch.manual_seed(0)
    model = tiny_model()
    points, boxes, labels = _scene(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = sum(model.loss(model(points, 1), [boxes], [labels]).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
    # still in training mode: 60 steps are too few for running statistics at momentum 0.01
    with torch.no_grad():
        found = model.detections(model(points, 1))[0]
    for box, label in zip(boxes, labels):
        hits = (found.labels == label) & ((found.boxes[:, :2] - box[:2]).norm(dim=1) < 0.5)
        assert hits.any(), f"class {int(label)} at {box[:2].tolist()} not found"
