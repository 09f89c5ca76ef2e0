"""Dense 2-D convolution with outputs and gradients that do not depend on the thread count.

oneDNN's CPU convolutions split their reductions by the thread count, so a network trained
with ``nn.Conv2d`` on 1 and on 2 threads drifts apart from the first step. Here a
convolution is, on the CPU, :func:`sparse3d.core.linear.conv2d_nhwc`: every output and
gradient is the fixed chain of FMAs of an im2col gather followed by
:func:`sparse3d.core.linear.linear`, computed without the columns (kh kw times the input,
what a dense BEV network would spend its memory bandwidth on). Other devices run that gather
(:class:`_Im2Col`, whose backward sums each input pixel's taps in a fixed order) and
:func:`~sparse3d.core.linear.linear`.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparse3d.core.linear import conv2d_nhwc, linear
from sparse3d.nn.linear import Linear


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters, initialisation and state-dict names), deterministic
    at any thread count. Zero padding and ``groups=1`` only.

    Input float [B, C_in, H, W] -> float [B, C_out, H', W'] (the shapes of ``nn.Conv2d``).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        _check_supported(self)

    def forward(self, x: Tensor) -> Tensor:
        return shared_input_conv2d(x, [self])[0]

    def padded(self, x: Tensor) -> Tensor:
        """``x`` [B, C_in, H, W] zero-padded and channels last: float [B, H + 2 ph, W + 2 pw, C_in]."""
        padding = self.padding
        return F.pad(x.permute(0, 2, 3, 1), (0, 0, padding[1], padding[1], padding[0], padding[0]))

    def matrix(self) -> Tensor:
        """The weight as float [C_out, kh kw C_in], in the column order of the im2col of
        :meth:`padded` (taps row-major over (kh, kw), then channels)."""
        return self.weight.permute(0, 2, 3, 1).reshape(self.out_channels, -1)


def shared_input_conv2d(x: Tensor, convs: Sequence[Conv2d]) -> list[Tensor]:
    """``[conv(x) for conv in convs]`` with the input unfolded once and one matrix product
    for all of them (e.g. the many sub-heads of a detection head that read one feature map).

    Every output is the same chain of multiply-adds as the layer's own forward, so the
    results are bitwise those of calling the layers one by one.

    Args:
        x: float [B, C_in, H, W].
        convs: layers of one geometry (kernel size, stride, padding, dilation, C_in).

    Returns:
        float [B, C_out_i, H', W'] per layer, in order.
    """
    first = convs[0]
    geometry = (first.in_channels, first.kernel_size, first.stride, first.padding, first.dilation)
    if any((c.in_channels, c.kernel_size, c.stride, c.padding, c.dilation) != geometry for c in convs):
        raise ValueError("shared_input_conv2d: the layers must share in_channels, kernel_size, stride, padding and dilation")
    if len(convs) == 1:
        weight, bias = first.matrix(), first.bias
    else:
        weight = torch.cat([c.matrix() for c in convs])
        bias = torch.cat([c.bias if c.bias is not None else weight.new_zeros(c.out_channels) for c in convs])
    padded, taps = first.padded(x), (first.kernel_size, first.stride, first.dilation)
    out = conv2d_nhwc(padded, weight, bias, *taps)
    if out is None:  # not CPU float32
        out = linear(_Im2Col.apply(padded, *taps), weight, bias)
    out = out.permute(0, 3, 1, 2)
    return list(out.split([c.out_channels for c in convs], dim=1))


class ConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` (same parameters, initialisation and state-dict names),
    deterministic at any thread count, for kernel = stride without padding (the BEV
    backbones' upsampling): every input pixel writes its own s x s output block, so the
    layer is one :func:`sparse3d.core.linear.linear` per pixel.

    Input float [B, C_in, H, W] -> float [B, C_out, H s, W s].
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if (self.kernel_size != self.stride or self.padding != (0, 0) or self.output_padding != (0, 0)
                or self.dilation != (1, 1) or self.groups != 1):
            raise ValueError(
                f"ConvTranspose2d: only kernel_size == stride without padding, dilation or groups, got "
                f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"output_padding={self.output_padding}, dilation={self.dilation}, groups={self.groups}"
            )

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        (sh, sw), c_out = self.stride, self.out_channels
        weight = self.weight.permute(1, 2, 3, 0).reshape(c_out * sh * sw, self.in_channels)  # rows (o, i, j)
        bias = None if self.bias is None else self.bias.repeat_interleave(sh * sw)
        blocks = linear(x.permute(0, 2, 3, 1), weight, bias)  # [B, H, W, C_out sh sw]
        return blocks.view(b, h, w, c_out, sh, sw).permute(0, 3, 1, 4, 2, 5).reshape(b, c_out, h * sh, w * sw)


class _Im2Col(torch.autograd.Function):
    """Channels-last im2col: float [B, H, W, C] (padded) -> [B, H', W', kh kw C], the taps
    in the order of a weight's (kh, kw, C) flattening. The backward adds each tap's
    gradient into the input in tap order: the same sums at any thread count."""

    @staticmethod
    def forward(ctx, padded: Tensor, kernel: tuple[int, int], stride: tuple[int, int], dilation: tuple[int, int]) -> Tensor:
        windows = _tap_windows(padded.shape, kernel, stride, dilation)
        columns = torch.cat([padded[:, rows, cols] for rows, cols in windows], dim=-1)
        ctx.shape, ctx.windows = padded.shape, windows
        return columns

    @staticmethod
    def backward(ctx, grad: Tensor):
        c = ctx.shape[3]
        grad_padded = grad.new_zeros(ctx.shape)
        for k, (rows, cols) in enumerate(ctx.windows):
            grad_padded[:, rows, cols] += grad[..., k * c : (k + 1) * c]
        return grad_padded, None, None, None


def _tap_windows(shape, kernel, stride, dilation) -> list[tuple[slice, slice]]:
    """For each tap (i, j) of the kernel, the (rows, cols) slices of the padded input it reads."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    out_h = (shape[1] - dh * (kh - 1) - 1) // sh + 1
    out_w = (shape[2] - dw * (kw - 1) - 1) // sw + 1
    return [
        (slice(i * dh, i * dh + (out_h - 1) * sh + 1, sh), slice(j * dw, j * dw + (out_w - 1) * sw + 1, sw))
        for i in range(kh)
        for j in range(kw)
    ]


def deterministic_(module: nn.Module) -> nn.Module:
    """Swaps, in place, every ``nn.Conv2d`` (groups 1, zero padding) and ``nn.Linear`` of
    ``module`` for the deterministic :class:`Conv2d` / :class:`sparse3d.nn.Linear` with the
    same parameters; returns ``module``. State-dict names do not change."""
    for name, child in module.named_children():
        if type(child) is nn.Conv2d:
            _check_supported(child)
            child.__class__ = Conv2d  # the same fields; only forward differs
        elif type(child) is nn.Linear:
            child.__class__ = Linear
        else:
            deterministic_(child)
    return module


def _check_supported(conv: nn.Conv2d) -> None:
    if conv.groups != 1 or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        raise ValueError(
            f"Conv2d: only groups=1, zero padding and explicit padding sizes, got groups={conv.groups}, "
            f"padding_mode={conv.padding_mode!r}, padding={conv.padding!r}"
        )
