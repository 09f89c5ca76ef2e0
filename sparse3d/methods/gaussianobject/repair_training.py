"""Stage ``repair_model``: the repair model (``repair.kind``: the embedded network or the
diffusion model) trained on the scene's own pairs, as an engine run (resumable,
checkpointed) in RUN/repair_model. Both models go through this code: their
``training_loss`` is the step's loss dict, their trainable parameters the only parameter
group (the diffusion model's LoRA adapters, which are all its checkpoint holds).

Each pair is (corrupted, clean) at one input view: the clean image is the view itself; the
corrupted one is either the coarse Gaussians perturbed by the leave-one-out noise and
rendered there, or a leave-one-out render of that view by a model that never saw it. Early
pairs are all noise renders; after 100 pairs the chance of a noise render decays by
``repair.noise_decay`` per pair (the reference's schedule), so later training leans on the
real corruptions.
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from sparse3d.data.loader import load_multiview
from sparse3d.engine.checkpoint import list_checkpoints, load_checkpoint
from sparse3d.engine.config import MethodConfig
from sparse3d.engine.distributed import World
from sparse3d.engine.method import Method
from sparse3d.engine.seeding import derive_seed, step_generator
from sparse3d.methods.gaussianobject.config import GaussianObjectConfig, RepairConfig
from sparse3d.methods.splat import SplatDataConfig, SplatModelConfig, render_splats
from sparse3d.reconstruction.loo import ParameterNoise, perturbed_gaussians
from sparse3d.reconstruction.repair.diffusion import DiffusionRepair, check_pretrained
from sparse3d.reconstruction.repair.embedded import EmbeddedRepair
from sparse3d.render.metrics import psnr
from sparse3d.render.ply import read_gaussians_ply

NOISE_ONLY_PAIRS = 100  # the reference: every pair is a noise render until then
LOSS_KEY, EVAL_KEY = 4241, 4243  # separate the loss's and the evaluation's draws from the batch's


class RepairTraining(Method):
    """Trains the repair model on (corrupted, clean) pairs of the input views."""

    config: "RepairTrainingConfig"

    def __init__(self, config: "RepairTrainingConfig", world: World, device: torch.device) -> None:
        super().__init__(config, world, device)
        run = Path(config.output).parent  # the gaussianobject run holding the earlier stages
        data = load_multiview(config.data, config.datamanager.format, config.datamanager.num_train_views)
        self.cameras = data.cameras[data.train_indices]
        self.clean = data.images[data.train_indices].float() / 255.0  # [V, H, W, 3]
        self.coarse = read_gaussians_ply(run / "coarse" / "point_cloud.ply")
        self.noise = ParameterNoise.from_dict(torch.load(run / "loo" / "noise.pt", weights_only=True))
        renders = torch.load(run / "loo" / "renders.pt", weights_only=True)
        position = {int(v): i for i, v in enumerate(data.train_indices)}
        self.loo_images = renders["images"].float() / 255.0  # [R, H, W, 3]
        self.loo_views = torch.tensor([position[int(v)] for v in renders["views"]])  # [R] input-view positions
        self.net = repair_model(config.repair).to(device)

    def get_param_groups(self) -> list[dict[str, Any]]:
        params = [p for p in self.net.parameters() if p.requires_grad]  # the diffusion model's base is frozen
        return [{"name": "net", "params": params, "lr": self.config.repair.lr}]

    def get_train_batch(self, step: int) -> tuple[Tensor, Tensor]:
        """This step's pairs, a function of the step alone: float [B, c, c, 3] corrupted and
        clean crops for the embedded model (c = repair.crop, or the image size if smaller),
        float [B, H, W, 3] whole images for the diffusion model."""
        r = self.config.repair
        g = step_generator(self.config.trainer.seed, step)
        corrupted, clean = [], []
        for b in range(r.batch_size):
            pair = step * r.batch_size + b
            p_noise = r.noise_decay ** max(pair - NOISE_ONLY_PAIRS, 0)
            if len(self.loo_images) == 0 or float(torch.rand((), generator=g)) < p_noise:
                view = int(torch.randint(len(self.clean), (), generator=g))
                image = self._noise_render(view, g)
            else:
                pick = int(torch.randint(len(self.loo_images), (), generator=g))
                view, image = int(self.loo_views[pick]), self.loo_images[pick]
            corrupted.append(image)
            clean.append(self.clean[view])
        if r.kind == "diffusion":  # Stable Diffusion's prior is of whole, upright images
            return torch.stack(corrupted), torch.stack(clean)
        return _same_crops(torch.stack(corrupted), torch.stack(clean), r.crop, g)

    def _noise_render(self, view: int, generator: torch.Generator) -> Tensor:
        """float [H, W, 3]: the coarse Gaussians with leave-one-out noise, seen from input view ``view``."""
        # A random strength, from none to the full leave-one-out drift: the network also
        # sees nearly clean renders, and learns to leave what is right alone.
        strength = float(torch.rand((), generator=generator))
        noisy = perturbed_gaussians(self.coarse, self.noise.scaled(strength), generator)
        m = self.config.model
        with torch.no_grad():
            rgb, _, _ = render_splats(noisy, self.cameras[view], m.raster, m.sh_degree, torch.ones(1, 3))
        return rgb[0, ..., :3].clamp(0, 1)

    def get_outputs(self, batch: tuple[Tensor, Tensor], step: int) -> dict[str, Tensor]:
        """The repair model's training losses on the step's pairs."""
        g = torch.Generator().manual_seed(derive_seed(self.config.trainer.seed, step, LOSS_KEY))
        return self.net.training_loss(batch[0].to(self.device), batch[1].to(self.device), g)

    def get_loss_dict(self, outputs: dict[str, Tensor], batch: tuple[Tensor, Tensor], step: int) -> dict[str, Tensor]:
        return outputs

    def get_eval_metrics(self, step: int) -> dict[str, float]:
        """PSNR of the leave-one-out renders against their views, before and after repair."""
        if len(self.loo_images) == 0:
            return {}
        clean = self.clean[self.loo_views]
        g = torch.Generator().manual_seed(derive_seed(self.config.trainer.seed, step, EVAL_KEY))
        repaired, _ = self.net.repair(self.loo_images.to(self.device), g)
        return {
            "loo_psnr_before": float(psnr(self.loo_images, clean).mean()),
            "loo_psnr_after": float(psnr(repaired.cpu(), clean).mean()),
        }


def _same_crops(corrupted: Tensor, clean: Tensor, size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """The same random square crop of side ``size`` (at most the image's), turned by a
    random multiple of 90 degrees and maybe mirrored, of each pair: the corruptions to
    undo look alike in every orientation, the object's texture at one place does not, so
    the network learns the first rather than memorising the second."""
    _, h, w, _ = corrupted.shape
    size = min(size, h, w)
    pairs = []
    for image_c, image_t in zip(corrupted, clean):
        y = int(torch.randint(h - size + 1, (), generator=generator))
        x = int(torch.randint(w - size + 1, (), generator=generator))
        turns, mirror = int(torch.randint(4, (), generator=generator)), bool(torch.randint(2, (), generator=generator))
        pair = torch.stack([image_c[y : y + size, x : x + size], image_t[y : y + size, x : x + size]])
        pair = torch.rot90(pair, turns, dims=(1, 2))
        pairs.append(pair.flip(2) if mirror else pair)
    stacked = torch.stack(pairs)  # [B, 2, c, c, 3]
    return stacked[:, 0].contiguous(), stacked[:, 1].contiguous()


@dataclass
class RepairTrainingConfig(MethodConfig):
    """The repair stage's own run (built by :func:`repair_training_config`)."""

    _target: ClassVar[type] = RepairTraining
    model: SplatModelConfig = field(default_factory=SplatModelConfig)
    """How the Gaussians are rendered (SH degree, rasterizer)."""
    datamanager: SplatDataConfig = field(default_factory=SplatDataConfig)
    """The input views."""
    repair: RepairConfig = field(default_factory=RepairConfig)
    """The network and its training."""


def repair_training_config(config: GaussianObjectConfig) -> RepairTrainingConfig:
    """The repair stage's config, derived from the gaussianobject run's."""
    r = config.repair
    trainer = dataclasses.replace(config.trainer, max_steps=r.steps, eval_every=r.steps, ckpt_every=min(200, r.steps))
    return RepairTrainingConfig(data=config.data, trainer=trainer, model=config.model,
                                datamanager=config.datamanager, repair=r)


def check_repair_config(config: RepairConfig) -> None:
    """Raises what building the repair model would for a wrong ``kind`` / ``pretrained``
    pair or an incomplete folder, without loading anything (:func:`repair_model` calls it
    first; called at a run's start, it stops a mistake before the stages that precede
    repair_model rather than after them).

    Raises:
        ValueError: kind=diffusion without ``pretrained``, or ``pretrained`` with another kind.
        FileNotFoundError: a folder or file of the diffusion model's layout is missing.
    """
    if config.kind == "diffusion":
        if config.pretrained is None:
            raise ValueError(
                "repair.kind=diffusion needs repair.pretrained=DIR, a local diffusers Stable Diffusion 1.5 folder "
                "with a ControlNet in DIR/controlnet (nothing is downloaded)"
            )
        check_pretrained(config.pretrained, config.diffusion.controlnet)
    elif config.pretrained is not None:
        raise ValueError(f"repair.pretrained is used by repair.kind=diffusion only, but repair.kind={config.kind}")


def repair_model(config: RepairConfig) -> EmbeddedRepair | DiffusionRepair:
    """The untrained repair model that ``config.kind`` names (on the CPU).

    Raises:
        ValueError: for kind "none", which has no model, and as :func:`check_repair_config`.
        FileNotFoundError: as :func:`check_repair_config`.
    """
    check_repair_config(config)
    if config.kind == "embedded":
        return EmbeddedRepair(config.embedded)
    if config.kind == "diffusion":
        return DiffusionRepair(config.pretrained, config.diffusion)
    raise ValueError(f"repair.kind={config.kind} has no repair model")


def load_repair_model(run: Path, config: RepairConfig, device: torch.device) -> EmbeddedRepair | DiffusionRepair:
    """The trained repair model of the gaussianobject run ``run`` (its newest checkpoint;
    for the diffusion model, the base from ``config.pretrained`` with the checkpoint's
    adapters)."""
    checkpoints = list_checkpoints(run / "repair_model")
    if not checkpoints:
        raise FileNotFoundError(f"{run / 'repair_model'}: no checkpoint; the repair_model stage has not run")
    state = load_checkpoint(checkpoints[-1][1])["method"]
    net = repair_model(config)
    net.load_state_dict({k[len("net."):]: v for k, v in state.items() if k.startswith("net.")})
    return net.to(device).eval()
