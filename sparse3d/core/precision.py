"""bfloat16 inference: when it runs, and where the CPU makes it pay.

The switch is torch's own: under ``torch.autocast("cpu", dtype=torch.bfloat16)`` torch's
dense layers run in bfloat16, and the sparse convolutions of :mod:`sparse3d.nn` multiply
bfloat16 features and weights into float32 sums (:func:`sparse3d.core.conv.sparse_conv`)
when no gradient is needed, the layer's output width is a multiple of 16 and this CPU has
the instructions for it; elsewhere they stay float32 (the fallback: widened bf16 would
only add rounding, not speed).
"""

import functools

import torch

from sparse3d._native import HAS_NATIVE


@functools.cache  # a property of the CPU and of ATEN_CPU_CAPABILITY, both fixed per process
def bf16_dot_products() -> bool:
    """Whether this CPU multiplies pairs of bfloat16 values into float32 in one instruction
    (AVX512-BF16, as Cooper Lake, Sapphire Rapids and later Xeons and AMD Zen 4 have),
    within the cap that ``ATEN_CPU_CAPABILITY`` sets (``avx2`` or ``default`` turn it off)."""
    return HAS_NATIVE and bool(torch.ops.sparse3d.bf16_dot_products())


def bf16_inference() -> bool:
    """Whether a sparse convolution called now should run in bfloat16: CPU autocast to
    bfloat16 is on and the CPU has bfloat16 dot products (the caller checks that no
    gradient is needed)."""
    return (torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
            and bf16_dot_products())
