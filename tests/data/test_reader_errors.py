"""Bad multi-view data gives an error naming the file, the field and the expectation."""

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from sparse3d.data.blender import read_blender
from sparse3d.data.colmap import read_colmap
from sparse3d.data.images import write_png
from sparse3d.data.loader import load_multiview
from sparse3d.data.nerfstudio import read_nerfstudio


@pytest.fixture
def folder(synthetic_folder, tmp_path) -> Path:
    """A private copy of the synthetic folder that a test may corrupt."""
    return Path(shutil.copytree(synthetic_folder, tmp_path / "obj"))


def _edit_json(path: Path, edit) -> None:
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize("data_format", ["nerfstudio", "blender", "colmap-txt", "colmap-bin"])
def test_missing_image(folder, data_format):
    for sub in ("images", "train"):
        (folder / sub / "003.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"image file not found: .*003\.png"):
        load_multiview(folder, data_format)


@pytest.mark.parametrize("data_format", ["nerfstudio", "colmap-txt"])
def test_missing_mask(folder, data_format):
    (folder / "masks" / "002.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"mask file not found: .*002\.png"):
        load_multiview(folder, data_format)


def test_missing_metadata_files(folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="transforms_train.json not found"):
        read_blender(tmp_path)
    with pytest.raises(FileNotFoundError, match="metadata file not found: .*transforms.json"):
        read_nerfstudio(tmp_path / "transforms.json")
    (folder / "sparse/0/images.bin").unlink()
    with pytest.raises(FileNotFoundError, match=r"COLMAP model file not found: .*images\.bin"):
        read_colmap(folder, "bin")
    with pytest.raises(FileNotFoundError, match="split file not found: .*sparse_5.txt"):
        load_multiview(folder, num_train_views=5)


@pytest.mark.parametrize("data_format", ["nerfstudio", "colmap-bin"])
def test_mask_size_mismatch(folder, data_format):
    write_png(folder / "masks" / "001.png", np.zeros((40, 48), np.uint8))
    with pytest.raises(ValueError, match=r"masks/001\.png: size 48x40 .* does not match the camera size 48x48"):
        load_multiview(folder, data_format)


def test_image_size_mismatch(folder):
    write_png(folder / "images" / "005.png", np.zeros((48, 50, 3), np.uint8))
    with pytest.raises(ValueError, match=r"images/005\.png: size 50x48 .* does not match the camera size 48x48"):
        read_colmap(folder, "txt")
    _edit_json(folder / "transforms.json", lambda m: m.update(w=64))
    with pytest.raises(
        ValueError, match=r"images/000\.png: size 48x48 .* camera size 64x48 given in .*transforms\.json"
    ):
        read_nerfstudio(folder)


def test_unsupported_camera_models(folder):
    cameras_txt = folder / "sparse/0/cameras.txt"
    cameras_txt.write_text(cameras_txt.read_text().replace(" PINHOLE ", " SIMPLE_RADIAL "))
    with pytest.raises(ValueError, match=r"cameras\.txt:\d+ \(camera 1\): unsupported camera model 'SIMPLE_RADIAL'"):
        read_colmap(folder, "txt")
    cameras_bin = folder / "sparse/0/cameras.bin"
    data = bytearray(cameras_bin.read_bytes())
    struct.pack_into("<i", data, 12, 5)  # model id of the first camera: OPENCV_FISHEYE
    cameras_bin.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"cameras\.bin: camera 1 has unsupported camera model id 5"):
        read_colmap(folder, "bin")
    _edit_json(folder / "transforms.json", lambda m: m.update(camera_model="OPENCV_FISHEYE"))
    with pytest.raises(ValueError, match=r"transforms\.json: frames\[0\].*unsupported camera model 'OPENCV_FISHEYE'"):
        read_nerfstudio(folder)


def test_non_finite_poses(folder):
    def poison(meta):
        meta["frames"][2]["transform_matrix"][1][3] = float("nan")

    _edit_json(folder / "transforms.json", poison)
    with pytest.raises(ValueError, match=r"transforms\.json: frames\[2\].*transform_matrix: the pose has non-finite"):
        read_nerfstudio(folder)
    _edit_json(folder / "transforms_test.json", poison)
    with pytest.raises(
        ValueError, match=r"transforms_test\.json: frames\[2\]\.transform_matrix: the pose has non-finite"
    ):
        read_blender(folder)
    images_txt = folder / "sparse/0/images.txt"
    lines = images_txt.read_text().splitlines()
    fields = lines[3].split()
    fields[5] = "inf"
    lines[3] = " ".join(fields)
    images_txt.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"images\.txt: image '000\.png': the pose is not finite"):
        read_colmap(folder, "txt")


def test_non_rigid_pose(folder):
    def scale(meta):
        mat = np.array(meta["frames"][4]["transform_matrix"])
        mat[:3, :3] *= 2.0
        meta["frames"][4]["transform_matrix"] = mat.tolist()

    _edit_json(folder / "transforms.json", scale)
    with pytest.raises(ValueError, match=r"the pose of image '004\.png' is not a finite rigid transform"):
        read_nerfstudio(folder)


def test_missing_and_bad_fields(folder):
    _edit_json(folder / "transforms.json", lambda m: m["frames"][1].pop("transform_matrix"))
    with pytest.raises(ValueError, match=r"frames\[1\].*missing required field 'transform_matrix'"):
        read_nerfstudio(folder)
    _edit_json(folder / "transforms_train.json", lambda m: m.update(camera_angle_x="wide"))
    with pytest.raises(ValueError, match=r"transforms_train\.json: camera_angle_x: expected a finite number"):
        read_blender(folder)


def test_truncated_binary_and_bad_split(folder):
    images_bin = folder / "sparse/0/images.bin"
    images_bin.write_bytes(images_bin.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"images\.bin: truncated file"):
        read_colmap(folder, "bin")
    (folder / "sparse_4.txt").write_text("0\n1\n99\n")
    with pytest.raises(ValueError, match=r"sparse_4\.txt:3: view index 99 is outside \[0, 13\)"):
        load_multiview(folder, "nerfstudio", num_train_views=4)
