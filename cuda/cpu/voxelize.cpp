// CPU kernels for voxelization and coordinate deduplication. Points get voxel keys in
// parallel; grouping (group_keys.h) and the stable, capped placement of points into their
// voxels are serial passes in input order, so the result is fixed at any thread count.
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <vector>

#include "../glue/conv_args.h"
#include "group_keys.h"
#include "parallel.h"
#include "sparse3d/voxelize.h"

namespace sparse3d {
namespace {

constexpr int64_t kGrain = 4096;

at::Tensor decode_keys(const std::vector<int64_t>& keys, const int64_t* shape,
                       const at::TensorOptions& int_options) {
  const int64_t V = (int64_t)keys.size();
  at::Tensor coords = at::empty({V, 4}, int_options);
  int32_t* c = coords.data_ptr<int32_t>();
  parallel_for(0, V, kGrain, [&](int64_t v0, int64_t v1) {
    for (int64_t v = v0; v < v1; ++v) key_coord(keys[v], shape, c + 4 * v);
  });
  return coords;
}

at::Tensor int32_tensor(const std::vector<int32_t>& v, const at::TensorOptions& options) {
  at::Tensor t = at::empty({(int64_t)v.size()}, options);
  std::copy(v.begin(), v.end(), t.data_ptr<int32_t>());
  return t;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> voxelize_cpu(
    const at::Tensor& points, const at::Tensor& batch, at::ArrayRef<double> lower,
    at::ArrayRef<double> voxel_size, c10::IntArrayRef grid, int64_t max_points) {
  TORCH_CHECK(points.dim() == 2 && points.size(1) >= 3,
              "sparse3d.voxelize: points must be [P, D] with D >= 3 (x, y, z first), got ",
              points.sizes());
  const int64_t P = points.size(0);
  TORCH_CHECK(batch.dim() == 1 && batch.size(0) == P && batch.scalar_type() == at::kInt,
              "sparse3d.voxelize: batch must be int32 [P] with P = ", P, ", got ",
              batch.scalar_type(), " ", batch.sizes());
  TORCH_CHECK(lower.size() == 3 && voxel_size.size() == 3 && grid.size() == 3,
              "sparse3d.voxelize: lower, voxel_size and grid need 3 entries each");
  TORCH_CHECK(P < INT32_MAX, "sparse3d.voxelize: at most 2^31 - 1 points, got ", P);
  const at::Tensor pts = points.contiguous(), b = batch.contiguous();
  std::vector<int64_t> keys(P);
  int64_t shape[3];
  AT_DISPATCH_FLOATING_TYPES(pts.scalar_type(), "voxelize_cpu", [&] {
    VoxelGrid<scalar_t> g;
    for (int d = 0; d < 3; ++d) {
      TORCH_CHECK(voxel_size[d] > 0 && grid[d] > 0, "sparse3d.voxelize: voxel_size and grid ",
                  "must be positive, got ", voxel_size, " and ", grid);
      g.lower[d] = (scalar_t)lower[d];
      g.size[d] = (scalar_t)voxel_size[d];
      g.shape[d] = shape[d] = grid[d];
    }
    const scalar_t* p = pts.data_ptr<scalar_t>();
    const int32_t* bp = b.data_ptr<int32_t>();
    const int64_t D = pts.size(1);
    parallel_for(0, P, kGrain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) keys[i] = point_voxel_key(p + i * D, bp[i], g);
    });
  });
  const KeyGroups groups = group_keys(keys.data(), P);
  const int64_t V = (int64_t)groups.keys.size();
  const int64_t cap = max_points > 0 ? max_points : P;
  std::vector<int64_t> counts(V, 0);
  for (int64_t i = 0; i < P; ++i)
    if (groups.group[i] >= 0) ++counts[groups.group[i]];
  const at::TensorOptions long_options = points.options().dtype(at::kLong);
  at::Tensor offsets = at::empty({V + 1}, long_options);
  int64_t* off = offsets.data_ptr<int64_t>();
  off[0] = 0;
  for (int64_t v = 0; v < V; ++v) off[v + 1] = off[v] + std::min(counts[v], cap);
  at::Tensor order = at::empty({off[V]}, long_options);
  int64_t* ord = order.data_ptr<int64_t>();
  std::vector<int64_t> fill(V, 0);
  for (int64_t i = 0; i < P; ++i) {  // input order within each voxel; the first `cap` stay
    const int32_t v = groups.group[i];
    if (v >= 0 && fill[v] < cap) ord[off[v] + fill[v]++] = i;
  }
  const at::TensorOptions int_options = points.options().dtype(at::kInt);
  return {decode_keys(groups.keys, shape, int_options), int32_tensor(groups.group, int_options),
          order, offsets};
}

std::tuple<at::Tensor, at::Tensor> unique_coords_cpu(const at::Tensor& coords,
                                                     c10::IntArrayRef spatial_shape) {
  check_coords(coords, "unique_coords", "coords");
  int64_t shape[3];
  copy_triple(spatial_shape, "unique_coords", "spatial_shape", 1, shape);
  const int64_t N = coords.size(0);
  std::vector<int64_t> keys(N);
  const int32_t* c = coords.data_ptr<int32_t>();
  parallel_for(0, N, kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int32_t* r = c + 4 * i;
      const bool inside = r[0] >= 0 && r[1] >= 0 && r[1] < shape[0] && r[2] >= 0 &&
                          r[2] < shape[1] && r[3] >= 0 && r[3] < shape[2];
      keys[i] = inside ? coord_key(r[0], r[1], r[2], r[3], shape) : kNoKey;
    }
  });
  for (int64_t i = 0; i < N; ++i)
    TORCH_CHECK(keys[i] != kNoKey, "sparse3d.unique_coords: row ", i, " (", c[4 * i], ", ",
                c[4 * i + 1], ", ", c[4 * i + 2], ", ", c[4 * i + 3],
                ") has a negative batch or lies outside spatial_shape ", spatial_shape);
  const KeyGroups groups = group_keys(keys.data(), N);
  return {decode_keys(groups.keys, shape, coords.options()),
          int32_tensor(groups.group, coords.options())};
}

}  // namespace

TORCH_LIBRARY_IMPL(sparse3d, CPU, m) {
  m.impl("voxelize", &voxelize_cpu);
  m.impl("unique_coords", &unique_coords_cpu);
}

}  // namespace sparse3d
