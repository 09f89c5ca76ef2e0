// Argument checks and conversions shared by the CPU and CUDA glue of the sparse-voxel ops
// (kernel maps, sparse convolution, voxelization).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <optional>

#include "sparse3d/coords.h"
#include "sparse3d/kernel_map.h"

namespace sparse3d {

// Coordinates: int32 [N, 4] (batch, c0, c1, c2), contiguous.
inline void check_coords(const at::Tensor& coords, const char* op, const char* name) {
  TORCH_CHECK(coords.dim() == 2 && coords.size(1) == 4, "sparse3d.", op, ": ", name,
              " must be [N, 4] (batch, c0, c1, c2), got shape ", coords.sizes());
  TORCH_CHECK(coords.scalar_type() == at::kInt, "sparse3d.", op, ": ", name,
              " must be int32, got ", coords.scalar_type());
  TORCH_CHECK(coords.is_contiguous(), "sparse3d.", op, ": ", name, " must be contiguous");
}

// Kernel map: int32 [M, K], contiguous.
inline void check_nbr(const at::Tensor& nbr, const char* op) {
  TORCH_CHECK(nbr.dim() == 2 && nbr.scalar_type() == at::kInt && nbr.is_contiguous(),
              "sparse3d.", op, ": nbr must be a contiguous int32 [M, K] kernel map, got ",
              nbr.scalar_type(), " ", nbr.sizes());
}

// Conv bias: [Cout] of the weight's dtype, or absent; weight: [K, Cin, Cout].
inline void check_conv_bias(const std::optional<at::Tensor>& bias, const at::Tensor& weight) {
  if (!bias.has_value()) return;
  TORCH_CHECK(bias->dim() == 1 && bias->size(0) == weight.size(2) &&
                  bias->scalar_type() == weight.scalar_type(),
              "sparse3d.sparse_conv: bias must be ", weight.scalar_type(), " [", weight.size(2),
              "], got ", bias->scalar_type(), " ", bias->sizes());
}

inline void copy_triple(c10::IntArrayRef v, const char* op, const char* name, int64_t min,
                        int64_t* dst) {
  TORCH_CHECK(v.size() == 3, "sparse3d.", op, ": ", name, " must have 3 entries, got ",
              v.size());
  for (int d = 0; d < 3; ++d) {
    TORCH_CHECK(v[d] >= min, "sparse3d.", op, ": ", name, " must be >= ", min, ", got ", v);
    dst[d] = v[d];
  }
}

inline ConvGeom make_geom(c10::IntArrayRef in_shape, c10::IntArrayRef out_shape,
                          c10::IntArrayRef kernel, c10::IntArrayRef stride,
                          c10::IntArrayRef padding, c10::IntArrayRef dilation, const char* op) {
  ConvGeom g;
  copy_triple(in_shape, op, "in_shape", 1, g.in_shape);
  copy_triple(out_shape, op, "out_shape", 1, g.out_shape);
  copy_triple(kernel, op, "kernel", 1, g.kernel);
  copy_triple(stride, op, "stride", 1, g.stride);
  copy_triple(padding, op, "padding", 0, g.padding);
  copy_triple(dilation, op, "dilation", 1, g.dilation);
  for (int d = 0; d < 3; ++d)
    TORCH_CHECK(g.kernel[d] <= kMaxKernel, "sparse3d.", op, ": kernel sizes up to ",
                kMaxKernel, " are supported, got ", kernel);
  return g;
}

// Checks of kernel_map's arguments (both coordinate sets, at most 2^31 - 1 rows each) and
// its geometry; shared by the CPU and CUDA implementations.
inline ConvGeom kernel_map_geom(const at::Tensor& in_coords, const at::Tensor& out_coords,
                                c10::IntArrayRef in_shape, c10::IntArrayRef out_shape,
                                c10::IntArrayRef kernel, c10::IntArrayRef stride,
                                c10::IntArrayRef padding, c10::IntArrayRef dilation) {
  check_coords(in_coords, "kernel_map", "in_coords");
  check_coords(out_coords, "kernel_map", "out_coords");
  TORCH_CHECK(in_coords.size(0) < INT32_MAX && out_coords.size(0) < INT32_MAX,
              "sparse3d.kernel_map: at most 2^31 - 1 rows, got ", in_coords.size(0), " and ",
              out_coords.size(0));
  return make_geom(in_shape, out_shape, kernel, stride, padding, dilation, "kernel_map");
}

// The same for conv_map (one coordinate set; regular or transposed).
inline ConvGeom conv_map_geom(const at::Tensor& coords, c10::IntArrayRef in_shape,
                              c10::IntArrayRef out_shape, c10::IntArrayRef kernel,
                              c10::IntArrayRef stride, c10::IntArrayRef padding,
                              c10::IntArrayRef dilation, bool transposed) {
  check_coords(coords, "conv_map", "coords");
  TORCH_CHECK(coords.size(0) < INT32_MAX, "sparse3d.conv_map: at most 2^31 - 1 input rows, got ",
              coords.size(0));
  ConvGeom g = make_geom(in_shape, out_shape, kernel, stride, padding, dilation, "conv_map");
  g.transposed = transposed;
  return g;
}

}  // namespace sparse3d
