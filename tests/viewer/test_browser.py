"""The viewer in a real browser: Debian's chromium, headless, driven by Playwright for
Python. ``make test`` installs both; without them these tests fail rather than skip, so
that a CI run without a browser cannot pass for one that looked.

Every assertion is on the page's pixels, compared with where the library's own camera
model puts the scene for the browser's camera."""

import os
import shutil
import time

import numpy as np
import pytest
import torch
from PIL import Image

from sparse3d.engine.distributed import World
from sparse3d.engine.registry import discover_methods
from sparse3d.engine.trainer import Trainer
from sparse3d.synthetic.objects.generator import (
    SyntheticObjectsConfig,
    write_synthetic_objects,
)

viser = pytest.importorskip("viser")
viewer_app = pytest.importorskip("sparse3d.viewer.app")
render_panel = pytest.importorskip("sparse3d.viewer.render_panel")

VIEWPORT = {"width": 640, "height": 480}
CHROMIUM_ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader"]  # software WebGL: no GPU here
BAND = np.s_[240:420, 60:]  # below the GUI panel and the notification, right of the axes gizmo


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
    viewer.refresh()
    page = browser.new_page(viewport=VIEWPORT)
    try:
        page.goto(f"http://127.0.0.1:{viewer.port}")
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
    assert np.abs(rgb.astype(int) - depth.astype(int)).max(-1).mean() > 10  # the channel switch changed the page

    before = client.camera.position.copy()
    page.mouse.move(200, 300)
    page.mouse.down()
    page.mouse.move(300, 320, steps=10)
    page.mouse.up()
    wait_for(lambda: not np.allclose(client.camera.position, before, atol=1e-3), "the drag to move the camera")
    moved = shows_render("depth")  # the render followed the camera
    assert np.abs(moved.astype(int) - depth.astype(int)).max(-1).mean() > 1
