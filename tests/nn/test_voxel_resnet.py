"""VoxelResBackBone8x: OpenPCDet state-dict names, output geometry, parity with the same
encoder built from spconv layers (1 thread), and training gradients."""

import pytest
import torch
from sparse_cases import (
    ENCODER_GRID,
    assert_encoder_matches_spconv,
    encoder_scene,
    randomise_batch_norm,
)

from sparse3d.core.sparse_voxels import SparseVoxels
from sparse3d.nn.backbones.voxel_resnet import VoxelResBackBone8x
from sparse3d.nn.spconv_compat import (
    load_spconv_state_dict,
    patch_spconv_cpu_stream,
    sparse_weight_layout,
    spconv_voxel_res_backbone,
)


def test_encoder_geometry_on_nuscenes_grid():
    enc = VoxelResBackBone8x(5, (1440, 1440, 40))
    assert enc.sparse_shape == (41, 1440, 1440)
    coords = torch.tensor([[0, 700, 700, 20], [0, 701, 700, 20], [0, 10, 1400, 3]], dtype=torch.int32)
    out = enc(SparseVoxels(coords, torch.randn(3, 5), (1440, 1440, 40), 1))
    assert out.encoded.spatial_shape == (2, 180, 180) and out.encoded.feats.shape[1] == 128
    assert out.multi_scale["x_conv4"].spatial_shape == (5, 180, 180)
    assert out.bev().shape == (1, 256, 180, 180)
    with pytest.raises(ValueError, match=r"must be on the grid \(1440, 1440, 40\)"):
        enc(SparseVoxels(coords, torch.randn(3, 5), (1440, 1440, 41), 1))


def test_encoder_matches_spconv_openpcdet_encoder():
    spconv = pytest.importorskip("spconv.pytorch")
    patch_spconv_cpu_stream()
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # spconv's CPU build races at 2 threads
    try:
        reference = spconv_voxel_res_backbone(5)
        randomise_batch_norm(reference, 0)
        ours = VoxelResBackBone8x(5, ENCODER_GRID)
        ref_state = reference.state_dict()
        assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == {k: tuple(v.shape) for k, v in ref_state.items()}
        load_spconv_state_dict(ours, {"backbone_3d." + k: v for k, v in ref_state.items()} | {"dense_head.x": torch.ones(1)}, "backbone_3d.")
        # float64, so that gradients through 21 train-mode BatchNorms compare tightly. Both
        # in training mode (BN on batch statistics): spconv's CPU build asserts in eval
        # mode on convs with bias ("cpu don't support act and bias").
        reference.double(), ours.double()
        x = encoder_scene(0)
        x = x.replace_feats(x.feats.double())
        # Conv biases right before a train-mode BN have zero gradient up to rounding, so
        # the gradient tolerance is absolute, relative to the largest gradient of the network.
        assert_encoder_matches_spconv(ours, reference, x, spconv, rtol=1e-7, atol=1e-8, grad_rtol=1e-7, grad_atol=1e-10)
    finally:
        torch.set_num_threads(previous)


def test_load_names_missing_keys():
    enc = VoxelResBackBone8x(5, ENCODER_GRID)
    state = {"backbone_3d." + k: v for k, v in enc.state_dict().items() if "conv_out" not in k}
    with pytest.raises(KeyError, match="conv_out.0.weight"):
        load_spconv_state_dict(enc, state, "backbone_3d.")


@pytest.mark.parametrize("layout", ["KRSC", "RSKC", "RSCK"])
def test_every_spconv_layout_loads_to_the_same_weights(layout):
    torch.manual_seed(0)
    source, target = VoxelResBackBone8x(5, ENCODER_GRID), VoxelResBackBone8x(5, ENCODER_GRID)
    inverse = {"KRSC": (0, 1, 2, 3, 4), "RSKC": (1, 2, 3, 0, 4), "RSCK": (1, 2, 3, 4, 0)}[layout]
    state = {k: v.permute(inverse) if v.dim() == 5 else v for k, v in source.state_dict().items()}
    assert sparse_weight_layout(target, state) == layout
    load_spconv_state_dict(target, state)
    for (name, a), b in zip(source.state_dict().items(), target.state_dict().values()):
        assert torch.equal(a, b), name


def test_layouts_that_cannot_be_told_apart_or_mix_are_refused():
    enc = VoxelResBackBone8x(5, ENCODER_GRID)
    state = enc.state_dict()
    state["conv_input.0.weight"] = state["conv_input.0.weight"].permute(1, 2, 3, 0, 4)  # RSKC
    state["conv2.0.0.weight"] = state["conv2.0.0.weight"].permute(1, 2, 3, 4, 0)  # RSCK
    with pytest.raises(ValueError, match="mix spconv layouts"):
        load_spconv_state_dict(enc, state)
    state["conv2.0.0.weight"] = torch.zeros(7, 7)
    with pytest.raises(ValueError, match="conv2.0.0.weight: shape \\[7, 7\\]"):
        load_spconv_state_dict(enc, state)


def test_encoder_trains():
    torch.manual_seed(0)
    enc = VoxelResBackBone8x(5, ENCODER_GRID)
    x = encoder_scene(1, batch_size=1)
    target = torch.randn(enc(x).bev().shape)
    opt = torch.optim.Adam(enc.parameters(), lr=1e-2)
    losses = []
    for _ in range(3):
        loss = (enc(x).bev() - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters())


def test_encoder_forward_backward_is_bitwise_identical_across_thread_counts():
    torch.manual_seed(1)
    enc = VoxelResBackBone8x(5, ENCODER_GRID)
    snapshot = {k: v.clone() for k, v in enc.state_dict().items()}
    x = encoder_scene(2, batch_size=1)
    previous = torch.get_num_threads()
    runs = []
    try:
        for threads in (1, 2, 2):
            torch.set_num_threads(threads)
            enc.load_state_dict(snapshot)
            enc.zero_grad()
            feats = x.feats.clone().requires_grad_(True)
            out = enc(x.replace_feats(feats))
            grad_out = torch.sin(torch.arange(out.encoded.feats.numel(), dtype=torch.float32)).view_as(out.encoded.feats)
            out.encoded.feats.backward(grad_out)
            runs.append([out.encoded.feats.detach(), feats.grad] + [p.grad for p in enc.parameters()] + [enc.conv1[0].bn1.running_var.clone()])
    finally:
        torch.set_num_threads(previous)
    for run in runs[1:]:
        for a, b in zip(runs[0], run):
            assert torch.equal(a, b)
