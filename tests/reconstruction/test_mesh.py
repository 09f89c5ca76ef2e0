"""TSDF meshes from rendered depth, checked on a sphere rendered analytically (ray-sphere
intersection, not the rasterizer), so every error comes from the fusion path: cameras,
depth masking, bounds, open3d's conventions."""

import math

import pytest
import torch
from reconstruction.sphere_cases import (
    CENTER,
    RADIUS,
    SIZE,
    AnalyticSphere,
    ring_inputs,
)

from sparse3d.reconstruction.mesh import (
    TSDFConfig,
    fusion_cameras,
    mask_depths,
    mesh_from_renderer,
    write_mesh_ply,
)
from sparse3d.reconstruction.novel_views import novel_view_rig
from sparse3d.reconstruction.views import render_views

trimesh = pytest.importorskip("trimesh")
pytest.importorskip("open3d", exc_type=ImportError)


@pytest.fixture(scope="module")
def sphere_mesh():
    config = TSDFConfig(resolution=48)
    return mesh_from_renderer(AnalyticSphere(), ring_inputs(), config), 2 * RADIUS / config.resolution


def test_fused_sphere_lies_on_the_sphere_within_a_voxel(sphere_mesh):
    mesh, voxel = sphere_mesh
    assert len(mesh.faces) > 1000
    error = ((mesh.vertices.double() - CENTER).norm(dim=-1) - RADIUS).abs() / voxel  # in voxels
    assert error.max() < 1.0
    # Marching cubes interpolates the zero crossing: the mean is far below a voxel. A
    # half-pixel shift of the principal point (open3d centres pixels at integers) doubles
    # it to ~0.2, so this bound checks the intrinsics too.
    assert error.mean() < 0.15


def test_fused_sphere_is_closed_and_faces_outwards(sphere_mesh):
    mesh, _ = sphere_mesh
    tm = trimesh.Trimesh(mesh.vertices.numpy(), mesh.faces.numpy(), process=False)
    assert tm.is_watertight and tm.euler_number == 2  # one closed surface of genus 0
    # Counter-clockwise from outside: the signed volume is positive, and the sphere's.
    assert tm.volume == pytest.approx(4 / 3 * math.pi * RADIUS**3, rel=0.03)


def test_vertex_colours_come_from_the_pixels_that_saw_them(sphere_mesh):
    mesh, _ = sphere_mesh
    normals = (mesh.vertices.double() - CENTER) / RADIUS
    colours = mesh.vertex_colors.double() / 255
    # One voxel of position error moves the normal by ~1/24 rad here: about 0.02 in colour.
    assert (colours - (normals + 1) / 2).abs().max() < 0.05


def test_a_ring_at_one_height_leaves_the_poles_open():
    # Why the default adds rings above and below the inputs: views from ~17 degrees above
    # the equator see down to ~58 degrees south (arccos(r / d) = 75.5 degrees around their
    # direction), so the TSDF has no surface over the south cap.
    mesh = mesh_from_renderer(AnalyticSphere(), ring_inputs(), TSDFConfig(resolution=32, elevations=(0.0,)))
    tm = trimesh.Trimesh(mesh.vertices.numpy(), mesh.faces.numpy(), process=False)
    assert not tm.is_watertight
    assert (mesh.vertices.double()[:, 2] - CENTER[2]).min() > -0.95 * RADIUS


def test_fusion_cameras_are_the_inputs_then_rings_at_each_elevation():
    inputs = ring_inputs(4)
    cameras = fusion_cameras(inputs, ring_views=5, elevations=(-30.0, 0.0, 60.0))
    assert len(cameras) == 4 + 3 * 5
    torch.testing.assert_close(cameras.viewmats[:4], inputs.viewmats)
    rig = novel_view_rig(inputs)
    offsets = cameras.centers[4:].double().view(3, 5, 3) - rig.focus  # [ring, view, 3]
    distances = offsets.norm(dim=-1)  # [3, 5]
    elevations = torch.asin((offsets @ rig.up) / distances).rad2deg()
    # Each view keeps its ellipse point's distance to the focus, and is lifted by its elevation.
    torch.testing.assert_close(distances, distances[1].expand(3, 5), atol=1e-4, rtol=0)
    lifts = elevations - elevations[1]
    torch.testing.assert_close(lifts, torch.tensor([[-30.0], [0.0], [60.0]], dtype=torch.float64).expand(3, 5),
                               atol=1e-3, rtol=0)
    # Every view looks at the focus.
    forwards = cameras.viewmats[4:, 2, :3].double()  # OpenCV +z in world coordinates
    torch.testing.assert_close(forwards, torch.nn.functional.normalize(-offsets.view(-1, 3), dim=-1), atol=1e-5, rtol=0)


def test_mask_depths_keeps_only_opaque_finite_positive_depth():
    depths = torch.tensor([1.0, 2.0, float("nan"), -1.0, 3.0]).view(1, 1, 5, 1)
    alphas = torch.tensor([1.0, 0.49, 1.0, 1.0, 0.5]).view(1, 1, 5, 1)
    torch.testing.assert_close(mask_depths(depths, alphas, 0.5), torch.tensor([[[1.0, 0.0, 0.0, 0.0, 3.0]]]))


def test_a_renderer_without_depth_is_a_one_line_error():
    class NoDepth(AnalyticSphere):
        def get_outputs_for_camera(self, camera):
            outputs = super().get_outputs_for_camera(camera)
            return {"rgb": outputs["rgb"], "alpha": outputs["alpha"]}

    message = r"NoDepth.get_outputs_for_camera returns no 'depth' \(it returns alpha, rgb\)"
    with pytest.raises(ValueError, match=message):
        mesh_from_renderer(NoDepth(), ring_inputs(), TSDFConfig(resolution=16))
    views = render_views(NoDepth(), ring_inputs()[:2], with_depth=False)  # the orbit needs none
    assert views.depths is None and views.rgbs.shape == (2, SIZE, SIZE, 3)


def test_nothing_in_view_is_a_clear_error():
    class Transparent(AnalyticSphere):
        def get_outputs_for_camera(self, camera):
            outputs = super().get_outputs_for_camera(camera)
            return {**outputs, "alpha": 0.4 * outputs["alpha"]}  # below the default threshold

    with pytest.raises(ValueError, match="nothing to mesh"):
        mesh_from_renderer(Transparent(), ring_inputs(), TSDFConfig(resolution=16, elevations=()))


def test_ply_round_trips_through_trimesh(sphere_mesh, tmp_path):
    mesh, _ = sphere_mesh
    write_mesh_ply(tmp_path / "mesh.ply", mesh)
    loaded = trimesh.load(tmp_path / "mesh.ply", process=False)
    assert loaded.vertices.shape == tuple(mesh.vertices.shape) and loaded.faces.shape == tuple(mesh.faces.shape)
    torch.testing.assert_close(torch.from_numpy(loaded.vertices).float(), mesh.vertices)
    torch.testing.assert_close(torch.from_numpy(loaded.visual.vertex_colors[:, :3].copy()), mesh.vertex_colors)
    assert [p.name for p in tmp_path.iterdir()] == ["mesh.ply"]  # no temporary file left
