"""DSVT set attention and blocks: dense oracle, equivariance, gradients, determinism."""

import pytest
import torch
from nn.dsvt_cases import random_voxels, tiny_voxel_config
from torch import nn

from sparse3d.core.partition import set_partition
from sparse3d.nn.dsvt import DSVT
from sparse3d.nn.dsvt.attention import SetAttention, SetLayout
from sparse3d.nn.dsvt.blocks import DSVTBlock
from sparse3d.nn.gather import GatherPlan, gather_rows
from sparse3d.nn.layer_norm import LayerNorm


def dense_window_attention(attn: SetAttention, feats, pos, coords, part, row, window, shift):
    """Window by window: nn.MultiheadAttention over all the window's voxels, with a dense
    mask letting each voxel see exactly the distinct voxels of the set of its first slot."""
    mha = nn.MultiheadAttention(feats.shape[1], attn.num_heads, batch_first=True, dtype=feats.dtype)
    mha.in_proj_weight.data.copy_(attn.in_proj.weight)
    mha.in_proj_bias.data.copy_(attn.in_proj.bias)
    mha.out_proj.weight.data.copy_(attn.out_proj.weight)
    mha.out_proj.bias.data.copy_(attn.out_proj.bias)
    set_size = part.set_inds.shape[2]
    shifted = coords[:, 1:].long() + torch.tensor(shift)
    window_of = torch.cat([coords[:, :1].long(), shifted // torch.tensor(window)], 1)
    out = torch.full_like(feats, float("nan"))
    for win in torch.unique(window_of, dim=0):
        members = (window_of == win).all(1).nonzero()[:, 0]
        local = {int(v): i for i, v in enumerate(members)}
        blocked = torch.ones(len(members), len(members), dtype=torch.bool)
        for i, v in enumerate(members.tolist()):
            own_set = part.set_inds[row, int(part.first_slot[row, v]) // set_size]
            for k in own_set.tolist():
                blocked[i, local[k]] = False  # raises KeyError if a set leaves its window
        qk = (feats + pos)[members][None]
        out[members] = mha(qk, qk, feats[members][None], attn_mask=blocked, need_weights=False)[0][0]
    return out


@pytest.mark.parametrize("shift", [(0, 0, 0), (2, 1, 0)])
@pytest.mark.parametrize("row", [0, 1])
def test_set_attention_equals_dense_masked_window_attention(shift, row):
    torch.manual_seed(0)
    shape, window, set_size = (11, 9, 2), (4, 4, 2), 5
    voxels = random_voxels(1, 120, shape, 8, dtype=torch.float64)  # windows hold 1..32 voxels
    part = set_partition(voxels.coords, shape, window, shift, set_size)
    assert int((part.set_inds[row][:, :, None] == part.set_inds[row][:, None, :]).sum()) > part.set_inds[row].numel()
    attn = SetAttention(8, 2, 16).double()
    pos = torch.randn_like(voxels.feats)
    got = attn.attend(voxels.feats, pos, SetLayout.build(part), row)
    want = dense_window_attention(attn, voxels.feats, pos, voxels.coords, part, row, window, shift)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_window_in_one_set_is_plain_window_attention():
    """When every window fits in one set, set attention is full attention inside windows."""
    torch.manual_seed(1)
    voxels = random_voxels(2, 40, (8, 8, 1), 8, batch_size=1, dtype=torch.float64)
    part = set_partition(voxels.coords, (8, 8, 1), (4, 4, 1), (0, 0, 0), 16)
    attn = SetAttention(8, 2, 16).double()
    pos = torch.randn_like(voxels.feats)
    got = attn.attend(voxels.feats, pos, SetLayout.build(part), 0)
    window_of = voxels.coords[:, 1:3].long() // 4
    mha = nn.MultiheadAttention(8, 2, batch_first=True, dtype=torch.float64)
    mha.load_state_dict({"in_proj_weight": attn.in_proj.weight, "in_proj_bias": attn.in_proj.bias,
                         "out_proj.weight": attn.out_proj.weight, "out_proj.bias": attn.out_proj.bias})
    for win in torch.unique(window_of, dim=0):
        members = (window_of == win).all(1).nonzero()[:, 0]
        qk = (voxels.feats + pos)[members][None]
        want = mha(qk, qk, voxels.feats[members][None], need_weights=False)[0][0]
        torch.testing.assert_close(got[members], want, rtol=1e-10, atol=1e-10)


def test_backbone_is_permutation_equivariant():
    torch.manual_seed(2)
    config = tiny_voxel_config()
    model = DSVT(config).train()
    voxels = random_voxels(3, 200, config.grid_shape, config.channels, batch_size=2)
    out = model(voxels)
    perm = torch.randperm(voxels.num_voxels)
    shuffled = type(voxels)(voxels.coords[perm], voxels.feats[perm], voxels.spatial_shape, voxels.batch_size)
    out_shuffled = model(shuffled)
    # pooled sites come out sorted, so the two outputs are row-aligned
    assert torch.equal(out.coords, out_shuffled.coords)
    torch.testing.assert_close(out.feats, out_shuffled.feats, rtol=1e-5, atol=1e-5)


def test_single_stage_block_is_permutation_equivariant_per_voxel():
    torch.manual_seed(3)
    voxels = random_voxels(4, 150, (12, 10, 1), 16)
    block = DSVTBlock(16, 4, 32, (4, 4, 1), shift=1)
    parts = [SetLayout.build(set_partition(voxels.coords, (12, 10, 1), (4, 4, 1), s, 7)) for s in ((0, 0, 0), (2, 2, 0))]
    out = block(voxels.feats, parts)
    perm = torch.randperm(voxels.num_voxels)
    parts_p = [SetLayout.build(set_partition(voxels.coords[perm], (12, 10, 1), (4, 4, 1), s, 7)) for s in ((0, 0, 0), (2, 2, 0))]
    torch.testing.assert_close(block(voxels.feats[perm], parts_p), out[perm], rtol=1e-5, atol=1e-5)


def test_gradcheck_float64_tiny_backbone():
    torch.manual_seed(4)
    config = tiny_voxel_config(channels=4)
    model = DSVT(config).double().train()
    voxels = random_voxels(5, 24, config.grid_shape, 4, batch_size=1, dtype=torch.float64)
    feats = voxels.feats.clone().requires_grad_()

    def run(f):
        return model(voxels.replace_feats(f)).feats

    assert torch.autograd.gradcheck(run, (feats,), eps=1e-6, atol=1e-6, fast_mode=True)


def test_outputs_and_gradients_independent_of_thread_count():
    torch.manual_seed(5)
    config = tiny_voxel_config()
    model = DSVT(config).train()
    voxels = random_voxels(6, 900, config.grid_shape, config.channels)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, max(2, threads)):
            torch.set_num_threads(n)
            feats = voxels.feats.clone().requires_grad_()
            out = model(voxels.replace_feats(feats)).feats
            results.append((out, *torch.autograd.grad((out * out).sum(), [feats, *model.parameters()])))
    finally:
        torch.set_num_threads(threads)
    for one, many in zip(*results):
        assert torch.equal(one, many)


def test_layer_norm_matches_torch():
    torch.manual_seed(6)
    ours, ref = LayerNorm(8).double(), nn.LayerNorm(8).double()
    with torch.no_grad():
        ours.weight.normal_(), ours.bias.normal_()
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(5, 3, 8, dtype=torch.float64, requires_grad=True)
    v = torch.randn(5, 3, 8, dtype=torch.float64)
    out, want = ours(x), ref(x)
    torch.testing.assert_close(out, want)
    got_grads = torch.autograd.grad(out, [x, ours.weight, ours.bias], v)
    want_grads = torch.autograd.grad(want, [x, ref.weight, ref.bias], v)
    for got, exp in zip(got_grads, want_grads):
        torch.testing.assert_close(got, exp)


def test_wrong_channel_count_is_a_clear_error():
    model = DSVT(tiny_voxel_config())
    voxels = random_voxels(7, 10, model.config.grid_shape, 3)
    with pytest.raises(ValueError, match="expected 16 feature channels, got 3"):
        model(voxels)


def test_gather_rows_matches_index_select_with_repeats():
    torch.manual_seed(7)
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    index = torch.tensor([4, 4, 0, 5, 4, 1, 1, 0])  # rows 2 and 3 never read
    out = gather_rows(x, GatherPlan.build(index, 6))
    want = x.index_select(0, index)
    assert torch.equal(out, want)
    v = torch.randn_like(want)
    torch.testing.assert_close(torch.autograd.grad(out, x, v)[0], torch.autograd.grad(want, x, v)[0])
