// Volume-rendering weights of one ray's samples (NeRF's quadrature), forward and backward,
// shared by the CPU kernel (one ray per task) and the CUDA kernel (one thread per ray).
// Sample i has optical thickness tau_i = sigma_i delta_i, transmittance
// T_i = exp(-D_i) with D_i = sum_{k<i} tau_k, and weight w_i = T_i (1 - exp(-tau_i)). The
// ray stops at the first sample with T_i < min_t: it and every later sample weigh 0.
#pragma once

#include <cmath>

#include "sparse3d/common.h"

namespace sparse3d {

// e^x of n values: the exp policy of the kernels below, which take a ray's samples in
// blocks of B so that a vector exp can serve a whole block (cuda/cpu/volume.cpp); this
// one, with B = 1, walks them one by one.
template <typename scalar_t>
struct ScalarExp {
  SP3D_HD void operator()(const scalar_t* x, int n, scalar_t* out) const {
    for (int k = 0; k < n; ++k) out[k] = std::exp(x[k]);
  }
};

// The samples [i, i + n) of a ray (n <= B) after those before i: their thicknesses tau and
// the light after each, after[k] = T_{i+k+1} = exp(-D_{i+k+1}). The optical depth D is a
// running sum, not a running product of exp(-tau): T then matches the torch reference
// (cumsum, then exp) to rounding. The sum is kept in double, as CPU torch's cumsum does for
// float32, so that long rays lose no precision; D is rounded to scalar_t before the exp,
// as there.
template <typename scalar_t, typename Exp>
SP3D_HD inline void light_after(const scalar_t* sigmas, const scalar_t* deltas, int64_t i, int n,
                                double& depth, scalar_t* tau, scalar_t* after, const Exp& exp_block) {
  for (int k = 0; k < n; ++k) {
    tau[k] = sigmas[i + k] * deltas[i + k];
    depth += tau[k];
    after[k] = -static_cast<scalar_t>(depth);
  }
  exp_block(after, n, after);
}

// Forward of the ray owning samples [begin, end): weights[begin:end] and the light left
// where the ray ends or stops (1 for an empty ray). A sample is visible while the light
// reaching it is >= min_t, tested as the reference does, so that a NaN stops the ray too.
template <typename scalar_t, int B = 1, typename Exp = ScalarExp<scalar_t>>
SP3D_HD inline void volume_weights_ray(
    // inputs
    const scalar_t* sigmas, const scalar_t* deltas,  // [S]
    int64_t begin, int64_t end, scalar_t min_t,
    // outputs
    scalar_t* weights,        // [S]
    scalar_t* transmittance,  // one value
    const Exp& exp_block = Exp()) {
  double depth = 0;
  scalar_t T = 1;  // the light reaching sample i
  int64_t i = begin;
  while (i < end && T >= min_t) {
    const int n = static_cast<int>(end - i < B ? end - i : B);
    scalar_t tau[B], decay[B], after[B];
    light_after(sigmas, deltas, i, n, depth, tau, after, exp_block);
    for (int k = 0; k < n; ++k) decay[k] = -tau[k];
    exp_block(decay, n, decay);
    int k = 0;
    for (; k < n && T >= min_t; ++k) {
      // 1 - exp rather than -expm1: the reference's rounding, for matching results.
      weights[i + k] = T * (scalar_t(1) - decay[k]);
      T = after[k];
    }
    i += k;
  }
  for (; i < end; ++i) weights[i] = scalar_t(0);
  *transmittance = T;
}

// Gradient of volume_weights_ray with respect to the sigmas of samples [begin, end). With
// m the stop index (end if the ray never stops), T_end = T_m and, for j < m,
//   dL/dsigma_j = delta_j (g_j T_{j+1} - sum_{j<i<m} g_i w_i - g_T T_end),
// and 0 for j >= m (a stopped sample's weight is constant 0, the threshold has no
// gradient); T_{j+1} = T_j exp(-tau_j) is the light after sample j, so one exp per sample
// serves both the replay and the gradient. A replay of the forward (the same blocks and
// exps, so the same stop) finds m and writes g_j T_{j+1}; a reverse pass then subtracts
// the suffix sums.
template <typename scalar_t, int B = 1, typename Exp = ScalarExp<scalar_t>>
SP3D_HD inline void volume_weights_ray_bwd(
    // inputs
    const scalar_t* v_weights,  // [S] g
    scalar_t v_transmittance,   // g_T of this ray
    const scalar_t* sigmas, const scalar_t* deltas,
    const scalar_t* weights,  // [S] the forward's w
    scalar_t transmittance,   // the forward's T_end of this ray
    int64_t begin, int64_t end, scalar_t min_t,
    // outputs
    scalar_t* v_sigmas,  // [S]
    const Exp& exp_block = Exp()) {
  double depth = 0;
  scalar_t T = 1;
  int64_t stop = begin;
  while (stop < end && T >= min_t) {
    const int n = static_cast<int>(end - stop < B ? end - stop : B);
    scalar_t tau[B], after[B];
    light_after(sigmas, deltas, stop, n, depth, tau, after, exp_block);
    int k = 0;
    for (; k < n && T >= min_t; ++k) {
      v_sigmas[stop + k] = v_weights[stop + k] * after[k];
      T = after[k];
    }
    stop += k;
  }
  for (int64_t i = stop; i < end; ++i) v_sigmas[i] = scalar_t(0);
  // In double for float32 too: a long ray's suffix sums cancel against the local terms.
  double suffix = double(v_transmittance) * double(transmittance);
  for (int64_t j = stop - 1; j >= begin; --j) {
    v_sigmas[j] = deltas[j] * static_cast<scalar_t>(double(v_sigmas[j]) - suffix);
    suffix += double(v_weights[j]) * double(weights[j]);
  }
}

}  // namespace sparse3d
