"""What watching costs: `splat`'s training speed with and without a browser on the viewer,
the render panel's frame rate, and the viewer's memory.

1. `sparse3d-train method=splat` on a synthetic object (128 x 128) alone: its steps/s.
2. The same training with the viewer following it in this process and headless chromium
   open on the page (and once without any browser: the viewer's own cost of following):
   with the render panel showing "rgb" and the camera still (a client
   that watches), with the camera dragged round the object the whole time (a user who
   never stops moving), and the same without the panel (viser's splats alone): steps/s.
   The browser runs on this machine too, so its own drawing (software WebGL) counts
   against training here; on a remote browser it would not.
3. The render panel unthrottled (duty cycle 1) at 256 and 512 pixels, the camera moving:
   renders reaching the page per second.
4. The viewer process's resident memory (VmHWM: its peak).

Usage:
    python tools/bench_viewer.py [--steps 600] [--json out.json]
"""

import sparse3d  # noqa: F401, I001  (first: it sets torch's OpenMP spin before torch loads)
import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from sparse3d.viewer.app import RunViewer
from sparse3d.viewer.render_panel import BROWSER, RenderPanelConfig

from sparse3d.io.atomic import write_json_atomic
from sparse3d.io.read import read_json
from sparse3d.synthetic.objects.generator import (
    SyntheticObjectsConfig,
    write_synthetic_objects,
)

VIEWPORT = {"width": 800, "height": 600}
SCENARIOS = [  # (name, render panel channel or None for no browser, camera moving all along)
    ("viewer, no browser", None, False),
    ("panel rgb, camera still", "rgb", False),
    ("panel rgb, camera moving", "rgb", True),
    ("browser splats, camera moving", BROWSER, True),
]
CHROMIUM_ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader"]


def train_command(data: Path, out: Path, steps: int) -> list[str]:
    return [sys.executable, "-m", "sparse3d.cli.train", "method=splat", f"data={data}", f"output={out}",
            f"trainer.max_steps={steps}", "trainer.ckpt_every=100", "trainer.progress=false"]


def steps_per_second(run: Path, skip: int) -> float:
    """Training steps per second after the first ``skip`` steps (start-up excluded),
    from the run's metrics.json."""
    train = read_json(run / "metrics.json")["train"]
    first = next(e for e in train if e["step"] >= skip)
    last = train[-1]
    return (last["step"] - first["step"]) / (last["time"]["elapsed_s"] - first["time"]["elapsed_s"])


def drag_round(page, seconds: float | None = None, until=None) -> None:
    """Drags the camera in small arcs, for ``seconds`` or until ``until()`` is true."""
    end = None if seconds is None else time.monotonic() + seconds
    cx, cy, t = VIEWPORT["width"] / 2, VIEWPORT["height"] * 0.7, 0.0
    while (end is None or time.monotonic() < end) and (until is None or not until()):
        page.mouse.move(cx, cy)
        page.mouse.down()
        for _ in range(5):
            t += 0.2
            page.mouse.move(cx + 60 * math.cos(t), cy + 20 * math.sin(t))
            page.wait_for_timeout(40)
        page.mouse.up()


def choose_channel(page, channel: str) -> None:
    page.get_by_role("combobox", name="render").click()
    page.get_by_role("option", name=channel).click()


def follow(viewer: RunViewer, stop: threading.Event) -> None:
    while not stop.wait(0.5):
        viewer.refresh()


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def watched_training(browser, data: Path, run: Path, steps: int, skip: int, channel: str, moving: bool) -> tuple[float, int]:
    """(steps/s, panel renders sent) of a training followed by the viewer in this process,
    with a browser page on it showing ``channel`` (no page if None), its camera dragged
    all along if ``moving``."""
    run.mkdir()
    viewer = RunViewer(run, port=0)
    stop = threading.Event()
    follower = threading.Thread(target=follow, args=(viewer, stop), daemon=True)
    follower.start()
    page = None if channel is None else browser.new_page(viewport=VIEWPORT)
    try:
        if page is not None:
            page.goto(f"http://127.0.0.1:{viewer.port}")
        training = subprocess.Popen(train_command(data, run, steps), stdout=subprocess.DEVNULL)
        while viewer.shown_step is None and training.poll() is None:  # the first checkpoint
            time.sleep(0.2)
        if channel not in (None, BROWSER):
            choose_channel(page, channel)
        before = viewer.panel.renders
        if moving:
            drag_round(page, until=lambda: training.poll() is not None)
        if training.wait() != 0:
            sys.exit(f"bench_viewer: the watched training in {run} failed")
        return steps_per_second(run, skip), viewer.panel.renders - before
    finally:
        if page is not None:
            page.close()
        stop.set()
        follower.join()
        viewer.stop()


def panel_fps(browser, run: Path, seconds: float) -> dict[int, float]:
    """Renders per second reaching the page from the unthrottled panel at 256 and 512
    pixels (long side), the camera moving."""
    viewer = RunViewer(run, port=0)
    viewer.refresh()
    page = browser.new_page(viewport=VIEWPORT)
    try:
        page.goto(f"http://127.0.0.1:{viewer.port}")
        while not viewer.server.get_clients():
            time.sleep(0.1)
        choose_channel(page, "rgb")
        fps = {}
        for size in (256, 512):
            viewer.panel.configure(RenderPanelConfig(moving_size=size, resting_size=size, duty_cycle=1.0))
            before, start = viewer.panel.renders, time.monotonic()
            drag_round(page, seconds=seconds)
            fps[size] = (viewer.panel.renders - before) / (time.monotonic() - start)
            print(f"render panel {size:>3} px: {fps[size]:6.2f} renders/s (unthrottled, camera moving)", flush=True)
        return fps
    finally:
        page.close()
        viewer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600, help="training steps of each run")
    parser.add_argument("--fps-seconds", type=float, default=10.0, help="seconds of moving camera per panel size")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("SPARSE3D_CHROMIUM") or shutil.which("chromium")
    if chromium is None:
        sys.exit("bench_viewer: no chromium on PATH (apt-get install chromium, or set SPARSE3D_CHROMIUM)")
    skip = min(100, args.steps // 4)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = write_synthetic_objects(tmp / "objects", SyntheticObjectsConfig(objects=("torus",)))[0]
        subprocess.run(train_command(data, tmp / "alone", args.steps), check=True, stdout=subprocess.DEVNULL)
        alone = steps_per_second(tmp / "alone", skip)
        print(f"training alone:      {alone:6.2f} steps/s", flush=True)

        watched, renders = {}, {}
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            for name, channel, moving in SCENARIOS:
                watched[name], renders[name] = watched_training(browser, data, tmp / name, args.steps, skip, channel, moving)
                print(f"watched, {name:<28} {watched[name]:6.2f} steps/s  ({watched[name] / alone:.3f} of alone; "
                      f"{renders[name]} panel renders sent)", flush=True)
            fps = panel_fps(browser, tmp / SCENARIOS[0][0], args.fps_seconds)
            browser.close()
    memory = peak_rss_mib()
    result = {"steps_per_s_alone": alone, **{f"steps_per_s_{k}": v for k, v in watched.items()},
              **{f"ratio_{k}": v / alone for k, v in watched.items()}, **{f"panel_renders_{k}": v for k, v in renders.items()},
              "panel_fps_256": fps[256], "panel_fps_512": fps[512], "viewer_peak_rss_mib": memory}
    if args.json:
        write_json_atomic(args.json, result)
    print(f"viewer peak memory:  {memory:6.0f} MiB")
    ratios = ", ".join(f"{k} {v / alone:.1%}" for k, v in watched.items())
    print(f"summary: training speed while watched, of alone ({alone:.1f} steps/s): {ratios}; "
          f"render panel {fps[256]:.1f} / {fps[512]:.1f} renders/s at 256 / 512 px; viewer peak {memory:.0f} MiB")


if __name__ == "__main__":
    main()
