"""LiDAR detectors as methods (``centerpoint``; ``dsvt`` shares this code): trained on a
nuScenes-format database (``data=DATAROOT``: the official v1.0 layout, real or made by
``sparse3d-data nuscenes-synth``) and evaluated to mAP / NDS with the exact nuScenes
evaluation.

Each step draws the global batch of the data pipeline (:mod:`sparse3d.detection.dataset`:
CBGS order, GT sampling, global augmentation, a pure function of (seed, step)), runs the
network and minimises the head's losses with Adam under a one-cycle schedule, decoupled
weight decay and gradient clipping (OpenPCDet's ``adam_onecycle``). Evaluation predicts
every sample of the validation split, writes the submission JSON (LiDAR -> global) and
scores it: ``RUN/eval/results.json``, ``RUN/eval/metrics_summary.json``.
"""

import abc
import dataclasses
import functools
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from sparse3d.core.precision import bf16_dot_products
from sparse3d.data.nuscenes.classes import DETECTION_NAMES
from sparse3d.detection.batch import LidarBatch
from sparse3d.detection.dataset import (
    DetectionDataConfig,
    DetectionEvalData,
    DetectionTrainData,
)
from sparse3d.detection.detectors.openpcdet import (
    load_openpcdet_checkpoint,
    save_openpcdet_checkpoint,
)
from sparse3d.detection.nuscenes.eval.evaluate import evaluate_nuscenes
from sparse3d.detection.nuscenes.submission import boxes_to_submission_entries
from sparse3d.detection.post_process import Detections
from sparse3d.engine.config import MethodConfig, at_least
from sparse3d.engine.distributed import World
from sparse3d.engine.method import EvalSource, Method, TrainingCallback
from sparse3d.engine.scene import Boxes3D, PointCloud, SceneLayer
from sparse3d.engine.schedules import (
    OneCycleConfig,
    clip_gradients,
    one_cycle_group,
    set_one_cycle,
)
from sparse3d.io.atomic import write_json_atomic

EVAL_DIR = "eval"
"""Run subfolder of the evaluation's submission and metrics."""
OPENPCDET_CHECKPOINT = "openpcdet_checkpoint.pth"
"""The trained weights in OpenPCDet's checkpoint layout, written at the end of training."""


@dataclass
class DetectorTrainingConfig:
    """Batches and optimisation."""

    batch_size: int = field(default=4, metadata=at_least(1))
    """Samples per step, over all processes (a multiple of the process count)."""
    eval_batch_size: int = field(default=4, metadata=at_least(1))
    """Samples per forward pass when predicting the validation split."""
    optim: OneCycleConfig = field(default_factory=OneCycleConfig)
    """Adam, one-cycle learning rate, weight decay, gradient clipping."""


@dataclass
class DetectorConfig(MethodConfig):
    """``data`` is the nuScenes dataroot; ``trainer.max_steps`` sets the schedule's length."""

    datamanager: DetectionDataConfig = field(default_factory=DetectionDataConfig)
    """The database's version and splits, sweeps, range, classes and augmentation."""
    training: DetectorTrainingConfig = field(default_factory=DetectorTrainingConfig)
    """Batches and optimisation."""
    init: Path | None = None
    """An OpenPCDet checkpoint (``model_state``) to start from, loaded name for name (its
    sparse-conv weights in any spconv layout)."""
    precision: Literal["fp32", "bf16"] = "fp32"
    """Of predictions (evaluation, the viewer): ``bf16`` runs the network under CPU
    autocast to bfloat16, so that its sparse convolutions multiply bf16 values into
    float32 sums on CPUs with AVX512-BF16 (:mod:`sparse3d.core.precision`; on others they
    stay float32, with a warning) and torch's attention runs in bf16. Training is float32
    either way."""


class LidarDetector(Method):
    """The training, evaluation and drawing of a LiDAR detector; subclasses build the network."""

    config: DetectorConfig

    def __init__(self, config: DetectorConfig, world: World, device: torch.device) -> None:
        super().__init__(config, world, device)
        self.dataroot = _dataroot(config)
        data = config.datamanager
        self.model = self.build_model(data.point_cloud_range, data.class_names).to(device)

    @abc.abstractmethod
    def build_model(self, pc_range: tuple[float, ...], class_names: tuple[str, ...]) -> nn.Module:
        """The network: ``forward(points, batch_size, batch)`` -> predictions, ``loss(preds,
        gt_boxes, gt_labels)`` -> dict, ``detections(preds)`` -> per-sample :class:`Detections`."""

    @property
    def _bf16(self) -> bool:
        """Whether predictions run under CPU autocast to bfloat16 (``precision``)."""
        if self.config.precision != "bf16" or self.device.type != "cpu":
            return False
        if not bf16_dot_products():
            warnings.warn("precision=bf16: this CPU has no AVX512-BF16 (or ATEN_CPU_CAPABILITY caps it), so the "
                          "sparse convolutions stay float32", RuntimeWarning, stacklevel=2)
        return True

    @functools.cached_property
    def train_data(self) -> DetectionTrainData:
        """The training pipeline (built on first use: evaluation does not need its GT database)."""
        return DetectionTrainData(self.config.datamanager, self.dataroot)

    def get_param_groups(self) -> list[dict[str, Any]]:
        return [one_cycle_group("model", self.model.parameters(), self.config.training.optim)]

    def get_train_batch(self, step: int) -> LidarBatch:
        """This process's share of the step's global batch."""
        t = self.config.training
        return self.train_data.batch(step, t.batch_size, self.config.trainer.seed, self.world.rank, self.world.size)

    def get_outputs(self, batch: LidarBatch, step: int) -> list[dict[str, Tensor]]:
        batch = batch.to(self.device)
        return self.model(batch.points, batch.batch_size, batch.batch_index)

    def get_loss_dict(self, outputs: list[dict[str, Tensor]], batch: LidarBatch, step: int) -> dict[str, Tensor]:
        counts = batch.gt_counts.tolist()
        boxes = [batch.gt_boxes[b, :n].to(self.device) for b, n in enumerate(counts)]
        labels = [batch.gt_labels[b, :n].to(self.device) for b, n in enumerate(counts)]
        return self.model.loss(outputs, boxes, labels)

    def get_training_callbacks(self) -> list[TrainingCallback]:
        optim, steps = self.config.training.optim, self.config.trainer.max_steps
        callbacks = [
            TrainingCallback("before_step", lambda step, optimizers, _: set_one_cycle(optimizers, step, steps, optim)),
            TrainingCallback("after_backward", lambda step, optimizers, _: clip_gradients(optimizers, optim.grad_norm_clip)),
        ]
        if self.config.init is not None:
            callbacks.insert(0, TrainingCallback("before_step", self._load_init))
        return callbacks

    def _load_init(self, step: int, optimizers, produced) -> None:
        """Step 0 of a fresh run starts from ``init`` (a resumed run has its own weights)."""
        if step == 0:
            load_openpcdet_checkpoint(self.model, self.config.init)

    def predict(self, batch: LidarBatch) -> list[Detections]:
        """Per sample of ``batch``, the detections (CPU tensors: boxes float [N, 9], scores
        float [N], labels int64 [N] into ``class_names``).

        An empty frame, one without a point inside ``point_cloud_range`` (``lower <= p <
        upper`` on each axis, the voxelizer's rule; no point at all included), gets no
        detection: the network runs on its zero voxels, but what its head would decode
        there is its biases, not a detection.
        """
        batch = batch.to(self.device)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self._bf16):
            found = self.model.detections(self.model(batch.points, batch.batch_size, batch.batch_index))
        occupied = self._occupied_samples(batch).tolist()
        return [Detections(*(t.cpu() if seen else t[:0].cpu() for t in d)) for d, seen in zip(found, occupied)]

    def _occupied_samples(self, batch: LidarBatch) -> Tensor:
        """bool [B]: whether each sample of ``batch`` has a point inside ``point_cloud_range``."""
        xyz = batch.points[:, :3]
        r = torch.tensor(self.config.datamanager.point_cloud_range, dtype=xyz.dtype, device=xyz.device)
        inside = ((xyz >= r[:3]) & (xyz < r[3:])).all(1)
        return torch.bincount(batch.batch_index[inside].long(), minlength=batch.batch_size) > 0

    def get_eval_metrics(self, step: int) -> dict[str, float]:
        """mAP, NDS and the mean TP errors on the validation split (see :meth:`evaluate`)."""
        summary = self.evaluate(Path(self.config.output) / EVAL_DIR)
        return {"mAP": summary["mean_ap"], "NDS": summary["nd_score"],
                **{f"m{_TP_SHORT[k]}": v for k, v in summary["tp_errors"].items()}}

    def get_eval_report(self, step: int, source: EvalSource | None = None) -> dict[str, Any]:
        """The periodic metrics plus per-class APs and TP errors: on the run's validation
        split, files in ``RUN/eval``; or on ``source``, any split of any nuScenes v1.0-format
        database (its fields default to the run's dataroot, version and validation split),
        files in its ``out`` (default ``RUN/eval_<version>_<split>``), and the report then
        holds the resolved source under "source"."""
        if source is None:
            summary, described = self.evaluate(Path(self.config.output) / EVAL_DIR), {}
        else:
            data = self.config.datamanager
            source = source.resolved(self.dataroot, data.version, data.val_split, Path(self.config.output))
            summary = self.evaluate(source.out, source.data, source.version, source.split)
            described = {"source": source.as_dict()}
        return {"mAP": summary["mean_ap"], "NDS": summary["nd_score"], "tp_errors": summary["tp_errors"],
                "label_aps": summary["label_aps"], "label_tp_errors": summary["label_tp_errors"], **described}

    def evaluate(self, out_dir: Path, dataroot: Path | None = None, version: str | None = None,
                 split: str | None = None) -> dict[str, Any]:
        """Predicts every sample of a split, writes OUT/results.json (the nuScenes submission)
        and OUT/metrics_summary.json, and returns the summary (the devkit's fields).

        Args:
            out_dir: where the files go.
            dataroot, version, split: the database (any nuScenes v1.0-format one: any sweeps
                between keyframes, points per frame, annotation density) and split; default
                the run's own validation split. The model reads up to its ``num_sweeps``
                sweeps per sample, fewer where the chain is shorter.

        Raises:
            NuScenesFormatError: no such version or split (the message lists those that
                exist), or a LiDAR file of a sample is missing or holds NaN / infinite
                points (the message names the sample and the file).
        """
        data = self.config.datamanager
        if version is not None:
            data = dataclasses.replace(data, version=version)
        root = Path(dataroot) if dataroot is not None else self.dataroot
        split = split or data.val_split
        eval_data = DetectionEvalData(data, root, split)
        results: dict[str, list[dict]] = {}
        was_training = self.model.training
        self.model.eval()
        for batch in eval_data.batches(self.config.training.eval_batch_size):
            for token, pose, found in zip(batch.tokens, batch.lidar_to_global, self.predict(batch)):
                labels = torch.tensor([_DETECTION_ID[data.class_names[i]] for i in found.labels.tolist()], dtype=torch.int64)
                results[token] = boxes_to_submission_entries(token, found.boxes.double().numpy(), labels.numpy(),
                                                             found.scores.double().numpy(), pose)
        self.model.train(was_training)
        submission = {"meta": {"use_lidar": True, "use_camera": False, "use_radar": False, "use_map": False,
                               "use_external": False}, "results": results}
        out_dir = Path(out_dir)
        write_json_atomic(out_dir / "results.json", submission)
        return evaluate_nuscenes(out_dir / "results.json", root, data.version, split, out_dir)

    def get_scene_layers(self) -> list[SceneLayer]:
        """The first validation sample: its points (coloured by height), GT and predicted boxes."""
        data = self.config.datamanager
        batch = next(DetectionEvalData(data, self.dataroot).batches(1))
        found = self.predict(batch)[0]
        n = int(batch.gt_counts[0])
        z = batch.points[:, 2]
        height = ((z - z.min()) / (z.max() - z.min()).clamp_min(1e-6))[:, None]
        colors = (torch.cat([height, 1 - height, torch.full_like(height, 0.5)], 1) * 255).round().to(torch.uint8)
        return [
            PointCloud(batch.points[:, :3], colors, point_size=0.05, name="points"),
            Boxes3D(batch.gt_boxes[0, :n, :7], batch.gt_labels[0, :n], name="ground truth"),
            Boxes3D(found.boxes[:, :7], found.labels, found.scores, name="detections"),
        ]

    def export(self, run_dir: Path) -> None:
        """Writes the weights as an OpenPCDet checkpoint (``openpcdet_checkpoint.pth``)."""
        save_openpcdet_checkpoint(self.model, Path(run_dir) / OPENPCDET_CHECKPOINT, it=self.config.trainer.max_steps)

    def summary(self, run_dir: Path) -> list[str]:
        run = Path(run_dir)
        return [f"outputs: {EVAL_DIR}/results.json (submission), {EVAL_DIR}/metrics_summary.json, "
                f"{OPENPCDET_CHECKPOINT} (OpenPCDet layout) in {run}"]


_DETECTION_ID = {name: i for i, name in enumerate(DETECTION_NAMES)}
_TP_SHORT = {"trans_err": "ATE", "scale_err": "ASE", "orient_err": "AOE", "vel_err": "AVE", "attr_err": "AAE"}


def _dataroot(config: DetectorConfig) -> Path:
    """The nuScenes dataroot of ``data``, checked to hold the configured version."""
    if config.data is None:
        raise ValueError("data=DATAROOT is required: a nuScenes-format dataroot (e.g. made by `sparse3d-data nuscenes-synth OUT`)")
    root = Path(config.data)
    version = config.datamanager.version
    if not (root / version).is_dir():
        raise ValueError(f"data={root}: no table folder {version!r} there (set datamanager.version=...)")
    return root
