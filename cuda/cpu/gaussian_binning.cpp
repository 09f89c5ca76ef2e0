// CPU tile binning for the Gaussian rasterizer: lists, per 16x16 tile, the projected
// Gaussians whose screen box overlaps it, nearest first: a counting sort by tile, then a
// sort of every tile's list by the unique key (depth, Gaussian index), so the order does
// not depend on the thread count.
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "parallel.h"

namespace sparse3d {
namespace {

// Half-open tile range [lo, hi) covered by centre m with radius r along one axis; the same
// float64 arithmetic as tile_rects in sparse3d/render/gaussians/tiles.py.
inline void tile_span(double m, double r, int64_t tile_size, int64_t n_tiles, int64_t* lo, int64_t* hi) {
  const double limit = double(n_tiles);
  *lo = int64_t(std::min(std::max(std::floor((m - r) / double(tile_size)), 0.0), limit));
  *hi = int64_t(std::min(std::max(std::ceil((m + r) / double(tile_size)), 0.0), limit));
}

// Sorts every tile's list ids[off[t]:off[t + 1]] by (depth, index).
template <typename scalar_t>
void sort_tiles_by_comparison(const scalar_t* d, const int64_t* off, int64_t n_tiles, int64_t* ids) {
  parallel_for(0, n_tiles, 16, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      std::sort(ids + off[t], ids + off[t + 1],
                [&](int64_t a, int64_t b) { return d[a] < d[b] || (d[a] == d[b] && a < b); });
  });
}

template <typename scalar_t>
void sort_tiles_by_depth(const scalar_t* d, const int64_t* off, int64_t n_tiles, int64_t /*CN*/, int64_t* ids) {
  sort_tiles_by_comparison(d, off, n_tiles, ids);
}

// float32 depths: sort packed 64-bit keys (order-preserving depth bits, index) instead,
// which avoids the indirect comparisons; the order is the same.
template <>
void sort_tiles_by_depth<float>(const float* d, const int64_t* off, int64_t n_tiles, int64_t CN, int64_t* ids) {
  if (CN >= (int64_t(1) << 32)) return sort_tiles_by_comparison(d, off, n_tiles, ids);
  parallel_for(0, n_tiles, 16, [&](int64_t t0, int64_t t1) {
    std::vector<uint64_t> keys;
    for (int64_t t = t0; t < t1; ++t) {
      keys.resize(off[t + 1] - off[t]);
      for (int64_t k = 0; k < int64_t(keys.size()); ++k) {
        const int64_t i = ids[off[t] + k];
        uint32_t bits;
        std::memcpy(&bits, d + i, sizeof(bits));
        // IEEE order as unsigned integers: flip all bits of negatives, the sign bit of the rest.
        bits = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
        keys[k] = (uint64_t(bits) << 32) | uint64_t(i);
      }
      std::sort(keys.begin(), keys.end());
      for (int64_t k = 0; k < int64_t(keys.size()); ++k) ids[off[t] + k] = int64_t(keys[k] & 0xffffffffu);
    }
  });
}

template <typename scalar_t>
std::tuple<at::Tensor, at::Tensor> bin_typed(const at::Tensor& means2d, const at::Tensor& radii,
                                             const at::Tensor& depths, int64_t width, int64_t height,
                                             int64_t tile_size) {
  const int64_t C = depths.size(0), N = depths.size(1), CN = C * N;
  const int64_t tiles_x = (width + tile_size - 1) / tile_size, tiles_y = (height + tile_size - 1) / tile_size;
  const int64_t per_cam = tiles_x * tiles_y;
  const scalar_t* m = means2d.data_ptr<scalar_t>();
  const int32_t* r = radii.data_ptr<int32_t>();
  const scalar_t* d = depths.data_ptr<scalar_t>();
  std::vector<int64_t> rect(4 * CN);  // x0, x1, y0, y1
  parallel_for(0, CN, 4096, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      int64_t* q = rect.data() + 4 * i;
      tile_span(double(m[2 * i]), double(r[2 * i]), tile_size, tiles_x, q, q + 1);
      tile_span(double(m[2 * i + 1]), double(r[2 * i + 1]), tile_size, tiles_y, q + 2, q + 3);
      if (r[2 * i] <= 0 || r[2 * i + 1] <= 0) q[1] = q[0];
    }
  });
  // Counting sort by tile over Gaussians in index order, then each tile's list is sorted
  // by (depth, index) in parallel: the keys are unique, so the order is fixed.
  at::Tensor tile_offsets = at::zeros({C * per_cam + 1}, means2d.options().dtype(at::kLong));
  int64_t* off = tile_offsets.data_ptr<int64_t>();
  for (int64_t i = 0; i < CN; ++i) {
    const int64_t* q = rect.data() + 4 * i;
    const int64_t base = (i / N) * per_cam;
    for (int64_t ty = q[2]; ty < q[3]; ++ty)
      for (int64_t tx = q[0]; tx < q[1]; ++tx) ++off[base + ty * tiles_x + tx + 1];
  }
  for (int64_t t = 0; t < C * per_cam; ++t) off[t + 1] += off[t];
  at::Tensor flatten_ids = at::empty({off[C * per_cam]}, tile_offsets.options());
  int64_t* ids = flatten_ids.data_ptr<int64_t>();
  std::vector<int64_t> fill(off, off + C * per_cam);
  for (int64_t i = 0; i < CN; ++i) {
    const int64_t* q = rect.data() + 4 * i;
    const int64_t base = (i / N) * per_cam;
    for (int64_t ty = q[2]; ty < q[3]; ++ty)
      for (int64_t tx = q[0]; tx < q[1]; ++tx) ids[fill[base + ty * tiles_x + tx]++] = i;
  }
  sort_tiles_by_depth(d, off, C * per_cam, CN, ids);
  return {tile_offsets, flatten_ids};
}

std::tuple<at::Tensor, at::Tensor> gaussian_bin_cpu(const at::Tensor& means2d, const at::Tensor& radii,
                                                    const at::Tensor& depths, int64_t width, int64_t height,
                                                    int64_t tile_size) {
  TORCH_CHECK(depths.dim() == 2, "sparse3d.gaussian_bin: depths must be [C, N], got ", depths.sizes());
  const int64_t C = depths.size(0), N = depths.size(1);
  TORCH_CHECK(means2d.sizes() == at::IntArrayRef({C, N, 2}) && radii.sizes() == at::IntArrayRef({C, N, 2}),
              "sparse3d.gaussian_bin: means2d and radii must be [C, N, 2] = [", C, ", ", N, ", 2], got ",
              means2d.sizes(), " and ", radii.sizes());
  TORCH_CHECK(radii.scalar_type() == at::kInt && means2d.scalar_type() == depths.scalar_type(),
              "sparse3d.gaussian_bin: radii must be int32 and means2d, depths one float dtype, got ",
              radii.scalar_type(), ", ", means2d.scalar_type(), ", ", depths.scalar_type());
  TORCH_CHECK(width > 0 && height > 0 && tile_size > 0,
              "sparse3d.gaussian_bin: width, height and tile_size must be positive, got ", width, ", ", height, ", ",
              tile_size);
  const at::Tensor m = means2d.contiguous(), r = radii.contiguous(), d = depths.contiguous();
  if (m.scalar_type() == at::kDouble) return bin_typed<double>(m, r, d, width, height, tile_size);
  TORCH_CHECK(m.scalar_type() == at::kFloat, "sparse3d.gaussian_bin: expected float32 or float64, got ",
              m.scalar_type());
  return bin_typed<float>(m, r, d, width, height, tile_size);
}

}  // namespace

TORCH_LIBRARY_IMPL(sparse3d, CPU, m) { m.impl("gaussian_bin", &gaussian_bin_cpu); }

}  // namespace sparse3d
