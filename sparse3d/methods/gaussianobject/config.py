"""The configuration of ``gaussianobject``: one section per stage.

The Gaussians' own settings (``model``: learning rates, SH, densification, losses) are
those of ``splat`` and shared by the coarse, leave-one-out and refinement stages; each
stage section holds what only that stage sets.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from sparse3d.engine.config import at_least, between, check_ranges, positive
from sparse3d.methods.splat import SplatConfig, SplatDataConfig, SplatModelConfig
from sparse3d.reconstruction.hull import HullConfig
from sparse3d.reconstruction.repair.diffusion import DiffusionRepairConfig
from sparse3d.reconstruction.repair.embedded import EmbeddedRepairConfig
from sparse3d.render.strategy.default import DefaultStrategy

STAGES = ("hull", "coarse", "loo", "repair_model", "refine")
"""The stages in the order they run; each writes its artefacts under the run directory."""
Stage = Literal["hull", "coarse", "loo", "repair_model", "refine"]


@dataclass
class CoarseConfig:
    """Stage ``coarse``: 3DGS from the visual hull on the input views."""

    use_hull: bool = True
    """Start from the visual hull; False starts from random points (the ablation)."""
    steps: int = field(default=3000, metadata=at_least(1))
    """Optimisation steps."""
    strategy: DefaultStrategy = field(default_factory=lambda: DefaultStrategy(
        refine_start_iter=150, refine_stop_iter=1800, refine_every=100, reset_every=300
    ))
    """Densification (the reference: 500 to 6,000 of 10,000 steps, reset every 1,000)."""

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass
class LooConfig:
    """Stage ``loo``: the leave-one-out runs, one per input view (each forks in two when
    its densification ends)."""

    steps: int = field(default=1500, metadata=at_least(1))
    """Optimisation steps of each run (the reference: the coarse stage's 10,000)."""
    strategy: DefaultStrategy = field(default_factory=lambda: DefaultStrategy(
        refine_start_iter=150, refine_stop_iter=900, refine_every=100, reset_every=300
    ))
    """Densification; the runs fork at its end (``refine_stop_iter``)."""

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass
class RepairConfig:
    """Stage ``repair_model``: the repair network and its training on the scene's pairs."""

    kind: Literal["embedded", "diffusion", "none"] = "embedded"
    """The repair model: the embedded network trained from scratch (no weights needed),
    the reference's Stable Diffusion + ControlNet with LoRA (needs ``pretrained``), or
    none (refinement on the reference views only: the ablation)."""
    pretrained: Path | None = None
    """kind=diffusion: a local diffusers Stable Diffusion 1.5 folder with a ControlNet tile
    model in its controlnet/ subfolder (layout: sparse3d/reconstruction/repair/diffusion.py).
    Nothing is ever downloaded."""
    embedded: EmbeddedRepairConfig = field(default_factory=lambda: EmbeddedRepairConfig(channels=(16, 32)))
    """Size of the embedded network: small on purpose (see ``crop``)."""
    diffusion: DiffusionRepairConfig = field(default_factory=DiffusionRepairConfig)
    """The diffusion model (kind=diffusion): LoRA rank, prompt, DDIM and strengths."""
    steps: int = field(default=400, metadata=at_least(1))
    """Training steps."""
    lr: float = field(default=1e-3, metadata=positive())
    """Adam learning rate (of the LoRA adapters alone for kind=diffusion)."""
    batch_size: int = field(default=8, metadata=at_least(1))
    """Pairs per step."""
    crop: int = field(default=32, metadata=at_least(8))
    """kind=embedded: side of the random square crops it trains on (whole images if
    larger; the diffusion model trains on whole images, as the reference). Small crops
    and a two-level network keep what it learns local: on the torus, (16, 32) channels
    on 32-pixel crops improved every held-out view (+0.55 dB mean), while (16, 32, 64) on
    64-pixel crops memorised the inputs' texture and lost 0.55 dB."""
    noise_decay: float = field(default=0.995, metadata=between(0, 1))
    """After 100 pairs, the probability of a noise render (versus a leave-one-out render)
    is multiplied by this per pair (the reference)."""

    def __post_init__(self) -> None:
        # kind and pretrained are checked together by repair_training.check_repair_config,
        # not here: the command line sets keys one at a time, so a check across keys here
        # would reject one order of giving them.
        check_ranges(self)


@dataclass
class RefineConfig:
    """Stage ``refine``: repair refinement with distance-aware novel views."""

    around_gt_steps: int = field(default=1400, metadata=at_least(0))
    """Steps with the repair loss (the reference's 2,800 of 4,000); the rest fine-tune on
    the reference views only."""
    refresh_every: int = field(default=100, metadata=at_least(1))
    """Steps between refreshes of the repaired novel views."""
    refresh_size: int = field(default=8, metadata=at_least(1))
    """Novel views rendered and repaired at each refresh."""
    l1_weight: float = field(default=0.5, metadata=at_least(0))
    """Weight of the L1 term of the repair loss."""
    l2_weight: float = field(default=0.5, metadata=at_least(0))
    """Weight of the L2 term of the repair loss."""
    distance_weighting: bool = True
    """Weight each novel view by its distance to the nearest input camera (views near an
    input trust the repair less)."""
    strategy: DefaultStrategy = field(default_factory=lambda: DefaultStrategy(
        refine_start_iter=200, refine_stop_iter=1800, refine_every=100, reset_every=250, prune_opa=0.02
    ))
    """Densification during refinement (the reference: 400 to 3,600 of 4,000, reset every
    500, prune below opacity 0.02)."""

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass
class GaussianObjectConfig(SplatConfig):
    """``trainer`` schedules the last stage (refine); every other stage has its section."""

    _target: ClassVar[type]
    model: SplatModelConfig = field(default_factory=lambda: SplatModelConfig(
        sh_degree=2, silhouette_lambda=0.01, random_background=True, floaters=True
    ))
    """The Gaussians, their losses and floater elimination (shared by every stage)."""
    datamanager: SplatDataConfig = field(default_factory=lambda: SplatDataConfig(num_train_views=4))
    """Input views: the data's sparse_<k>.txt split (4 by default), evaluated on sparse_test.txt."""
    hull: HullConfig = field(default_factory=lambda: HullConfig(resolution=32))
    """Stage hull: voxel carving from the input views' masks (32 voxels across, as the
    reference's 64 over twice the object's box; a few thousand initial Gaussians)."""
    coarse: CoarseConfig = field(default_factory=CoarseConfig)
    """Stage coarse."""
    loo: LooConfig = field(default_factory=LooConfig)
    """Stage loo."""
    repair: RepairConfig = field(default_factory=RepairConfig)
    """Stage repair_model."""
    refine: RefineConfig = field(default_factory=RefineConfig)
    """Stage refine."""
    stage: Stage | None = None
    """Rerun from this stage on (its artefacts and every later stage's are deleted);
    None resumes where the run stopped."""

    run_keys: ClassVar[frozenset[str]] = frozenset({"stage"})

    def __post_init__(self) -> None:
        super().__post_init__()
        views = self.datamanager.num_train_views
        if views is not None and views < 3:
            raise ValueError(
                f"datamanager.num_train_views={views}: gaussianobject needs at least 3 input views "
                "(the visual hull and the novel views between the inputs need them); 4 is the default"
            )
