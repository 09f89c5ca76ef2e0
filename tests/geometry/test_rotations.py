"""One quaternion <-> matrix implementation for numpy and torch: same values, each
library's array type back, gradients through torch."""

import numpy as np
import pytest
import torch

from sparse3d.geometry.rotations import quats_from_rotmats, rotmats_from_quats


def _quats(n: int, seed: int) -> np.ndarray:
    """float64 [n, 4] random unnormalised quaternions, the first three half turns (w = 0)."""
    q = np.random.default_rng(seed).normal(size=(n, 4))
    q[:3] = np.array([[0.0, 1, 0, 0], [0.0, 0, 1, 0], [0.0, 0, 0, 2]])[:n]
    return q


@pytest.mark.parametrize("shape", [(4,), (200, 4), (3, 5, 4)])
def test_numpy_and_torch_float64_agree(shape):
    q = _quats(int(np.prod(shape[:-1])), seed=0).reshape(shape)
    rot = rotmats_from_quats(q)
    assert isinstance(rot, np.ndarray) and rot.dtype == np.float64 and rot.shape == shape[:-1] + (3, 3)
    # The same lines run on both libraries; torch's vectorised sqrt may round differently.
    np.testing.assert_allclose(rotmats_from_quats(torch.from_numpy(q)).numpy(), rot, rtol=0, atol=1e-15)
    back = quats_from_rotmats(rot)
    assert isinstance(back, np.ndarray) and back.shape == shape
    np.testing.assert_allclose(quats_from_rotmats(torch.from_numpy(rot)).numpy(), back, rtol=0, atol=1e-15)
    np.testing.assert_allclose(np.linalg.norm(back, axis=-1), 1.0, atol=1e-15)
    assert (back[..., 0] >= 0).all()
    np.testing.assert_allclose(rotmats_from_quats(back), rot, atol=1e-15)


def test_lists_read_as_float64_and_tensors_keep_dtype():
    assert rotmats_from_quats([1, 0, 0, 0]).dtype == np.float64
    q = torch.tensor(_quats(10, seed=1), dtype=torch.float32)
    rot = rotmats_from_quats(q)
    assert rot.dtype == torch.float32
    torch.testing.assert_close(quats_from_rotmats(rot).abs(), (q / q.norm(dim=-1, keepdim=True)).abs())


def test_matches_pyquaternion():
    pyquaternion = pytest.importorskip("pyquaternion")
    q = _quats(50, seed=2)
    for qi, rot in zip(q, rotmats_from_quats(q)):
        np.testing.assert_allclose(rot, pyquaternion.Quaternion(qi).rotation_matrix, rtol=0, atol=1e-15)


def test_torch_gradients():
    q = torch.tensor(_quats(20, seed=3)[3:], requires_grad=True)
    assert torch.autograd.gradcheck(rotmats_from_quats, (q,))
    rot = rotmats_from_quats(q.detach()).requires_grad_()
    assert torch.autograd.gradcheck(quats_from_rotmats, (rot,))
    # The zero quaternion gives the zero matrix, and a zero (not NaN) gradient.
    zero = torch.zeros(1, 4, requires_grad=True)
    rotmats_from_quats(zero).sum().backward()
    assert torch.equal(zero.grad, torch.zeros(1, 4))
