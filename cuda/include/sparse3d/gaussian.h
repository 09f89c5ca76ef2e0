// Per-pixel math of the Gaussian rasterizer (gsplat's `rasterize_to_pixels` semantics):
// the opacity of one projected Gaussian at one pixel centre, and its vector-Jacobian
// product. Shared by every backend so the thresholds cannot drift apart.
#pragma once

#include <cmath>

#include "sparse3d/common.h"

namespace sparse3d {

// gsplat's compositing thresholds: alpha is clamped below 1 so that T can be rebuilt by
// division in the backward; contributions under 1/255 are invisible in an 8-bit image; a
// pixel stops once its transmittance would fall to 1e-4.
constexpr double kSplatAlphaMax = 0.999;
constexpr double kSplatAlphaMin = 1.0 / 255.0;
constexpr double kSplatTransmittanceMin = 1e-4;

// One projected Gaussian: pixel-space centre, conic (upper triangle of the inverse 2-D
// covariance, [a, b, c] = [inv00, inv01, inv11]), opacity, and the sigma beyond which its
// alpha is certainly below 1/255 (so most pixels of a tile skip the exp).
template <typename scalar_t>
struct Splat2D {
  scalar_t mx, my, a, b, c, opacity, sigma_cut;
};

template <typename scalar_t>
SP3D_HD inline Splat2D<scalar_t> make_splat(scalar_t mx, scalar_t my, scalar_t a, scalar_t b,
                                            scalar_t c, scalar_t opacity) {
  // o exp(-sigma) < 1/255 <=> sigma > log(255 o); the margin absorbs rounding of log and
  // exp, so the exact test in splat_alpha still decides every borderline pixel.
  const scalar_t cut = std::log(opacity / scalar_t(kSplatAlphaMin)) + scalar_t(1e-3);
  return {mx, my, a, b, c, opacity, cut};
}

// Half-widths (pixels) of the box around the centre outside which alpha < 1/255, i.e.
// sigma > sigma_cut: sqrt(2 cut inv(conic)_kk), widened for rounding. Returns false when
// no pixel can pass; an indefinite conic gets an unbounded box.
template <typename scalar_t>
SP3D_HD inline bool splat_extent(const Splat2D<scalar_t>& s, scalar_t* half_x, scalar_t* half_y) {
  if (!(s.sigma_cut >= scalar_t(0))) return false;
  const scalar_t det = s.a * s.c - s.b * s.b;
  if (!(det > scalar_t(0)) || !(s.a > scalar_t(0)) || !(s.c > scalar_t(0))) {
    *half_x = *half_y = scalar_t(1e30);
    return true;
  }
  const scalar_t slack = scalar_t(1) + scalar_t(1e-4);
  *half_x = std::sqrt(scalar_t(2) * s.sigma_cut * s.c / det) * slack + scalar_t(1e-3);
  *half_y = std::sqrt(scalar_t(2) * s.sigma_cut * s.a / det) * slack + scalar_t(1e-3);
  return true;
}

// Mahalanobis half-distance of pixel offset d = mean - pixel:
// sigma = 1/2 (a dx^2 + c dy^2) + b dx dy.
template <typename scalar_t>
SP3D_HD inline scalar_t splat_sigma(const Splat2D<scalar_t>& s, scalar_t dx, scalar_t dy) {
  return scalar_t(0.5) * (s.a * dx * dx + s.c * dy * dy) + s.b * dx * dy;
}

// Alpha of a splat at a pixel centre where its sigma is known. Returns false when the
// splat is skipped (negative sigma from a numerically indefinite conic, or alpha < 1/255).
template <typename scalar_t>
SP3D_HD inline bool splat_alpha_at(const Splat2D<scalar_t>& s, scalar_t sigma,
                                   // outputs
                                   scalar_t* alpha, scalar_t* vis) {
  if (sigma < scalar_t(0) || sigma > s.sigma_cut) return false;
  *vis = std::exp(-sigma);
  const scalar_t raw = s.opacity * *vis;
  *alpha = raw < scalar_t(kSplatAlphaMax) ? raw : scalar_t(kSplatAlphaMax);
  return *alpha >= scalar_t(kSplatAlphaMin);
}

// Alpha of a splat at pixel centre (px, py); see splat_alpha_at.
template <typename scalar_t>
SP3D_HD inline bool splat_alpha(const Splat2D<scalar_t>& s, scalar_t px, scalar_t py,
                                // outputs
                                scalar_t* alpha, scalar_t* vis) {
  return splat_alpha_at(s, splat_sigma(s, s.mx - px, s.my - py), alpha, vis);
}

// Gradient of splat_alpha given dL/dalpha: adds into v_mean [2], v_conic [3], v_opacity.
// A clamped alpha (raw value above 0.999) passes no gradient, like torch.clamp.
template <typename scalar_t>
SP3D_HD inline void splat_alpha_vjp(const Splat2D<scalar_t>& s, scalar_t px, scalar_t py,
                                    scalar_t vis, scalar_t v_alpha,
                                    // outputs (accumulated)
                                    scalar_t* v_mean, scalar_t* v_mean_abs, scalar_t* v_conic,
                                    scalar_t* v_opacity) {
  if (s.opacity * vis > scalar_t(kSplatAlphaMax)) return;
  const scalar_t dx = s.mx - px, dy = s.my - py;
  const scalar_t v_sigma = -s.opacity * vis * v_alpha;
  *v_opacity += vis * v_alpha;
  v_conic[0] += scalar_t(0.5) * dx * dx * v_sigma;
  v_conic[1] += dx * dy * v_sigma;
  v_conic[2] += scalar_t(0.5) * dy * dy * v_sigma;
  const scalar_t gx = v_sigma * (s.a * dx + s.b * dy);
  const scalar_t gy = v_sigma * (s.b * dx + s.c * dy);
  v_mean[0] += gx;
  v_mean[1] += gy;
  v_mean_abs[0] += gx < scalar_t(0) ? -gx : gx;
  v_mean_abs[1] += gy < scalar_t(0) ? -gy : gy;
}

}  // namespace sparse3d
