"""BaseBEVResBackbone: OpenPCDet's state-dict names and shapes, output shape and stride, the
strided-conv deblock, agreement with torch's layers, determinism, config errors."""

import pytest
import torch
from torch import nn

from sparse3d.detection.necks.bev_backbone import BevBackboneConfig
from sparse3d.detection.necks.bev_res_backbone import BaseBEVResBackbone, BasicBlock
from sparse3d.nn.conv2d import Conv2d, ConvTranspose2d

DSVT_NUSCENES = BevBackboneConfig(layer_nums=(1, 2, 2), layer_strides=(1, 2, 2), num_filters=(128, 128, 256),
                                  upsample_strides=(0.5, 1, 2), num_upsample_filters=(128, 128, 128))


def _bn(prefix: str, c: int) -> dict[str, list[int]]:
    return {f"{prefix}.weight": [c], f"{prefix}.bias": [c], f"{prefix}.running_mean": [c],
            f"{prefix}.running_var": [c], f"{prefix}.num_batches_tracked": []}


def _basic_block(prefix: str, c_in: int, c: int, downsample: bool) -> dict[str, list[int]]:
    """OpenPCDet's BasicBlock: conv1 (3x3, strided), bn1, relu1, conv2 (3x3), bn2, relu2 and,
    with downsample=True, downsample_layer = [Conv2d 1x1 (strided), BatchNorm2d]; no biases."""
    keys = {f"{prefix}.conv1.weight": [c, c_in, 3, 3], **_bn(f"{prefix}.bn1", c),
            f"{prefix}.conv2.weight": [c, c, 3, 3], **_bn(f"{prefix}.bn2", c)}
    if downsample:
        keys[f"{prefix}.downsample_layer.0.weight"] = [c, c_in, 1, 1]
        keys.update(_bn(f"{prefix}.downsample_layer.1", c))
    return keys


def _openpcdet_dsvt_nuscenes_keys() -> dict[str, list[int]]:
    """backbone_2d of DSVT's dsvt_plain_1f_onestage_nusences on 128 input channels: per level,
    BasicBlock(c_in, F, stride, downsample=True) then LAYER_NUMS x BasicBlock(F, F); deblock 0
    is Conv2d(128, 128, 2, stride 2) (UPSAMPLE_STRIDE 0.5), deblocks 1 and 2 ConvTranspose2d
    ([C_in, C_out, k, k]) of kernel = stride 1 and 2; each deblock then BN and ReLU."""
    keys = {}
    c_in = 128
    for level, (layers, filters) in enumerate(zip((1, 2, 2), (128, 128, 256))):
        keys.update(_basic_block(f"blocks.{level}.0", c_in, filters, downsample=True))
        for j in range(1, layers + 1):
            keys.update(_basic_block(f"blocks.{level}.{j}", filters, filters, downsample=False))
        c_in = filters
    # deblock 0: Conv2d [C_out, C_in, k, k]; deblocks 1, 2: ConvTranspose2d [C_in, C_out, k, k]
    for level, shape in enumerate(([128, 128, 2, 2], [128, 128, 1, 1], [256, 128, 2, 2])):
        keys[f"deblocks.{level}.0.weight"] = shape
        keys.update(_bn(f"deblocks.{level}.1", 128))
    return keys


def test_state_dict_is_openpcdets():
    net = BaseBEVResBackbone(DSVT_NUSCENES, 128)
    expected = _openpcdet_dsvt_nuscenes_keys()
    state = net.state_dict()
    assert len(state) == len(expected) == 132
    assert list(state) == list(expected)  # the order too: the modules are registered as OpenPCDet's
    assert {k: list(v.shape) for k, v in state.items()} == expected
    assert sum(p.numel() for p in net.parameters()) == 5_004_544
    assert isinstance(net.deblocks[0][0], Conv2d) and type(net.deblocks[1][0]) is ConvTranspose2d


def test_output_shape_and_stride():
    assert DSVT_NUSCENES.stride == 2 and DSVT_NUSCENES.out_channels == 384
    net = BaseBEVResBackbone(DSVT_NUSCENES, 128).eval()
    assert net(torch.randn(1, 128, 16, 12)).shape == (1, 384, 8, 6)
    config = BevBackboneConfig(layer_nums=(1, 1, 1), layer_strides=(2, 2, 2), num_filters=(8, 8, 16),
                               upsample_strides=(1, 2, 4), num_upsample_filters=(4, 4, 4))
    assert config.stride == 2
    assert BaseBEVResBackbone(config, 6).eval()(torch.randn(2, 6, 16, 24)).shape == (2, 12, 8, 12)


def _torch_layers(net: nn.Module) -> nn.Module:
    """``net`` with every deterministic layer swapped for torch's own of the same geometry."""
    for module in list(net.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.ConvTranspose2d):
                swap = nn.ConvTranspose2d(child.in_channels, child.out_channels, child.kernel_size, child.stride, bias=False)
            elif isinstance(child, nn.Conv2d):
                swap = nn.Conv2d(child.in_channels, child.out_channels, child.kernel_size, child.stride, child.padding, bias=False)
            elif isinstance(child, nn.BatchNorm2d):
                swap = nn.BatchNorm2d(child.num_features, eps=child.eps, momentum=child.momentum)
            else:
                continue
            setattr(module, name, swap)
    return net


def test_matches_torch_layers_and_ignores_thread_count():
    torch.manual_seed(0)
    config = BevBackboneConfig(layer_nums=(1, 1, 1), layer_strides=(1, 2, 2), num_filters=(8, 8, 16),
                               upsample_strides=(0.5, 1, 2), num_upsample_filters=(8, 4, 4))
    net = BaseBEVResBackbone(config, 6)
    x = torch.randn(2, 6, 16, 16)
    runs = []
    for threads in (1, 2):
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            clone = BaseBEVResBackbone(config, 6)
            clone.load_state_dict(net.state_dict())
            out = clone(x)
            runs.append((out, *torch.autograd.grad(out.square().sum(), list(clone.parameters()))))
        finally:
            torch.set_num_threads(previous)
    assert runs[0][0].shape == (2, 16, 8, 8)
    for a, b in zip(*runs):
        assert torch.equal(a, b)
    plain = _torch_layers(BaseBEVResBackbone(config, 6))
    plain.load_state_dict(net.state_dict())
    torch.testing.assert_close(plain(x), runs[0][0], rtol=1e-4, atol=1e-4)


def test_basic_block_shortcuts():
    block = BasicBlock(4, 4).eval()
    with torch.no_grad():  # the residual branch silenced: the block is relu(x)
        block.bn2.weight.zero_()
        block.bn2.bias.zero_()
    x = torch.randn(1, 4, 5, 5)
    assert torch.equal(block(x), x.relu())
    assert BasicBlock(4, 6, stride=2, downsample=True).eval()(x).shape == (1, 6, 3, 3)
    with pytest.raises(ValueError, match="identity shortcut"):
        BasicBlock(4, 6)


def test_config_and_input_errors():
    with pytest.raises(ValueError, match="integer >= 1 or 1 / n"):
        BevBackboneConfig(layer_strides=(1, 2), upsample_strides=(0.3, 2))
    with pytest.raises(ValueError, match="one integer stride"):
        BevBackboneConfig(layer_strides=(1, 2), upsample_strides=(1, 1))
    net = BaseBEVResBackbone(DSVT_NUSCENES, 128).eval()
    with pytest.raises(ValueError, match="multiples of the product of the layer strides"):
        net(torch.randn(1, 128, 18, 18))  # 18 / 4 is no integer: the levels do not meet
    with pytest.raises(ValueError, match=r"\[B, 128, H, W\]"):
        net(torch.randn(1, 64, 16, 16))
