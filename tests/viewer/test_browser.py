"""The viewer in a real browser: Debian's chromium, headless, driven by Playwright for
Python. ``make test`` installs both; without them these tests fail rather than skip, so
that a CI run without a browser cannot pass for one that looked.

Every assertion is on the page's pixels, compared with where the library's own camera
model puts the scene for the browser's camera."""

import json
import os
import re
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
import torch
from clirun import VENV_BIN
from PIL import Image

from sparse3d.data.nuscenes.tables import NuScenesTables
from sparse3d.detection.boxes import box_corners
from sparse3d.detection.nuscenes.eval import outcomes
from sparse3d.engine.checkpoint import list_checkpoints
from sparse3d.engine.distributed import World
from sparse3d.engine.registry import discover_methods
from sparse3d.engine.trainer import Trainer
from sparse3d.synthetic.lidar import SpinningLidarConfig
from sparse3d.synthetic.nuscenes import NuScenesSynthConfig, write_synthetic_nuscenes
from sparse3d.synthetic.nuscenes_mock import mock_submission
from sparse3d.synthetic.objects.generator import (
    SyntheticObjectsConfig,
    write_synthetic_objects,
)

viser = pytest.importorskip("viser")
viewer_app = pytest.importorskip("sparse3d.viewer.app")
render_panel = pytest.importorskip("sparse3d.viewer.render_panel")
colors = pytest.importorskip("sparse3d.viewer.colors")
detection_browser = pytest.importorskip("sparse3d.viewer.detection_browser")
detection_database = pytest.importorskip("sparse3d.viewer.detection_database")
view_pose = pytest.importorskip("sparse3d.viewer.view_picker").view_pose

VIEWPORT = {"width": 640, "height": 480}
WIDE_VIEWPORT = {"width": 1000, "height": 700}
SCENE_WIDTH = 640  # of the wide viewport: left of the GUI panel (its legend has every box colour)
CHROMIUM_ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader"]  # software WebGL: no GPU here
BAND = np.s_[240:420, 60:290]  # below the notification, right of the axes gizmo, left of the GUI panel


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: `make test` installs it (pip install playwright)")
    chromium = os.environ.get("SPARSE3D_CHROMIUM") or shutil.which("chromium")
    if chromium is None:
        pytest.fail("no chromium on PATH: `make test` installs Debian's (apt-get install chromium), "
                    "or set SPARSE3D_CHROMIUM to a Chromium binary")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def splat_run(tmp_path_factory):
    """A small splat run: 40 steps on the box at 32 x 32."""
    tmp = tmp_path_factory.mktemp("browser")
    data = write_synthetic_objects(tmp / "objects", SyntheticObjectsConfig(objects=("box",), resolution=32, num_test_views=1))[0]
    config = discover_methods()["splat"].default_config()
    config.data, config.output = data, tmp / "run"
    config.trainer.max_steps, config.trainer.progress = 40, False
    config.model.num_random = 300
    Trainer(config, "splat", tmp / "run", World()).train()
    return tmp / "run"


@pytest.fixture(params=["run", "ply"])
def page_on(request, browser, splat_run):
    """(viewer, page, client): the run, or the PLY file it exported, served on a free port
    and open in a browser page."""
    if request.param == "run":
        viewer = viewer_app.RunViewer(splat_run, port=0)
    else:
        viewer = viewer_app.PlyViewer(splat_run / "point_cloud.ply", port=0)
    yield from served(browser, viewer, VIEWPORT)


def open_page(page, url: str) -> None:
    """Opens the viewer's page, with viser's notifications (its warning about software
    WebGL, which is all a GPU-less machine has) hidden: they cover part of the scene."""
    page.goto(url)
    page.add_style_tag(content=".mantine-Notifications-root { display: none !important; }")


def served(browser, viewer, viewport):
    """Yields (viewer, page, client) once the viewer shows its source in a new page of
    ``viewport`` size; closes both afterwards."""
    viewer.refresh()
    page = browser.new_page(viewport=viewport)
    try:
        open_page(page, f"http://127.0.0.1:{viewer.port}")
        client = wait_for(lambda: next(iter(viewer.server.get_clients().values()), None), "the page to connect")
        wait_for(lambda: client.camera.update_timestamp > 0, "the page to send its camera")
        yield viewer, page, client
    finally:
        page.close()
        viewer.stop()


def wait_for(condition, what: str, timeout: float = 30.0):
    """The first truthy value of ``condition()``, polled until ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def place_camera(page, client, position, look_at=(0.0, 0.0, 0.0)) -> None:
    """Moves the browser's camera from the server and waits until the page has drawn it."""
    client.camera.position, client.camera.look_at = position, look_at
    wait_for(lambda: np.allclose(client.camera.position, position, atol=1e-4), "the page to take the camera")
    page.wait_for_timeout(1000)


def keep_screenshot(page, name: str) -> None:
    """Saves the page as ``$SPARSE3D_SCREENSHOTS/<name>.png`` (800 pixels wide, 128
    colours: small enough to commit) when that variable is set (``make screenshots``:
    the README's pictures)."""
    folder = os.environ.get("SPARSE3D_SCREENSHOTS")
    if not folder:
        return
    image = Image.fromarray(settled_screenshot(page))
    image = image.resize((800, round(800 * image.height / image.width)), Image.LANCZOS)
    os.makedirs(folder, exist_ok=True)
    image.quantize(128).save(os.path.join(folder, f"{name}.png"), optimize=True)


def settled_screenshot(page, timeout: float = 15.0) -> np.ndarray:
    """uint8 [H, W, 3] of the page once two screenshots 0.5 s apart agree (the page has
    drawn what it was sent)."""
    end, last = time.monotonic() + timeout, screenshot(page)
    while time.monotonic() < end:
        page.wait_for_timeout(500)
        shot = screenshot(page)
        if np.array_equal(shot, last):
            return shot
        last = shot
    raise AssertionError("the page kept changing")


def screenshot(page) -> np.ndarray:
    """uint8 [H, W, 3] of the page."""
    path = f"/tmp/sparse3d-shot-{os.getpid()}.png"
    page.screenshot(path=path)
    image = np.asarray(Image.open(path).convert("RGB"))
    os.unlink(path)
    return image


def browser_camera(client):
    camera = client.camera
    return render_panel.camera_from_viser(camera.wxyz, camera.position, camera.fov, camera.image_width, camera.image_height)


def projected_box(means: torch.Tensor, extents: torch.Tensor, camera) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) pixel box around the projections of ``means`` (float [N, 3]), each
    widened by its ``extents`` (float [N], world units) seen at its own depth."""
    cam = (camera.viewmats[0] @ torch.cat([means, torch.ones(len(means), 1)], 1).T).T[:, :3]
    pixels = (camera.Ks[0] @ cam.T).T
    xy = pixels[:, :2] / pixels[:, 2:]
    reach = (extents * camera.Ks[0, 0, 0])[:, None] / cam[:, 2:]  # [N, 1] pixels
    low, high = (xy - reach).min(0).values, (xy + reach).max(0).values
    return float(low[0]), float(low[1]), float(high[0]), float(high[1])


def test_page_draws_the_gaussians_where_they_project(page_on):
    viewer, page, client = page_on
    place_camera(page, client, (2.5, -2.5, 1.8))
    camera = browser_camera(client)
    assert (camera.width, camera.height) == (VIEWPORT["width"], VIEWPORT["height"])
    # Only the Gaussians may differ between the two pictures: the frusta are hidden in both.
    for handle in viewer.shown_handles:
        if not isinstance(handle, viser.GaussianSplatHandle):
            handle.visible = False
    page.wait_for_timeout(1000)
    with_splats = screenshot(page)
    for handle in viewer.shown_handles:
        handle.visible = False
    page.wait_for_timeout(1000)
    without = screenshot(page)
    drawn = np.abs(with_splats.astype(int) - without.astype(int)).max(-1) > 30  # the Gaussians' pixels
    for handle in viewer.shown_handles:
        handle.visible = True
    keep_screenshot(page, f"viewer-{'ply' if viewer.run_dir is None else 'run'}")
    ys, xs = np.nonzero(drawn)
    layer = viewer.shown_layers[0]
    extents = 3 * torch.linalg.eigvalsh(layer.covariances).amax(-1).sqrt()  # [N] 3 sigma along each one's widest axis
    x0, y0, x1, y1 = projected_box(layer.means, extents, camera)
    inside = (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
    assert len(xs) > 500, "the Gaussians are not on the page"
    assert inside.mean() > 0.99, f"{(~inside).sum()} of the Gaussians' pixels lie outside their projected box"


def test_render_panel_shows_the_method_render_and_follows_channel_and_camera(page_on):
    viewer, page, client = page_on
    viewer.panel.configure(render_panel.RenderPanelConfig(resting_size=max(VIEWPORT.values())))  # no scaling to compare
    place_camera(page, client, (2.0, -2.0, 1.5))

    def shows_render(channel: str) -> np.ndarray:
        """The page once it shows the method's render of ``channel`` at the browser's
        camera, checked against the same render made here."""
        wait_for(lambda: viewer.panel._wanted(client) is None, "the panel's full-size render", timeout=60)
        page.wait_for_timeout(800)
        shot = screenshot(page)
        camera = browser_camera(client)
        with torch.no_grad():
            outputs = viewer.panel.scene.get_outputs_for_camera(camera)
        # viser may draw its canvas below the page's resolution (it adapts to the frame
        # rate), and the page stretches it: so does the comparison.
        size = (VIEWPORT["width"], VIEWPORT["height"])
        expected = np.asarray(Image.fromarray(render_panel.channel_image(outputs, channel)).resize(size, Image.BILINEAR))
        close = np.abs(shot[BAND].astype(int) - expected[BAND].astype(int)).max(-1) <= 24  # JPEG
        assert close.mean() > 0.97, f"{channel}: the page does not show the method's render ({close.mean():.3f} agree)"
        return shot[BAND]

    page.get_by_role("combobox", name="render").click()  # the GUI, as a user does it
    assert page.get_by_role("option").all_inner_texts() == [render_panel.BROWSER, "rgb", "alpha", "depth"]
    page.get_by_role("option", name="rgb").click()
    rgb = shows_render("rgb")

    page.get_by_role("combobox", name="render").click()
    page.get_by_role("option", name="depth").click()
    depth = shows_render("depth")
    if viewer.run_dir is not None:
        keep_screenshot(page, "viewer-render-panel-depth")
    assert np.abs(rgb.astype(int) - depth.astype(int)).max(-1).mean() > 10  # the channel switch changed the page

    before = client.camera.position.copy()
    page.mouse.move(200, 300)
    page.mouse.down()
    page.mouse.move(300, 320, steps=10)
    page.mouse.up()
    wait_for(lambda: not np.allclose(client.camera.position, before, atol=1e-3), "the drag to move the camera")
    moved = shows_render("depth")  # the render followed the camera
    assert np.abs(moved.astype(int) - depth.astype(int)).max(-1).mean() > 1


@pytest.fixture(scope="module")
def nuscenes_page(browser, tmp_path_factory):
    """(viewer, page, client): a synthetic nuScenes database with a mock submission in the
    detection browser, open in a page."""
    root = tmp_path_factory.mktemp("nusc")
    config = NuScenesSynthConfig(seed=0, num_scenes=2, samples_per_scene=3, sweeps_per_sample=1, objects_per_scene=30,
                                 lidar=SpinningLidarConfig(azimuth_steps=540))
    write_synthetic_nuscenes(root, config)
    tables = NuScenesTables(root, config.version)
    (root / "results.json").write_text(json.dumps(mock_submission(tables, [s["token"] for s in tables.sample], seed=0)))
    viewer = detection_browser.NuScenesViewer(
        detection_database.DetectionDatabase(root, config.version, results=root / "results.json"), port=0)
    yield from served(browser, viewer, WIDE_VIEWPORT)


def colour_pixels(shot: np.ndarray, color) -> np.ndarray:
    """bool [H, W]: pixels of ``color`` blended with the white page (thin lines cover their
    pixels only in part), at least 30 % of it: their distance to white points the way the
    colour's does."""
    away, colour_away = 255.0 - shot.astype(float), 255.0 - np.array(color, float)
    along = away @ colour_away / np.linalg.norm(colour_away)
    return (along > 0.3 * np.linalg.norm(colour_away)) & (along > 0.995 * np.linalg.norm(away, axis=-1))


def test_detection_browser_colours_boxes_by_outcome_then_by_class(nuscenes_page):
    viewer, page, client = nuscenes_page
    gt_boxes, predictions = viewer.shown_layers[1:]
    drawn = [tuple(c) for c in np.concatenate([gt_boxes.colors.numpy(), predictions.colors.numpy()])]
    for outcome in (outcomes.TRUE_POSITIVE, outcomes.FALSE_POSITIVE, outcomes.FALSE_NEGATIVE):
        assert colors.OUTCOME_COLORS[outcome] in drawn  # the sample has each outcome
    by_outcome = settled_screenshot(page)[:, :SCENE_WIDTH]
    keep_screenshot(page, "viewer-nuscenes")

    page.get_by_role("combobox", name="box colours").click()  # the GUI, as a user does it
    page.get_by_role("option", name="class").click()
    wait_for(lambda: viewer.shown_layers[1].colors is None, "the boxes to be coloured by class")
    by_class = settled_screenshot(page)[:, :SCENE_WIDTH]
    # The points do not change: only the boxes' colours can make the difference.
    box_pixels = np.zeros(by_class.shape[:2], bool)
    for outcome in (outcomes.TRUE_POSITIVE, outcomes.FALSE_POSITIVE, outcomes.FALSE_NEGATIVE):
        color = colors.OUTCOME_COLORS[outcome]
        gone = colour_pixels(by_outcome, color) & ~colour_pixels(by_class, color)
        assert gone.sum() > 30, f"{outcomes.OUTCOME_NAMES[outcome]}: {gone.sum()} pixels of its colour went with the outcome colours"
        box_pixels |= gone
    labels = set(torch.cat([layer.labels for layer in viewer.shown_layers[1:]]).tolist())
    gained = sum(int(colour_pixels(by_class, colors.label_color(label)).sum() -
                     colour_pixels(by_outcome, colors.label_color(label)).sum()) for label in labels)
    assert gained > 100, f"the class colours came with {gained} pixels"

    # The boxes' pixels sit where the library's camera model projects the boxes.
    ys, xs = np.nonzero(box_pixels)
    camera = browser_camera(client)
    corners = torch.cat([world_corners(layer) for layer in viewer.shown_layers[1:]])  # [B, 8, 3]
    rects = [projected_box(c, torch.zeros(8), camera) for c in corners if in_front(c, camera)]
    inside = np.zeros(len(xs), bool)
    for x0, y0, x1, y1 in rects:
        inside |= (xs >= x0 - 3) & (xs <= x1 + 3) & (ys >= y0 - 3) & (ys <= y1 + 3)
    assert inside.mean() > 0.98, f"{(~inside).sum()} of {len(xs)} box pixels lie off every box"


def test_detection_browser_camera_follows_the_ego(nuscenes_page):
    viewer, page, client = nuscenes_page
    viewer.show(0)
    page.wait_for_timeout(500)
    before, ego_before = client.camera.position.copy(), viewer._ego_to_world.copy()
    viewer.show(1)  # the next sample of the same scene: the ego drove on
    move = viewer._ego_to_world @ np.linalg.inv(ego_before)
    expected = move[:3, :3] @ before + move[:3, 3]
    assert np.linalg.norm(move[:3, 3]) > 1.0
    wait_for(lambda: np.allclose(client.camera.position, expected, atol=1e-3), "the camera to follow the ego")
    page.get_by_text("sample 2/3").wait_for(timeout=10_000)  # the page's status follows


def world_corners(layer) -> torch.Tensor:
    """float [B, 8, 3] corners of a Boxes3D layer's boxes in the world frame."""
    corners = torch.as_tensor(box_corners(layer.boxes.double().numpy()), dtype=torch.float32)
    to_world = layer.lidar_to_world
    return corners @ to_world[:3, :3].T + to_world[:3, 3]


def in_front(points: torch.Tensor, camera) -> bool:
    """Whether all ``points`` (float [N, 3], world) are in front of the camera."""
    cam = points @ camera.viewmats[0, :3, :3].T + camera.viewmats[0, :3, 3]
    return bool((cam[:, 2] > 0.1).all())


@pytest.fixture(scope="module")
def data_page(browser, tmp_path_factory):
    """(viewer, page, client): a multi-view data folder (4 training views) served before
    any training, open in a page."""
    config = SyntheticObjectsConfig(objects=("box",), resolution=64, num_test_views=2)
    data = write_synthetic_objects(tmp_path_factory.mktemp("data"), config)[0]
    yield from served(browser, viewer_app.DataViewer(data, port=0, num_train_views=4), WIDE_VIEWPORT)


def test_clicking_a_camera_flies_to_it_and_shows_its_image(data_page):
    viewer, page, client = data_page
    training = viewer.shown_layers[0]
    assert training.name == "training views" and len(training.cameras) == 4
    # Stand behind view 2, looking the way it looks: its frustum's image fills the page's middle.
    position, look_at, up, _ = view_pose(training, 2)
    forward = (look_at - position) / np.linalg.norm(look_at - position)
    client.camera.up_direction = up
    place_camera(page, client, position - 0.6 * forward, look_at)
    settled_screenshot(page)
    page.mouse.click(WIDE_VIEWPORT["width"] / 2, WIDE_VIEWPORT["height"] / 2)  # left of the GUI panel
    wait_for(lambda: viewer.picker.picked == ("training views", 2), "the click to pick view 2")
    # The browser reports position and look-at in separate updates: wait for both.
    wait_for(lambda: np.allclose(client.camera.position, position, atol=1e-3)
             and np.allclose(client.camera.look_at, look_at, atol=1e-3), "the camera to fly to the view")
    np.testing.assert_array_equal(viewer.picker.image.image, training.images[2].numpy())
    page.get_by_text("training views, view 2").wait_for(timeout=10_000)
    client.camera.position = position - 2.0 * forward  # step back: the picked view's frustum in sight
    keep_screenshot(page, "viewer-data")


def test_training_with_its_viewer_pauses_and_resumes_from_the_page(browser, tmp_path):
    """``sparse3d-train ... viewer=true``: the page's button pauses training after a saved
    step and resumes it; Ctrl-C afterwards stops with a checkpoint as usual."""
    data = write_synthetic_objects(tmp_path / "objects", SyntheticObjectsConfig(objects=("box",), resolution=32,
                                                                                 num_test_views=1))[0]
    run = tmp_path / "run"
    process = subprocess.Popen(
        [str(VENV_BIN / "sparse3d-train"), "method=splat", f"data={data}", f"output={run}", "viewer=true",
         "trainer.max_steps=100000", "trainer.ckpt_every=0", "trainer.log_every=5", "trainer.eval_every=0",
         "trainer.progress=false", "model.num_random=300"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    page = browser.new_page(viewport=WIDE_VIEWPORT)
    try:
        url = wait_for(lambda: re.search(r"viewer at (http://\S+)", process.stdout.readline() or "x"),
                       "the viewer's address", timeout=120).group(1)
        open_page(page, url)
        page.get_by_role("button", name="pause training").click()
        checkpoint = wait_for(lambda: list_checkpoints(run), "the pause to save its step")[-1][0]
        page.get_by_text("paused").wait_for(timeout=10_000)
        keep_screenshot(page, "viewer-training")
        time.sleep(1.5)
        assert [s for s, _ in list_checkpoints(run)] == [checkpoint]
        assert json.loads((run / "metrics.json").read_text())["train"][-1]["step"] <= checkpoint  # no step since
        page.get_by_role("button", name="resume training").click()
        wait_for(lambda: json.loads((run / "metrics.json").read_text())["train"][-1]["step"] > checkpoint,
                 "training to go on")
    finally:
        page.close()
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=60)[0]
    assert process.returncode == 130, output
    assert "resume with" in output


def test_camera_path_and_screenshot_are_downloaded_from_the_page(browser, splat_run):
    """Keyframes taken from the page's camera with the GUI, a video rendered along them and
    a screenshot, each arriving in the browser as a download."""
    for viewer, page, client in served(browser, viewer_app.RunViewer(splat_run, port=0), WIDE_VIEWPORT):
        page.get_by_text("camera path").click()  # open the folder
        for position in ((2.5, -2.5, 1.8), (-2.5, -2.5, 1.8)):
            place_camera(page, client, position)
            page.get_by_role("button", name="add keyframe").click()
        wait_for(lambda: len(viewer.camera_path.keyframes) == 2, "two keyframes")
        np.testing.assert_allclose(viewer.camera_path.keyframes[1].position, (-2.5, -2.5, 1.8), atol=1e-4)
        viewer.camera_path.frames.value = 8
        with page.expect_download(timeout=120_000) as video:
            page.get_by_role("button", name="render video").click()
        assert video.value.suggested_filename == "camera_path.mp4"
        assert (splat_run / "camera_path.mp4").stat().st_size > 0
        with page.expect_download(timeout=60_000) as shot:
            page.get_by_role("button", name="screenshot").click()
        picture = np.asarray(Image.open(shot.value.path()).convert("RGB"))
        assert picture.shape == (client.camera.image_height, client.camera.image_width, 3)
        assert (np.abs(picture.astype(int) - 255).max(-1) > 30).mean() > 0.01  # the scene, not a blank page
