// AVX-512 compositing of one 4x4 sub-tile: its 16 pixels are the 16 float lanes of one
// register, so a splat is tested, blended and differentiated for all of them at once.
// The per-pixel arithmetic is the scalar path's (sparse3d/gaussian.h), with e^x from
// exp_avx512 below in both the forward and the backward, so the backward's reconstruction
// of the transmittances matches its own forward. Per-splat gradient sums over the lanes
// use a fixed reduction tree: results do not depend on the thread count.
#pragma once

#if defined(__x86_64__)
#include <cstdint>
#include <vector>

#include "cpu_features.h"
#include "exp_avx512.h"
#include "sparse3d/gaussian.h"

namespace sparse3d {

// Colour channels the vector path keeps in registers; more fall back to the scalar path.
constexpr int64_t kMaxVectorChannels = 16;

// One splat over the 16 pixel lanes: offsets d = mean - pixel, sigma, e^-sigma, alpha, and
// the lanes where it counts (sigma in [0, cut], alpha >= 1/255), as splat_alpha_at.
struct SplatLanes {
  __m512 dx, dy, vis, raw, alpha;
  __mmask16 hit;
};

SP3D_AVX512 inline SplatLanes splat_lanes(const Splat2D<float>& s, __m512 px, __m512 py,
                                          __mmask16 lanes) {
  SplatLanes l;
  l.dx = _mm512_sub_ps(_mm512_set1_ps(s.mx), px);
  l.dy = _mm512_sub_ps(_mm512_set1_ps(s.my), py);
  const __m512 quad = _mm512_add_ps(_mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(s.a), l.dx), l.dx),
                                    _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(s.c), l.dy), l.dy));
  const __m512 sigma = _mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), quad),
                                     _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(s.b), l.dx), l.dy));
  l.hit = lanes & _mm512_cmp_ps_mask(sigma, _mm512_setzero_ps(), _CMP_GE_OQ) &
          _mm512_cmp_ps_mask(sigma, _mm512_set1_ps(s.sigma_cut), _CMP_LE_OQ);
  if (!l.hit) return l;
  l.vis = exp_avx512(_mm512_sub_ps(_mm512_setzero_ps(), sigma));
  l.raw = _mm512_mul_ps(_mm512_set1_ps(s.opacity), l.vis);
  l.alpha = _mm512_min_ps(l.raw, _mm512_set1_ps(float(kSplatAlphaMax)));
  l.hit &= _mm512_cmp_ps_mask(l.alpha, _mm512_set1_ps(float(kSplatAlphaMin)), _CMP_GE_OQ);
  return l;
}

// Forward of one sub-tile: front-to-back blending of the splats in `list` (depth order)
// with early termination per pixel; writes colour, alpha and the last splat per pixel.
template <typename Tile, typename Pixels>
SP3D_AVX512 void composite_forward_avx512(const Tile& tile, const std::vector<int32_t>& list,
                                          const Pixels& px, int64_t D, float* out,
                                          float* out_alpha, int32_t* out_last) {
  const __m512 pxv = _mm512_loadu_ps(px.px), pyv = _mm512_loadu_ps(px.py);
  __mmask16 live = __mmask16((1u << px.count) - 1);
  __m512 T = _mm512_set1_ps(1.0f);
  __m512i last = _mm512_setzero_si512();
  __m512 acc[kMaxVectorChannels];
  for (int64_t d = 0; d < D; ++d) acc[d] = _mm512_setzero_ps();
  for (const int32_t i : list) {
    const SplatLanes l = splat_lanes(tile.splats[i], pxv, pyv, live);
    if (!l.hit) continue;
    const __m512 next_T = _mm512_mul_ps(T, _mm512_sub_ps(_mm512_set1_ps(1.0f), l.alpha));
    const __mmask16 stop =
        l.hit & _mm512_cmp_ps_mask(next_T, _mm512_set1_ps(float(kSplatTransmittanceMin)), _CMP_LE_OQ);
    const __mmask16 blend = l.hit & ~stop;
    live &= ~stop;
    const __m512 w = _mm512_mul_ps(l.alpha, T);
    const float* ci = tile.colors.data() + i * D;
    for (int64_t d = 0; d < D; ++d)
      acc[d] = _mm512_mask_add_ps(acc[d], blend, acc[d], _mm512_mul_ps(w, _mm512_set1_ps(ci[d])));
    T = _mm512_mask_mov_ps(T, blend, next_T);
    last = _mm512_mask_mov_epi32(last, blend, _mm512_set1_epi32(i + 1));
    if (!live) break;
  }
  alignas(64) float lanes[kMaxVectorChannels][16], T_out[16];
  alignas(64) int32_t last_out[16];
  for (int64_t d = 0; d < D; ++d) _mm512_store_ps(lanes[d], acc[d]);
  _mm512_store_ps(T_out, T);
  _mm512_store_si512(last_out, last);
  for (int64_t p = 0; p < px.count; ++p) {
    for (int64_t d = 0; d < D; ++d) out[px.pix[p] * D + d] = lanes[d][p];
    out_alpha[px.pix[p]] = 1.0f - T_out[p];
    out_last[px.pix[p]] = last_out[p];
  }
}

// Backward of one sub-tile, back to front from the forward's final transmittances: adds
// each splat's gradients over the 16 pixels into its row g[i] (layout: mean 2, |mean| 2,
// conic 3, opacity, colour D), as the scalar path with splat_alpha_vjp.
template <typename Tile, typename Pixels>
SP3D_AVX512 void composite_backward_avx512(const Tile& tile, const std::vector<int32_t>& list,
                                           const Pixels& px, int64_t D, const float* alpha_out,
                                           const int32_t* last_out, const float* v_out,
                                           const float* v_alpha_out, float* g, int64_t K) {
  const __m512 pxv = _mm512_loadu_ps(px.px), pyv = _mm512_loadu_ps(px.py);
  const __mmask16 valid = __mmask16((1u << px.count) - 1);
  alignas(64) float T0[16], v_alpha0[16], vc_lanes[kMaxVectorChannels][16];
  alignas(64) int32_t last0[16];
  for (int64_t p = 0; p < 16; ++p) {
    const bool real = p < px.count;
    T0[p] = real ? 1.0f - alpha_out[px.pix[p]] : 1.0f;
    v_alpha0[p] = real ? v_alpha_out[px.pix[p]] * T0[p] : 0.0f;  // dL/dalpha_out * T_final
    last0[p] = real ? last_out[px.pix[p]] : 0;
    for (int64_t d = 0; d < D; ++d) vc_lanes[d][p] = real ? v_out[px.pix[p] * D + d] : 0.0f;
  }
  __m512 T = _mm512_load_ps(T0);
  const __m512 v_alpha_final = _mm512_load_ps(v_alpha0);
  const __m512i last = _mm512_load_si512(last0);
  const int32_t max_last = _mm512_reduce_max_epi32(last);
  __m512 vc[kMaxVectorChannels], behind[kMaxVectorChannels];
  for (int64_t d = 0; d < D; ++d) {
    vc[d] = _mm512_load_ps(vc_lanes[d]);
    behind[d] = _mm512_setzero_ps();  // sum of alpha_j T_j c_j of the splats behind
  }
  for (auto it = list.rbegin(); it != list.rend(); ++it) {
    const int32_t i = *it;
    if (i >= max_last) continue;
    const __mmask16 before_last = valid & _mm512_cmp_epi32_mask(_mm512_set1_epi32(i), last, _MM_CMPINT_LT);
    const Splat2D<float>& s = tile.splats[i];
    const SplatLanes l = splat_lanes(s, pxv, pyv, before_last);
    if (!l.hit) continue;
    const __m512 inv_one_minus = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_sub_ps(_mm512_set1_ps(1.0f), l.alpha));
    T = _mm512_mask_mul_ps(T, l.hit, T, inv_one_minus);  // transmittance in front of splat i
    const __m512 w = _mm512_mul_ps(l.alpha, T);
    __m512 v_alpha = _mm512_mul_ps(v_alpha_final, inv_one_minus);
    const float* ci = tile.colors.data() + i * D;
    float* gi = g + i * K;
    for (int64_t d = 0; d < D; ++d) {
      const __m512 c = _mm512_set1_ps(ci[d]);
      gi[8 + d] += _mm512_mask_reduce_add_ps(l.hit, _mm512_mul_ps(w, vc[d]));
      v_alpha = _mm512_add_ps(v_alpha, _mm512_mul_ps(vc[d], _mm512_sub_ps(_mm512_mul_ps(c, T),
                                                                          _mm512_mul_ps(behind[d], inv_one_minus))));
      behind[d] = _mm512_mask_add_ps(behind[d], l.hit, behind[d], _mm512_mul_ps(w, c));
    }
    // splat_alpha_vjp: a clamped alpha passes no gradient.
    const __mmask16 grad = l.hit & _mm512_cmp_ps_mask(l.raw, _mm512_set1_ps(float(kSplatAlphaMax)), _CMP_LE_OQ);
    const __m512 v_sigma = _mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), l.raw), v_alpha);
    const __m512 gx = _mm512_mul_ps(v_sigma, _mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(s.a), l.dx),
                                                           _mm512_mul_ps(_mm512_set1_ps(s.b), l.dy)));
    const __m512 gy = _mm512_mul_ps(v_sigma, _mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(s.b), l.dx),
                                                           _mm512_mul_ps(_mm512_set1_ps(s.c), l.dy)));
    const __m512 half = _mm512_set1_ps(0.5f);
    gi[0] += _mm512_mask_reduce_add_ps(grad, gx);
    gi[1] += _mm512_mask_reduce_add_ps(grad, gy);
    gi[2] += _mm512_mask_reduce_add_ps(grad, _mm512_abs_ps(gx));
    gi[3] += _mm512_mask_reduce_add_ps(grad, _mm512_abs_ps(gy));
    gi[4] += _mm512_mask_reduce_add_ps(grad, _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(half, l.dx), l.dx), v_sigma));
    gi[5] += _mm512_mask_reduce_add_ps(grad, _mm512_mul_ps(_mm512_mul_ps(l.dx, l.dy), v_sigma));
    gi[6] += _mm512_mask_reduce_add_ps(grad, _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(half, l.dy), l.dy), v_sigma));
    gi[7] += _mm512_mask_reduce_add_ps(grad, _mm512_mul_ps(l.vis, v_alpha));
  }
}

}  // namespace sparse3d
#endif  // __x86_64__
