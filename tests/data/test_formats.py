"""Every reader, on the synthetic data written in all three formats, gives the cameras,
images, masks and split that the generator rendered."""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sparse3d.data.blender import read_blender, write_blender
from sparse3d.data.colmap import read_colmap, write_colmap
from sparse3d.data.images import rgb_over_white_and_mask, write_png
from sparse3d.data.loader import DATA_FORMATS, detect_format, load_multiview
from sparse3d.data.nerfstudio import read_nerfstudio
from sparse3d.synthetic.objects.generator import render_object, synthetic_cameras
from sparse3d.synthetic.objects.objects import build_object

FORMATS = ["nerfstudio", "blender", "colmap-bin", "colmap-txt"]


@pytest.mark.parametrize("data_format", FORMATS)
def test_reader_gives_generator_cameras(synthetic_folder, small_config, data_format):
    data = load_multiview(synthetic_folder, data_format, num_train_views=4)
    truth = synthetic_cameras(small_config)
    # float32 poses go through float64 JSON / quaternions: a few ulps of float32.
    torch.testing.assert_close(data.cameras.viewmats, truth.viewmats, atol=1e-6, rtol=0)
    torch.testing.assert_close(data.cameras.Ks, truth.Ks, atol=1e-4, rtol=0)
    assert (data.cameras.width, data.cameras.height) == (48, 48)
    assert data.cameras.distortion is None
    assert data.image_names == [f"{i:03d}.png" for i in range(13)]
    assert data.train_indices.tolist() == [0, 1, 2, 3]
    assert data.test_indices.tolist() == list(range(9, 13))


def test_all_formats_agree_on_pixels(synthetic_folder, small_config):
    datasets = {f: load_multiview(synthetic_folder, f) for f in FORMATS}
    ref = datasets["nerfstudio"]
    truth = render_object(build_object("torus"), synthetic_cameras(small_config), small_config.supersampling)
    assert ref.masks.any() and not ref.masks.all()
    for name, data in datasets.items():
        assert torch.equal(data.images, truth.images), name
        assert torch.equal(data.masks, truth.masks), name
    # Only the Blender files carry alpha (RGBA); it reads back as the rendered coverage.
    assert torch.equal(datasets["blender"].alphas, truth.alphas)
    assert all(datasets[f].alphas is None for f in FORMATS if f != "blender")
    alpha = truth.alphas
    partial = (alpha > 0) & (alpha < 255)
    assert partial.sum() > 0.1 * (alpha == 255).sum()  # anti-aliased silhouettes
    # White where nothing covers the pixel; the mask is alpha > 50 %.
    assert (ref.images[alpha == 0] == 255).all()
    assert torch.equal(ref.masks, alpha > 127)
    # Depth is taken at the pixel centre: it exists where the mask is, except on partly covered pixels.
    has_depth = ref.depths > 0
    assert torch.equal(has_depth[~partial], ref.masks[~partial])
    assert torch.equal(datasets["colmap-bin"].depths, ref.depths)
    assert torch.equal(ref.depths, truth.depths)


def test_blender_round_trip_of_soft_alpha(synthetic_folder, tmp_path):
    """Random straight colours under random alphas: write_blender must find straight
    colours that read back to the same composited images, whatever it wrote."""
    data = read_blender(synthetic_folder)
    gen = torch.Generator().manual_seed(0)
    n, h, w = len(data), data.cameras.height, data.cameras.width
    alphas = torch.randint(0, 256, (n, h, w), generator=gen, dtype=torch.uint8)
    alphas[:, :4] = torch.tensor([0, 1, 254, 255], dtype=torch.uint8)[:, None]  # the extremes in every view
    straight = torch.randint(0, 256, (n, h, w, 3), generator=gen, dtype=torch.uint8)
    rgb, masks = rgb_over_white_and_mask(torch.cat([straight, alphas[..., None]], -1).numpy())
    soft = dataclasses.replace(data, images=torch.from_numpy(rgb), masks=torch.from_numpy(masks), alphas=alphas)
    write_blender(soft, tmp_path)
    back = read_blender(tmp_path)
    assert torch.equal(back.images, soft.images) and torch.equal(back.alphas, alphas)
    assert torch.equal(back.masks, alphas > 127)
    with pytest.raises(ValueError, match=r"alphas must be torch.uint8 \[13, 48, 48\], got torch.bool"):
        dataclasses.replace(soft, alphas=alphas > 0)
    # A dark pixel under alpha 0 (or 1) cannot come from compositing over white.
    bad = soft.images.clone()
    bad[10, 0, 0] = torch.tensor([0, 0, 0], dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"write_blender: view 010\.png: pixel \(0, 0\) with RGB \[0, 0, 0\]"):
        write_blender(dataclasses.replace(soft, images=bad), tmp_path / "bad")
    # Without alphas the mask is the alpha (0 / 255): images white outside it read back exactly.
    hard_images = torch.where(data.masks[..., None], data.images, 255)
    write_blender(dataclasses.replace(data, images=hard_images, alphas=None), tmp_path / "hard")
    hard = read_blender(tmp_path / "hard")
    assert torch.equal(hard.images, hard_images) and torch.equal(hard.alphas, data.masks.to(torch.uint8) * 255)


def test_nerfstudio_keeps_the_alpha_of_rgba_images(synthetic_folder, tmp_path):
    folder = Path(shutil.copytree(synthetic_folder, tmp_path / "obj"))
    for i in range(13):
        shutil.copy(folder / ("train" if i < 9 else "test") / f"{i:03d}.png", folder / "images" / f"{i:03d}.png")
    rgba, ref = read_nerfstudio(folder), read_blender(synthetic_folder)
    assert torch.equal(rgba.images, ref.images) and torch.equal(rgba.alphas, ref.alphas)
    assert torch.equal(rgba.masks, ref.masks)
    assert torch.equal(rgba.with_split(rgba.test_indices, rgba.train_indices).alphas, ref.alphas)


@pytest.mark.parametrize("k", [4, 6, 9])
def test_sparse_splits(synthetic_folder, k):
    data = load_multiview(synthetic_folder, num_train_views=k)
    assert data.train_indices.tolist() == list(range(k))
    assert set(data.train_indices.tolist()).isdisjoint(data.test_indices.tolist())


def test_native_splits_of_each_format(synthetic_folder):
    blender = read_blender(synthetic_folder)
    assert blender.train_indices.tolist() == list(range(9)) and blender.test_indices.tolist() == list(range(9, 13))
    nerfstudio = load_multiview(synthetic_folder, "nerfstudio")
    assert nerfstudio.train_indices.tolist() == list(range(9))
    colmap = read_colmap(synthetic_folder)
    assert colmap.train_indices.tolist() == list(range(13)) and colmap.test_indices.numel() == 0


def test_detect_format_order(synthetic_folder, tmp_path):
    assert detect_format(synthetic_folder) == "nerfstudio"
    with pytest.raises(ValueError, match="no multi-view data found"):
        detect_format(tmp_path)
    with pytest.raises(FileNotFoundError):
        detect_format(tmp_path / "missing")


@pytest.mark.parametrize("binary", [False, True])
def test_colmap_opencv_distortion_and_points_round_trip(synthetic_folder, tmp_path, binary):
    data = read_colmap(synthetic_folder)
    n = len(data)
    dist = torch.linspace(-0.1, 0.1, 4).expand(n, 4).clone()
    cams = type(data.cameras)(data.cameras.viewmats, data.cameras.Ks, data.cameras.width, data.cameras.height, dist)
    points = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    colors = torch.randint(0, 256, (50, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    out = type(data)(
        cams, data.images, data.image_names, data.train_indices, data.test_indices, data.masks, None, points, colors
    )
    (tmp_path / "images").symlink_to(synthetic_folder / "images")
    write_colmap(out, tmp_path, binary=binary)
    back = read_colmap(tmp_path, "bin" if binary else "txt")
    torch.testing.assert_close(back.cameras.distortion, dist)
    torch.testing.assert_close(back.points, points)
    assert torch.equal(back.point_colors, colors)
    assert back.masks is None  # no masks folder in tmp_path


def test_simple_pinhole_and_opencv_intrinsics(synthetic_folder, tmp_path):
    folder = Path(shutil.copytree(synthetic_folder, tmp_path / "obj"))
    ref = read_colmap(folder, "txt")
    cameras_txt = folder / "sparse/0/cameras.txt"
    lines = cameras_txt.read_text().splitlines()
    cam_id, _, w, h, fx, fy, cx, cy = lines[2].split()
    lines[2] = " ".join([cam_id, "SIMPLE_PINHOLE", w, h, fx, cx, cy])
    cameras_txt.write_text("\n".join(lines) + "\n")
    torch.testing.assert_close(read_colmap(folder, "txt").cameras.Ks, ref.cameras.Ks)
    meta = json.loads((folder / "transforms.json").read_text())
    meta |= {"camera_model": "OPENCV", "k1": 0.1, "k2": -0.05, "p1": 0.001, "p2": 0.002}
    meta["frames"][0] |= {"fl_x": 50.0, "fl_y": 51.0}  # per-frame intrinsics override the shared ones
    (folder / "transforms.json").write_text(json.dumps(meta))
    data = read_nerfstudio(folder)
    torch.testing.assert_close(data.cameras.distortion, torch.tensor([[0.1, -0.05, 0.001, 0.002]]).expand(13, 4))
    assert data.cameras.Ks[0, 0, 0] == 50.0 and data.cameras.Ks[0, 1, 1] == 51.0
    torch.testing.assert_close(data.cameras.Ks[1:], ref.cameras.Ks[1:])


def test_frame_order_in_the_file_does_not_matter(synthetic_folder, tmp_path):
    folder = Path(shutil.copytree(synthetic_folder, tmp_path / "obj"))
    ref = read_nerfstudio(folder)
    meta = json.loads((folder / "transforms.json").read_text())
    meta["frames"].reverse()
    del meta["frames"][0]["transform_matrix"]  # the file's first frame is view 012
    (folder / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"frames\[0\] \(images/012\.png\): missing required field 'transform_matrix'"):
        read_nerfstudio(folder)
    meta["frames"][0]["transform_matrix"] = json.loads((synthetic_folder / "transforms.json").read_text())["frames"][
        12
    ]["transform_matrix"]
    (folder / "transforms.json").write_text(json.dumps(meta))
    data = read_nerfstudio(folder)
    assert data.image_names == ref.image_names
    assert torch.equal(data.cameras.viewmats, ref.cameras.viewmats)
    assert torch.equal(data.train_indices, ref.train_indices) and torch.equal(data.test_indices, ref.test_indices)


def test_depth_as_16_bit_png_in_millimetres(synthetic_folder, tmp_path):
    folder = Path(shutil.copytree(synthetic_folder, tmp_path / "obj"))
    ref = read_nerfstudio(folder)
    meta = json.loads((folder / "transforms.json").read_text())
    for i, frame in enumerate(meta["frames"]):
        millimetres = (ref.depths[i].double() * 1000).round().numpy().astype(np.uint16)
        write_png(folder / f"depth_mm/{i:03d}.png", millimetres)
        frame["depth_file_path"] = f"depth_mm/{i:03d}.png"
    (folder / "transforms.json").write_text(json.dumps(meta))
    torch.testing.assert_close(read_nerfstudio(folder).depths, ref.depths, atol=5e-4, rtol=0)
    write_png(folder / "depth_mm/003.png", np.zeros((48, 47), np.uint16))
    with pytest.raises(ValueError, match=r"depth_mm/003\.png: size 47x48"):
        read_nerfstudio(folder)



@pytest.mark.parametrize(
    "data_format, source",
    [
        ("auto", "nerfstudio"),
        ("nerfstudio", "nerfstudio"),
        ("blender", "blender"),
        ("colmap", "colmap bin"),  # the binary model when there is one
        ("colmap-bin", "colmap bin"),
        ("colmap-txt", "colmap txt"),
    ],
)
def test_every_format_name_reads_the_folder(synthetic_folder, data_format, source):
    assert data_format in DATA_FORMATS
    data = load_multiview(synthetic_folder, data_format, num_train_views=4)
    assert str(synthetic_folder) in data.source and data.source.endswith(f"({source})")
    assert len(data) == 13 and data.train_indices.tolist() == [0, 1, 2, 3]


def test_colmap_names_on_a_text_only_model(synthetic_folder, tmp_path):
    folder = tmp_path / "txt_only"
    shutil.copytree(synthetic_folder, folder)
    for path in (folder / "sparse" / "0").glob("*.bin"):
        path.unlink()
    assert load_multiview(folder, "colmap").source.endswith("(colmap txt)")
    assert load_multiview(folder, "colmap-txt").source.endswith("(colmap txt)")
    with pytest.raises(FileNotFoundError, match="cameras.bin"):
        load_multiview(folder, "colmap-bin")


def test_unknown_format_names_the_valid_ones(synthetic_folder):
    valid = "auto, nerfstudio, blender, colmap, colmap-bin, colmap-txt"
    with pytest.raises(ValueError, match=f"unknown data_format 'colmap-binary'; valid formats: {valid}$"):
        load_multiview(synthetic_folder, "colmap-binary")
