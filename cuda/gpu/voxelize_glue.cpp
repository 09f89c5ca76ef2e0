// CUDA glue of voxelization and coordinate deduplication: voxel keys per row from
// voxelize.cu, then sort-based grouping in ATen, which numbers the groups by ascending key
// as the CPU kernel does.
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/_unique2.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/bincount.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include "../glue/conv_args.h"
#include "launch.h"

namespace sparse3d {
namespace {

// Unique keys ascending [V] and each row's group int32 [P] (-1 for kNoKey rows), by sort.
std::tuple<at::Tensor, at::Tensor> group_keys_cuda(const at::Tensor& keys) {
  auto [unique, inverse, counts] = at::_unique2(keys, true, true, false);
  if (unique.numel() > 0 && unique[0].item<int64_t>() == kNoKey) {  // kNoKey sorts first
    unique = unique.slice(0, 1);
    inverse = inverse.sub(1);
  }
  return {unique, inverse.to(at::kInt)};
}

at::Tensor decode_keys_cuda(const at::Tensor& keys, c10::IntArrayRef shape,
                            const at::TensorOptions& int_options) {
  ConvGeom g{};
  for (int d = 0; d < 3; ++d) g.out_shape[d] = shape[d];
  at::Tensor coords = at::empty({keys.size(0), 4}, int_options);
  launch_keys_to_coords_kernel(keys.data_ptr<int64_t>(), keys.size(0), g,
                               coords.data_ptr<int32_t>(), at::cuda::getCurrentCUDAStream());
  return coords;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> voxelize_cuda(
    const at::Tensor& points, const at::Tensor& batch, at::ArrayRef<double> lower,
    at::ArrayRef<double> voxel_size, c10::IntArrayRef grid, int64_t max_points) {
  TORCH_CHECK(points.dim() == 2 && points.size(1) >= 3,
              "sparse3d.voxelize: points must be [P, D] with D >= 3, got ", points.sizes());
  const int64_t P = points.size(0);
  TORCH_CHECK(batch.dim() == 1 && batch.size(0) == P && batch.scalar_type() == at::kInt,
              "sparse3d.voxelize: batch must be int32 [P] with P = ", P);
  TORCH_CHECK(lower.size() == 3 && voxel_size.size() == 3 && grid.size() == 3,
              "sparse3d.voxelize: lower, voxel_size and grid need 3 entries each");
  const at::Tensor pts = points.contiguous(), b = batch.contiguous();
  at::Tensor keys = at::empty({P}, points.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES(pts.scalar_type(), "voxelize_cuda", [&] {
    VoxelGrid<scalar_t> g;
    for (int d = 0; d < 3; ++d) {
      TORCH_CHECK(voxel_size[d] > 0 && grid[d] > 0,
                  "sparse3d.voxelize: voxel_size and grid must be positive");
      g.lower[d] = (scalar_t)lower[d];
      g.size[d] = (scalar_t)voxel_size[d];
      g.shape[d] = grid[d];
    }
    launch_point_keys_kernel<scalar_t>(pts.data_ptr<scalar_t>(), b.data_ptr<int32_t>(), P,
                                       pts.size(1), g, keys.data_ptr<int64_t>(),
                                       at::cuda::getCurrentCUDAStream());
  });
  auto [unique, group] = group_keys_cuda(keys);
  const int64_t V = unique.size(0);
  // A stable sort by group keeps input order inside each voxel; ungrouped rows (-1) first.
  auto [sorted_group, sorted_index] = at::sort(group.to(at::kLong), true, 0, false);
  const at::Tensor valid = sorted_group.ge(0);
  const at::Tensor rows = sorted_index.masked_select(valid);
  const at::Tensor groups_of_rows = sorted_group.masked_select(valid);
  const at::Tensor counts = at::bincount(groups_of_rows, {}, V);
  const at::Tensor starts = counts.cumsum(0).sub(counts);
  const at::Tensor rank =
      at::arange(rows.size(0), rows.options()).sub(starts.index_select(0, groups_of_rows));
  const int64_t cap = max_points > 0 ? max_points : P;
  const at::Tensor order = rows.masked_select(rank.lt(cap));
  const at::Tensor offsets =
      at::cat({at::zeros({1}, counts.options()), counts.clamp_max(cap).cumsum(0)});
  return {decode_keys_cuda(unique, grid, points.options().dtype(at::kInt)), group, order, offsets};
}

std::tuple<at::Tensor, at::Tensor> unique_coords_cuda(const at::Tensor& coords,
                                                      c10::IntArrayRef spatial_shape) {
  check_coords(coords, "unique_coords", "coords");
  ConvGeom g{};
  copy_triple(spatial_shape, "unique_coords", "spatial_shape", 1, g.in_shape);
  at::Tensor keys = at::empty({coords.size(0)}, coords.options().dtype(at::kLong));
  launch_coord_keys_kernel(coords.data_ptr<int32_t>(), coords.size(0), g,
                           keys.data_ptr<int64_t>(), at::cuda::getCurrentCUDAStream());
  TORCH_CHECK(!keys.eq(kNoKey).any().item<bool>(), "sparse3d.unique_coords: a row has a ",
              "negative batch or lies outside spatial_shape ", spatial_shape);
  auto [unique, group] = group_keys_cuda(keys);
  return {decode_keys_cuda(unique, spatial_shape, coords.options()), group};
}

}  // namespace

TORCH_LIBRARY_IMPL(sparse3d, CUDA, m) {
  m.impl("voxelize", &voxelize_cuda);
  m.impl("unique_coords", &unique_coords_cuda);
}

}  // namespace sparse3d
