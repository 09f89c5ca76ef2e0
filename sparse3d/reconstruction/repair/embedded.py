"""The embedded repair model: a compact convolutional U-Net (diffusers' ``UNet2DModel``
blocks) trained from scratch on the scene's pairs, no pretrained weights needed.

It maps a corrupted render directly to its repair (one forward pass, a residual added to
the input): on a CPU, where a diffusion model's tens of denoising passes per image do not
fit the time budget, the direct model is the one that can run. Trained on random crops,
it learns local corrections (blur, holes, floaters, wrong colours at the silhouette) that
transfer from the reference views to novel ones.
"""

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparse3d.engine.config import at_least, check_ranges
from sparse3d.nn.conv2d import deterministic_


@dataclass
class EmbeddedRepairConfig:
    """Size of the embedded repair network."""

    channels: tuple[int, ...] = (32, 64, 128)
    """Feature channels per U-Net level (each level halves the resolution)."""
    layers_per_block: int = field(default=1, metadata=at_least(1))
    """Residual blocks per level."""

    def __post_init__(self) -> None:
        check_ranges(self)
        if not self.channels or min(self.channels) < 8:
            raise ValueError(f"repair.embedded.channels must be one or more levels of >= 8 channels, got {self.channels}")


class EmbeddedRepair(nn.Module):
    """Corrupted render -> repaired image, a U-Net predicting a residual."""

    def __init__(self, config: EmbeddedRepairConfig) -> None:
        super().__init__()
        from diffusers import (
            UNet2DModel,  # imported here: diffusers takes seconds to import
        )

        levels = len(config.channels)
        self.multiple = 2 ** (levels - 1)
        self.unet = UNet2DModel(
            in_channels=3,
            out_channels=3,
            block_out_channels=tuple(config.channels),
            down_block_types=("DownBlock2D",) * levels,
            up_block_types=("UpBlock2D",) * levels,
            layers_per_block=config.layers_per_block,
            norm_num_groups=min(8, config.channels[0]),
            add_attention=False,
        )
        deterministic_(self.unet)  # the same bits at any thread count
        # Start as the identity: the untrained model returns its input unchanged.
        nn.init.zeros_(self.unet.conv_out.weight)
        nn.init.zeros_(self.unet.conv_out.bias)

    def forward(self, images: Tensor) -> Tensor:
        """Repaired images.

        Args:
            images: float [B, H, W, 3] renders over white, in [0, 1] (any H, W: padded
                with white to a multiple of the U-Net's stride and cropped back).

        Returns:
            float [B, H, W, 3], not clamped.
        """
        b, h, w, _ = images.shape
        pad_h, pad_w = -h % self.multiple, -w % self.multiple
        x = images.permute(0, 3, 1, 2)
        x = F.pad(x, (0, pad_w, 0, pad_h), value=1.0)
        # diffusers' blocks take a timestep; this model has none (always 0).
        residual = self.unet(x * 2.0 - 1.0, 0).sample
        return (x + residual)[:, :, :h, :w].permute(0, 2, 3, 1)

    def training_loss(self, corrupted: Tensor, clean: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        """The loss of one batch of pairs.

        Args:
            corrupted: float [B, H, W, 3] renders in [0, 1].
            clean: float [B, H, W, 3] the images they should be, in [0, 1].
            generator: unused (the direct model draws nothing); the shared interface's.

        Returns:
            {"l1": float []}: the mean absolute error of the repair of ``corrupted``.
        """
        return {"l1": (self(corrupted) - clean).abs().mean()}

    @torch.no_grad()
    def repair(self, images: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Repairs ``images`` (float [B, H, W, 3] in [0, 1]); ``generator`` is unused (one
        deterministic pass), the shared interface's.

        Returns:
            float [B, H, W, 3] repaired images clamped to [0, 1], and float [B] the
            weight of each in the repair loss (1: a direct model is equally sure of all).
        """
        return self(images).clamp(0.0, 1.0), torch.ones(len(images), device=images.device)
