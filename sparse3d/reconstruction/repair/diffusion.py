"""The diffusion repair model: a local Stable Diffusion 1.5 with a ControlNet tile model,
fine-tuned with LoRA (peft) on the scene's pairs and repairing by DDIM img2img (SDEdit),
as GaussianObject's repair model (https://arxiv.org/abs/2402.10259, reference §6 and §7.2).

Nothing is downloaded: every component is read with ``local_files_only=True`` from a
folder given by path, checked first, so that a missing or incomplete folder is a one-line
error naming what is missing. The folder (``repair.pretrained``) is a diffusers Stable
Diffusion folder with the ControlNet beside the other components, which is what
``StableDiffusionControlNetPipeline.save_pretrained(DIR)`` writes::

    DIR/
      unet/          config.json + diffusion_pytorch_model.safetensors (or .bin, or sharded)
      vae/           config.json + diffusion_pytorch_model.safetensors
      text_encoder/  config.json + model.safetensors (or pytorch_model.bin): CLIP
      tokenizer/     tokenizer.json, or vocab.json + merges.txt: CLIP
      scheduler/     scheduler_config.json (any DDPM-family scheduler; read as DDIM)
      controlnet/    config.json + diffusion_pytorch_model.safetensors: ControlNet 1.1
                     Tile, or a ControlNet folder elsewhere (``repair.diffusion.controlnet``)

Other files (model_index.json, safety_checker/, feature_extractor/) are ignored.

Only the LoRA adapters are trained, so only they are the module's state: ``state_dict``
holds the adapters alone (a checkpoint stays megabytes, not the gigabytes of the base),
and ``load_state_dict`` takes them alone, the base coming from the folder.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparse3d.engine.config import at_least, between, check_ranges

LORA_TARGETS = r".*transformer_blocks\.\d+\.(attn[12]\.(to_q|to_k|to_v|to_out\.0)|ff\.net\.(0\.proj|2))"
"""The layers that get LoRA adapters, in the UNet and the ControlNet: every linear layer of
the transformer blocks (self- and cross-attention projections, feed-forward), as the
reference's ``--add_diffusion_lora`` / ``--add_control_lora``."""

_DIFFUSERS_WEIGHTS = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.safetensors.index.json",
    "diffusion_pytorch_model.bin.index.json",
)
_TRANSFORMERS_WEIGHTS = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
_COMPONENTS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    # subfolder: (what, any one of these files) pairs, each of which must be there
    "unet": (("config", ("config.json",)), ("weights", _DIFFUSERS_WEIGHTS)),
    "vae": (("config", ("config.json",)), ("weights", _DIFFUSERS_WEIGHTS)),
    "text_encoder": (("config", ("config.json",)), ("weights", _TRANSFORMERS_WEIGHTS)),
    "tokenizer": (("vocabulary", ("tokenizer.json", "vocab.json")),),
    "scheduler": (("config", ("scheduler_config.json",)),),
    "controlnet": (("config", ("config.json",)), ("weights", _DIFFUSERS_WEIGHTS)),
}
_LAYOUT = "unet/, vae/, text_encoder/, tokenizer/, scheduler/ and controlnet/ (see reconstruction/repair/diffusion.py)"


@dataclass
class DiffusionRepairConfig:
    """The diffusion repair model (GaussianObject's settings by default). The base model
    is ``repair.pretrained``; the reference trains it with ``repair.batch_size=1`` for
    ``repair.steps=1800``."""

    controlnet: Path | None = None
    """A diffusers ControlNet folder (config.json + weights) to use instead of
    ``<pretrained>/controlnet``."""
    lora_rank: int = field(default=64, metadata=at_least(1))
    """Rank of the LoRA adapters (their scale alpha / rank is 1)."""
    prompt: str = "xxy5syt00"
    """The text condition of training and repair (the reference's rare token)."""
    ddim_steps: int = field(default=50, metadata=at_least(1))
    """DDIM steps of a full (strength 1) denoising; a repair of strength s runs floor(s x this)."""
    eta: float = field(default=1.0, metadata=between(0, 1))
    """DDIM eta: 1 adds fresh noise at every step (the reference), 0 is deterministic DDIM."""
    min_strength: float = field(default=0.1, metadata=between(0, 1))
    """Lowest img2img strength: the share of the schedule a render is noised to and denoised from."""
    max_strength: float = field(default=1.0, metadata=between(0, 1))
    """Highest img2img strength; each repair draws its strength uniformly in [min, max]."""
    resolution: int = field(default=512, metadata=at_least(8))
    """Side of the square the images are centred in, padded with white (the background),
    for training and repair alike: Stable Diffusion works at 512 x 512, so a 128 x 128
    render is repaired there and cropped back. Larger images keep their size; the side is
    rounded up to a multiple of the model's stride."""

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.min_strength > self.max_strength:
            raise ValueError(
                f"repair.diffusion.min_strength={self.min_strength} is above max_strength={self.max_strength}"
            )


class DiffusionRepair(nn.Module):
    """Stable Diffusion + ControlNet with LoRA adapters, as a repair model.

    - training (:meth:`training_loss`): the latent-diffusion epsilon loss of the clean
      image, with the corrupted render as the ControlNet hint (the reference's L_tune);
    - repair (:meth:`repair`): each render is encoded, noised to a random strength,
      and denoised by DDIM with itself as the hint; classifier-free guidance scale 1
      (the conditional prediction alone, as the reference).

    The text encoder is frozen (the reference's optional CLIP LoRA is not used), so the
    prompt's embedding is computed once and the text encoder dropped. Everything runs in
    float32 (the reference trains in fp32; CPUs run it).

    Args:
        pretrained: the local folder (layout in the module docstring).
        config: the model's settings.

    Raises:
        FileNotFoundError: a folder, subfolder or file of the layout is missing (the
            message names it).
        ValueError: the components do not fit together, or the scheduler does not
            predict noise.
        ImportError: peft or transformers is not installed.

    Examples:
        >>> model = DiffusionRepair(Path("sd15-tile"), DiffusionRepairConfig())  # doctest: +SKIP
        >>> g = torch.Generator().manual_seed(0)
        >>> losses = model.training_loss(corrupted, clean, g)  # {"eps_mse": scalar}
        >>> repaired, weights = model.repair(renders, g)  # [B, H, W, 3], [B]
    """

    def __init__(self, pretrained: Path, config: DiffusionRepairConfig) -> None:
        super().__init__()
        folders = check_pretrained(Path(pretrained), config.controlnet)
        peft, transformers = _optional_backends()
        from diffusers import (  # imported here: diffusers takes seconds to import
            AutoencoderKL,
            ControlNetModel,
            DDIMScheduler,
            UNet2DConditionModel,
        )

        def load(cls: Any, name: str) -> Any:  # local files only: never a network call
            return cls.from_pretrained(str(folders[name]), local_files_only=True)

        self.config = config
        self.unet = load(UNet2DConditionModel, "unet").float()
        self.controlnet = load(ControlNetModel, "controlnet").float()
        self.vae = load(AutoencoderKL, "vae").float()
        self.scheduler = load(DDIMScheduler, "scheduler")
        tokenizer = load(transformers.CLIPTokenizer, "tokenizer")
        text_encoder = load(transformers.CLIPTextModel, "text_encoder").float()
        _check_compatible(self.unet, self.controlnet, self.vae, self.scheduler, folders)

        tokens = tokenizer(config.prompt, padding="max_length", max_length=tokenizer.model_max_length,
                           truncation=True, return_tensors="pt").input_ids  # [1, L]
        with torch.no_grad():
            prompt_embeds = text_encoder(tokens).last_hidden_state  # [1, L, D]
        self.register_buffer("prompt_embeds", prompt_embeds, persistent=False)

        # Image sides must be multiples of the VAE's reduction times the UNet's (its
        # latent halves once per level after the first).
        vae_reduction = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.multiple = vae_reduction * 2 ** (len(self.unet.config.block_out_channels) - 1)
        self.scheduler.set_timesteps(config.ddim_steps)

        for model in (self.unet, self.controlnet, self.vae):
            model.requires_grad_(False)
        for model in (self.unet, self.controlnet):
            lora = peft.LoraConfig(r=config.lora_rank, lora_alpha=config.lora_rank, target_modules=LORA_TARGETS)
            model.add_adapter(lora)
        self._adapter_keys = frozenset(name for name, p in self.named_parameters() if p.requires_grad)
        self._base_keys = tuple(k for k in self.state_dict() if k not in self._adapter_keys)
        self.register_state_dict_post_hook(_drop_base_weights)
        self.register_load_state_dict_pre_hook(_keep_base_weights)

    def _eps(self, latents: Tensor, timesteps: Tensor, hints: Tensor) -> Tensor:
        """The UNet's noise prediction, float [B, C, h, w], for ``latents`` (same shape) at
        ``timesteps`` (int64 [B] or []) with the ControlNet hints float [B, 3, H, W] in [0, 1]."""
        text = self.prompt_embeds.expand(len(latents), -1, -1)
        down, mid = self.controlnet(latents, timesteps, text, controlnet_cond=hints, return_dict=False)
        return self.unet(latents, timesteps, text, down_block_additional_residuals=down,
                         mid_block_additional_residual=mid).sample

    def _pad(self, images: Tensor) -> tuple[Tensor, tuple[int, int]]:
        """float [B, H, W, 3] -> float [B, 3, S, S] centred on white (S: ``resolution`` or
        max(H, W), rounded up to the model's stride), and the (top, left) of the image in it."""
        _, h, w, _ = images.shape
        side = max(self.config.resolution, h, w)
        side += -side % self.multiple
        top, left = (side - h) // 2, (side - w) // 2
        padded = F.pad(images.permute(0, 3, 1, 2), (left, side - w - left, top, side - h - top), value=1.0)
        return padded, (top, left)

    def _encode(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """Scaled latents float [B, C, S/f, S/f] (f: the VAE's reduction) of float
        [B, 3, S, S] images in [0, 1], a sample of the VAE posterior (noise from ``generator``)."""
        posterior = self.vae.encode(images * 2.0 - 1.0).latent_dist
        noise = _randn(posterior.mean.shape, generator, self.prompt_embeds.device)
        return (posterior.mean + posterior.std * noise) * self.vae.config.scaling_factor

    def training_loss(self, corrupted: Tensor, clean: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        """The latent-diffusion loss of one batch of pairs.

        The clean image is encoded, noised at a random training timestep, and the UNet,
        steered by the ControlNet with the corrupted image as the hint, predicts the noise.

        Args:
            corrupted: float [B, H, W, 3] renders in [0, 1] (the hints).
            clean: float [B, H, W, 3] the images they should be, in [0, 1].
            generator: the source of every random draw (posterior sample, noise, timesteps).

        Returns:
            {"eps_mse": float []}: the mean squared error of the predicted noise.
        """
        hints, _ = self._pad(corrupted)
        targets, _ = self._pad(clean)
        with torch.no_grad():  # the VAE is frozen: no graph through the encoder
            latents = self._encode(targets, generator)
        noise = _randn(latents.shape, generator, latents.device)
        timesteps = torch.randint(self.scheduler.config.num_train_timesteps, (len(latents),), generator=generator,
                                  device=generator.device).to(latents.device)
        noisy = self.scheduler.add_noise(latents, noise, timesteps)
        return {"eps_mse": F.mse_loss(self._eps(noisy, timesteps, hints), noise)}

    @torch.no_grad()
    def repair(self, images: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Repairs ``images`` by img2img: each is noised to a random strength and denoised.

        Image b draws a strength s_b ~ U(min_strength, max_strength) and is denoised over
        n_b = floor(s_b x ddim_steps) DDIM steps, from the timestep t_b where the full
        schedule has n_b steps left (diffusers' img2img convention), with itself as the
        ControlNet hint. n_b = 0 (strength below 1 / ddim_steps) leaves the image as it is.

        Args:
            images: float [B, H, W, 3] renders over white, in [0, 1].
            generator: the source of every random draw (strengths, noise).

        Returns:
            float [B, H, W, 3] repaired images in [0, 1], and float [B] the weight of each
            in the repair loss: 1 - alphas_cumprod[t_b], the share of noise the repair
            started from (the reference's weight): a light repair mostly returns the render
            it was given, whose errors fitting it would only confirm; 0 for an image left
            as it is.
        """
        c = self.config
        steps = c.ddim_steps
        uniform = torch.rand(len(images), generator=generator, device=generator.device)
        strengths = c.min_strength + (c.max_strength - c.min_strength) * uniform  # [B]
        counts = (strengths.cpu() * steps).floor().long().clamp(max=steps)  # [B] DDIM steps per image
        starts = steps - counts  # [B] index of each image's first timestep in the schedule
        hints, (top, left) = self._pad(images)
        latents = self._encode(hints, generator)  # [B, C, h, w]
        noise = _randn(latents.shape, generator, latents.device)
        timesteps = self.scheduler.timesteps  # [ddim_steps] descending
        first = timesteps[starts.clamp(max=steps - 1)]  # [B] (unused where counts == 0)
        latents = self.scheduler.add_noise(latents, noise, first)
        for i in range(int(starts.min()), steps):
            active = (starts <= i).nonzero()[:, 0]  # the images whose repair has begun
            t = timesteps[i]
            eps = self._eps(latents[active], t, hints[active])
            variance_noise = _randn(eps.shape, generator, eps.device) if c.eta > 0 else None
            latents[active] = self.scheduler.step(eps, t, latents[active], eta=c.eta,
                                                  variance_noise=variance_noise).prev_sample
        repaired = images.clone()
        changed = (counts > 0).nonzero()[:, 0]
        if len(changed):
            decoded = self.vae.decode(latents[changed] / self.vae.config.scaling_factor).sample  # [b, 3, S, S]
            h, w = images.shape[1:3]
            crop = decoded[:, :, top : top + h, left : left + w].permute(0, 2, 3, 1)
            repaired[changed] = ((crop + 1.0) / 2.0).clamp(0.0, 1.0)
        weights = torch.where(counts > 0, 1.0 - self.scheduler.alphas_cumprod[first], 0.0)
        return repaired, weights.float().to(images.device)


def _randn(shape: torch.Size, generator: torch.Generator, device: torch.device) -> Tensor:
    """Standard normal noise drawn on the generator's device, then moved: the same numbers
    for a CPU generator whichever device the model runs on."""
    return torch.randn(shape, generator=generator, device=generator.device).to(device)


def _drop_base_weights(module: DiffusionRepair, state: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    """state_dict post-hook: keeps only the adapters (the base comes from the folder)."""
    for key in module._base_keys:
        del state[prefix + key]


def _keep_base_weights(module: DiffusionRepair, state: dict[str, Any], prefix: str, *args: Any) -> None:
    """load_state_dict pre-hook: a state of adapters alone leaves the base as loaded (its
    own tensors stand in for the absent keys, so a strict load accepts the state)."""
    for key in module._base_keys:
        owner, _, name = key.rpartition(".")
        state.setdefault(prefix + key, getattr(module.get_submodule(owner), name))


def _optional_backends() -> tuple[Any, Any]:
    """peft and transformers, the ``diffusion`` extra (imported only when needed)."""
    try:
        import peft
        import transformers
    except ImportError as err:
        raise ImportError(
            f"the diffusion repair model needs {err.name}, which is not installed: pip install 'sparse3d[diffusion]'"
        ) from err
    return peft, transformers


def check_pretrained(pretrained: Path, controlnet: Path | None = None) -> dict[str, Path]:
    """The folder of each component (unet, vae, text_encoder, tokenizer, scheduler,
    controlnet), after checking that each holds what loading needs; reads no weights.

    Args:
        pretrained: the Stable Diffusion folder (layout in the module docstring).
        controlnet: a ControlNet folder to use instead of ``pretrained / "controlnet"``.

    Raises:
        FileNotFoundError: naming the missing folder or file and what was expected.
    """
    if not pretrained.is_dir():
        raise FileNotFoundError(
            f"{pretrained}: no such folder; repair.pretrained must be a local diffusers Stable Diffusion folder "
            f"with {_LAYOUT} (nothing is downloaded)"
        )
    folders = {name: pretrained / name for name in _COMPONENTS}
    if controlnet is not None:
        folders["controlnet"] = Path(controlnet)
    for name, required in _COMPONENTS.items():
        folder = folders[name]
        if not folder.is_dir():
            separate = name == "controlnet" and controlnet is not None
            where = "repair.diffusion.controlnet" if separate else "repair.pretrained"
            raise FileNotFoundError(f"{folder}: missing; {where} must hold {_LAYOUT}")
        for what, names in required:
            if not any((folder / n).is_file() for n in names):
                raise FileNotFoundError(f"{folder}: no {what} file ({' or '.join(names)})")
    return folders


def _check_compatible(unet: Any, controlnet: Any, vae: Any, scheduler: Any, folders: dict[str, Path]) -> None:
    """Checks that the components fit together (errors name the folder at fault)."""
    vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)
    hint_factor = 2 ** (len(controlnet.config.conditioning_embedding_out_channels) - 1)
    if hint_factor != vae_factor:
        raise ValueError(
            f"{folders['controlnet']}: the ControlNet reduces its hint {hint_factor}x, the VAE in {folders['vae']} "
            f"its images {vae_factor}x; they must match"
        )
    if vae.config.latent_channels != unet.config.in_channels:
        raise ValueError(
            f"{folders['unet']}: the UNet takes {unet.config.in_channels} latent channels, "
            f"the VAE in {folders['vae']} makes {vae.config.latent_channels}"
        )
    if scheduler.config.prediction_type != "epsilon":
        raise ValueError(
            f"{folders['scheduler'] / 'scheduler_config.json'}: prediction_type "
            f"{scheduler.config.prediction_type!r}; the repair model trains and samples noise prediction "
            "('epsilon', Stable Diffusion 1.5's)"
        )
