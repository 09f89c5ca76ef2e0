"""DsvtDetector: DSVT-P's nuScenes geometry and OpenPCDet's names after the 3D backbone,
grid checks, checkpoints, thread-count determinism; a tiny network learns a scene."""

import pytest
import torch

from sparse3d.detection.detectors.dsvt import DsvtDetector, DsvtDetectorConfig
from sparse3d.detection.detectors.openpcdet import (
    load_openpcdet_checkpoint,
    save_openpcdet_checkpoint,
)
from sparse3d.detection.heads.center_head import CenterHead, CenterHeadConfig
from sparse3d.detection.necks.bev_backbone import BevBackboneConfig

NUSCENES_RANGE = (-54.0, -54.0, -5.0, 54.0, 54.0, 3.0)


def test_full_network_is_dsvt_p_nuscenes_with_center_heads():
    model = DsvtDetector(DsvtDetectorConfig(), NUSCENES_RANGE)
    assert model.vfe.grid_shape == (360, 360, 1) and model.grid.shape == (180, 180)  # stride 2: 0.6 m cells
    backbone = model.backbone_3d.config
    assert (backbone.channels, backbone.num_heads, backbone.ffn_channels) == (128, 8, 256)
    (stage,) = backbone.stages
    assert (stage.window, stage.shifts, stage.set_size, stage.num_blocks) == ((30, 30, 1), ((0, 0, 0), (15, 15, 0)), 90, 4)
    assert model.backbone_2d.in_channels == 128 and model.backbone_2d.config.out_channels == 384
    state = model.state_dict()
    per_module = {m: sum(1 for k in state if k.startswith(m + ".")) for m in ("vfe", "backbone_3d", "backbone_2d", "dense_head")}
    assert sum(per_module.values()) == len(state)  # nothing outside OpenPCDet's top-level modules
    # backbone_2d: test_bev_res_backbone.py checks it against OpenPCDet's names; the head is
    # CenterPoint's on 384 channels, its convs before batch norm without bias (DSVT's heads)
    head = CenterHead(DsvtDetectorConfig().head, 384).state_dict()
    assert {k.removeprefix("dense_head."): v.shape for k, v in state.items() if k.startswith("dense_head.")} == \
        {k: v.shape for k, v in head.items()}
    assert per_module["backbone_2d"] == 132 and per_module["dense_head"] == 331 - 37
    assert "dense_head.shared_conv.0.bias" not in state


def test_config_and_grid_errors():
    with pytest.raises(ValueError, match="multiple of 4"):
        DsvtDetector(DsvtDetectorConfig(), (-54.3, -54.0, -5.0, 54.0, 54.0, 3.0))  # 361 pillars in x
    with pytest.raises(ValueError, match="divisible by num_heads"):
        DsvtDetectorConfig(vfe_filters=(12, 12))


TINY_RANGE = (-12.8, -12.8, -3.0, 12.8, 12.8, 3.0)


def tiny_config() -> DsvtDetectorConfig:
    """0.4 m pillars (64 x 64), width 16, 2 blocks of sets of 32 in 8 x 8 windows; the
    head on 32 x 32 cells of 0.8 m."""
    return DsvtDetectorConfig(
        voxel_size=(0.4, 0.4, 6.0), vfe_filters=(16, 16), num_heads=2, ffn_channels=32,
        window=(8, 8, 1), window_shift=(4, 4, 0), set_size=32, num_blocks=2,
        bev=BevBackboneConfig(layer_nums=(1, 1, 1), layer_strides=(1, 2, 2), num_filters=(16, 16, 16),
                              upsample_strides=(0.5, 1, 2), num_upsample_filters=(16, 16, 16)),
        head=CenterHeadConfig(shared_channels=8, use_bias_before_norm=False, max_objs=20, max_obj_per_sample=50),
    )


def _scene(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Points filling a car and a pedestrian box (yawed), on a ground plane: [P, 5], boxes
    [2, 9], labels [2] (car 0, pedestrian 8 of DETECTION_NAMES)."""
    g = torch.Generator().manual_seed(seed)
    boxes = torch.tensor([[3.5, -4.0, -0.9, 4.4, 1.8, 1.6, -0.6, 1.5, 0.5],
                          [-6.0, 5.0, -0.9, 0.6, 0.7, 1.8, 0.4, 0.0, -1.0]])
    parts = []
    for box in boxes:
        local = (torch.rand(300, 3, generator=g) - 0.5) * box[3:6]
        c, s = torch.cos(box[6]), torch.sin(box[6])
        xy = torch.stack([c * local[:, 0] - s * local[:, 1], s * local[:, 0] + c * local[:, 1]], 1) + box[:2]
        parts.append(torch.cat([xy, local[:, 2:] + box[2]], 1))
    ground = torch.cat([(torch.rand(600, 2, generator=g) - 0.5) * 25, torch.full((600, 1), -1.8)], 1)
    xyz = torch.cat([*parts, ground])
    return torch.cat([xyz, torch.rand(len(xyz), 1, generator=g), torch.zeros(len(xyz), 1)], 1), boxes, torch.tensor([0, 8])


def test_tiny_network_fits_a_scene_and_detects_its_objects():
    torch.manual_seed(0)
    model = DsvtDetector(tiny_config(), TINY_RANGE)
    assert model.grid.shape == (32, 32)
    points, boxes, labels = _scene(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = sum(model.loss(model(points, 1), [boxes], [labels]).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    with torch.no_grad():  # training mode: 40 steps are too few for running statistics at momentum 0.01
        found = model.detections(model(points, 1))[0]
    for box, label in zip(boxes, labels):
        hits = (found.labels == label) & ((found.boxes[:, :2] - box[:2]).norm(dim=1) < 0.5)
        assert hits.any(), f"class {int(label)} at {box[:2].tolist()} not found"


def test_outputs_and_gradients_independent_of_thread_count():
    torch.manual_seed(0)
    reference = DsvtDetector(tiny_config(), TINY_RANGE)
    points, boxes, labels = _scene(1)
    batch = torch.cat([torch.zeros(len(points) // 2), torch.ones(len(points) - len(points) // 2)]).int()
    runs = []
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            model = DsvtDetector(tiny_config(), TINY_RANGE)
            model.load_state_dict(reference.state_dict())
            preds = model(points, 2, batch)
            loss = sum(model.loss(preds, [boxes, boxes[:1]], [labels, labels[:1]]).values())
            runs.append([loss, *(p for head in preds for p in head.values()), *torch.autograd.grad(loss, list(model.parameters()))])
    finally:
        torch.set_num_threads(previous)
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_checkpoint_round_trips_and_empty_frames_decode(tmp_path):
    torch.manual_seed(0)
    source, target = DsvtDetector(tiny_config(), TINY_RANGE), DsvtDetector(tiny_config(), TINY_RANGE)
    load_openpcdet_checkpoint(target, save_openpcdet_checkpoint(source, tmp_path / "dsvt.pth"))
    for (name, a), b in zip(source.state_dict().items(), target.state_dict().values()):
        assert torch.equal(a, b), name
    points = _scene(0)[0]
    with torch.no_grad():  # a frame without points, alone and in a batch: boxes of the right shape
        found = target.eval().detections(target(points[:0], 1))
        pair = target.detections(target(points, 2, torch.zeros(len(points), dtype=torch.int32)))
    assert found[0].boxes.shape[1] == 9 and len(pair) == 2
