"""3DGS PLY: exact round trip, the standard header, files written by other tools, errors."""

import numpy as np
import plyfile
import pytest
import torch

from sparse3d.render.ply import (
    SPLAT_KEYS,
    ply_property_names,
    read_gaussians_ply,
    read_points_ply,
    write_gaussians_ply,
    write_points_ply,
)


def _gaussians(n: int, degree: int, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2
    shapes = {
        "means": (n, 3),
        "scales": (n, 3),
        "quats": (n, 4),
        "opacities": (n,),
        "sh0": (n, 1, 3),
        "shN": (n, k - 1, 3),
    }
    return {key: torch.randn(*shape, generator=gen) for key, shape in shapes.items()}


def _assert_equal(a: dict, b: dict) -> None:
    assert set(b) == set(SPLAT_KEYS)
    for key in SPLAT_KEYS:
        assert b[key].dtype == torch.float32 and torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_round_trip_is_exact(tmp_path, degree):
    g = _gaussians(57, degree)
    write_gaussians_ply(tmp_path / "g.ply", **g)
    _assert_equal(g, read_gaussians_ply(tmp_path / "g.ply"))


def test_standard_header_and_channel_major_rest(tmp_path):
    g = _gaussians(4, 1)
    write_gaussians_ply(tmp_path / "g.ply", **g)
    raw = (tmp_path / "g.ply").read_bytes()
    header = raw[: raw.index(b"end_header")].decode().splitlines()
    assert header[:3] == ["ply", "format binary_little_endian 1.0", "element vertex 4"]
    assert [line.split()[2] for line in header[3:]] == ply_property_names(1)
    assert len(ply_property_names(3)) == 62  # the 3DGS file of a degree-3 scene
    values = np.frombuffer(raw[raw.index(b"end_header\n") + 11 :], "<f4").reshape(4, -1)
    # f_rest_0..2 are the red channel's three degree-1 coefficients, f_rest_3 starts green.
    torch.testing.assert_close(torch.from_numpy(values[:, 9:12].copy()), g["shN"][:, :, 0])
    torch.testing.assert_close(torch.from_numpy(values[:, 12:15].copy()), g["shN"][:, :, 1])
    assert (values[:, 3:6] == 0).all()  # normals
    torch.testing.assert_close(torch.from_numpy(values[:, 18].copy()), g["opacities"])


def test_plyfile_reads_ours_and_we_read_other_encodings(tmp_path):
    g = _gaussians(20, 2)
    write_gaussians_ply(tmp_path / "ours.ply", **g)
    vertex = plyfile.PlyData.read(str(tmp_path / "ours.ply"))["vertex"]
    assert [p.name for p in vertex.properties] == ply_property_names(2)
    np.testing.assert_array_equal(vertex["opacity"], g["opacities"].numpy())
    np.testing.assert_array_equal(vertex["rot_3"], g["quats"][:, 3].numpy())
    np.testing.assert_array_equal(vertex["scale_1"], g["scales"][:, 1].numpy())
    # A file written by plyfile: big-endian, shuffled property order, an extra property, doubles.
    names = ply_property_names(2)[::-1] + ["red"]
    columns = {n: vertex[n] for n in ply_property_names(2)} | {"red": np.arange(20)}
    table = np.empty(20, dtype=[(n, "f8" if n != "red" else "u1") for n in names])
    for n in names:
        table[n] = columns[n]
    plyfile.PlyData([plyfile.PlyElement.describe(table, "vertex")], byte_order=">").write(str(tmp_path / "theirs.ply"))
    _assert_equal(g, read_gaussians_ply(tmp_path / "theirs.ply"))
    plyfile.PlyData([plyfile.PlyElement.describe(table[:3], "vertex")], text=True).write(str(tmp_path / "ascii.ply"))
    torch.testing.assert_close(read_gaussians_ply(tmp_path / "ascii.ply")["means"], g["means"][:3])


def test_errors(tmp_path):
    g = _gaussians(5, 1)
    path = tmp_path / "g.ply"
    write_gaussians_ply(path, **g)
    raw = path.read_bytes()
    (tmp_path / "cut.ply").write_bytes(raw[:-10])
    with pytest.raises(ValueError, match=r"cut\.ply: not a readable PLY file \(.*early end-of-file"):
        read_gaussians_ply(tmp_path / "cut.ply")
    (tmp_path / "face.ply").write_bytes(raw.replace(b"element vertex", b"element face"))
    with pytest.raises(ValueError, match=r"face\.ply: no 'vertex' element"):
        read_gaussians_ply(tmp_path / "face.ply")
    (tmp_path / "noop.ply").write_bytes(raw.replace(b"property float opacity\n", b"property float opaque\n"))
    with pytest.raises(ValueError, match="vertex property 'opacity' is missing"):
        read_gaussians_ply(tmp_path / "noop.ply")
    (tmp_path / "rest.ply").write_bytes(raw.replace(b"property float f_rest_8\n", b"property float other\n"))
    with pytest.raises(ValueError, match="8 f_rest_"):
        read_gaussians_ply(tmp_path / "rest.ply")
    with pytest.raises(FileNotFoundError):
        read_gaussians_ply(tmp_path / "missing.ply")
    write_gaussians_ply(tmp_path / "nan.ply", **(g | {"opacities": torch.full((5,), float("nan"))}))
    with pytest.raises(ValueError, match="'opacity' has non-finite values"):
        read_gaussians_ply(tmp_path / "nan.ply")
    with pytest.raises(ValueError, match=r"shN must be \[5, \(degree \+ 1\)\^2 - 1, 3\]"):
        write_gaussians_ply(path, **(g | {"shN": torch.zeros(5, 4, 3)}))
    with pytest.raises(ValueError, match=r"sh0 must be \[5, 1, 3\]"):
        write_gaussians_ply(path, **(g | {"sh0": torch.zeros(5, 3)}))


@pytest.mark.parametrize("n", [0, 37])
def test_points_round_trip_is_exact_in_the_common_layout(tmp_path, n):
    gen = torch.Generator().manual_seed(n)
    points = 1000 * torch.randn(n, 3, generator=gen)
    colors = torch.randint(0, 256, (n, 3), generator=gen, dtype=torch.uint8)
    write_points_ply(tmp_path / "p.ply", points, colors)
    raw = (tmp_path / "p.ply").read_bytes()
    header = raw[: raw.index(b"end_header")].decode().splitlines()
    assert header == ["ply", "format binary_little_endian 1.0", f"element vertex {n}"] + [
        f"property {kind} {name}" for kind, name in [("float", "x"), ("float", "y"), ("float", "z")]
    ] + [f"property uchar {c}" for c in ("red", "green", "blue")]
    read_points, read_colors = read_points_ply(tmp_path / "p.ply")
    assert read_points.dtype == torch.float32 and torch.equal(read_points, points)
    assert read_colors.dtype == torch.uint8 and torch.equal(read_colors, colors)
    assert list((tmp_path).iterdir()) == [tmp_path / "p.ply"]  # no temporary file left behind


def test_points_read_other_writers_files(tmp_path):
    # Doubles, big-endian, no colours, an extra property and an extra element.
    table = np.zeros(4, dtype=[("nx", "f4"), ("z", ">f8"), ("y", ">f8"), ("x", ">f8")])
    table["x"], table["y"], table["z"] = [1.5, 2, 3, 4], [5, 6, 7, 8], [-1, -2, -3, -4]
    faces = np.array([([0, 1, 2],)], dtype=[("vertex_indices", "i4", (3,))])
    elements = [plyfile.PlyElement.describe(table, "vertex"), plyfile.PlyElement.describe(faces, "face")]
    plyfile.PlyData(elements, byte_order=">").write(str(tmp_path / "mesh.ply"))
    points, colors = read_points_ply(tmp_path / "mesh.ply")
    assert colors is None and points.dtype == torch.float32
    assert points.tolist() == [[1.5, 5, -1], [2, 6, -2], [3, 7, -3], [4, 8, -4]]


def test_points_errors(tmp_path):
    path = tmp_path / "p.ply"
    write_points_ply(path, torch.zeros(3, 3), torch.zeros(3, 3, dtype=torch.uint8))
    raw = path.read_bytes()
    (tmp_path / "noy.ply").write_bytes(raw.replace(b"property float y\n", b"property float w\n"))
    with pytest.raises(ValueError, match=r"noy\.ply: vertex property 'y' is missing"):
        read_points_ply(tmp_path / "noy.ply")
    (tmp_path / "nogreen.ply").write_bytes(raw.replace(b"property uchar green\n", b"property uchar alpha\n"))
    with pytest.raises(ValueError, match=r"nogreen\.ply: vertex property 'green' is missing"):
        read_points_ply(tmp_path / "nogreen.ply")
    table = np.zeros(2, dtype=[(name, "f4") for name in ("x", "y", "z", "red", "green", "blue")])
    plyfile.PlyData([plyfile.PlyElement.describe(table, "vertex")]).write(str(tmp_path / "float_rgb.ply"))
    with pytest.raises(ValueError, match=r"float_rgb\.ply: vertex colours .* integers in \[0, 255\]"):
        read_points_ply(tmp_path / "float_rgb.ply")
    (tmp_path / "cut.ply").write_bytes(raw[:-5])
    with pytest.raises(ValueError, match=r"cut\.ply: not a readable PLY file"):
        read_points_ply(tmp_path / "cut.ply")
    with pytest.raises(FileNotFoundError):
        read_points_ply(tmp_path / "missing.ply")
    with pytest.raises(ValueError, match=r"colors must be uint8 \[3, 3\]"):
        write_points_ply(path, torch.zeros(3, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"points must be float \[P, 3\]"):
        write_points_ply(path, torch.zeros(3, 2), torch.zeros(3, 3, dtype=torch.uint8))
