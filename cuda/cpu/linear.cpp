// CPU kernels for a linear layer whose bits do not depend on the thread count.
//
// BLAS splits one GEMM among its threads by the thread count and the CPU's features, and
// the order of the sums follows: the weight gradient (a reduction over all rows) changes
// bits on AVX-512 / AMX machines, and MKL's forward changes bits at the edges of each
// thread's block of rows. Here one register-tiled kernel computes
//   out[r, :] = bias + sum_k a[r, k] * b[k, :]      (k in order, one fused multiply-add each)
// for any strides of `a`, so every output element is one fixed chain of FMAs whichever
// thread computes it:
//   forward         out = x @ W.T + bias           a = x,      b = W.T
//   input gradient  v_x = v_out @ W                a = v_out,  b = W
//   weight gradient v_W = v_out.T @ x              a = v_out.T (strided), b = x, over fixed
//                   chunks of rows whose partial products are added in chunk order.
//   2-D convolution out = im2col(x) @ W.T + bias   without the im2col copy: per output image
//                   row, the taps in order, each a product whose a is the (strided) input
//                   row under that tap, accumulated into out. The k order, and so every
//                   output bit, is that of linear_rows on the im2col columns; so are the
//                   bits of its input gradient (per input row, each tap's column gradient
//                   added in tap order) and weight gradient (linear_bwd_weight's chunks,
//                   whose rows of im2col are read from the input where they lie).
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <vector>

#include "cpu_features.h"
#include "parallel.h"

namespace sparse3d {
namespace {

// Rows of `a` per weight-gradient chunk (a fixed summation tree) and per parallel task.
constexpr int64_t kLinearChunk = 512;
constexpr int64_t kRowTask = 96;
// k per block of the tile loops (see product_rows_tiled).
constexpr int64_t kKBlock = 128;
// Weight-gradient rows (output channels) per task: eight tiles of six rows.
constexpr int64_t kOutBlock = 48;

// A product out[R rows, O] = bias + a @ b; a[r, k] at a[r * a_row + k * a_col], b[k, o] at
// b[k * b_row + o], out[r, o] at out[r * out_row + o].
struct Product {
  const float* a;
  int64_t a_row, a_col;
  const float* b;
  int64_t b_row;
  const float* bias;  // [O] or null
  int64_t K, O;
  float* out;
  int64_t out_row;
  bool accumulate = false;  // the chain goes on from `out` (a later tap or rows of a convolution)
};

// Scalar reference of the tile kernels (and the path for CPUs without AVX2): the same
// chain of fused multiply-adds per element, so all paths give the same bits.
void product_rows_scalar(const Product& p, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t o = 0; o < p.O; ++o) {
      float acc = p.accumulate ? p.out[r * p.out_row + o] : p.bias ? p.bias[o] : 0.0f;
      for (int64_t k = 0; k < p.K; ++k)
        acc = std::fma(p.a[r * p.a_row + k * p.a_col], p.b[k * p.b_row + o], acc);
      p.out[r * p.out_row + o] = acc;
    }
}

#if defined(__x86_64__)
// R rows x NV vectors of 16 columns from column c0, lanes past O masked off; the
// accumulators stay in registers for the whole k loop (loops over r and j unrolled).
template <int R, int NV>
SP3D_AVX512 void tile_avx512(const Product& p, int64_t r0, int64_t c0, int64_t k0, int64_t k1) {
  const int64_t O = p.O, a_row = p.a_row, a_col = p.a_col;
  const float* a = p.a + r0 * a_row;
  const float* b = p.b + c0;
  __mmask16 mask[NV];
#pragma GCC unroll 4
  for (int j = 0; j < NV; ++j)
    mask[j] = (__mmask16)((1u << std::clamp<int64_t>(O - c0 - 16 * j, 0, 16)) - 1u);
  __m512 acc[R][NV];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j)
      acc[r][j] = k0 > 0 || p.accumulate ? _mm512_maskz_loadu_ps(mask[j], p.out + (r0 + r) * p.out_row + c0 + 16 * j)
                  : p.bias ? _mm512_maskz_loadu_ps(mask[j], p.bias + c0 + 16 * j)
                           : _mm512_setzero_ps();
  for (int64_t k = k0; k < k1; ++k) {
    __m512 w[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) w[j] = _mm512_maskz_loadu_ps(mask[j], b + k * p.b_row + 16 * j);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 x = _mm512_set1_ps(a[r * a_row + k * a_col]);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[r][j] = _mm512_fmadd_ps(x, w[j], acc[r][j]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j)
      _mm512_mask_storeu_ps(p.out + (r0 + r) * p.out_row + c0 + 16 * j, mask[j], acc[r][j]);
}

// The same with 8-column AVX2 vectors (16 registers: 4 rows x 3 vectors).
template <int R, int NV>
SP3D_AVX2 void tile_avx2(const Product& p, int64_t r0, int64_t c0, int64_t k0, int64_t k1) {
  const int64_t O = p.O, a_row = p.a_row, a_col = p.a_col;
  const float* a = p.a + r0 * a_row;
  const float* b = p.b + c0;
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256i mask[NV];
#pragma GCC unroll 4
  for (int j = 0; j < NV; ++j)
    mask[j] = _mm256_cmpgt_epi32(
        _mm256_set1_epi32((int)std::clamp<int64_t>(O - c0 - 8 * j, 0, 8)), lane);
  __m256 acc[R][NV];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j)
      acc[r][j] = k0 > 0 || p.accumulate ? _mm256_maskload_ps(p.out + (r0 + r) * p.out_row + c0 + 8 * j, mask[j])
                  : p.bias ? _mm256_maskload_ps(p.bias + c0 + 8 * j, mask[j])
                           : _mm256_setzero_ps();
  for (int64_t k = k0; k < k1; ++k) {
    __m256 w[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) w[j] = _mm256_maskload_ps(b + k * p.b_row + 8 * j, mask[j]);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m256 x = _mm256_set1_ps(a[r * a_row + k * a_col]);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[r][j] = _mm256_fmadd_ps(x, w[j], acc[r][j]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j)
      _mm256_maskstore_ps(p.out + (r0 + r) * p.out_row + c0 + 8 * j, mask[j], acc[r][j]);
}

// Rows [r0, r1) in tiles of up to R_MAX rows x NV_MAX vectors of W lanes each. k runs in
// blocks, so that b's block [kKBlock, NV_MAX * W] stays in L1 while every row tile meets
// it; a tile's sums go to `out` between blocks and come back (exact for float32), so each
// element is still one chain of FMAs in k order.
template <int R_MAX, int NV_MAX, int W, typename Tile>
void product_rows_tiled(const Product& p, int64_t r0, int64_t r1, const Tile& tile) {
  const int64_t cols = NV_MAX * W;
  for (int64_t k0 = 0; k0 < std::max<int64_t>(p.K, 1); k0 += kKBlock) {
    const int64_t k1 = std::min(p.K, k0 + kKBlock);
    for (int64_t c0 = 0; c0 < p.O; c0 += cols) {
      const int nv = (int)std::min<int64_t>(NV_MAX, (p.O - c0 + W - 1) / W);
      for (int64_t r = r0; r < r1; r += R_MAX)
        tile((int)std::min<int64_t>(R_MAX, r1 - r), nv, r, c0, k0, k1);
    }
  }
}

// Calls F<R, NV>(p, r, c0) for run-time R in [1, RM] and NV in [1, NVM].
template <int RM, int NVM, template <int, int> class F>
struct Dispatch {
  template <int R = RM, int NV = NVM>
  static void call(int rows, int nv, const Product& p, int64_t r, int64_t c0, int64_t k0,
                   int64_t k1) {
    if constexpr (R > 1)
      if (rows < R) return call<R - 1, NV>(rows, nv, p, r, c0, k0, k1);
    if constexpr (NV > 1)
      if (nv < NV) return call<R, NV - 1>(rows, nv, p, r, c0, k0, k1);
    F<R, NV>::run(p, r, c0, k0, k1);
  }
};

template <int R, int NV>
struct Avx512Tile {
  static void run(const Product& p, int64_t r, int64_t c0, int64_t k0, int64_t k1) {
    tile_avx512<R, NV>(p, r, c0, k0, k1);
  }
};
template <int R, int NV>
struct Avx2Tile {
  static void run(const Product& p, int64_t r, int64_t c0, int64_t k0, int64_t k1) {
    tile_avx2<R, NV>(p, r, c0, k0, k1);
  }
};
#endif

// out rows [r0, r1) of p, on the widest vector path of this CPU.
void product_rows(const Product& p, int64_t r0, int64_t r1) {
#if defined(__x86_64__)
  if (cpu_has_avx512()) {
    return product_rows_tiled<6, 4, 16>(
        p, r0, r1, [&](int rows, int nv, int64_t r, int64_t c0, int64_t k0, int64_t k1) {
          Dispatch<6, 4, Avx512Tile>::call(rows, nv, p, r, c0, k0, k1);
        });
  }
  if (cpu_has_avx2()) {
    return product_rows_tiled<4, 3, 8>(
        p, r0, r1, [&](int rows, int nv, int64_t r, int64_t c0, int64_t k0, int64_t k1) {
          Dispatch<4, 3, Avx2Tile>::call(rows, nv, p, r, c0, k0, k1);
        });
  }
#endif
  product_rows_scalar(p, r0, r1);
}

void check_float_matrix(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.dim() == 2 && t.scalar_type() == at::kFloat, "sparse3d.", op, ": ", name,
              " must be a float32 2-D tensor, got ", t.scalar_type(), " ", t.sizes());
}

// x @ weight.T (+ bias): rows handed out to the threads, each row computed alone.
at::Tensor linear_rows_cpu(const at::Tensor& x, const at::Tensor& weight,
                           const std::optional<at::Tensor>& bias) {
  check_float_matrix(x, "linear_rows", "x");
  check_float_matrix(weight, "linear_rows", "weight");
  TORCH_CHECK(weight.size(1) == x.size(1), "sparse3d.linear_rows: weight must be [O, ",
              x.size(1), "], got ", weight.sizes());
  const int64_t N = x.size(0), K = x.size(1), O = weight.size(0);
  if (bias.has_value())
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == O && bias->scalar_type() == at::kFloat,
                "sparse3d.linear_rows: bias must be float32 [", O, "], got ",
                bias->scalar_type(), " ", bias->sizes());
  const at::Tensor a = x.contiguous(), b = weight.t().contiguous();
  const at::Tensor c = bias.has_value() ? bias->contiguous() : at::Tensor();
  at::Tensor out = at::empty({N, O}, a.options());
  const Product p{a.data_ptr<float>(), K, 1, b.data_ptr<float>(), O,
                  c.defined() ? c.data_ptr<float>() : nullptr, K, O, out.data_ptr<float>(), O};
  parallel_for_dynamic(N, kRowTask, [&](auto take) {
    for (int64_t r0, r1; take(r0, r1);) product_rows(p, r0, r1);
  });
  return out;
}

// v_out.T @ X for v_out [N, O] and an X [N, I] that `chunk_product` reads: each fixed chunk
// of kLinearChunk rows gives a partial product, and the partials are added in chunk order.
// Tasks are (chunk, block of kOutBlock output rows o); a task packs its block of v_out
// first, so that the kernel's broadcasts read consecutive floats, then calls
// chunk_product(p, rows, n0, n) with p.a, p.a_row, p.a_col and p.out (row stride I) set for
// the block's `rows` output rows and the chunk's rows [n0, n0 + n); chunk_product sets b,
// K and O and runs the products.
template <typename ChunkProduct>
at::Tensor chunked_weight_gradient(const at::Tensor& v_out, int64_t I, const ChunkProduct& chunk_product) {
  const at::Tensor g = v_out.contiguous();
  const int64_t N = g.size(0), O = g.size(1);
  const int64_t chunks = (N + kLinearChunk - 1) / kLinearChunk, slice = O * I;
  at::Tensor v_weight = at::empty({O, I}, g.options());
  if (chunks == 0) return v_weight.zero_();
  at::Tensor partial = at::empty({chunks, O, I}, g.options());
  const float* gp = g.data_ptr<float>();
  float* pp = partial.data_ptr<float>();
  const int64_t o_blocks = (O + kOutBlock - 1) / kOutBlock;
  parallel_for_dynamic(chunks * o_blocks, 1, [&](auto take) {
    std::vector<float> packed(kLinearChunk * kOutBlock);
    for (int64_t t0, t1; take(t0, t1);)
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t ch = t / o_blocks, o0 = t % o_blocks * kOutBlock;
        const int64_t rows = std::min(O, o0 + kOutBlock) - o0;
        const int64_t n0 = ch * kLinearChunk, n = std::min(N, n0 + kLinearChunk) - n0;
        for (int64_t k = 0; k < n; ++k)
          std::copy(gp + (n0 + k) * O + o0, gp + (n0 + k) * O + o0 + rows, packed.data() + k * kOutBlock);
        // a[r, k] = packed[k * kOutBlock + r]; out row r is partial row o0 + r.
        Product p{packed.data(), 1, kOutBlock, nullptr, 0, nullptr, 0, 0, pp + ch * slice + o0 * I, I};
        chunk_product(p, rows, n0, n);
      }
  });
  float* w = v_weight.data_ptr<float>();
  parallel_for(0, slice, 4096, [&](int64_t j0, int64_t j1) {
    std::copy(pp + j0, pp + j1, w + j0);
    for (int64_t ch = 1; ch < chunks; ++ch)
      for (int64_t j = j0; j < j1; ++j) w[j] += pp[ch * slice + j];
  });
  return v_weight;
}

at::Tensor linear_bwd_weight_cpu(const at::Tensor& v_out, const at::Tensor& x) {
  check_float_matrix(v_out, "linear_bwd_weight", "v_out");
  check_float_matrix(x, "linear_bwd_weight", "x");
  TORCH_CHECK(v_out.size(0) == x.size(0), "sparse3d.linear_bwd_weight: v_out and x must have "
              "the same rows, got ", v_out.sizes(), " and ", x.sizes());
  const at::Tensor a = x.contiguous();
  const int64_t I = a.size(1);
  const float* ap = a.data_ptr<float>();
  return chunked_weight_gradient(v_out, I, [&](Product p, int64_t rows, int64_t n0, int64_t n) {
    p.b = ap + n0 * I, p.b_row = I, p.K = n, p.O = I;
    product_rows(p, 0, rows);
  });
}

// The shapes of a convolution of a padded channels-last input.
struct ConvGeometry {
  int64_t B, Hp, Wp, C, kh, kw, sh, sw, dh, dw, Ho, Wo;
  int64_t taps() const { return kh * kw; }
};

ConvGeometry conv_geometry(const char* op, at::IntArrayRef padded, at::IntArrayRef kernel,
                           at::IntArrayRef stride, at::IntArrayRef dilation) {
  TORCH_CHECK(padded.size() == 4, "sparse3d.", op, ": the padded input must be [B, H, W, C], got ", padded);
  TORCH_CHECK(kernel.size() == 2 && stride.size() == 2 && dilation.size() == 2 && kernel[0] >= 1 &&
                  kernel[1] >= 1 && stride[0] >= 1 && stride[1] >= 1 && dilation[0] >= 1 && dilation[1] >= 1,
              "sparse3d.", op, ": kernel, stride and dilation must be two positive sizes each");
  ConvGeometry g{padded[0], padded[1], padded[2], padded[3], kernel[0], kernel[1], stride[0], stride[1],
                 dilation[0], dilation[1], 0, 0};
  TORCH_CHECK(g.Hp >= g.dh * (g.kh - 1) + 1 && g.Wp >= g.dw * (g.kw - 1) + 1,
              "sparse3d.", op, ": the padded input ", padded, " is smaller than the kernel");
  g.Ho = (g.Hp - g.dh * (g.kh - 1) - 1) / g.sh + 1;
  g.Wo = (g.Wp - g.dw * (g.kw - 1) - 1) / g.sw + 1;
  return g;
}

void check_conv_tensor(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.dim() == 4 && t.scalar_type() == at::kFloat, "sparse3d.", op, ": ", name,
              " must be float32 [B, H, W, C], got ", t.scalar_type(), " ", t.sizes());
}

// A 2-D convolution of a padded channels-last input: out[b, y, x, :] = bias + sum over taps
// (i, j) in order and channels c in order of padded[b, y sh + i dh, x sw + j dw, c] *
// weight[:, (i kw + j) C + c], i.e. linear_rows(im2col(padded), weight, bias) bit for bit.
at::Tensor conv2d_nhwc_cpu(const at::Tensor& padded, const at::Tensor& weight,
                           const std::optional<at::Tensor>& bias, at::IntArrayRef kernel,
                           at::IntArrayRef stride, at::IntArrayRef dilation) {
  check_conv_tensor(padded, "conv2d_nhwc", "padded");
  check_float_matrix(weight, "conv2d_nhwc", "weight");
  const ConvGeometry g = conv_geometry("conv2d_nhwc", padded.sizes(), kernel, stride, dilation);
  const int64_t O = weight.size(0), C = g.C;
  TORCH_CHECK(weight.size(1) == g.taps() * C, "sparse3d.conv2d_nhwc: weight must be [O, ", g.taps() * C,
              "] (taps x channels), got ", weight.sizes());
  if (bias.has_value())
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == O && bias->scalar_type() == at::kFloat,
                "sparse3d.conv2d_nhwc: bias must be float32 [", O, "], got ", bias->scalar_type(), " ",
                bias->sizes());
  const at::Tensor x = padded.contiguous(), b = weight.t().contiguous();  // b: [taps C, O]
  const at::Tensor c = bias.has_value() ? bias->contiguous() : at::Tensor();
  at::Tensor out = at::empty({g.B, g.Ho, g.Wo, O}, x.options());
  const float* xp = x.data_ptr<float>();
  const float* bp = b.data_ptr<float>();
  const float* cp = c.defined() ? c.data_ptr<float>() : nullptr;
  float* op = out.data_ptr<float>();
  // One task per output image row: its Wo pixels are rows of every tap's product, C apart
  // times the stride in the input, so each tap is one strided Product over them.
  parallel_for_dynamic(g.B * g.Ho, 1, [&](auto take) {
    for (int64_t t0, t1; take(t0, t1);)
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t n = t / g.Ho, y = t % g.Ho;
        float* row_out = op + t * g.Wo * O;
        for (int64_t i = 0; i < g.kh; ++i)
          for (int64_t j = 0; j < g.kw; ++j) {
            const int64_t tap = i * g.kw + j;
            const float* a = xp + ((n * g.Hp + y * g.sh + i * g.dh) * g.Wp + j * g.dw) * C;
            Product p{a, g.sw * C, 1, bp + tap * C * O, O, cp, C, O, row_out, O};
            p.accumulate = tap > 0;
            product_rows(p, 0, g.Wo);
          }
      }
  });
  return out;
}

// The gradient of conv2d_nhwc with respect to its padded input, bit for bit the im2col
// path's: the column gradient v_out @ weight (each element one chain over o) added into the
// input tap by tap in order. One task per padded input row gathers, tap by tap, the output
// row that tap reads it from, so no two tasks write one pixel.
at::Tensor conv2d_nhwc_bwd_input_cpu(const at::Tensor& v_out, const at::Tensor& weight,
                                     at::IntArrayRef padded_shape, at::IntArrayRef kernel,
                                     at::IntArrayRef stride, at::IntArrayRef dilation) {
  check_conv_tensor(v_out, "conv2d_nhwc_bwd_input", "v_out");
  check_float_matrix(weight, "conv2d_nhwc_bwd_input", "weight");
  const ConvGeometry g = conv_geometry("conv2d_nhwc_bwd_input", padded_shape, kernel, stride, dilation);
  const int64_t O = weight.size(0), C = g.C, I = g.taps() * C;
  TORCH_CHECK(weight.size(1) == I && v_out.size(0) == g.B && v_out.size(1) == g.Ho && v_out.size(2) == g.Wo &&
                  v_out.size(3) == O,
              "sparse3d.conv2d_nhwc_bwd_input: v_out ", v_out.sizes(), " and weight ", weight.sizes(),
              " do not match the convolution of ", padded_shape);
  const at::Tensor v = v_out.contiguous(), w = weight.contiguous();  // w: [O, taps C]
  at::Tensor v_padded = at::zeros(padded_shape, v.options());
  const float* vp = v.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  float* gp = v_padded.data_ptr<float>();
  parallel_for_dynamic(g.B * g.Hp, 1, [&](auto take) {
    std::vector<float> columns(g.Wo * C);
    for (int64_t t0, t1; take(t0, t1);)
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t n = t / g.Hp, row = t % g.Hp;
        for (int64_t i = 0; i < g.kh; ++i) {
          const int64_t from = row - i * g.dh;
          if (from < 0 || from % g.sh || from / g.sh >= g.Ho) continue;
          const float* v_row = vp + (n * g.Ho + from / g.sh) * g.Wo * O;
          for (int64_t j = 0; j < g.kw; ++j) {
            const int64_t tap = i * g.kw + j;
            const Product p{v_row, O, 1, wp + tap * C, I, nullptr, O, C, columns.data(), C};
            product_rows(p, 0, g.Wo);
            float* out = gp + (t * g.Wp + j * g.dw) * C;
            for (int64_t x = 0; x < g.Wo; ++x)
              for (int64_t c = 0; c < C; ++c) out[x * g.sw * C + c] += columns[x * C + c];
          }
        }
      }
  });
  return v_padded;
}

// The gradient of conv2d_nhwc with respect to its weight, bit for bit
// linear_bwd_weight(v_out, im2col(padded)): the same chunks of output pixels, each chunk's
// pixels split at image rows, whose input rows under each tap are strided rows of padded.
at::Tensor conv2d_nhwc_bwd_weight_cpu(const at::Tensor& v_out, const at::Tensor& padded, at::IntArrayRef kernel,
                                      at::IntArrayRef stride, at::IntArrayRef dilation) {
  check_conv_tensor(v_out, "conv2d_nhwc_bwd_weight", "v_out");
  check_conv_tensor(padded, "conv2d_nhwc_bwd_weight", "padded");
  const ConvGeometry g = conv_geometry("conv2d_nhwc_bwd_weight", padded.sizes(), kernel, stride, dilation);
  TORCH_CHECK(v_out.size(0) == g.B && v_out.size(1) == g.Ho && v_out.size(2) == g.Wo,
              "sparse3d.conv2d_nhwc_bwd_weight: v_out must be [", g.B, ", ", g.Ho, ", ", g.Wo, ", O], got ",
              v_out.sizes());
  const at::Tensor x = padded.contiguous();
  const float* xp = x.data_ptr<float>();
  const int64_t C = g.C, I = g.taps() * C;
  const at::Tensor rows = v_out.reshape({-1, v_out.size(3)});
  return chunked_weight_gradient(rows, I, [&](const Product& chunk, int64_t out_rows, int64_t n0, int64_t n) {
    for (int64_t tap = 0; tap < g.taps(); ++tap) {
      const int64_t i = tap / g.kw, j = tap % g.kw;
      // The chunk's pixels [n0, n0 + n), one image row (b, y) at a time.
      for (int64_t s0 = n0, s1; s0 < n0 + n; s0 = s1) {
        const int64_t image_row = s0 / g.Wo, x0 = s0 % g.Wo;
        s1 = std::min(n0 + n, (image_row + 1) * g.Wo);
        const int64_t b = image_row / g.Ho, y = image_row % g.Ho;
        Product p = chunk;
        p.a += (s0 - n0) * chunk.a_col;
        p.b = xp + ((b * g.Hp + y * g.sh + i * g.dh) * g.Wp + x0 * g.sw + j * g.dw) * C;
        p.b_row = g.sw * C, p.K = s1 - s0, p.O = C;
        p.out += tap * C;
        p.accumulate = s0 > n0;
        product_rows(p, 0, out_rows);
      }
    }
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(sparse3d, CPU, m) {
  m.impl("linear_rows", &linear_rows_cpu);
  m.impl("linear_bwd_weight", &linear_bwd_weight_cpu);
  m.impl("conv2d_nhwc", &conv2d_nhwc_cpu);
  m.impl("conv2d_nhwc_bwd_input", &conv2d_nhwc_bwd_input_cpu);
  m.impl("conv2d_nhwc_bwd_weight", &conv2d_nhwc_bwd_weight_cpu);
}

}  // namespace sparse3d
