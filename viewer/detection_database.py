"""A nuScenes database as the detection browser shows it: per sample, its LiDAR points and
its ground-truth and predicted boxes in the keyframe LiDAR frame, and, when a submission is
given, each box's outcome in the evaluation's own matching.

Nothing here draws; :mod:`sparse3d.viewer.detection_browser` turns a sample and the GUI's
choices into scene layers with :func:`sample_layers`.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sparse3d.viewer.colors import OUTCOME_COLORS, mapped_colors

from sparse3d.data.nuscenes.classes import DETECTION_NAMES
from sparse3d.data.nuscenes.errors import NuScenesFormatError
from sparse3d.data.nuscenes.tables import NuScenesTables
from sparse3d.detection.boxes import global_boxes_to_lidar
from sparse3d.detection.nuscenes.box_set import EvalBoxSet
from sparse3d.detection.nuscenes.eval.config import DetectionConfig
from sparse3d.detection.nuscenes.eval.ground_truth import (
    ego_translations,
    load_bike_racks,
    load_ground_truth,
)
from sparse3d.detection.nuscenes.eval.outcomes import BoxMatches, match_boxes
from sparse3d.detection.nuscenes.reader import NuScenesReader, NuScenesReaderConfig
from sparse3d.detection.nuscenes.submission import load_submission, submission_to_boxes
from sparse3d.engine.scene import Boxes3D, PointCloud, SceneLayer

POINT_COLORINGS = ("height", "intensity", "sweep time")
"""What the points can be coloured by."""
HEIGHT_RANGE = (-0.5, 3.0)
"""Heights (metres above the ego frame's ground plane) mapped to the two ends of the colour
map; fixed, so a colour means the same height in every sample."""
POINT_SIZE = 0.06
"""Drawn size of a LiDAR point, metres."""


@dataclass(frozen=True)
class DetectionSample:
    """One sample of the database, everything in its keyframe LiDAR frame."""

    index: int
    """Position in the browser's sample order (scene by scene, in time order)."""
    token: str
    """Sample token."""
    scene_name: str
    """Name of its scene."""
    points: np.ndarray
    """float32 [P, 5] (x, y, z, intensity, time lag in seconds) of the keyframe and its sweeps."""
    lidar_to_global: np.ndarray
    """float64 [4, 4] keyframe LiDAR -> nuScenes global frame."""
    lidar_to_ego: np.ndarray
    """float64 [4, 4] keyframe LiDAR -> ego vehicle frame."""
    gt_boxes: np.ndarray
    """float64 [M, 7] (x, y, z, dx, dy, dz, yaw) ground truth of the detection classes."""
    gt_labels: np.ndarray
    """int64 [M] indices into DETECTION_NAMES."""
    gt_rows: np.ndarray
    """int64 [M] rows of these boxes in :attr:`DetectionDatabase.gt`."""
    pred_boxes: np.ndarray | None
    """float64 [K, 7] predictions, or None when the submission does not list this sample
    (or no submission was given)."""
    pred_labels: np.ndarray | None
    """int64 [K]."""
    pred_scores: np.ndarray | None
    """float64 [K]."""
    pred_rows: np.ndarray | None
    """int64 [K] rows in :attr:`DetectionDatabase.pred`."""


@dataclass(frozen=True)
class BrowserView:
    """What the browser's GUI asks to see."""

    point_coloring: str = "height"
    """One of :data:`POINT_COLORINGS`."""
    show_gt: bool = True
    """Draw the ground-truth boxes."""
    show_predictions: bool = True
    """Draw the predicted boxes."""
    min_score: float = 0.3
    """Predictions scoring below this are hidden (and do not count as matches)."""
    classes: frozenset[int] = field(default_factory=lambda: frozenset(range(len(DETECTION_NAMES))))
    """Class indices whose boxes are drawn."""
    color_by_outcome: bool = True
    """Colour boxes by their evaluation outcome (when a submission is given), else by class."""
    match_distance: float = 2.0
    """Centre distance (metres) within which a prediction matches a GT box."""


class DetectionDatabase:
    """A nuScenes-format database (real or synthetic), optionally with a submission.

    Args:
        dataroot: the nuScenes dataroot.
        version: the table folder, e.g. ``v1.0-mini``.
        split: an official or custom split, or None for every scene.
        results: a submission JSON (global-frame boxes), or None.
        num_sweeps: LiDAR sweeps per sample, the keyframe included.

    Raises:
        NuScenesFormatError: a missing or malformed table, split or submission (naming the
            file and field), or a submission none of whose samples is in the database.
    """

    def __init__(self, dataroot: str | Path, version: str, split: str | None = None, results: str | Path | None = None,
                 num_sweeps: int = 10) -> None:
        self.dataroot, self.version, self.split, self.results = Path(dataroot), version, split, results
        tables = NuScenesTables(dataroot, version)
        self.reader = NuScenesReader(NuScenesReaderConfig(str(dataroot), version, split, num_sweeps), tables)
        if not self.reader.infos:
            raise NuScenesFormatError(f"{self.dataroot / version}: no samples" + (f" in split {split!r}" if split else ""))
        # Scene by scene (in the scene table's order), each in time order.
        scene_rank = {scene["name"]: i for i, scene in enumerate(tables.scene)}
        self.order = sorted(range(len(self.reader.infos)),
                            key=lambda i: (scene_rank[self.reader.infos[i].scene_name], self.reader.infos[i].timestamp))
        self.infos = [self.reader.infos[i] for i in self.order]
        self.tokens = [info.token for info in self.infos]
        self.scene_starts = [i for i, info in enumerate(self.infos)
                             if i == 0 or info.scene_name != self.infos[i - 1].scene_name]
        """Index of the first sample of each scene, ascending."""
        self.gt = load_ground_truth(tables, self.tokens)
        self.pred: EvalBoxSet | None = None
        self.predicted = np.zeros(len(self.tokens), bool)
        self.extra_samples = 0
        self.ego_translation = ego_translations(tables, self.tokens)
        self.racks = load_bike_racks(tables, self.tokens)
        self._matches: dict[float, BoxMatches] = {}
        if results is not None:
            self._read_predictions(Path(results))

    def __len__(self) -> int:
        return len(self.tokens)

    def scene_of(self, index: int) -> int:
        """The position of sample ``index``'s scene in :attr:`scene_starts`."""
        return int(np.searchsorted(self.scene_starts, index, side="right")) - 1

    def sample(self, index: int) -> DetectionSample:
        """Sample ``index`` (in the browser's order) with its points read from disk."""
        info, lidar = self.infos[index], self.reader[self.order[index]]
        lidar_to_global = lidar.lidar_to_global.matrix()
        gt_rows = np.flatnonzero(self.gt.sample == index)
        pred = [None] * 4
        if self.predicted[index]:
            rows = np.flatnonzero(self.pred.sample == index)
            pred = [_lidar_boxes(self.pred.select(rows), lidar.lidar_to_global), self.pred.label[rows],
                    self.pred.score[rows], rows]
        return DetectionSample(
            index=index, token=info.token, scene_name=info.scene_name, points=lidar.points,
            lidar_to_global=lidar_to_global, lidar_to_ego=lidar.lidar_to_ego.matrix(),
            gt_boxes=_lidar_boxes(self.gt.select(gt_rows), lidar.lidar_to_global), gt_labels=self.gt.label[gt_rows],
            gt_rows=gt_rows, pred_boxes=pred[0], pred_labels=pred[1], pred_scores=pred[2], pred_rows=pred[3],
        )

    def matches(self, dist_th: float) -> BoxMatches | None:
        """The evaluation's matching of the whole database at ``dist_th`` metres (computed
        once per threshold), or None without a submission. Only the samples the submission
        lists have outcomes worth showing (elsewhere every GT box would be missed)."""
        if self.pred is None:
            return None
        if dist_th not in self._matches:
            self._matches[dist_th] = match_boxes(self.gt, self.pred, self.ego_translation, self.racks, DetectionConfig(), dist_th)
        return self._matches[dist_th]

    def _read_predictions(self, path: Path) -> None:
        submission = load_submission(path)["results"]
        listed = [t for t in self.tokens if t in submission]
        if not listed:
            raise NuScenesFormatError(
                f"{path}: none of its {len(submission)} samples is in {self.dataroot / self.version}"
                + (f" split {self.split!r}" if self.split else "") + " (a submission for another database or split?)")
        position = {t: i for i, t in enumerate(self.tokens)}
        self.pred = submission_to_boxes(submission, listed, source=str(path)).with_samples(
            np.array([position[t] for t in listed], np.int64))
        self.predicted[[position[t] for t in listed]] = True
        self.extra_samples = len(submission) - len(listed)


def _lidar_boxes(boxes: EvalBoxSet, lidar_to_global) -> np.ndarray:
    """float64 [N, 7] LiDAR-frame (x, y, z, dx, dy, dz, yaw) of global-frame boxes."""
    return global_boxes_to_lidar(boxes.translation, boxes.size, boxes.rotation, boxes.velocity, lidar_to_global)[:, :7]


def point_colors(sample: DetectionSample, coloring: str) -> np.ndarray:
    """uint8 [P, 3] colours of the sample's points.

    Args:
        sample: the sample.
        coloring: "height" (above the ego frame's ground plane, over :data:`HEIGHT_RANGE`),
            "intensity" (between its 2nd and 98th percentiles in the sample) or "sweep time"
            (the keyframe at one end, the oldest sweep at the other).
    """
    points = sample.points
    if coloring == "height":
        to_ego = sample.lidar_to_ego
        height = points[:, :3].astype(np.float64) @ to_ego[2, :3] + to_ego[2, 3]
        return mapped_colors(height, value_range=HEIGHT_RANGE)
    if coloring == "intensity":
        return mapped_colors(points[:, 3])
    if coloring == "sweep time":
        return mapped_colors(points[:, 4], value_range=(0.0, max(float(points[:, 4].max(initial=0.0)), 1e-3)))
    raise ValueError(f"point colouring must be one of {POINT_COLORINGS}, got {coloring!r}")


def sample_layers(sample: DetectionSample, view: BrowserView, matches: BoxMatches | None,
                  lidar_to_world: np.ndarray) -> list[SceneLayer]:
    """What the browser draws for one sample: its points, then the GT and predicted boxes
    that ``view`` asks for.

    Args:
        sample: the sample.
        view: the GUI's choices.
        matches: the database's matching at ``view.match_distance`` (None: colour by class).
        lidar_to_world: float64 [4, 4] the sample's LiDAR frame in the viewer's world frame.

    Returns:
        A PointCloud in the world frame, and one Boxes3D each for the shown GT and
        predictions (LiDAR frame, placed by ``lidar_to_world``); boxes are coloured by
        outcome (``OUTCOME_COLORS``) when ``matches`` is given, ``view.color_by_outcome``
        is set and the submission lists the sample, else by class.
    """
    return [points_layer(sample, view.point_coloring, lidar_to_world),
            *boxes_layers(sample, view, matches, lidar_to_world)]


def points_layer(sample: DetectionSample, coloring: str, lidar_to_world: np.ndarray) -> PointCloud:
    """The sample's points in the world frame, coloured as :func:`point_colors` says."""
    to_world = torch.as_tensor(lidar_to_world, dtype=torch.float64)
    xyz = torch.as_tensor(sample.points[:, :3], dtype=torch.float64) @ to_world[:3, :3].T + to_world[:3, 3]
    return PointCloud(xyz.float(), torch.as_tensor(point_colors(sample, coloring)), point_size=POINT_SIZE,
                      name="points")


def boxes_layers(sample: DetectionSample, view: BrowserView, matches: BoxMatches | None,
                 lidar_to_world: np.ndarray) -> list[Boxes3D]:
    """The GT and predicted boxes of the sample that ``view`` asks for (see
    :func:`sample_layers`)."""
    to_world = torch.as_tensor(lidar_to_world, dtype=torch.float64)
    layers = []
    outcomes = None
    if matches is not None and view.color_by_outcome and sample.pred_rows is not None:
        gt_outcome, pred_outcome = matches.outcomes(view.min_score)
        outcomes = gt_outcome[sample.gt_rows], pred_outcome[sample.pred_rows]
    classes = np.array(sorted(view.classes), np.int64)
    if view.show_gt:
        keep = np.isin(sample.gt_labels, classes)
        colors = None if outcomes is None else outcomes[0][keep]
        layers.append(_boxes_layer(sample.gt_boxes[keep], sample.gt_labels[keep], None, colors, to_world, "ground truth"))
    if view.show_predictions and sample.pred_boxes is not None:
        keep = np.isin(sample.pred_labels, classes) & (sample.pred_scores >= view.min_score)
        colors = None if outcomes is None else outcomes[1][keep]
        layers.append(_boxes_layer(sample.pred_boxes[keep], sample.pred_labels[keep], sample.pred_scores[keep], colors,
                                   to_world, "predictions"))
    return layers


def _boxes_layer(boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray | None, outcomes: np.ndarray | None,
                 lidar_to_world: torch.Tensor, name: str) -> Boxes3D:
    return Boxes3D(
        torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 7), torch.as_tensor(labels, dtype=torch.int64),
        None if scores is None else torch.as_tensor(scores, dtype=torch.float32),
        None if outcomes is None else torch.as_tensor(np.array(OUTCOME_COLORS, np.uint8)[outcomes.astype(np.int64)]),
        lidar_to_world.float(), name=name,
    )
