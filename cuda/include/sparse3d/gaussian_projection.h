// EWA projection of one 3-D Gaussian into one pinhole camera (gsplat's
// fully_fused_projection, pinhole, dense), and its vector-Jacobian product.
// Matches sparse3d/render/gaussians/projection.py line for line.
#pragma once

#include <cmath>

#include "sparse3d/common.h"

namespace sparse3d {

// Screen extent in standard deviations per axis, and the largest stored radius (int32).
constexpr double kProjectRadiusSigmas = 3.33;
constexpr double kProjectMaxRadius = 1073741824.0;  // 2^30
// Off-screen points are projected with x/z clamped to 1.3 x the half field of view.
constexpr double kProjectFovMargin = 0.3;

template <typename scalar_t>
struct ProjectCamera {
  const scalar_t* W;  // [4, 4] world-to-camera, row-major
  scalar_t fx, fy, cx, cy;
  int64_t width, height;
  scalar_t near_plane, far_plane, eps2d, radius_clip;
};

// Rotation matrix (row-major [9]) of the normalised quaternion (w, x, y, z).
template <typename scalar_t>
SP3D_HD inline void quat_to_rotmat(const scalar_t* qn, scalar_t* R) {
  const scalar_t w = qn[0], x = qn[1], y = qn[2], z = qn[3];
  R[0] = 1 - 2 * (y * y + z * z); R[1] = 2 * (x * y - w * z);     R[2] = 2 * (x * z + w * y);
  R[3] = 2 * (x * y + w * z);     R[4] = 1 - 2 * (x * x + z * z); R[5] = 2 * (y * z - w * x);
  R[6] = 2 * (x * z - w * y);     R[7] = 2 * (y * z + w * x);     R[8] = 1 - 2 * (x * x + y * y);
}

// Quaternion normalised like torch.nn.functional.normalize (norm clamped at 1e-12).
template <typename scalar_t>
SP3D_HD inline scalar_t normalize_quat(const scalar_t* q, scalar_t* qn) {
  scalar_t norm = std::sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
  norm = norm > scalar_t(1e-12) ? norm : scalar_t(1e-12);
  for (int i = 0; i < 4; ++i) qn[i] = q[i] / norm;
  return norm;
}

// Everything the forward computes for one (camera, Gaussian) pair that the backward
// needs again; recomputed there rather than stored.
template <typename scalar_t>
struct ProjectState {
  scalar_t R[9], M[9];        // rotation, M = R diag(scale)
  scalar_t Wr[9];             // camera rotation
  scalar_t p[3];              // camera-space centre
  scalar_t covc[9];           // camera-space covariance
  scalar_t J[6];              // [2, 3] projection Jacobian
  scalar_t tx, ty;            // clamped x, y used in J
  bool clamp_x, clamp_y;      // whether x/z, y/z were outside the limits
  scalar_t cov00, cov01, cov11;  // 2-D covariance before eps2d
  scalar_t a, b, c, det;      // blurred covariance and its determinant
  bool valid;                 // in (near, far) and det > 0
};

template <typename scalar_t>
SP3D_HD inline scalar_t clamp_val(scalar_t v, scalar_t lo, scalar_t hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

// Forward state of one pair. Culled pairs (state.valid false) use z = 1 and det = 1 as the
// torch reference does, so every value stays finite.
template <typename scalar_t>
SP3D_HD inline void project_state(const scalar_t* mean, const scalar_t* quat, const scalar_t* scale,
                                  const ProjectCamera<scalar_t>& cam, ProjectState<scalar_t>& s) {
  scalar_t qn[4];
  normalize_quat(quat, qn);
  quat_to_rotmat(qn, s.R);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) s.M[3 * i + j] = s.R[3 * i + j] * scale[j];
  scalar_t cov[9];  // world covariance M M^T
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      cov[3 * i + j] = s.M[3 * i] * s.M[3 * j] + s.M[3 * i + 1] * s.M[3 * j + 1] +
                       s.M[3 * i + 2] * s.M[3 * j + 2];
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < 3; ++j) s.Wr[3 * i + j] = cam.W[4 * i + j];
    s.p[i] = s.Wr[3 * i] * mean[0] + s.Wr[3 * i + 1] * mean[1] + s.Wr[3 * i + 2] * mean[2] +
             cam.W[4 * i + 3];
  }
  scalar_t tmp[9];  // Wr cov
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      tmp[3 * i + j] = s.Wr[3 * i] * cov[j] + s.Wr[3 * i + 1] * cov[3 + j] + s.Wr[3 * i + 2] * cov[6 + j];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      s.covc[3 * i + j] = tmp[3 * i] * s.Wr[3 * j] + tmp[3 * i + 1] * s.Wr[3 * j + 1] +
                          tmp[3 * i + 2] * s.Wr[3 * j + 2];
  const bool in_depth = s.p[2] > cam.near_plane && s.p[2] < cam.far_plane;
  const scalar_t z = in_depth ? s.p[2] : scalar_t(1);
  const scalar_t half_w = scalar_t(0.5) * scalar_t(cam.width), half_h = scalar_t(0.5) * scalar_t(cam.height);
  const scalar_t lim_xn = cam.cx / cam.fx + scalar_t(kProjectFovMargin) * half_w / cam.fx;
  const scalar_t lim_xp = (scalar_t(cam.width) - cam.cx) / cam.fx + scalar_t(kProjectFovMargin) * half_w / cam.fx;
  const scalar_t lim_yn = cam.cy / cam.fy + scalar_t(kProjectFovMargin) * half_h / cam.fy;
  const scalar_t lim_yp = (scalar_t(cam.height) - cam.cy) / cam.fy + scalar_t(kProjectFovMargin) * half_h / cam.fy;
  const scalar_t rx = s.p[0] / z, ry = s.p[1] / z;
  s.clamp_x = rx < -lim_xn || rx > lim_xp;
  s.clamp_y = ry < -lim_yn || ry > lim_yp;
  s.tx = z * clamp_val(rx, -lim_xn, lim_xp);
  s.ty = z * clamp_val(ry, -lim_yn, lim_yp);
  s.J[0] = cam.fx / z; s.J[1] = 0; s.J[2] = -cam.fx * s.tx / (z * z);
  s.J[3] = 0; s.J[4] = cam.fy / z; s.J[5] = -cam.fy * s.ty / (z * z);
  scalar_t JC[6];  // J covc
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      JC[3 * i + j] = s.J[3 * i] * s.covc[j] + s.J[3 * i + 1] * s.covc[3 + j] + s.J[3 * i + 2] * s.covc[6 + j];
  s.cov00 = JC[0] * s.J[0] + JC[1] * s.J[1] + JC[2] * s.J[2];
  s.cov01 = JC[0] * s.J[3] + JC[1] * s.J[4] + JC[2] * s.J[5];
  s.cov11 = JC[3] * s.J[3] + JC[4] * s.J[4] + JC[5] * s.J[5];
  s.a = s.cov00 + cam.eps2d;
  s.b = s.cov01;
  s.c = s.cov11 + cam.eps2d;
  const scalar_t det = s.a * s.c - s.b * s.b;
  s.valid = in_depth && det > scalar_t(0);
  s.det = s.valid ? det : scalar_t(1);
}

// Outputs of one pair: means2d [2], conic [3], depth, radii [2], compensation.
template <typename scalar_t>
SP3D_HD inline void project_outputs(const ProjectState<scalar_t>& s, const ProjectCamera<scalar_t>& cam,
                                    scalar_t* mean2d, scalar_t* conic, scalar_t* depth, int32_t* radii,
                                    scalar_t* compensation) {
  const bool in_depth = s.p[2] > cam.near_plane && s.p[2] < cam.far_plane;
  const scalar_t z = in_depth ? s.p[2] : scalar_t(1);
  mean2d[0] = cam.fx * s.p[0] / z + cam.cx;
  mean2d[1] = cam.fy * s.p[1] / z + cam.cy;
  conic[0] = s.c / s.det;
  conic[1] = -s.b / s.det;
  conic[2] = s.a / s.det;
  *depth = s.p[2];
  const scalar_t det_raw = s.cov00 * s.cov11 - s.cov01 * s.cov01;
  const scalar_t ratio = det_raw / s.det;
  *compensation = ratio > scalar_t(0) ? std::sqrt(ratio) : scalar_t(0);
  const scalar_t r[2] = {std::ceil(scalar_t(kProjectRadiusSigmas) * std::sqrt(s.a > 0 ? s.a : scalar_t(0))),
                         std::ceil(scalar_t(kProjectRadiusSigmas) * std::sqrt(s.c > 0 ? s.c : scalar_t(0)))};
  const scalar_t size[2] = {scalar_t(cam.width), scalar_t(cam.height)};
  bool keep = s.valid && (r[0] > cam.radius_clip || r[1] > cam.radius_clip);
  for (int k = 0; k < 2; ++k) keep = keep && std::isfinite(r[k]) && mean2d[k] + r[k] > 0 && mean2d[k] - r[k] < size[k];
  for (int k = 0; k < 2; ++k)
    radii[k] = keep ? int32_t(r[k] < scalar_t(kProjectMaxRadius) ? r[k] : scalar_t(kProjectMaxRadius)) : 0;
}

// Adds the gradient of one visible pair's outputs to v_mean [3], v_quat [4], v_scale [3].
template <typename scalar_t>
SP3D_HD inline void project_vjp(const scalar_t* quat, const scalar_t* scale, const ProjectState<scalar_t>& s,
                                const ProjectCamera<scalar_t>& cam, const scalar_t* v_mean2d,
                                const scalar_t* v_conic, scalar_t v_depth, scalar_t v_comp,
                                // outputs (accumulated)
                                scalar_t* v_mean, scalar_t* v_quat, scalar_t* v_scale) {
  const scalar_t z = s.p[2], det = s.det;
  // conic = inverse of [[a, b], [b, c]]: V = -Ci G Ci, with G the symmetric gradient.
  const scalar_t ci[3] = {s.c / det, -s.b / det, s.a / det};
  const scalar_t g00 = v_conic[0], g01 = scalar_t(0.5) * v_conic[1], g11 = v_conic[2];
  const scalar_t t00 = ci[0] * g00 + ci[1] * g01, t01 = ci[0] * g01 + ci[1] * g11;
  const scalar_t t10 = ci[1] * g00 + ci[2] * g01, t11 = ci[1] * g01 + ci[2] * g11;
  scalar_t V00 = -(t00 * ci[0] + t01 * ci[1]);
  scalar_t V01 = -(t00 * ci[1] + t01 * ci[2]);
  scalar_t V11 = -(t10 * ci[1] + t11 * ci[2]);
  // compensation = sqrt(det_raw / det)
  const scalar_t det_raw = s.cov00 * s.cov11 - s.cov01 * s.cov01;
  const scalar_t ratio = det_raw / det;
  if (ratio > scalar_t(0) && v_comp != scalar_t(0)) {
    const scalar_t v_r = v_comp * scalar_t(0.5) / std::sqrt(ratio);
    const scalar_t k = det_raw / (det * det);
    V00 += v_r * (s.cov11 / det - k * s.c);
    V11 += v_r * (s.cov00 / det - k * s.a);
    V01 += scalar_t(0.5) * v_r * (-2 * s.cov01 / det + k * 2 * s.b);
  }
  const scalar_t V[4] = {V00, V01, V01, V11};
  // cov2d = J covc J^T: v_covc = J^T V J, v_J = 2 V J covc.
  scalar_t VJ[6];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j) VJ[3 * i + j] = V[2 * i] * s.J[j] + V[2 * i + 1] * s.J[3 + j];
  scalar_t v_covc[9], v_J[6];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) v_covc[3 * i + j] = s.J[i] * VJ[j] + s.J[3 + i] * VJ[3 + j];
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      v_J[3 * i + j] = 2 * (VJ[3 * i] * s.covc[j] + VJ[3 * i + 1] * s.covc[3 + j] + VJ[3 * i + 2] * s.covc[6 + j]);
  // means2d, J(z, tx, ty) and depth into the camera-space centre.
  scalar_t v_p[3] = {v_mean2d[0] * cam.fx / z, v_mean2d[1] * cam.fy / z,
                     -(v_mean2d[0] * cam.fx * s.p[0] + v_mean2d[1] * cam.fy * s.p[1]) / (z * z) + v_depth};
  const scalar_t z2 = z * z, z3 = z2 * z;
  v_p[2] += -cam.fx / z2 * v_J[0] + 2 * cam.fx * s.tx / z3 * v_J[2] - cam.fy / z2 * v_J[4] +
            2 * cam.fy * s.ty / z3 * v_J[5];
  const scalar_t v_tx = -cam.fx / z2 * v_J[2], v_ty = -cam.fy / z2 * v_J[5];
  if (s.clamp_x) v_p[2] += v_tx * s.tx / z; else v_p[0] += v_tx;
  if (s.clamp_y) v_p[2] += v_ty * s.ty / z; else v_p[1] += v_ty;
  // p = Wr mean + t; covc = Wr cov Wr^T.
  for (int j = 0; j < 3; ++j)
    v_mean[j] += s.Wr[j] * v_p[0] + s.Wr[3 + j] * v_p[1] + s.Wr[6 + j] * v_p[2];
  scalar_t tmp[9], v_cov[9];  // v_cov = Wr^T v_covc Wr
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      tmp[3 * i + j] = s.Wr[i] * v_covc[j] + s.Wr[3 + i] * v_covc[3 + j] + s.Wr[6 + i] * v_covc[6 + j];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      v_cov[3 * i + j] = tmp[3 * i] * s.Wr[j] + tmp[3 * i + 1] * s.Wr[3 + j] + tmp[3 * i + 2] * s.Wr[6 + j];
  // cov = M M^T: v_M = (v_cov + v_cov^T) M; M = R diag(scale).
  scalar_t v_R[9];
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j) {
      scalar_t v_m = 0;
      for (int k = 0; k < 3; ++k) v_m += (v_cov[3 * i + k] + v_cov[3 * k + i]) * s.M[3 * k + j];
      v_R[3 * i + j] = v_m * scale[j];
      v_scale[j] += v_m * s.R[3 * i + j];
    }
  scalar_t qn[4];
  const scalar_t norm = normalize_quat(quat, qn);
  const scalar_t w = qn[0], x = qn[1], y = qn[2], zq = qn[3];
  const scalar_t* Vr = v_R;
  const scalar_t v_qn[4] = {
      2 * (-zq * Vr[1] + y * Vr[2] + zq * Vr[3] - x * Vr[5] - y * Vr[6] + x * Vr[7]),
      2 * (y * Vr[1] + zq * Vr[2] + y * Vr[3] - 2 * x * Vr[4] - w * Vr[5] + zq * Vr[6] + w * Vr[7] - 2 * x * Vr[8]),
      2 * (-2 * y * Vr[0] + x * Vr[1] + w * Vr[2] + x * Vr[3] + zq * Vr[5] - w * Vr[6] + zq * Vr[7] - 2 * y * Vr[8]),
      2 * (-2 * zq * Vr[0] - w * Vr[1] + x * Vr[2] + w * Vr[3] - 2 * zq * Vr[4] + y * Vr[5] + x * Vr[6] + y * Vr[7])};
  const scalar_t dot = v_qn[0] * qn[0] + v_qn[1] * qn[1] + v_qn[2] * qn[2] + v_qn[3] * qn[3];
  for (int i = 0; i < 4; ++i) v_quat[i] += (v_qn[i] - dot * qn[i]) / norm;
}

}  // namespace sparse3d
