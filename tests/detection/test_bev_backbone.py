"""BaseBEVBackbone: OpenPCDet's state-dict names and shapes, output shape, determinism."""

import pytest
import torch
from torch import nn

from sparse3d.detection.necks.bev_backbone import BaseBEVBackbone, BevBackboneConfig


def _bn(prefix: str, c: int) -> dict[str, list[int]]:
    return {f"{prefix}.weight": [c], f"{prefix}.bias": [c], f"{prefix}.running_mean": [c],
            f"{prefix}.running_var": [c], f"{prefix}.num_batches_tracked": []}


def _openpcdet_centerpoint_keys() -> dict[str, list[int]]:
    """backbone_2d of OpenPCDet's cbgs_voxel0075_res3d_centerpoint (detectors.md §2.2)."""
    keys = {"blocks.0.1.weight": [128, 256, 3, 3], **_bn("blocks.0.2", 128),
            "blocks.1.1.weight": [256, 128, 3, 3], **_bn("blocks.1.2", 256)}
    for level, c in ((0, 128), (1, 256)):
        for conv in (4, 7, 10, 13, 16):
            keys[f"blocks.{level}.{conv}.weight"] = [c, c, 3, 3]
            keys.update(_bn(f"blocks.{level}.{conv + 1}", c))
    keys["deblocks.0.0.weight"] = [128, 256, 1, 1]
    keys.update(_bn("deblocks.0.1", 256))
    keys["deblocks.1.0.weight"] = [256, 256, 2, 2]
    keys.update(_bn("deblocks.1.1", 256))
    return keys


def test_state_dict_is_openpcdets():
    state = BaseBEVBackbone(BevBackboneConfig(), 256).state_dict()
    expected = _openpcdet_centerpoint_keys()
    assert len(state) == len(expected) == 84
    assert {k: list(v.shape) for k, v in state.items()} == expected


def test_levels_are_upsampled_and_concatenated():
    config = BevBackboneConfig(layer_nums=(1, 1), num_filters=(8, 16), num_upsample_filters=(4, 6))
    net = BaseBEVBackbone(config, 5).eval()
    out = net(torch.randn(2, 5, 12, 10))
    assert out.shape == (2, config.out_channels, 12, 10) and config.out_channels == 10
    # the second level (stride 2) is a block-constant upsampling of a 6 x 5 map: with its
    # deblock's 2 x 2 kernel set to one value, each 2 x 2 block of its channels is constant
    with torch.no_grad():
        net.deblocks[1][0].weight.fill_(0.1)
        up = net(torch.randn(1, 5, 12, 10))[0, 4:]
    torch.testing.assert_close(up[:, 0::2, 0::2], up[:, 1::2, 1::2])


def test_matches_torch_layers_and_ignores_thread_count():
    torch.manual_seed(0)
    config = BevBackboneConfig(layer_nums=(2, 2), num_filters=(16, 32), num_upsample_filters=(16, 16))
    net = BaseBEVBackbone(config, 8)
    x = torch.randn(2, 8, 24, 24)
    runs = []
    for threads in (1, 2):
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            clone = BaseBEVBackbone(config, 8)
            clone.load_state_dict(net.state_dict())
            out = clone(x)
            runs.append((out, *torch.autograd.grad(out.square().sum(), list(clone.parameters()))))
        finally:
            torch.set_num_threads(previous)
    for a, b in zip(*runs):
        assert torch.equal(a, b)
    # the same network built from torch's own layers gives the same output
    plain = BaseBEVBackbone(config, 8)
    for module in plain.modules():
        for name, child in module.named_children():
            if isinstance(child, nn.ConvTranspose2d):
                swap = nn.ConvTranspose2d(child.in_channels, child.out_channels, child.kernel_size, child.stride, bias=False)
            elif isinstance(child, nn.Conv2d):
                swap = nn.Conv2d(child.in_channels, child.out_channels, 3, child.stride, child.padding, bias=False)
            elif isinstance(child, nn.BatchNorm2d):
                swap = nn.BatchNorm2d(child.num_features, eps=1e-3, momentum=0.01)
            else:
                continue
            setattr(module, name, swap)
    plain.load_state_dict(net.state_dict())
    torch.testing.assert_close(plain(x), runs[0][0], rtol=1e-4, atol=1e-4)


def test_config_errors_name_the_keys():
    with pytest.raises(ValueError, match="one entry per level"):
        BevBackboneConfig(layer_nums=(5,))
