"""Image quality metrics: PSNR, SSIM, and LPIPS when its weights are available locally.

Images are float [..., H, W, 3] (channels last, as renderers return them) in [0, 1].
SSIM uses the 11 x 11 Gaussian window with sigma 1.5 and K1 = 0.01, K2 = 0.03 of Wang et
al. 2004. ``border="same"`` zero-pads the image and averages over every pixel, as the
3DGS / GaussianObject ``ssim`` does (the protocol of their reported numbers and the
training loss); ``border="valid"`` averages only windows inside the image, which is
scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1)``.

The GaussianObject evaluation protocol (its ``render.py``) compares the render over a
white background, **unmasked**, with the ground truth composited over white by its mask:
``image_metrics(render, image_over_white(gt, mask))``. Anything rendered outside the mask
(floaters, phantom volume) counts as error there. "Inside mask" metrics
(:func:`inside_mask_metrics`) composite *both* images over white by the mask, so only
the pixels the mask covers count (weighted by a soft mask); they are not the protocol and
hide what lies outside the object.

LPIPS (VGG, v0.1; Zhang et al. 2018) needs two weight files that are never downloaded:
torchvision's ImageNet VGG-16 (``vgg16-397923af.pth``) and the lpips package's linear
heads (``lpips/weights/v0.1/vgg.pth``). :func:`find_lpips_weights` looks for them in the
torch hub cache and an installed lpips package; without them LPIPS is reported as None.
"""

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
_C1 = 0.01**2
_C2 = 0.03**2
Border = Literal["same", "valid"]


def psnr(img: Tensor, ref: Tensor) -> Tensor:
    """Peak signal-to-noise ratio in dB for data range 1.

    Args:
        img, ref: float [..., H, W, C] in [0, 1].

    Returns:
        float [...] (inf for identical images).
    """
    _check_pair(img, ref, "psnr")
    mse = (img - ref).square().flatten(-3).mean(-1)
    return -10.0 * torch.log10(mse)


def ssim(img: Tensor, ref: Tensor, border: Border = "same") -> Tensor:
    """Structural similarity, Gaussian window 11 x 11 with sigma 1.5, averaged over the
    pixels and channels (differentiable; usable as a loss).

    Args:
        img, ref: float [..., H, W, C] in [0, 1].
        border: "same" (zero padding, every pixel; 3DGS) or "valid" (windows inside the
            image only; scikit-image). "valid" needs H, W >= 11.

    Returns:
        float [...].
    """
    _check_pair(img, ref, "ssim")
    return ssim_map(img, ref, border).flatten(-3).mean(-1)


def ssim_map(img: Tensor, ref: Tensor, border: Border = "same") -> Tensor:
    """Per-pixel SSIM, float [..., H', W', C] (H' = H for "same", H - 10 for "valid")."""
    if border not in ("same", "valid"):
        raise ValueError(f"ssim: border must be 'same' or 'valid', got {border!r}")
    batch, (h, w, c) = img.shape[:-3], img.shape[-3:]
    if border == "valid" and min(h, w) < SSIM_WINDOW:
        raise ValueError(f"ssim: border='valid' needs images of at least {SSIM_WINDOW} x {SSIM_WINDOW}, got {h} x {w}")
    x = img.reshape(-1, h, w, c).permute(0, 3, 1, 2).reshape(-1, 1, h, w)
    y = ref.reshape(-1, h, w, c).permute(0, 3, 1, 2).reshape(-1, 1, h, w)
    stats = _gaussian_filter(torch.cat([x, y, x * x, y * y, x * y], 1), border)  # [B*C, 5, H', W']
    mu_x, mu_y, xx, yy, xy = stats.unbind(1)
    var_x, var_y, cov = xx - mu_x * mu_x, yy - mu_y * mu_y, xy - mu_x * mu_y
    num = (2 * mu_x * mu_y + _C1) * (2 * cov + _C2)
    den = (mu_x * mu_x + mu_y * mu_y + _C1) * (var_x + var_y + _C2)
    out = (num / den).reshape(-1, c, *num.shape[-2:]).permute(0, 2, 3, 1)
    return out.reshape(*batch, *out.shape[1:])


def image_over_white(img: Tensor, mask: Tensor) -> Tensor:
    """The image composited over a white background by ``mask``: the protocol's ground
    truth (see the module docstring).

    Args:
        img: float [..., H, W, C] in [0, 1].
        mask: [..., H, W] bool, or float alpha in [0, 1] (a pixel with alpha a becomes
            ``a * img + (1 - a)``).

    Returns:
        float [..., H, W, C] of ``img``'s dtype, white where ``mask`` is False / 0.
    """
    alpha = mask.to(img.dtype)[..., None]
    return img * alpha + (1.0 - alpha)


def protocol_target(images: Tensor, alphas: Tensor | None, masks: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """The protocol's ground truth of a view and the object's coverage there.

    The coverage is ``alphas`` / 255 (soft) when present. The images are then already
    composited over white with exactly this coverage (a data-set invariant), so the image
    itself is the target: compositing again would whiten partly covered pixels twice
    (``c a^2 + 1 - a^2`` instead of ``c a + 1 - a``). Else it is ``masks`` and the target
    is the image over white by it; with neither, the image and no coverage.

    Args:
        images: uint8 [..., H, W, 3].
        alphas: uint8 [..., H, W] or None.
        masks: bool [..., H, W] or None.

    Returns:
        float [..., H, W, 3] target in [0, 1], and float or bool [..., H, W] coverage (None
        without alphas and masks).
    """
    image = images.float() / 255.0
    if alphas is not None:
        return image, alphas.float() / 255.0
    if masks is not None:
        return image_over_white(image, masks), masks
    return image, None


@dataclass(frozen=True)
class ImageMetrics:
    """Metrics of a batch of predicted images against their ground truth."""

    psnr: Tensor
    """float [...] dB."""
    ssim: Tensor
    """float [...]."""
    lpips: Tensor | None
    """float [...] (lower is better), or None when no LPIPS weights were available."""

    def mean(self) -> dict[str, float | None]:
        """Averages over the batch, as a JSON-ready dict (``lpips`` None when absent)."""
        return {
            "psnr": float(self.psnr.mean()),
            "ssim": float(self.ssim.mean()),
            "lpips": None if self.lpips is None else float(self.lpips.mean()),
        }


def image_metrics(img: Tensor, ref: Tensor, *, lpips_weights: "LpipsWeights | None" = None) -> ImageMetrics:
    """PSNR, SSIM ("same" border) and optional LPIPS-VGG of ``img`` against ``ref``, over
    the full frame. For the GaussianObject protocol pass the render as it is and
    ``ref = image_over_white(gt, mask)``.

    Args:
        img, ref: float [B, H, W, 3] in [0, 1].
        lpips_weights: local LPIPS-VGG weights (e.g. from :func:`find_lpips_weights`), or
            None to report LPIPS as absent. Nothing is downloaded.
    """
    lpips = None
    if lpips_weights is not None:
        with torch.no_grad():
            lpips = _lpips_model(lpips_weights).to(img.device)(img, ref)
    return ImageMetrics(psnr(img, ref), ssim(img, ref), lpips)


def inside_mask_metrics(
    img: Tensor, ref: Tensor, mask: Tensor, *, lpips_weights: "LpipsWeights | None" = None
) -> ImageMetrics:
    """:func:`image_metrics` after compositing *both* images over white by ``mask``
    [B, H, W] (bool or float alpha): errors outside the mask do not count. Not the
    GaussianObject protocol (see the module docstring)."""
    return image_metrics(image_over_white(img, mask), image_over_white(ref, mask), lpips_weights=lpips_weights)


@dataclass(frozen=True)
class LpipsWeights:
    """Local files of LPIPS-VGG v0.1."""

    vgg16: Path
    """torchvision's ImageNet VGG-16 state dict (``features.<i>.weight`` / ``.bias``)."""
    linear: Path
    """The lpips package's ``weights/v0.1/vgg.pth`` (``lin<k>.model.1.weight``, k = 0..4)."""


def find_lpips_weights() -> LpipsWeights | None:
    """LPIPS-VGG weights already on this machine (torch hub cache + installed lpips
    package, found without importing either), or None. Never downloads."""
    vgg = Path(torch.hub.get_dir()) / "checkpoints" / "vgg16-397923af.pth"
    spec = importlib.util.find_spec("lpips")
    if spec is None or spec.origin is None or not vgg.is_file():
        return None
    linear = Path(spec.origin).parent / "weights" / "v0.1" / "vgg.pth"
    return LpipsWeights(vgg, linear) if linear.is_file() else None


class LpipsVgg(torch.nn.Module):
    """LPIPS v0.1 with the VGG-16 backbone: unit-normalised relu1_2 ... relu5_3 features,
    squared differences weighted per channel by the linear heads, averaged over pixels
    and summed over layers.

    Args:
        weights: the two local weight files (loaded with ``weights_only=True``).
    """

    # VGG-16 "features": conv widths, "M" = 2x2 max-pool; LPIPS taps the ReLU before each pool.
    _CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
    _SHIFT = (-0.030, -0.088, -0.188)
    _SCALE = (0.458, 0.448, 0.450)

    def __init__(self, weights: LpipsWeights):
        super().__init__()
        vgg = _load_state(weights.vgg16, "VGG-16")
        lin = _load_state(weights.linear, "LPIPS linear heads")
        self.convs = torch.nn.ModuleList()
        index, in_ch = 0, 3
        for item in self._CONFIG:
            if item == "M":
                index += 1
                continue
            conv = torch.nn.Conv2d(in_ch, item, 3, padding=1)
            conv.weight.data, conv.bias.data = (
                _tensor(vgg, f"features.{index}.weight", weights.vgg16),
                _tensor(vgg, f"features.{index}.bias", weights.vgg16),
            )
            self.convs.append(conv)
            index, in_ch = index + 2, item  # conv + ReLU
        for k in range(5):  # per-channel weights [1, C_k, 1, 1] of the five taps
            self.register_buffer(f"head{k}", _tensor(lin, f"lin{k}.model.1.weight", weights.linear))
        self.register_buffer("shift", torch.tensor(self._SHIFT)[None, :, None, None])
        self.register_buffer("scale", torch.tensor(self._SCALE)[None, :, None, None])

    def forward(self, img: Tensor, ref: Tensor) -> Tensor:
        """LPIPS distance of float [B, H, W, 3] images in [0, 1]; float [B], 0 for equal images."""
        _check_pair(img, ref, "lpips")
        feats = [self._features(x.permute(0, 3, 1, 2) * 2 - 1) for x in (img, ref)]
        total = img.new_zeros(img.shape[0])
        heads = [getattr(self, f"head{k}") for k in range(5)]
        for head, a, b in zip(heads, *feats):
            diff = (_unit(a) - _unit(b)).square()
            total = total + F.conv2d(diff, head.to(diff.dtype)).mean((1, 2, 3))
        return total

    def _features(self, x: Tensor) -> list[Tensor]:
        x = (x - self.shift) / self.scale
        taps, conv_iter = [], iter(self.convs)
        for item in self._CONFIG:
            if item == "M":
                taps.append(x)
                x = F.max_pool2d(x, 2)
            else:
                x = F.relu(next(conv_iter)(x))
        return [*taps, x]


@functools.lru_cache(maxsize=1)
def _lpips_model(weights: LpipsWeights) -> "LpipsVgg":
    """The network for ``weights``, loaded once per process (VGG-16 is ~0.5 GB on disk)."""
    return LpipsVgg(weights).eval()


def _unit(x: Tensor) -> Tensor:
    return x / (x.square().sum(1, keepdim=True).sqrt() + 1e-10)


def _load_state(path: Path, what: str) -> dict:
    if not Path(path).is_file():
        raise FileNotFoundError(f"LPIPS: {what} weights not found: {path}")
    return torch.load(path, map_location="cpu", weights_only=True)


def _tensor(state: dict, key: str, path: Path) -> Tensor:
    if key not in state:
        raise ValueError(f"LPIPS: {path} has no '{key}' (not the expected weights file)")
    return state[key].float()


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> Tensor:
    """float64 [size] normalised 1D Gaussian centred on the middle tap."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x * x) / (2 * sigma * sigma))
    return g / g.sum()


def _gaussian_filter(x: Tensor, border: Border) -> Tensor:
    """Separable Gaussian filter of every channel of ``x`` [N, K, H, W] -> [N, K, H', W'].

    Each pass is one matrix product with a banded blur matrix: on the CPU this is an
    order of magnitude faster than a grouped ``conv2d`` with an 11-tap kernel, and it is
    exact, deterministic and differentiable the same way.
    """
    h, w = x.shape[-2:]
    x = x @ _blur_matrix(w, border, x.dtype, x.device)  # [N, K, H, W']
    return _blur_matrix(h, border, x.dtype, x.device).T @ x  # [N, K, H', W']


@functools.lru_cache(maxsize=16)
def _blur_matrix(n: int, border: Border, dtype: torch.dtype, device: torch.device) -> Tensor:
    """[n, n'] matrix whose column j holds the Gaussian taps of output sample j: centred
    on input j ("same": zero padding, n' = n) or on input j + 5 ("valid": n' = n - 10)."""
    radius = SSIM_WINDOW // 2
    centres = torch.arange(n) if border == "same" else torch.arange(radius, n - radius)
    taps = torch.arange(n)[:, None] - centres[None, :] + radius  # [n, n'] tap index per input
    inside = (taps >= 0) & (taps < SSIM_WINDOW)
    weights = torch.where(inside, gaussian_window()[taps.clamp(0, SSIM_WINDOW - 1)], 0.0)
    return weights.to(dtype=dtype, device=device)


def _check_pair(img: Tensor, ref: Tensor, what: str) -> None:
    if img.shape != ref.shape or img.dim() < 3 or not img.is_floating_point() or not ref.is_floating_point():
        raise ValueError(
            f"{what}: expected two float [..., H, W, C] images of the same shape, got "
            f"{img.dtype} {list(img.shape)} and {ref.dtype} {list(ref.shape)}"
        )
