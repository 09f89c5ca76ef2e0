// e^x in AVX-512 registers, for the kernels whose inner loops are exps (the rasterizer's
// Gaussian falloff, the volume-rendering transmittances).
#pragma once

#if defined(__x86_64__)
#include "cpu_features.h"

namespace sparse3d {

// e^x for x <= 0 (to 1-2 ulp): x = n ln2 + r with |r| <= ln2 / 2 (ln2 split in two so that
// n ln2 is exact), e^r by its degree-7 Taylor polynomial (truncation < 5e-9 relative), then
// scaled by 2^n.
SP3D_AVX512 inline __m512 exp_avx512(__m512 x) {
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860682030941723212e-6f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// out[k] = e^{x[k]} for k < n <= 16 (x <= 0), by exp_avx512: arrays in memory, so that
// code built for baseline x86-64 calls it without passing vector registers. (GCC 12 warns
// of the "undefined" source operand its intrinsics' headers pass when this is compiled
// on its own rather than inlined; the operand is never read.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
SP3D_AVX512 inline void exp_avx512(const float* x, int n, float* out) {
  const __mmask16 lanes = static_cast<__mmask16>((1u << n) - 1u);
  _mm512_mask_storeu_ps(out, lanes, exp_avx512(_mm512_maskz_loadu_ps(lanes, x)));
}
#pragma GCC diagnostic pop

}  // namespace sparse3d
#endif  // __x86_64__
