// Volume-rendering weights of one ray's samples (NeRF's quadrature), forward and backward,
// shared by the CPU kernel (one ray per task) and the CUDA kernel (one thread per ray).
// Sample i has optical thickness tau_i = sigma_i delta_i, transmittance
// T_i = exp(-D_i) with D_i = sum_{k<i} tau_k, and weight w_i = T_i (1 - exp(-tau_i)). The
// ray stops at the first sample with T_i < min_t: it and every later sample weigh 0.
#pragma once

#include <cmath>

#include "sparse3d/common.h"

namespace sparse3d {

// Walks a ray's samples in order. The optical depth is a running sum, not a running
// product of exp(-tau): T_i = exp(-D_i) then matches the torch reference (cumsum, then exp)
// to rounding. The sum is kept in double, as CPU torch's cumsum does for float32, so that
// long rays lose no precision; D_i is rounded to scalar_t before the exp, as there.
template <typename scalar_t>
struct RayMarch {
  double depth = 0;   // D_i
  scalar_t T = 1;     // exp(-D_i), the light reaching the current sample
  scalar_t min_t;

  SP3D_HD explicit RayMarch(scalar_t min_transmittance) : min_t(min_transmittance) {}

  // Whether the current sample is visible: T >= min_t, tested as the reference does, so
  // that a NaN transmittance stops the ray too.
  SP3D_HD bool visible() const { return T >= min_t; }

  // Moves past a sample of thickness tau.
  SP3D_HD void advance(scalar_t tau) {
    depth += tau;
    T = std::exp(-static_cast<scalar_t>(depth));
  }
};

// Forward of the ray owning samples [begin, end): weights[begin:end] and the light left
// where the ray ends or stops (1 for an empty ray).
template <typename scalar_t>
SP3D_HD inline void volume_weights_ray(
    // inputs
    const scalar_t* sigmas, const scalar_t* deltas,  // [S]
    int64_t begin, int64_t end, scalar_t min_t,
    // outputs
    scalar_t* weights,       // [S]
    scalar_t* transmittance  // one value
) {
  RayMarch<scalar_t> ray(min_t);
  int64_t i = begin;
  for (; i < end && ray.visible(); ++i) {
    const scalar_t tau = sigmas[i] * deltas[i];
    // 1 - exp rather than -expm1: the reference's rounding, for matching results.
    weights[i] = ray.T * (scalar_t(1) - std::exp(-tau));
    ray.advance(tau);
  }
  for (; i < end; ++i) weights[i] = scalar_t(0);
  *transmittance = ray.T;
}

// Gradient of volume_weights_ray with respect to the sigmas of samples [begin, end). With
// m the stop index (end if the ray never stops), T_end = T_m and, for j < m,
//   dL/dsigma_j = delta_j (g_j T_j exp(-tau_j) - sum_{j<i<m} g_i w_i - g_T T_end),
// and 0 for j >= m (a stopped sample's weight is constant 0, the threshold has no
// gradient). A replay of the forward finds m and writes g_j T_j exp(-tau_j); a reverse
// pass then subtracts the suffix sums.
template <typename scalar_t>
SP3D_HD inline void volume_weights_ray_bwd(
    // inputs
    const scalar_t* v_weights,  // [S] g
    scalar_t v_transmittance,   // g_T of this ray
    const scalar_t* sigmas, const scalar_t* deltas,
    const scalar_t* weights,  // [S] the forward's w
    scalar_t transmittance,   // the forward's T_end of this ray
    int64_t begin, int64_t end, scalar_t min_t,
    // outputs
    scalar_t* v_sigmas  // [S]
) {
  RayMarch<scalar_t> ray(min_t);
  int64_t stop = begin;
  for (; stop < end && ray.visible(); ++stop) {
    const scalar_t tau = sigmas[stop] * deltas[stop];
    v_sigmas[stop] = v_weights[stop] * (ray.T * std::exp(-tau));
    ray.advance(tau);
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
