"""Stage ``repair_model``: the repair network trained on the scene's own pairs, as an engine
run (resumable, checkpointed) in RUN/repair_model.

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
from sparse3d.engine.seeding import step_generator
from sparse3d.methods.gaussianobject.config import GaussianObjectConfig, RepairConfig
from sparse3d.methods.splat import SplatDataConfig, SplatModelConfig, render_splats
from sparse3d.reconstruction.loo import ParameterNoise, perturbed_gaussians
from sparse3d.reconstruction.repair.embedded import EmbeddedRepair
from sparse3d.render.metrics import psnr
from sparse3d.render.ply import read_gaussians_ply

NOISE_ONLY_PAIRS = 100  # the reference: every pair is a noise render until then


class RepairTraining(Method):
    """Trains the repair network on (corrupted, clean) pairs of the input views."""

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
        self.net = EmbeddedRepair(config.repair.embedded).to(device)

    def get_param_groups(self) -> list[dict[str, Any]]:
        return [{"name": "net", "params": list(self.net.parameters()), "lr": self.config.repair.lr}]

    def get_train_batch(self, step: int) -> tuple[Tensor, Tensor]:
        """This step's pairs: float [B, c, c, 3] corrupted and clean crops (c = repair.crop,
        or the image size if smaller), a function of the step alone."""
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

    def get_outputs(self, batch: tuple[Tensor, Tensor], step: int) -> Tensor:
        return self.net(batch[0].to(self.device))

    def get_loss_dict(self, outputs: Tensor, batch: tuple[Tensor, Tensor], step: int) -> dict[str, Tensor]:
        return {"l1": (outputs - batch[1].to(self.device)).abs().mean()}

    def get_eval_metrics(self, step: int) -> dict[str, float]:
        """PSNR of the leave-one-out renders against their views, before and after repair."""
        if len(self.loo_images) == 0:
            return {}
        clean = self.clean[self.loo_views]
        repaired, _ = self.net.repair(self.loo_images.to(self.device))
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


def load_repair_model(run: Path, config: RepairConfig, device: torch.device) -> EmbeddedRepair:
    """The trained repair network of the gaussianobject run ``run`` (its newest checkpoint)."""
    checkpoints = list_checkpoints(run / "repair_model")
    if not checkpoints:
        raise FileNotFoundError(f"{run / 'repair_model'}: no checkpoint; the repair_model stage has not run")
    state = load_checkpoint(checkpoints[-1][1])["method"]
    net = EmbeddedRepair(config.embedded)
    net.load_state_dict({k[len("net."):]: v for k, v in state.items() if k.startswith("net.")})
    return net.to(device).eval()
