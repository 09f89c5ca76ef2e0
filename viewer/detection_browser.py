"""The detection browser: a nuScenes database, with or without a submission, sample by
sample in the browser.

The GUI picks the sample (a slider, previous / next scene), what colours the points
(height, intensity, sweep time), which boxes are drawn (ground truth, predictions, by
class, predictions above a score) and how boxes are coloured: by class, or by the
evaluation's outcome at a chosen match distance (true / false positive, false negative,
ignored). The world frame is the nuScenes global frame shifted to the current scene's
first ego position (small coordinates for the browser's float32), and the camera follows
the ego vehicle from one sample to the next.
"""

import threading

import numpy as np
import viser
from sparse3d.viewer.colors import LABEL_COLORS, OUTCOME_COLORS
from sparse3d.viewer.detection_database import (
    POINT_COLORINGS,
    BrowserView,
    DetectionDatabase,
    boxes_layers,
    points_layer,
)
from sparse3d.viewer.layers import draw_layers
from sparse3d.viewer.served_page import ServedPage

from sparse3d.data.nuscenes.classes import DETECTION_NAMES
from sparse3d.detection.nuscenes.eval.outcomes import (
    FALSE_NEGATIVE,
    FALSE_POSITIVE,
    OUTCOME_NAMES,
    TRUE_POSITIVE,
)

MATCH_DISTANCES = (0.5, 1.0, 2.0, 4.0)
"""The evaluation's matching thresholds (metres), offered in the GUI."""
CHASE_OFFSET = np.array([-22.0, 0.0, 16.0])
"""Where a new browser's camera starts, in the ego frame: behind and above the vehicle."""
CHASE_TARGET = np.array([8.0, 0.0, 0.0])
"""What it looks at, in the ego frame: ahead of the vehicle."""


class NuScenesViewer(ServedPage):
    """Serves a :class:`DetectionDatabase` on ``http://host:port``.

    Args:
        database: the database and its optional submission.
        host: interface to bind; 127.0.0.1 keeps the viewer private to this machine.
        port: TCP port (0 picks a free one; see :attr:`port`).
    """

    def __init__(self, database: DetectionDatabase, host: str = "127.0.0.1", port: int = 8080) -> None:
        super().__init__(host, port)
        self.database = database
        self.server.scene.set_up_direction("+z")
        self._lock = threading.Lock()
        self.index = -1  # the sample shown
        self.shown_layers: list = []
        self._ego_to_world: np.ndarray | None = None
        self._world_origin = np.zeros(3)
        self._points_root: viser.FrameHandle | None = None
        self._boxes_root: viser.FrameHandle | None = None
        self._build_gui()
        self.server.on_client_connect(self._place_new_camera)

    @property
    def view(self) -> BrowserView:
        """The GUI's current choices."""
        has_pred = self.database.pred is not None
        return BrowserView(
            point_coloring=self.gui_points.value, show_gt=self.gui_gt.value,
            show_predictions=has_pred and self.gui_pred.value,
            min_score=self.gui_score.value if has_pred else 0.0,
            classes=frozenset(i for i, box in enumerate(self.gui_classes) if box.value),
            color_by_outcome=has_pred and self.gui_box_colors.value == "outcome",
            match_distance=float(self.gui_distance.value.removesuffix(" m")) if has_pred else 2.0,
        )

    def show(self, index: int) -> None:
        """Shows sample ``index`` (browser order) and moves the cameras with the ego."""
        with self._lock:
            sample = self.database.sample(index)
            scene_changed = self.index < 0 or sample.scene_name != self.database.infos[self.index].scene_name
            if scene_changed:
                first = self.database.infos[self.database.scene_starts[self.database.scene_of(index)]]
                self._world_origin = np.array(first.ego_to_global)[:3, 3] * (1.0, 1.0, 0.0)
                self._ego_to_world = None  # a new place: the cameras start over behind the ego
            self.index, self._sample = index, sample
            self._draw(points=True)
            self._follow_ego(sample)
        if self.gui_sample.value != index:
            self.gui_sample.value = index

    def refresh(self) -> bool:
        """Shows the first sample the first time; returns whether it did (a database does
        not change while it is shown)."""
        if self.index >= 0:
            return False
        self.show(0)
        return True

    def _lidar_to_world(self, lidar_to_global: np.ndarray) -> np.ndarray:
        to_world = lidar_to_global.copy()
        to_world[:3, 3] -= self._world_origin
        return to_world

    def _draw(self, points: bool) -> None:
        """Draws the current sample (its points too when ``points``); call with the lock held."""
        sample, view = self._sample, self.view
        to_world = self._lidar_to_world(sample.lidar_to_global)
        if points:
            if self._points_root is not None:
                self._points_root.remove()
            self._points_root = self.server.scene.add_frame("/points", show_axes=False)
            cloud = points_layer(sample, view.point_coloring, to_world)
            draw_layers(self.server.scene, [cloud], "/points")
        else:
            cloud = self.shown_layers[0]
        boxes = boxes_layers(sample, view, self.database.matches(view.match_distance), to_world)
        if self._boxes_root is not None:
            self._boxes_root.remove()
        self._boxes_root = self.server.scene.add_frame("/boxes", show_axes=False)
        draw_layers(self.server.scene, boxes, "/boxes")
        self.shown_layers = [cloud, *boxes]
        self._status.content = self._status_text(view)

    def _redraw(self, points: bool) -> None:
        """Draws the shown sample again after a GUI change (its points only when ``points``)."""
        with self._lock:
            if self.index >= 0:
                self._draw(points)

    def _follow_ego(self, sample) -> None:
        """Moves every camera with the ego: its pose relative to the ego vehicle is kept."""
        ego_to_world = self._lidar_to_world(sample.lidar_to_global) @ np.linalg.inv(sample.lidar_to_ego)
        previous, self._ego_to_world = self._ego_to_world, ego_to_world
        self.server.initial_camera.position = _apply(ego_to_world, CHASE_OFFSET)
        self.server.initial_camera.look_at = _apply(ego_to_world, CHASE_TARGET)
        if previous is None or not self.gui_follow.value:
            return
        move = ego_to_world @ np.linalg.inv(previous)
        for client in self.server.get_clients().values():
            camera = client.camera
            if camera.update_timestamp == 0.0:
                continue  # the page has not sent its camera yet: the initial camera applies
            with client.atomic():
                camera.position, camera.look_at = _apply(move, camera.position), _apply(move, camera.look_at)

    def _place_new_camera(self, client: viser.ClientHandle) -> None:
        if self._ego_to_world is not None:
            client.camera.up_direction = (0.0, 0.0, 1.0)
            client.camera.position = _apply(self._ego_to_world, CHASE_OFFSET)
            client.camera.look_at = _apply(self._ego_to_world, CHASE_TARGET)

    def _status_text(self, view: BrowserView) -> str:
        db, sample = self.database, self._sample
        starts, scene = db.scene_starts, db.scene_of(sample.index)
        ends = starts[1:] + [len(db)]
        lines = [f"**nuScenes** `{db.dataroot}` {db.version}" + (f" · split {db.split}" if db.split else ""),
                 f"{sample.scene_name} ({scene + 1}/{len(starts)}) · sample {sample.index - starts[scene] + 1}/"
                 f"{ends[scene] - starts[scene]} · `{sample.token}`",
                 f"- ground truth: {len(sample.gt_boxes)} boxes"]
        if db.pred is not None:
            if sample.pred_boxes is None:
                lines.append("- predictions: the submission does not list this sample")
            else:
                shown = int((sample.pred_scores >= view.min_score).sum())
                lines.append(f"- predictions: {len(sample.pred_boxes)}, {shown} scoring ≥ {view.min_score:.2f}")
                matches = db.matches(view.match_distance)
                gt, pred = matches.outcomes(view.min_score)
                gt, pred = gt[sample.gt_rows], pred[sample.pred_rows]
                lines.append(f"- within {view.match_distance:g} m: {int((pred == TRUE_POSITIVE).sum())} TP, "
                             f"{int((pred == FALSE_POSITIVE).sum())} FP, {int((gt == FALSE_NEGATIVE).sum())} FN")
            if db.extra_samples:
                lines.append(f"- {db.extra_samples} samples of the submission are not in this database")
        return "\n".join(lines)

    def _build_gui(self) -> None:
        gui, db = self.server.gui, self.database
        self.gui_sample = gui.add_slider("sample", min=0, max=max(len(db) - 1, 1), step=1, initial_value=0,
                                         disabled=len(db) == 1)
        self.gui_sample.on_update(lambda _: self._sample_chosen())
        scenes = gui.add_button_group("scene", ("previous", "next"))
        scenes.on_click(lambda event: self._step_scene(-1 if event.target.value == "previous" else 1))
        self.gui_follow = gui.add_checkbox("follow ego", True, hint="move the camera with the ego vehicle")
        self.gui_points = gui.add_dropdown("points", POINT_COLORINGS, initial_value=POINT_COLORINGS[0])
        self.gui_points.on_update(lambda _: self._redraw(points=True))
        self.gui_gt = gui.add_checkbox("ground truth", True)
        self.gui_gt.on_update(lambda _: self._redraw(points=False))
        has_pred = db.pred is not None
        self.gui_pred = gui.add_checkbox("predictions", True, disabled=not has_pred)
        self.gui_score = gui.add_slider("min score", min=0.0, max=1.0, step=0.01, initial_value=0.3,
                                        disabled=not has_pred)
        self.gui_box_colors = gui.add_dropdown("box colours", ("outcome", "class") if has_pred else ("class",))
        self.gui_distance = gui.add_dropdown("match within", tuple(f"{d:g} m" for d in MATCH_DISTANCES),
                                             initial_value="2 m", disabled=not has_pred,
                                             hint="the evaluation's centre-distance threshold")
        for handle in (self.gui_pred, self.gui_score, self.gui_box_colors, self.gui_distance):
            handle.on_update(lambda _: self._redraw(points=False))
        gui.add_html(_legend_html(has_pred))
        with gui.add_folder("classes", expand_by_default=False):
            self.gui_classes = [gui.add_checkbox(name, True) for name in DETECTION_NAMES]
        for box in self.gui_classes:
            box.on_update(lambda _: self._redraw(points=False))

    def _sample_chosen(self) -> None:
        index = int(self.gui_sample.value)
        if index != self.index and 0 <= index < len(self.database):
            self.show(index)

    def _step_scene(self, step: int) -> None:
        starts = self.database.scene_starts
        self.show(starts[(self.database.scene_of(max(self.index, 0)) + step) % len(starts)])


def _apply(transform: np.ndarray, point) -> np.ndarray:
    """float64 [3]: ``point`` moved by the [4, 4] rigid ``transform``."""
    return transform[:3, :3] @ np.asarray(point, np.float64) + transform[:3, 3]


def _legend_html(with_outcomes: bool) -> str:
    """The colour key: classes, and the outcomes when a submission is shown."""
    def swatch(color, text):
        return f'<span style="color: rgb{tuple(color)}">■</span>&nbsp;{text}'
    items = [swatch(LABEL_COLORS[i], name) for i, name in enumerate(DETECTION_NAMES)]
    if with_outcomes:
        items += [swatch(color, name) for color, name in zip(OUTCOME_COLORS, OUTCOME_NAMES)]
    return '<div style="font-size: 0.75em; padding: 0 0.75em">' + " &nbsp; ".join(items) + "</div>"
