// CPU kernels for Gaussian compositing (gsplat's rasterize_to_pixels): front-to-back alpha
// blending of depth-sorted splats per 16x16 tile, and its analytic backward.
//
// Threads take whole tiles from a shared counter (tiles differ wildly in cost), but every
// output has one writer: a tile owns its pixels in the forward, and in the backward its
// own rows of a per-intersection gradient buffer, which is then summed per Gaussian in a
// fixed order. Results therefore do not depend on the thread count.
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "../glue/checks.h"
#include "gaussian_subtile_avx512.h"
#include "parallel.h"
#include "sparse3d/gaussian.h"

namespace sparse3d {
namespace {

// Side of the sub-tiles (pixels) that get their own splat lists: a pixel only visits the
// splats whose alpha can reach 1/255 somewhere in its sub-tile, and the pixels of a
// sub-tile are processed together, splat by splat.
constexpr int64_t kSubTile = 4;
constexpr int64_t kSubPixels = kSubTile * kSubTile;
// Largest number of sub-tiles per tile side; tiles are at most kMaxTile pixels wide.
constexpr int64_t kMaxTile = 64;
constexpr int64_t kSubPerSide = kMaxTile / kSubTile;

// Geometry of the tile grid over C images of H x W pixels.
struct TileGrid {
  int64_t C, H, W, tile, tiles_x, tiles_y;
  int64_t n_tiles() const { return C * tiles_x * tiles_y; }
};

TileGrid make_grid(const at::Tensor& means2d, int64_t width, int64_t height,
                   int64_t tile_size, const at::Tensor& tile_offsets, int64_t n_isects) {
  TORCH_CHECK(tile_size > 0 && tile_size <= kMaxTile && width > 0 && height > 0,
              "sparse3d.gaussian_rasterize: width and height must be positive and tile_size in [1, ",
              kMaxTile, "], got ", width, ", ", height, ", ", tile_size);
  TileGrid g{means2d.size(0), height, width, tile_size, (width + tile_size - 1) / tile_size,
             (height + tile_size - 1) / tile_size};
  TORCH_CHECK(tile_offsets.dim() == 1 && tile_offsets.size(0) == g.n_tiles() + 1,
              "sparse3d.gaussian_rasterize: tile_offsets must be int64 [C * tiles_y * tiles_x "
              "+ 1] = [",
              g.n_tiles() + 1, "], got ", tile_offsets.sizes());
  check_offsets(tile_offsets, n_isects);
  return g;
}

void check_splats(const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors,
                  const at::Tensor& opacities, const at::Tensor& flatten_ids) {
  TORCH_CHECK(means2d.dim() == 3 && means2d.size(2) == 2,
              "sparse3d.gaussian_rasterize: means2d must be [C, N, 2], got ", means2d.sizes());
  const int64_t C = means2d.size(0), N = means2d.size(1);
  TORCH_CHECK(conics.sizes() == at::IntArrayRef({C, N, 3}),
              "sparse3d.gaussian_rasterize: conics must be [C, N, 3] = [", C, ", ", N,
              ", 3], got ", conics.sizes());
  TORCH_CHECK(colors.dim() == 3 && colors.size(0) == C && colors.size(1) == N,
              "sparse3d.gaussian_rasterize: colors must be [C, N, D] with C = ", C,
              ", N = ", N, ", got ", colors.sizes());
  TORCH_CHECK(opacities.sizes() == at::IntArrayRef({C, N}),
              "sparse3d.gaussian_rasterize: opacities must be [C, N] = [", C, ", ", N,
              "], got ", opacities.sizes());
  TORCH_CHECK(flatten_ids.dim() == 1 && flatten_ids.scalar_type() == at::kLong,
              "sparse3d.gaussian_rasterize: flatten_ids must be int64 [M], got ",
              flatten_ids.scalar_type(), " ", flatten_ids.sizes());
  const at::Tensor ids = flatten_ids.contiguous();
  const int64_t* id = ids.data_ptr<int64_t>();
  for (int64_t p = 0; p < ids.numel(); ++p)
    TORCH_CHECK(id[p] >= 0 && id[p] < C * N, "sparse3d.gaussian_rasterize: flatten_ids must index the C * N = ",
                C * N, " projected Gaussians, got flatten_ids[", p, "] = ", id[p]);
  for (const at::Tensor* t : {&conics, &colors, &opacities})
    TORCH_CHECK(t->scalar_type() == means2d.scalar_type(),
                "sparse3d.gaussian_rasterize: all float inputs must share one dtype, got ",
                means2d.scalar_type(), " and ", t->scalar_type());
}


// The splats of one tile, gathered contiguously in depth order, with per-sub-tile lists.
template <typename scalar_t>
struct TileSplats {
  std::vector<Splat2D<scalar_t>> splats;
  std::vector<scalar_t> colors;       // [n, D]
  std::vector<scalar_t> boxes;        // [n, 4] pixel-centre box x0, x1, y0, y1 of alpha >= 1/255
  std::vector<int32_t> sub_lists[kSubPerSide * kSubPerSide];  // tile-list positions, ascending
  int64_t sx = 0, sy = 0;             // sub-tiles per row / column of the current tile

  void gather(const Splat2D<scalar_t>* all_splats, const scalar_t* all_boxes, const scalar_t* colors_in,
              const int64_t* ids, int64_t n, int64_t D) {
    splats.resize(n);
    colors.resize(n * D);
    boxes.resize(4 * n);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t g = ids[i];
      splats[i] = all_splats[g];
      std::copy(all_boxes + 4 * g, all_boxes + 4 * g + 4, boxes.data() + 4 * i);
      std::copy(colors_in + g * D, colors_in + (g + 1) * D, colors.data() + i * D);
    }
  }

  // Lists, for every sub-tile of the tile's pixels [x0, x1) x [y0, y1), the splats whose
  // box contains one of its pixel centres, in depth order.
  void build_sub_lists(int64_t x0, int64_t x1, int64_t y0, int64_t y1) {
    sx = (x1 - x0 + kSubTile - 1) / kSubTile;
    sy = (y1 - y0 + kSubTile - 1) / kSubTile;
    for (auto& list : sub_lists) list.clear();
    const int64_t n = int64_t(splats.size());
    for (int64_t i = 0; i < n; ++i) {
      const scalar_t* box = boxes.data() + 4 * i;
      // Candidate sub-tiles from the box (a superset), then the exact centre test.
      const int64_t k0 = sub_index(box[0], x0, sx), k1 = sub_index(box[1], x0, sx);
      const int64_t j0 = sub_index(box[2], y0, sy), j1 = sub_index(box[3], y0, sy);
      for (int64_t j = j0; j <= j1; ++j)
        for (int64_t k = k0; k <= k1; ++k) {
          const scalar_t px0 = scalar_t(x0 + k * kSubTile) + scalar_t(0.5);
          const scalar_t px1 = scalar_t(std::min(x0 + (k + 1) * kSubTile, x1)) - scalar_t(0.5);
          const scalar_t py0 = scalar_t(y0 + j * kSubTile) + scalar_t(0.5);
          const scalar_t py1 = scalar_t(std::min(y0 + (j + 1) * kSubTile, y1)) - scalar_t(0.5);
          if (box[0] <= px1 && box[1] >= px0 && box[2] <= py1 && box[3] >= py0)
            sub_lists[j * kSubPerSide + k].push_back(int32_t(i));
        }
    }
  }

  // Sub-tile along one axis holding coordinate v, clamped to [0, count - 1].
  static int64_t sub_index(scalar_t v, int64_t origin, int64_t count) {
    const double k = std::floor((double(v) - double(origin)) / double(kSubTile));
    return int64_t(std::min(std::max(k, 0.0), double(count - 1)));
  }
};

// The pixels of one sub-tile: centres and image indices, padded to kSubPixels (padding
// pixels get a far-away centre and are never written).
template <typename scalar_t>
struct SubTilePixels {
  int64_t count = 0;
  scalar_t px[kSubPixels], py[kSubPixels];
  int64_t pix[kSubPixels];

  void set(const TileGrid& grid, int64_t cam, int64_t x0, int64_t x1, int64_t y0, int64_t y1) {
    count = 0;
    for (int64_t y = y0; y < y1; ++y)
      for (int64_t x = x0; x < x1; ++x) {
        px[count] = scalar_t(x) + scalar_t(0.5);
        py[count] = scalar_t(y) + scalar_t(0.5);
        pix[count++] = (cam * grid.H + y) * grid.W + x;
      }
    for (int64_t p = count; p < kSubPixels; ++p) px[p] = py[p] = scalar_t(-1e6);
  }

  // Sigma of splat s at every pixel; returns whether any pixel is within its cut.
  bool sigmas(const Splat2D<scalar_t>& s, scalar_t* sigma) const {
    bool any = false;
    for (int64_t p = 0; p < kSubPixels; ++p) {
      sigma[p] = splat_sigma(s, s.mx - px[p], s.my - py[p]);
      any |= sigma[p] <= s.sigma_cut;
    }
    return any;
  }
};

// Whether a sub-tile is composited by the AVX-512 kernels (gaussian_subtile_avx512.h):
// float, the CPU has AVX-512, and the colours fit in registers. The forward and the
// backward decide alike, so both use the same e^x.
template <typename scalar_t>
bool use_vector_path(int64_t D) {
#if defined(__x86_64__)
  return std::is_same_v<scalar_t, float> && cpu_has_avx512() && D <= kMaxVectorChannels;
#else
  return false;
#endif
}

// The AVX-512 sub-tile kernels, for float only (use_vector_path is false otherwise).
template <typename scalar_t, typename... Rest>
void composite_forward_vector(const TileSplats<scalar_t>& tile, const Rest&... rest) {
#if defined(__x86_64__)
  if constexpr (std::is_same_v<scalar_t, float>) composite_forward_avx512(tile, rest...);
#endif
}

template <typename scalar_t, typename... Rest>
void composite_backward_vector(const TileSplats<scalar_t>& tile, const Rest&... rest) {
#if defined(__x86_64__)
  if constexpr (std::is_same_v<scalar_t, float>) composite_backward_avx512(tile, rest...);
#endif
}

// Splat parameters and alpha boxes of all C * N projected Gaussians, computed once rather
// than once per tile intersection.
template <typename scalar_t>
void prepare_splats(const at::Tensor& m, const at::Tensor& q, const at::Tensor& o,
                    std::vector<Splat2D<scalar_t>>& splats, std::vector<scalar_t>& boxes) {
  const int64_t G = o.numel();
  splats.resize(G);
  boxes.resize(4 * G);
  const scalar_t *mp = m.data_ptr<scalar_t>(), *qp = q.data_ptr<scalar_t>(), *op = o.data_ptr<scalar_t>();
  parallel_for(0, G, 4096, [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      const Splat2D<scalar_t> s = make_splat(mp[2 * g], mp[2 * g + 1], qp[3 * g], qp[3 * g + 1], qp[3 * g + 2], op[g]);
      splats[g] = s;
      scalar_t hx, hy;
      scalar_t* box = boxes.data() + 4 * g;
      if (splat_extent(s, &hx, &hy)) {
        box[0] = s.mx - hx; box[1] = s.mx + hx; box[2] = s.my - hy; box[3] = s.my + hy;
      } else {
        box[0] = box[2] = scalar_t(1); box[1] = box[3] = scalar_t(-1);  // empty
      }
    }
  });
}

// Calls fn(first_row, tile_splats, sub_list, pixels) for every sub-tile of every tile. Threads take
// whole tiles from a shared counter (tiles differ wildly in cost); a tile's sub-tiles run
// in order on one thread.
template <typename scalar_t, typename Fn>
void for_each_sub_tile(const TileGrid& grid, const int64_t* offsets, const at::Tensor& m, const at::Tensor& q,
                       const at::Tensor& c, const at::Tensor& o, const at::Tensor& ids, int64_t D,
                       const Fn& fn) {
  const int64_t n_tiles = grid.n_tiles();
  std::vector<Splat2D<scalar_t>> all_splats;
  std::vector<scalar_t> all_boxes;
  prepare_splats(m, q, o, all_splats, all_boxes);
  parallel_for_dynamic(n_tiles, 1, [&](auto take) {
    TileSplats<scalar_t> tile;  // scratch reused across this worker's tiles
    SubTilePixels<scalar_t> pixels;
    for (int64_t t, t_end; take(t, t_end);) {
      const int64_t begin = offsets[t], n = offsets[t + 1] - begin;
      tile.gather(all_splats.data(), all_boxes.data(), c.data_ptr<scalar_t>(), ids.data_ptr<int64_t>() + begin,
                  n, D);
      const int64_t cam = t / (grid.tiles_x * grid.tiles_y), rest = t % (grid.tiles_x * grid.tiles_y);
      const int64_t ty0 = (rest / grid.tiles_x) * grid.tile, tx0 = (rest % grid.tiles_x) * grid.tile;
      const int64_t ty1 = std::min(ty0 + grid.tile, grid.H), tx1 = std::min(tx0 + grid.tile, grid.W);
      tile.build_sub_lists(tx0, tx1, ty0, ty1);
      for (int64_t j = 0; j < tile.sy; ++j)
        for (int64_t k = 0; k < tile.sx; ++k) {
          const int64_t x0 = tx0 + k * kSubTile, y0 = ty0 + j * kSubTile;
          pixels.set(grid, cam, x0, std::min(x0 + kSubTile, tx1), y0, std::min(y0 + kSubTile, ty1));
          fn(begin, tile, tile.sub_lists[j * kSubPerSide + k], pixels);
        }
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> gaussian_rasterize_cpu(
    const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors,
    const at::Tensor& opacities, const at::Tensor& tile_offsets, const at::Tensor& flatten_ids,
    int64_t width, int64_t height, int64_t tile_size) {
  check_splats(means2d, conics, colors, opacities, flatten_ids);
  const TileGrid grid = make_grid(means2d, width, height, tile_size, tile_offsets, flatten_ids.size(0));
  const int64_t D = colors.size(2);
  const at::Tensor m = means2d.contiguous(), q = conics.contiguous(), c = colors.contiguous(),
                   o = opacities.contiguous(), off = tile_offsets.contiguous(),
                   ids = flatten_ids.contiguous();
  at::Tensor render = at::empty({grid.C, height, width, D}, m.options());
  at::Tensor alphas = at::empty({grid.C, height, width, 1}, m.options());
  at::Tensor last_ids = at::empty({grid.C, height, width}, m.options().dtype(at::kInt));
  AT_DISPATCH_FLOATING_TYPES(m.scalar_type(), "gaussian_rasterize_cpu", [&] {
    scalar_t* out = render.data_ptr<scalar_t>();
    scalar_t* out_alpha = alphas.data_ptr<scalar_t>();
    int32_t* out_last = last_ids.data_ptr<int32_t>();
    const bool vector_path = use_vector_path<scalar_t>(D);
    for_each_sub_tile<scalar_t>(grid, off.data_ptr<int64_t>(), m, q, c, o, ids, D,
                                [&](int64_t, const TileSplats<scalar_t>& tile, const std::vector<int32_t>& list,
                                    const SubTilePixels<scalar_t>& px) {
      if (vector_path) return composite_forward_vector(tile, list, px, D, out, out_alpha, out_last);
      scalar_t T[kSubPixels], sigma[kSubPixels];
      int32_t last[kSubPixels];
      bool done[kSubPixels];
      std::vector<scalar_t> acc(kSubPixels * D, scalar_t(0));
      for (int64_t p = 0; p < kSubPixels; ++p) {
        T[p] = 1;
        last[p] = 0;
        done[p] = p >= px.count;
      }
      int64_t n_done = kSubPixels - px.count;
      for (const int32_t i : list) {
        const Splat2D<scalar_t>& s = tile.splats[i];
        if (!px.sigmas(s, sigma)) continue;
        const scalar_t* ci = tile.colors.data() + i * D;
        for (int64_t p = 0; p < px.count; ++p) {
          scalar_t alpha, vis;
          if (done[p] || !splat_alpha_at(s, sigma[p], &alpha, &vis)) continue;
          const scalar_t next_T = T[p] * (scalar_t(1) - alpha);
          if (next_T <= scalar_t(kSplatTransmittanceMin)) {
            done[p] = true;
            ++n_done;
            continue;
          }
          const scalar_t w = alpha * T[p];
          for (int64_t d = 0; d < D; ++d) acc[p * D + d] += w * ci[d];
          T[p] = next_T;
          last[p] = i + 1;
        }
        if (n_done == kSubPixels) break;
      }
      for (int64_t p = 0; p < px.count; ++p) {
        for (int64_t d = 0; d < D; ++d) out[px.pix[p] * D + d] = acc[p * D + d];
        out_alpha[px.pix[p]] = scalar_t(1) - T[p];
        out_last[px.pix[p]] = last[p];
      }
    });
  });
  return {render, alphas, last_ids};
}

// Sums rows of the per-intersection buffer [M, K] into per-Gaussian rows [G, K]: rows are
// grouped by Gaussian with a stable counting sort, then each Gaussian adds its rows in
// depth-sorted intersection order.
template <typename scalar_t>
void reduce_rows_by_gaussian(const scalar_t* rows, const int64_t* ids, int64_t M, int64_t K,
                             int64_t G, scalar_t* out) {
  std::vector<int64_t> start(G + 1, 0), order(M);
  for (int64_t p = 0; p < M; ++p) ++start[ids[p] + 1];
  for (int64_t g = 0; g < G; ++g) start[g + 1] += start[g];
  std::vector<int64_t> fill(start.begin(), start.end() - 1);
  for (int64_t p = 0; p < M; ++p) order[fill[ids[p]]++] = p;
  parallel_for(0, G, 1024, [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      scalar_t* dst = out + g * K;
      std::fill(dst, dst + K, scalar_t(0));
      for (int64_t j = start[g]; j < start[g + 1]; ++j) {
        const scalar_t* src = rows + order[j] * K;
        for (int64_t k = 0; k < K; ++k) dst[k] += src[k];
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> gaussian_rasterize_bwd_cpu(
    const at::Tensor& means2d, const at::Tensor& conics, const at::Tensor& colors,
    const at::Tensor& opacities, const at::Tensor& tile_offsets, const at::Tensor& flatten_ids,
    int64_t width, int64_t height, int64_t tile_size, const at::Tensor& alphas,
    const at::Tensor& last_ids, const at::Tensor& v_render, const at::Tensor& v_alphas) {
  check_splats(means2d, conics, colors, opacities, flatten_ids);
  const TileGrid grid = make_grid(means2d, width, height, tile_size, tile_offsets, flatten_ids.size(0));
  const int64_t N = means2d.size(1), D = colors.size(2), M = flatten_ids.size(0);
  TORCH_CHECK(v_render.sizes() == at::IntArrayRef({grid.C, height, width, D}) &&
                  v_alphas.sizes() == at::IntArrayRef({grid.C, height, width, 1}),
              "sparse3d.gaussian_rasterize_bwd: gradients must be [C, H, W, D] and "
              "[C, H, W, 1], got ",
              v_render.sizes(), " and ", v_alphas.sizes());
  const at::Tensor m = means2d.contiguous(), q = conics.contiguous(), c = colors.contiguous(),
                   o = opacities.contiguous(), off = tile_offsets.contiguous(),
                   ids = flatten_ids.contiguous(), a_out = alphas.contiguous(),
                   last = last_ids.contiguous(), vr = v_render.contiguous(),
                   va = v_alphas.contiguous();
  // Row layout of the gradient buffers: mean (2), |mean| (2), conic (3), opacity, colour (D).
  const int64_t K = 8 + D;
  // Zeroed up front: a tile accumulates into its rows from several sub-tiles.
  at::Tensor rows = at::zeros({M, K}, m.options());
  at::Tensor per_gaussian = at::empty({grid.C * N, K}, m.options());
  AT_DISPATCH_FLOATING_TYPES(m.scalar_type(), "gaussian_rasterize_bwd_cpu", [&] {
    const int64_t* offsets = off.data_ptr<int64_t>();
    const scalar_t* alpha_out = a_out.data_ptr<scalar_t>();
    const int32_t* last_out = last.data_ptr<int32_t>();
    const scalar_t* v_out = vr.data_ptr<scalar_t>();
    const scalar_t* v_alpha_out = va.data_ptr<scalar_t>();
    scalar_t* row_ptr = rows.data_ptr<scalar_t>();
    const bool vector_path = use_vector_path<scalar_t>(D);
    for_each_sub_tile<scalar_t>(grid, offsets, m, q, c, o, ids, D,
                                [&](int64_t begin, const TileSplats<scalar_t>& tile,
                                    const std::vector<int32_t>& list, const SubTilePixels<scalar_t>& px) {
      scalar_t* g = row_ptr + begin * K;  // this tile's rows, in its depth order
      if (vector_path)
        return composite_backward_vector(tile, list, px, D, alpha_out, last_out, v_out, v_alpha_out, g, K);
      scalar_t T[kSubPixels], T_final[kSubPixels], sigma[kSubPixels];
      int32_t last[kSubPixels];
      int32_t max_last = 0;
      std::vector<scalar_t> behind(kSubPixels * D, scalar_t(0));  // sum of alpha_j T_j c_j behind
      for (int64_t p = 0; p < kSubPixels; ++p) {
        const bool real = p < px.count;
        T_final[p] = T[p] = real ? scalar_t(1) - alpha_out[px.pix[p]] : scalar_t(1);
        last[p] = real ? last_out[px.pix[p]] : 0;
        max_last = std::max(max_last, last[p]);
      }
      for (auto it = list.rbegin(); it != list.rend(); ++it) {
        const int32_t i = *it;
        if (i >= max_last) continue;
        const Splat2D<scalar_t>& s = tile.splats[i];
        if (!px.sigmas(s, sigma)) continue;
        const scalar_t* ci = tile.colors.data() + i * D;
        scalar_t* gi = g + i * K;
        // The geometric gradients of this splat over the sub-tile's pixels stay in
        // registers and are added to its row once.
        scalar_t geo[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int64_t p = 0; p < px.count; ++p) {
          scalar_t alpha, vis;
          if (i >= last[p] || !splat_alpha_at(s, sigma[p], &alpha, &vis)) continue;
          const scalar_t inv_one_minus = scalar_t(1) / (scalar_t(1) - alpha);
          T[p] *= inv_one_minus;  // transmittance in front of splat i
          const scalar_t w = alpha * T[p];
          const scalar_t* vc = v_out + px.pix[p] * D;
          scalar_t* bp = behind.data() + p * D;
          scalar_t v_alpha = v_alpha_out[px.pix[p]] * T_final[p] * inv_one_minus;
          for (int64_t d = 0; d < D; ++d) {
            gi[8 + d] += w * vc[d];
            v_alpha += vc[d] * (ci[d] * T[p] - bp[d] * inv_one_minus);
            bp[d] += w * ci[d];
          }
          splat_alpha_vjp(s, px.px[p], px.py[p], vis, v_alpha, geo, geo + 2, geo + 4, geo + 7);
        }
        for (int k = 0; k < 8; ++k) gi[k] += geo[k];
      }
    });
    reduce_rows_by_gaussian(row_ptr, ids.data_ptr<int64_t>(), M, K, grid.C * N,
                            per_gaussian.data_ptr<scalar_t>());
  });
  const at::Tensor pg = per_gaussian.view({grid.C, N, K});
  return {pg.slice(2, 0, 2).contiguous(), pg.slice(2, 4, 7).contiguous(),
          pg.slice(2, 8, K).contiguous(), pg.select(2, 7).contiguous(),
          pg.slice(2, 2, 4).contiguous()};
}

}  // namespace

TORCH_LIBRARY_IMPL(sparse3d, CPU, m) {
  m.impl("gaussian_rasterize", &gaussian_rasterize_cpu);
  m.impl("gaussian_rasterize_bwd", &gaussian_rasterize_bwd_cpu);
}

}  // namespace sparse3d
