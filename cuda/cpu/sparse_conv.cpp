// CPU kernels for output-stationary sparse convolution (see sparse3d/conv.h).
//   forward: each task owns a block of output rows; inside the block the loop runs tap by
//     tap so that one tap's weight slice [Cin, Cout] stays in L1 while it meets every row.
//   weight gradient: one task per fixed chunk of output rows writes a private partial sum
//     per tap; the partials are then added in chunk order.
// No output element has two writers and no sum order depends on the thread count.
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "../glue/conv_args.h"
#include "cpu_features.h"
#include "parallel.h"
#include "sparse3d/conv.h"

namespace sparse3d {
namespace {

// Output rows per forward block: their accumulators ([32, Cout]) stay in L1.
constexpr int64_t kRowBlock = 32;

// Starts output rows [b0, b1) at the bias (0 without one); the taps are then added.
template <typename T>
inline void init_rows(T* out, int64_t b0, int64_t b1, int64_t Cout, const T* bias) {
  if (bias == nullptr) {
    std::fill(out + b0 * Cout, out + b1 * Cout, T(0));
    return;
  }
  for (int64_t o = b0; o < b1; ++o) std::copy(bias, bias + Cout, out + o * Cout);
}

// Sorts the (input row, output row) pairs of output rows [o0, o1) by tap: tap k's pairs
// land in in_rows / out_rows from k * stride on, count[k] of them (stride >= o1 - o0).
// Branch-free: at LiDAR occupancy a branch on nbr >= 0 mispredicts about once per row and
// tap.
// A thread's buffers for bucket_pairs_by_tap: K taps x `stride` slots.
struct TapPairs {
  std::vector<int32_t> in_rows, out_rows;
  std::vector<int64_t> count;
  TapPairs(int64_t K, int64_t stride) : in_rows(K * stride), out_rows(K * stride), count(K) {}
};

inline void bucket_pairs_by_tap(const int32_t* nbr, int64_t K, int64_t o0, int64_t o1,
                                int64_t stride, int32_t* in_rows, int32_t* out_rows,
                                int64_t* count) {
  std::fill(count, count + K, 0);
  for (int64_t o = o0; o < o1; ++o) {
    const int32_t* row = nbr + o * K;
    for (int64_t k = 0; k < K; ++k) {
      const int64_t slot = k * stride + count[k];
      in_rows[slot] = row[k];
      out_rows[slot] = (int32_t)o;
      count[k] += row[k] >= 0;
    }
  }
}

#if defined(__x86_64__)
// AVX2 + FMA kernels, picked at run time (the build targets baseline x86-64). They keep
// each output element's summation order, so results still do not depend on the thread
// count; they differ from the portable path only by FMA rounding.

// y[0:8 NV] += x[0:Cin] @ w[Cin, 0:8 NV] (w rows Cout apart), NV accumulators in registers.
template <int NV>
SP3D_AVX2 inline void row_times_matrix_block_avx2(const float* x, const float* w, int64_t Cin,
                                                   int64_t Cout, float* y) {
  __m256 acc[NV];
  for (int j = 0; j < NV; ++j) acc[j] = _mm256_loadu_ps(y + 8 * j);
  for (int64_t ci = 0; ci < Cin; ++ci) {
    const __m256 b = _mm256_broadcast_ss(x + ci);
    const float* wr = w + ci * Cout;
    for (int j = 0; j < NV; ++j) acc[j] = _mm256_fmadd_ps(b, _mm256_loadu_ps(wr + 8 * j), acc[j]);
  }
  for (int j = 0; j < NV; ++j) _mm256_storeu_ps(y + 8 * j, acc[j]);
}

// y[0:Cout] += x[0:Cin] @ w[Cin, Cout]; Cout % 8 == 0.
SP3D_AVX2 void add_row_times_matrix_avx2(const float* x, const float* w, int64_t Cin,
                                         int64_t Cout, float* y) {
  int64_t c = 0;
  for (; c + 64 <= Cout; c += 64) row_times_matrix_block_avx2<8>(x, w + c, Cin, Cout, y + c);
  if (c + 32 <= Cout) {
    row_times_matrix_block_avx2<4>(x, w + c, Cin, Cout, y + c);
    c += 32;
  }
  if (c + 16 <= Cout) {
    row_times_matrix_block_avx2<2>(x, w + c, Cin, Cout, y + c);
    c += 16;
  }
  if (c + 8 <= Cout) row_times_matrix_block_avx2<1>(x, w + c, Cin, Cout, y + c);
}

// Output rows per forward block on the tiled path: enough rows share each tap to fill tiles.
constexpr int64_t kTileRowBlock = 128;

// Asks for the input rows of the next tap's pairs while this tap computes: they are
// scattered over the whole feature array (neighbours one z-slice away are far in row
// order), so without it each tile waits on cache misses.
template <typename X>
inline void prefetch_rows(const X* feats, const int32_t* rows, int64_t P, int64_t Cin) {
  for (int64_t p = 0; p < P; ++p) {
    const char* row = (const char*)(feats + (int64_t)rows[p] * Cin);
    for (int64_t b = 0; b < Cin * (int64_t)sizeof(X); b += 64) _mm_prefetch(row + b, _MM_HINT_T0);
  }
}

// Forward over output rows [o0, o1) of float32 by register tiles: per block of rows, the
// pairs are sorted by tap, then `tap_pairs(in_rows, out_rows, P, k)` adds tap k's P pairs
// into their output rows. Each output element still sums its taps in order.
template <typename X, typename TapPairsFn>
void conv_forward_rows_tiled(const X* feats, const int32_t* nbr, int64_t K, int64_t Cin,
                             int64_t Cout, const float* bias, int64_t o0, int64_t o1, float* out,
                             TapPairs& pairs, const TapPairsFn& tap_pairs) {
  for (int64_t b0 = o0; b0 < o1; b0 += kTileRowBlock) {
    const int64_t b1 = std::min(b0 + kTileRowBlock, o1);
    init_rows(out, b0, b1, Cout, bias);
    bucket_pairs_by_tap(nbr, K, b0, b1, kTileRowBlock, pairs.in_rows.data(), pairs.out_rows.data(),
                        pairs.count.data());
    for (int64_t k = 0; k < K; ++k) {
      const int32_t* ri = pairs.in_rows.data() + k * kTileRowBlock;
      if (k + 1 < K && Cin >= 16) prefetch_rows(feats, ri + kTileRowBlock, pairs.count[k + 1], Cin);
      tap_pairs(ri, pairs.out_rows.data() + k * kTileRowBlock, pairs.count[k], k);
    }
  }
}

// out[o_r, cb : cb + 8 NJ] += feats[i_r, 0:Cin] @ w[Cin, cb : cb + 8 NJ] for the R pairs
// (i_r, o_r) of one tap: R x NJ accumulators, so each weight vector loaded serves R rows.
template <int R, int NJ>
SP3D_AVX2 inline void forward_tile_avx2(const float* const* xr, float* const* yr, int64_t cb,
                                        const float* w, int64_t Cin, int64_t Cout) {
  __m256 acc[R][NJ];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < NJ; ++j) acc[r][j] = _mm256_loadu_ps(yr[r] + cb + 8 * j);
  for (int64_t ci = 0; ci < Cin; ++ci) {
    __m256 wv[NJ];
    for (int j = 0; j < NJ; ++j) wv[j] = _mm256_loadu_ps(w + ci * Cout + cb + 8 * j);
    for (int r = 0; r < R; ++r) {
      const __m256 b = _mm256_broadcast_ss(xr[r] + ci);
      for (int j = 0; j < NJ; ++j) acc[r][j] = _mm256_fmadd_ps(b, wv[j], acc[r][j]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < NJ; ++j) _mm256_storeu_ps(yr[r] + cb + 8 * j, acc[r][j]);
}

// One tap's P pairs through w [Cin, Cout] (Cout % 16 == 0): tiles of R pairs, each
// running over all columns while its R input rows are in L1.
template <int R>
SP3D_AVX2 inline void forward_rows_tile_avx2(const float* feats, float* out, const int32_t* in_rows,
                                             const int32_t* out_rows, const float* w, int64_t Cin,
                                             int64_t Cout) {
  const float* xr[R];
  float* yr[R];
  for (int r = 0; r < R; ++r) {
    xr[r] = feats + (int64_t)in_rows[r] * Cin;
    yr[r] = out + (int64_t)out_rows[r] * Cout;
  }
  for (int64_t cb = 0; cb < Cout; cb += 16) forward_tile_avx2<R, 2>(xr, yr, cb, w, Cin, Cout);
}

SP3D_AVX2 void forward_pairs_avx2(const float* feats, float* out, const int32_t* in_rows,
                                  const int32_t* out_rows, int64_t P, const float* w, int64_t Cin,
                                  int64_t Cout) {
  int64_t p = 0;
  for (; p + 6 <= P; p += 6) forward_rows_tile_avx2<6>(feats, out, in_rows + p, out_rows + p, w, Cin, Cout);
  for (; p + 2 <= P; p += 2) forward_rows_tile_avx2<2>(feats, out, in_rows + p, out_rows + p, w, Cin, Cout);
  for (; p < P; ++p) forward_rows_tile_avx2<1>(feats, out, in_rows + p, out_rows + p, w, Cin, Cout);
}

SP3D_AVX2 void conv_forward_rows_avx2(const float* feats, const float* weight,
                                      const float* bias, const int32_t* nbr, int64_t K,
                                      int64_t Cin, int64_t Cout, int64_t o0, int64_t o1,
                                      float* out) {
  for (int64_t b0 = o0; b0 < o1; b0 += kRowBlock) {
    const int64_t b1 = std::min(b0 + kRowBlock, o1);
    init_rows(out, b0, b1, Cout, bias);
    for (int64_t k = 0; k < K; ++k) {
      const float* w = weight + k * Cin * Cout;
      for (int64_t o = b0; o < b1; ++o) {
        const int32_t n = nbr[o * K + k];
        if (n >= 0) add_row_times_matrix_avx2(feats + (int64_t)n * Cin, w, Cin, Cout, out + o * Cout);
      }
    }
  }
}

// acc[Cin, Cout] = sum_p feats[rows_in[p]]^T v_out[rows_out[p]] over the P pairs in order;
// Cin % 4 == 0 and Cout % 16 == 0. A 4 x 16 tile of acc stays in registers per pass.
SP3D_AVX2 void weight_grad_pairs_avx2(const float* feats, const float* v_out,
                                      const int32_t* rows_in, const int32_t* rows_out,
                                      int64_t P, int64_t Cin, int64_t Cout, float* acc) {
  for (int64_t ci0 = 0; ci0 < Cin; ci0 += 4)
    for (int64_t co0 = 0; co0 < Cout; co0 += 16) {
      __m256 a[4][2];
      for (int r = 0; r < 4; ++r) a[r][0] = a[r][1] = _mm256_setzero_ps();
      for (int64_t p = 0; p < P; ++p) {
        const float* xr = feats + (int64_t)rows_in[p] * Cin + ci0;
        const float* gr = v_out + (int64_t)rows_out[p] * Cout + co0;
        const __m256 g0 = _mm256_loadu_ps(gr), g1 = _mm256_loadu_ps(gr + 8);
        for (int r = 0; r < 4; ++r) {
          const __m256 b = _mm256_broadcast_ss(xr + r);
          a[r][0] = _mm256_fmadd_ps(b, g0, a[r][0]);
          a[r][1] = _mm256_fmadd_ps(b, g1, a[r][1]);
        }
      }
      for (int r = 0; r < 4; ++r) {
        _mm256_storeu_ps(acc + (ci0 + r) * Cout + co0, a[r][0]);
        _mm256_storeu_ps(acc + (ci0 + r) * Cout + co0 + 8, a[r][1]);
      }
    }
}

// AVX-512 kernels: register tiles of R rows x 16 NJ columns (up to 24 accumulators of
// 16 floats), so each weight vector loaded serves R rows. Same per-element summation
// order as the other paths.

// A register tile: the input rows of R pairs of one tap (features of type X), their
// output rows from column cb on, and the R x 16 NJ float accumulators of those outputs.
template <typename X, int R, int NJ>
struct OutputTile {
  const X* xr[R];
  float* yr[R];
  __m512 acc[R][NJ];
};

// Points the tile at its pairs' rows and loads the outputs' running sums.
template <typename X, int R, int NJ>
SP3D_AVX512 inline void open_tile(OutputTile<X, R, NJ>& t, const X* feats, float* out, const int32_t* in_rows,
                                  const int32_t* out_rows, int64_t cb, int64_t Cin, int64_t Cout) {
  for (int r = 0; r < R; ++r) {
    t.xr[r] = feats + (int64_t)in_rows[r] * Cin;
    t.yr[r] = out + (int64_t)out_rows[r] * Cout + cb;
  }
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < NJ; ++j) t.acc[r][j] = _mm512_loadu_ps(t.yr[r] + 16 * j);
}

template <typename X, int R, int NJ>
SP3D_AVX512 inline void close_tile(const OutputTile<X, R, NJ>& t) {
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < NJ; ++j) _mm512_storeu_ps(t.yr[r] + 16 * j, t.acc[r][j]);
}

// out[o_r, cb : cb + 16 NJ] += feats[i_r, 0:Cin] @ w[Cin, cb : cb + 16 NJ] for the R
// pairs (i_r, o_r) of one tap.
template <int R, int NJ>
SP3D_AVX512 inline void forward_tile_avx512(const float* feats, float* out, const int32_t* in_rows,
                                            const int32_t* out_rows, int64_t cb, const float* w,
                                            int64_t Cin, int64_t Cout) {
  OutputTile<float, R, NJ> t;
  open_tile(t, feats, out, in_rows, out_rows, cb, Cin, Cout);
  for (int64_t ci = 0; ci < Cin; ++ci) {
    __m512 wv[NJ];
    for (int j = 0; j < NJ; ++j) wv[j] = _mm512_loadu_ps(w + ci * Cout + cb + 16 * j);
    for (int r = 0; r < R; ++r) {
      const __m512 b = _mm512_set1_ps(t.xr[r][ci]);
      for (int j = 0; j < NJ; ++j) t.acc[r][j] = _mm512_fmadd_ps(b, wv[j], t.acc[r][j]);
    }
  }
  close_tile(t);
}

// One tap's P pairs through register tiles: `tile(R, NJ, in_rows, out_rows, cb)` adds R
// pairs to output columns [cb, cb + 16 NJ) (R and NJ as std::integral_constant), in tiles
// of 12, 4 and 1 pairs over column blocks of 32 and 16; Cout % 16 == 0.
template <typename TileFn>
inline void forward_pairs_tiled(const TileFn& tile, const int32_t* in_rows, const int32_t* out_rows, int64_t P,
                                int64_t Cout) {
  const auto columns = [&](auto nj, int64_t cb) {
    int64_t p = 0;
    for (; p + 12 <= P; p += 12) tile(std::integral_constant<int, 12>(), nj, in_rows + p, out_rows + p, cb);
    for (; p + 4 <= P; p += 4) tile(std::integral_constant<int, 4>(), nj, in_rows + p, out_rows + p, cb);
    for (; p < P; ++p) tile(std::integral_constant<int, 1>(), nj, in_rows + p, out_rows + p, cb);
  };
  int64_t cb = 0;
  for (; cb + 32 <= Cout; cb += 32) columns(std::integral_constant<int, 2>(), cb);
  if (cb < Cout) columns(std::integral_constant<int, 1>(), cb);
}

// One tap's P pairs through w [Cin, Cout]; Cout % 16 == 0.
void forward_pairs_avx512_all(const float* feats, float* out, const int32_t* in_rows, const int32_t* out_rows,
                              int64_t P, const float* w, int64_t Cin, int64_t Cout) {
  forward_pairs_tiled(
      [&](auto r, auto nj, const int32_t* ri, const int32_t* ro, int64_t cb) {
        forward_tile_avx512<decltype(r)::value, decltype(nj)::value>(feats, out, ri, ro, cb, w, Cin, Cout);
      },
      in_rows, out_rows, P, Cout);
}

// acc[ci0 : ci0 + R, cb : cb + 16 NJ] = sum_p x_p[ci0 : ci0 + R]^T g_p[cb : cb + 16 NJ].
template <int R, int NJ>
SP3D_AVX512 inline void weight_grad_tile_avx512(const float* const* xr, const float* const* gr,
                                                int64_t P, int64_t ci0, int64_t cb,
                                                int64_t Cout, float* acc) {
  __m512 a[R][NJ];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < NJ; ++j) a[r][j] = _mm512_setzero_ps();
  for (int64_t p = 0; p < P; ++p) {
    __m512 gv[NJ];
    for (int j = 0; j < NJ; ++j) gv[j] = _mm512_loadu_ps(gr[p] + cb + 16 * j);
    for (int r = 0; r < R; ++r) {
      const __m512 b = _mm512_set1_ps(xr[p][ci0 + r]);
      for (int j = 0; j < NJ; ++j) a[r][j] = _mm512_fmadd_ps(b, gv[j], a[r][j]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < NJ; ++j) _mm512_storeu_ps(acc + (ci0 + r) * Cout + cb + 16 * j, a[r][j]);
}

// acc[Cin, Cout] = sum_p feats[rows_in[p]]^T v_out[rows_out[p]]; Cin % 4 == 0, Cout % 16 == 0.
SP3D_AVX512 void weight_grad_pairs_avx512(const float* feats, const float* v_out,
                                          const int32_t* rows_in, const int32_t* rows_out,
                                          int64_t P, int64_t Cin, int64_t Cout, float* acc,
                                          std::vector<const float*>& xr,
                                          std::vector<const float*>& gr) {
  xr.resize(P);
  gr.resize(P);
  for (int64_t p = 0; p < P; ++p) {
    xr[p] = feats + (int64_t)rows_in[p] * Cin;
    gr[p] = v_out + (int64_t)rows_out[p] * Cout;
  }
  for (int64_t cb = 0; cb < Cout;) {
    const bool wide = cb + 32 <= Cout;
    int64_t ci0 = 0;
    for (; ci0 + 8 <= Cin; ci0 += 8) {
      if (wide) weight_grad_tile_avx512<8, 2>(xr.data(), gr.data(), P, ci0, cb, Cout, acc);
      else weight_grad_tile_avx512<8, 1>(xr.data(), gr.data(), P, ci0, cb, Cout, acc);
    }
    for (; ci0 < Cin; ci0 += 4) {
      if (wide) weight_grad_tile_avx512<4, 2>(xr.data(), gr.data(), P, ci0, cb, Cout, acc);
      else weight_grad_tile_avx512<4, 1>(xr.data(), gr.data(), P, ci0, cb, Cout, acc);
    }
    cb += wide ? 32 : 16;
  }
}

// bfloat16 inference (AVX512-BF16): bf16 features and weights, fp32 accumulation and
// output. The weight is repacked per call into pairs of input channels, [K, ceil(Cin / 2),
// Cout, 2] (an odd Cin's last pair padded with 0), so that one 32-bit broadcast of a row's
// two inputs meets 16 output columns' weight pairs in one VDPBF16PS: twice the products
// per instruction of the fp32 FMA tiles above, and half their gathered bytes. Each output
// element adds its taps in order and, within a tap, its input pairs in order (the
// instruction adds the odd element's product, then the even one's, rounding each sum).

// Reads two bf16 values as one 32-bit lane (memcpy: feature rows are 2-byte aligned).
inline int32_t bf16_pair(const uint16_t* x) {
  int32_t v;
  std::memcpy(&v, x, sizeof(v));
  return v;
}

// out[o_r, cb : cb + 16 NJ] += feats[i_r, 0:Cin] @ w for the R pairs (i_r, o_r) of one
// tap; wp: that tap's packed weight [ceil(Cin / 2), Cout, 2].
template <int R, int NJ>
SP3D_AVX512_BF16 inline void forward_tile_bf16(const uint16_t* feats, float* out, const int32_t* in_rows,
                                               const int32_t* out_rows, int64_t cb, const uint16_t* wp,
                                               int64_t Cin, int64_t Cout) {
  OutputTile<uint16_t, R, NJ> t;
  open_tile(t, feats, out, in_rows, out_rows, cb, Cin, Cout);
  const int64_t full = Cin / 2;
  for (int64_t c2 = 0; c2 <= full; ++c2) {
    if (c2 == full && Cin % 2 == 0) break;
    __m512bh wv[NJ];
    for (int j = 0; j < NJ; ++j)
      wv[j] = (__m512bh)_mm512_loadu_si512((const void*)(wp + (c2 * Cout + cb + 16 * j) * 2));
    for (int r = 0; r < R; ++r) {
      // The last pair of an odd Cin is (x, 0): the value zero-extended to 32 bits.
      const int32_t pair = c2 < full ? bf16_pair(t.xr[r] + 2 * c2) : (int32_t)t.xr[r][2 * c2];
      const __m512bh b = (__m512bh)_mm512_set1_epi32(pair);
      for (int j = 0; j < NJ; ++j) t.acc[r][j] = _mm512_dpbf16_ps(t.acc[r][j], b, wv[j]);
    }
  }
  close_tile(t);
}

// One tap's P pairs through its packed weight; Cout % 16 == 0.
void forward_pairs_bf16_all(const uint16_t* feats, float* out, const int32_t* in_rows, const int32_t* out_rows,
                            int64_t P, const uint16_t* wp, int64_t Cin, int64_t Cout) {
  forward_pairs_tiled(
      [&](auto r, auto nj, const int32_t* ri, const int32_t* ro, int64_t cb) {
        forward_tile_bf16<decltype(r)::value, decltype(nj)::value>(feats, out, ri, ro, cb, wp, Cin, Cout);
      },
      in_rows, out_rows, P, Cout);
}

// w [K, Cin, Cout] -> [K, ceil(Cin / 2), Cout, 2], pairs of input channels side by side.
std::vector<uint16_t> pack_weight_pairs(const uint16_t* w, int64_t K, int64_t Cin, int64_t Cout) {
  const int64_t pairs = (Cin + 1) / 2;
  std::vector<uint16_t> packed(K * pairs * Cout * 2, 0);
  for (int64_t k = 0; k < K; ++k)
    for (int64_t ci = 0; ci < Cin; ++ci)
      for (int64_t co = 0; co < Cout; ++co)
        packed[((k * pairs + ci / 2) * Cout + co) * 2 + ci % 2] = w[(k * Cin + ci) * Cout + co];
  return packed;
}
#endif  // __x86_64__

// Adds x[0:Cin] @ w[Cin, Cout] to y[0:Cout]. COUT > 0 fixes Cout at compile time so the
// accumulator lives in vector registers across the Cin loop.
template <typename T, int COUT>
inline void add_row_times_matrix(const T* __restrict x, const T* __restrict w, int64_t Cin,
                                 int64_t Cout_rt, T* __restrict y) {
  if constexpr (COUT > 0) {
    T acc[COUT];
    for (int co = 0; co < COUT; ++co) acc[co] = y[co];
    for (int64_t ci = 0; ci < Cin; ++ci) {
      const T xv = x[ci];
      const T* wr = w + ci * COUT;
      for (int co = 0; co < COUT; ++co) acc[co] += xv * wr[co];
    }
    for (int co = 0; co < COUT; ++co) y[co] = acc[co];
  } else {
    for (int64_t ci = 0; ci < Cin; ++ci) {
      const T xv = x[ci];
      const T* wr = w + ci * Cout_rt;
      for (int64_t co = 0; co < Cout_rt; ++co) y[co] += xv * wr[co];
    }
  }
}

template <typename T, int COUT>
void conv_forward_rows(const T* feats, const T* weight, const T* bias, const int32_t* nbr,
                       int64_t K, int64_t Cin, int64_t Cout, int64_t o0, int64_t o1, T* out) {
  for (int64_t b0 = o0; b0 < o1; b0 += kRowBlock) {
    const int64_t b1 = std::min(b0 + kRowBlock, o1);
    init_rows(out, b0, b1, Cout, bias);
    for (int64_t k = 0; k < K; ++k) {
      const T* w = weight + k * Cin * Cout;
      for (int64_t o = b0; o < b1; ++o) {
        const int32_t n = nbr[o * K + k];
        if (n >= 0) add_row_times_matrix<T, COUT>(feats + (int64_t)n * Cin, w, Cin, Cout,
                                                   out + o * Cout);
      }
    }
  }
}

// Picks the compile-time Cout specialisation; F(std::integral_constant<int, C>) is called.
template <typename F>
void with_cout(int64_t Cout, F&& f) {
  switch (Cout) {
    case 16: return f(std::integral_constant<int, 16>());
    case 32: return f(std::integral_constant<int, 32>());
    case 64: return f(std::integral_constant<int, 64>());
    case 128: return f(std::integral_constant<int, 128>());
    default: return f(std::integral_constant<int, 0>());
  }
}

void check_conv_args(const at::Tensor& feats, const at::Tensor& nbr, const char* op) {
  TORCH_CHECK(feats.dim() == 2, "sparse3d.", op, ": feats must be [N, C], got shape ",
              feats.sizes());
  check_nbr(nbr, op);
}

// True when the float AVX2 kernels apply (x86-64 CPU with AVX2 + FMA).
template <typename scalar_t>
bool use_avx2() {
#if defined(__x86_64__)
  return std::is_same_v<scalar_t, float> && cpu_has_avx2();
#else
  return false;
#endif
}

at::Tensor sparse_conv_cpu(const at::Tensor& feats, const at::Tensor& weight,
                           const at::Tensor& nbr, const std::optional<at::Tensor>& inv,
                           const std::optional<at::Tensor>& bias);

// bfloat16 feats [N, Cin] and weight [K, Cin, Cout], float32 bias [Cout] or none ->
// float32 [M, Cout], accumulated in fp32. Without AVX512-BF16 (or with Cout % 16 != 0) the
// bf16 values are widened and the fp32 kernels run: the same products, other roundings.
at::Tensor sparse_conv_bf16_cpu(const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& nbr,
                                const std::optional<at::Tensor>& bias) {
  TORCH_CHECK(!bias.has_value() || (bias->dim() == 1 && bias->size(0) == weight.size(2) &&
                                    bias->scalar_type() == at::kFloat),
              "sparse3d.sparse_conv: with bfloat16 feats the bias must be float32 [", weight.size(2), "], got ",
              bias.has_value() ? bias->scalar_type() : at::kFloat, " ", bias.has_value() ? bias->sizes() : at::IntArrayRef());
  const int64_t M = nbr.size(0), K = nbr.size(1), Cin = feats.size(1), Cout = weight.size(2);
#if defined(__x86_64__)
  if (cpu_has_avx512_bf16() && Cout % 16 == 0) {
    const at::Tensor x = feats.contiguous();
    const at::Tensor b = bias.has_value() ? bias->contiguous() : at::Tensor();
    at::Tensor out = at::empty({M, Cout}, x.options().dtype(at::kFloat));
    const std::vector<uint16_t> packed =
        pack_weight_pairs((const uint16_t*)weight.contiguous().data_ptr<at::BFloat16>(), K, Cin, Cout);
    const uint16_t* xp = (const uint16_t*)x.data_ptr<at::BFloat16>();
    const float* bp = b.defined() ? b.data_ptr<float>() : nullptr;
    const int32_t* mp = nbr.data_ptr<int32_t>();
    float* yp = out.data_ptr<float>();
    const int64_t tap_size = (Cin + 1) / 2 * Cout * 2;
    parallel_for_dynamic(M, 4 * kTileRowBlock, [&](auto take) {
      TapPairs pairs(K, kTileRowBlock);
      for (int64_t o0, o1; take(o0, o1);)
        conv_forward_rows_tiled(xp, mp, K, Cin, Cout, bp, o0, o1, yp, pairs,
                                [&](const int32_t* ri, const int32_t* ro, int64_t P, int64_t k) {
                                  forward_pairs_bf16_all(xp, yp, ri, ro, P, packed.data() + k * tap_size, Cin, Cout);
                                });
    });
    return out;
  }
#endif
  return sparse_conv_cpu(feats.to(at::kFloat), weight.to(at::kFloat), nbr, std::nullopt, bias);
}

at::Tensor sparse_conv_cpu(const at::Tensor& feats, const at::Tensor& weight,
                           const at::Tensor& nbr,
                           const std::optional<at::Tensor>& /*inv: backward only*/,
                           const std::optional<at::Tensor>& bias) {
  check_conv_args(feats, nbr, "sparse_conv");
  TORCH_CHECK(weight.dim() == 3 && weight.size(0) == nbr.size(1) &&
                  weight.size(1) == feats.size(1),
              "sparse3d.sparse_conv: weight must be [K, Cin, Cout] = [", nbr.size(1), ", ",
              feats.size(1), ", Cout], got ", weight.sizes());
  TORCH_CHECK(weight.scalar_type() == feats.scalar_type(),
              "sparse3d.sparse_conv: weight dtype ", weight.scalar_type(),
              " differs from feats dtype ", feats.scalar_type());
  if (feats.scalar_type() == at::kBFloat16) return sparse_conv_bf16_cpu(feats, weight, nbr, bias);
  check_conv_bias(bias, weight);
  const at::Tensor x = feats.contiguous(), w = weight.contiguous();
  const at::Tensor b = bias.has_value() ? bias->contiguous() : at::Tensor();
  const int64_t M = nbr.size(0), K = nbr.size(1), Cin = x.size(1), Cout = w.size(2);
  at::Tensor out = at::empty({M, Cout}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "sparse_conv_cpu", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* wp = w.data_ptr<scalar_t>();
    const scalar_t* bp = b.defined() ? b.data_ptr<scalar_t>() : nullptr;
    const int32_t* mp = nbr.data_ptr<int32_t>();
    scalar_t* yp = out.data_ptr<scalar_t>();
#if defined(__x86_64__)
    if (use_avx2<scalar_t>() && Cout % 16 == 0) {
      const auto tap_pairs = cpu_has_avx512() ? forward_pairs_avx512_all : forward_pairs_avx2;
      const float* x32 = (const float*)xp;
      float* y32 = (float*)yp;
      parallel_for_dynamic(M, 4 * kTileRowBlock, [&](auto take) {
        TapPairs pairs(K, kTileRowBlock);
        for (int64_t o0, o1; take(o0, o1);)
          conv_forward_rows_tiled(x32, mp, K, Cin, Cout, (const float*)bp, o0, o1, y32, pairs,
                                  [&](const int32_t* ri, const int32_t* ro, int64_t P, int64_t k) {
                                    tap_pairs(x32, y32, ri, ro, P, (const float*)wp + k * Cin * Cout, Cin, Cout);
                                  });
      });
      return;
    }
    if (use_avx2<scalar_t>() && Cout % 8 == 0) {
      parallel_for(0, M, 8 * kRowBlock, [&](int64_t o0, int64_t o1) {
        conv_forward_rows_avx2((const float*)xp, (const float*)wp, (const float*)bp, mp, K, Cin,
                               Cout, o0, o1, (float*)yp);
      });
      return;
    }
#endif
    with_cout(Cout, [&](auto c) {
      parallel_for(0, M, 8 * kRowBlock, [&](int64_t o0, int64_t o1) {
        conv_forward_rows<scalar_t, decltype(c)::value>(xp, wp, bp, mp, K, Cin, Cout, o0, o1, yp);
      });
    });
  });
  return out;
}

// acc[Cin, Cout] = sum_p feats[rows_in[p]]^T v_out[rows_out[p]], pairs in order.
template <typename T, int COUT>
void weight_grad_pairs(const T* feats, const T* v_out, const int32_t* rows_in,
                       const int32_t* rows_out, int64_t P, int64_t Cin, int64_t Cout, T* acc) {
  std::fill(acc, acc + Cin * Cout, T(0));
  for (int64_t p = 0; p < P; ++p) {
    const T* xr = feats + (int64_t)rows_in[p] * Cin;
    const T* gr = v_out + (int64_t)rows_out[p] * Cout;
    // A rank-1 update, row by row: the row kernel with a 1-element "x" (one feats value).
    for (int64_t ci = 0; ci < Cin; ++ci)
      add_row_times_matrix<T, COUT>(xr + ci, gr, 1, Cout, acc + ci * Cout);
  }
}

at::Tensor sparse_conv_bwd_weight_cpu(const at::Tensor& feats, const at::Tensor& v_out,
                                      const at::Tensor& nbr) {
  check_conv_args(feats, nbr, "sparse_conv_bwd_weight");
  TORCH_CHECK(v_out.dim() == 2 && v_out.size(0) == nbr.size(0),
              "sparse3d.sparse_conv_bwd_weight: v_out must be [M, Cout] with M = ",
              nbr.size(0), ", got ", v_out.sizes());
  const at::Tensor x = feats.contiguous(), g = v_out.contiguous();
  const int64_t M = nbr.size(0), K = nbr.size(1), Cin = x.size(1), Cout = g.size(1);
  const int64_t chunks = weight_grad_chunks(M), slice = Cin * Cout;
  at::Tensor v_weight = at::empty({K, Cin, Cout}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "sparse_conv_bwd_weight_cpu", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* gp = g.data_ptr<scalar_t>();
    const int32_t* mp = nbr.data_ptr<int32_t>();
    scalar_t* vp = v_weight.data_ptr<scalar_t>();
    // Every tap's partial of every chunk is written below, so no zero-fill.
    std::unique_ptr<scalar_t[]> partial(new scalar_t[K * chunks * slice]);
    const bool avx2 = use_avx2<scalar_t>() && Cin % 4 == 0 && Cout % 16 == 0;
#if defined(__x86_64__)
    const bool avx512 = avx2 && cpu_has_avx512();
#endif
    with_cout(Cout, [&](auto c) {
      // Chunks of output rows handed out to the threads: each buckets its chunk's pairs by
      // tap, then writes the chunk's partial sum of every tap.
      parallel_for_dynamic(chunks, 1, [&](auto take) {
        TapPairs pairs(K, kWeightGradChunk);
        std::vector<const float*> xr, gr;  // row pointers of the AVX-512 tiles
        for (int64_t ch, ch_end; take(ch, ch_end);) {
          bucket_pairs_by_tap(mp, K, ch * kWeightGradChunk, std::min(M, (ch + 1) * kWeightGradChunk),
                              kWeightGradChunk, pairs.in_rows.data(), pairs.out_rows.data(),
                              pairs.count.data());
          for (int64_t k = 0; k < K; ++k) {
            scalar_t* acc = partial.get() + (k * chunks + ch) * slice;
            const int32_t* ri = pairs.in_rows.data() + k * kWeightGradChunk;
            const int32_t* ro = pairs.out_rows.data() + k * kWeightGradChunk;
            const int64_t P = pairs.count[k];
#if defined(__x86_64__)
            if (avx512) {
              weight_grad_pairs_avx512((const float*)xp, (const float*)gp, ri, ro, P, Cin, Cout,
                                       (float*)acc, xr, gr);
              continue;
            }
            if (avx2) {
              weight_grad_pairs_avx2((const float*)xp, (const float*)gp, ri, ro, P, Cin, Cout,
                                     (float*)acc);
              continue;
            }
#endif
            weight_grad_pairs<scalar_t, decltype(c)::value>(xp, gp, ri, ro, P, Cin, Cout, acc);
          }
        }
      });
    });
    // Chunks added in chunk order per tap; the inner loop runs along contiguous partials.
    parallel_for(0, K, 1, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k) {
        scalar_t* dst = vp + k * slice;
        const scalar_t* src = partial.get() + k * chunks * slice;
        if (chunks == 0) {  // no output rows: no pairs
          std::fill(dst, dst + slice, scalar_t(0));
          continue;
        }
        std::copy(src, src + slice, dst);
        for (int64_t ch = 1; ch < chunks; ++ch)
          for (int64_t j = 0; j < slice; ++j) dst[j] += src[ch * slice + j];
      }
    });
  });
  return v_weight;
}

}  // namespace

TORCH_LIBRARY_IMPL(sparse3d, CPU, m) {
  m.impl("sparse_conv", &sparse_conv_cpu);
  m.impl("sparse_conv_bwd_weight", &sparse_conv_bwd_weight_cpu);
}

}  // namespace sparse3d
