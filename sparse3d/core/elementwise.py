"""Elementwise activations whose bits do not depend on the thread count.

torch splits an elementwise op over more values than its grain (32,768) between its
threads, at points that depend on the thread count, and the values before a split point
that do not fill a whole vector register take the op's scalar code. For softplus and
sigmoid (forward and backward) the scalar and the vector code round differently, so one
value in a few hundred thousand changes its last bit with the thread count (measured on
torch 2.13: 43 of 67 tensor sizes near 500,000 values for softplus, 20 for sigmoid).
Applied to aligned pieces below the grain, every value takes the same code at any thread
count, forward and backward; each piece then runs on one thread, which costs little
beside the ops these activations follow.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

PIECE = 16384
"""Values per piece: below torch's grain, a multiple of every vector width."""


def thread_invariant(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``fn(x)`` for an elementwise ``fn``, applied to ``PIECE``-value pieces of ``x``
    [...] (any float dtype, flattened row-major) so that its bits do not depend on
    the thread count; differentiable. Tensors of one piece or less go to ``fn`` whole."""
    if x.numel() <= PIECE:
        return fn(x)
    flat = x.reshape(-1)
    return torch.cat([fn(piece) for piece in flat.split(PIECE)]).reshape(x.shape)


def softplus(x: Tensor) -> Tensor:
    """``F.softplus(x)`` with bits independent of the thread count (:func:`thread_invariant`)."""
    return thread_invariant(F.softplus, x)


def sigmoid(x: Tensor) -> Tensor:
    """``torch.sigmoid(x)`` with bits independent of the thread count (:func:`thread_invariant`)."""
    return thread_invariant(torch.sigmoid, x)
