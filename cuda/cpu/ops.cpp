// The op inventory: every sparse3d native op is declared here, once. Per-family files
// only add implementations (TORCH_LIBRARY_IMPL). Fake kernels and autograd formulas are
// registered from Python (sparse3d/core/), next to each op's torch reference.
#include <Python.h>
#include <torch/library.h>

#include "cpu_features.h"

namespace {

// Whether this CPU multiplies bf16 pairs into fp32 in one instruction (within
// ATEN_CPU_CAPABILITY's cap): the bfloat16 sparse convolution's fast path.
bool bf16_dot_products() {
#if defined(__x86_64__)
  return sparse3d::cpu_has_avx512_bf16();
#else
  return false;
#endif
}

}  // namespace

TORCH_LIBRARY(sparse3d, m) {
  // --- segment reductions (sparse3d/core/segment.py)
  m.def("segment_reduce(Tensor values, Tensor offsets, str reduce) -> (Tensor, Tensor)");
  m.def(
      "segment_reduce_bwd(Tensor v_out, Tensor offsets, Tensor arg, str reduce, int n) "
      "-> Tensor");

  // --- Gaussian rasterizer
  // projection stage (sparse3d/render/gaussians/projection.py)
  m.def(
      "gaussian_project(Tensor means, Tensor quats, Tensor scales, Tensor viewmats, Tensor Ks, "
      "int width, int height, float near_plane, float far_plane, float eps2d, float radius_clip) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "gaussian_project_bwd(Tensor means, Tensor quats, Tensor scales, Tensor viewmats, Tensor Ks, "
      "int width, int height, float near_plane, float far_plane, float eps2d, Tensor radii, "
      "Tensor v_means2d, Tensor v_conics, Tensor v_depths, Tensor v_compensations) "
      "-> (Tensor, Tensor, Tensor)");
  // tile binning (sparse3d/render/gaussians/tiles.py)
  m.def(
      "gaussian_bin(Tensor means2d, Tensor radii, Tensor depths, int width, int height, "
      "int tile_size) -> (Tensor, Tensor)");
  // compositing stage (sparse3d/render/gaussians/composite.py)
  m.def(
      "gaussian_rasterize(Tensor means2d, Tensor conics, Tensor colors, Tensor opacities, "
      "Tensor tile_offsets, Tensor flatten_ids, int width, int height, int tile_size) "
      "-> (Tensor, Tensor, Tensor)");
  m.def(
      "gaussian_rasterize_bwd(Tensor means2d, Tensor conics, Tensor colors, Tensor opacities, "
      "Tensor tile_offsets, Tensor flatten_ids, int width, int height, int tile_size, "
      "Tensor alphas, Tensor last_ids, Tensor v_render, Tensor v_alphas) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor)");

  // --- kernel maps and sparse convolution (sparse3d/core/kernel_map.py, sparse3d/core/conv.py)
  m.def(
      "kernel_map(Tensor in_coords, Tensor out_coords, int[] in_shape, int[] out_shape, "
      "int[] kernel, int[] stride, int[] padding, int[] dilation) -> Tensor");
  m.def(
      "conv_map(Tensor coords, int[] in_shape, int[] out_shape, int[] kernel, "
      "int[] stride, int[] padding, int[] dilation, bool transposed=False) -> (Tensor, Tensor)");
  m.def("invert_kernel_map(Tensor nbr, int n_in) -> Tensor");
  // inv (the transposed map) is not read by the forward; the backward uses it if given.
  m.def(
      "sparse_conv(Tensor feats, Tensor weight, Tensor nbr, Tensor? inv=None, "
      "Tensor? bias=None) -> Tensor");
  m.def("sparse_conv_bwd_weight(Tensor feats, Tensor v_out, Tensor nbr) -> Tensor");
  // a CPU feature, no tensors (sparse3d/core/precision.py)
  m.def("bf16_dot_products() -> bool", &bf16_dot_products);

  // --- voxelization and coordinate deduplication (sparse3d/core/voxelize.py, coords.py)
  m.def(
      "voxelize(Tensor points, Tensor batch, float[] lower, float[] voxel_size, int[] grid, "
      "int max_points) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("unique_coords(Tensor coords, int[] spatial_shape) -> (Tensor, Tensor)");

  // --- batch norm (sparse3d/core/batch_norm.py)
  // deterministic statistics over voxel features
  m.def("batch_norm_stats(Tensor values) -> (Tensor, Tensor)");
  m.def("batch_norm_bwd_reduce(Tensor v_out, Tensor values, Tensor mean) -> (Tensor, Tensor)");
  // act(values * scale + shift + residual): batch norm's affine step fused with the residual
  // add and ReLU after it
  m.def(
      "affine_act(Tensor values, Tensor scale, Tensor shift, Tensor? residual, bool relu) "
      "-> Tensor");

  // --- linear layers with thread-count independent bits (sparse3d/core/linear.py)
  m.def("linear_rows(Tensor x, Tensor weight, Tensor? bias=None) -> Tensor");
  m.def("linear_bwd_weight(Tensor v_out, Tensor x) -> Tensor");
  m.def("conv2d_nhwc(Tensor padded, Tensor weight, Tensor? bias, int[2] kernel, int[2] stride, int[2] dilation) -> Tensor");
  m.def("conv2d_nhwc_bwd_input(Tensor v_out, Tensor weight, int[4] padded_shape, int[2] kernel, int[2] stride, int[2] dilation) -> Tensor");
  m.def("conv2d_nhwc_bwd_weight(Tensor v_out, Tensor padded, int[2] kernel, int[2] stride, int[2] dilation) -> Tensor");

  // --- DSVT set partition (sparse3d/core/partition.py)
  m.def(
      "set_partition(Tensor coords, int[] sparse_shape, int[] window, int[] shift, "
      "int set_size) -> (Tensor, Tensor, Tensor, Tensor)");

  // --- rotated BEV box IoU and NMS (sparse3d/core/bev_nms.py)
  m.def("bev_iou(Tensor boxes_a, Tensor boxes_b) -> Tensor");
  m.def("rotated_nms(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor");

  // --- radiance fields: ray marching (sparse3d/core/ray_march.py)
  // (offsets [R + 1], t [S]): the uniform steps of each ray in occupied voxels, CSR by ray
  m.def(
      "march_rays(Tensor origins, Tensor dirs, Tensor t_start, Tensor t_end, Tensor jitter, "
      "Tensor occupied, float[] lower, float voxel_size, int[] shape, float step) "
      "-> (Tensor, Tensor)");

  // --- radiance fields: box lookup (sparse3d/core/box_lookup.py) and tri-vector features
  // (sparse3d/fields/trivector.py)
  m.def(
      "box_lookup(Tensor points, Tensor occupied, float[] lower, float voxel_size, int[] shape, "
      "float half_size, int k) -> (Tensor, Tensor)");
  m.def(
      "trivector_features(Tensor points, Tensor index, Tensor weights, Tensor vectors, "
      "Tensor centers, float half_size) -> Tensor");
  // the gradient of the vectors only
  m.def(
      "trivector_features_bwd(Tensor v_out, Tensor points, Tensor index, Tensor weights, "
      "Tensor vectors, Tensor centers, float half_size) -> Tensor");

  // --- radiance fields: volume rendering weights (sparse3d/render/volume.py)
  // (weights [S], transmittance [R]) of rays with early termination; the gradient reaches
  // sigmas only
  m.def(
      "volume_weights(Tensor sigmas, Tensor deltas, Tensor offsets, float min_transmittance) "
      "-> (Tensor, Tensor)");
  m.def(
      "volume_weights_bwd(Tensor v_weights, Tensor v_transmittance, Tensor sigmas, "
      "Tensor deltas, Tensor offsets, Tensor weights, Tensor transmittance, "
      "float min_transmittance) -> Tensor");
}

// `import sparse3d._C` runs the static registrations above; the module itself is empty.
extern "C" PyObject* PyInit__C(void) {
  static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}
