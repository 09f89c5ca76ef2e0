// Checked arguments and allocated outputs of the volume-rendering weight ops, shared by the
// CPU kernels and the CUDA glue so that both validate and allocate identically.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <cstdint>

#include "checks.h"

namespace sparse3d {

// A per-sample [S] or per-ray [R] tensor of the op: 1-D, `like`'s dtype and device.
inline void check_volume_vector(const at::Tensor& t, const char* name, int64_t n,
                                const at::Tensor& like, const char* op) {
  TORCH_CHECK(t.dim() == 1 && t.size(0) == n, "sparse3d.", op, ": ", name, " must be [", n,
              "], got shape ", t.sizes());
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), "sparse3d.", op, ": ", name, " must be ",
              like.scalar_type(), ", got ", t.scalar_type());
  TORCH_CHECK(t.device() == like.device(), "sparse3d.", op, ": ", name, " must be on ",
              like.device(), ", got ", t.device());
}

// sigmas, deltas: float32/float64 [S]; offsets: int64 [R + 1] on their device.
inline void check_volume_samples(const at::Tensor& sigmas, const at::Tensor& deltas,
                                 const at::Tensor& offsets, const char* op) {
  TORCH_CHECK(sigmas.dim() == 1, "sparse3d.", op, ": sigmas must be [S], got shape ",
              sigmas.sizes());
  TORCH_CHECK(sigmas.scalar_type() == at::kFloat || sigmas.scalar_type() == at::kDouble,
              "sparse3d.", op, ": sigmas must be float32 or float64, got ", sigmas.scalar_type());
  check_volume_vector(deltas, "deltas", sigmas.size(0), sigmas, op);
  TORCH_CHECK(offsets.device() == sigmas.device(), "sparse3d.", op, ": offsets must be on ",
              sigmas.device(), ", got ", offsets.device());
  check_offsets(offsets, sigmas.size(0));
}

struct VolumeWeightsCall {
  at::Tensor sigmas, deltas;  // [S], contiguous
  int64_t R;
  at::Tensor weights;        // [S]
  at::Tensor transmittance;  // [R]
};

inline VolumeWeightsCall prepare_volume_weights(const at::Tensor& sigmas, const at::Tensor& deltas,
                                                const at::Tensor& offsets) {
  check_volume_samples(sigmas, deltas, offsets, "volume_weights");
  const int64_t R = offsets.size(0) - 1;
  return {sigmas.contiguous(), deltas.contiguous(), R, at::empty({sigmas.size(0)}, sigmas.options()),
          at::empty({R}, sigmas.options())};
}

struct VolumeWeightsBwdCall {
  at::Tensor v_weights, v_transmittance, sigmas, deltas, weights, transmittance;  // contiguous
  int64_t R;
  at::Tensor v_sigmas;  // [S]; every sample lies in one ray, so no zero-fill is needed
};

inline VolumeWeightsBwdCall prepare_volume_weights_bwd(
    const at::Tensor& v_weights, const at::Tensor& v_transmittance, const at::Tensor& sigmas,
    const at::Tensor& deltas, const at::Tensor& offsets, const at::Tensor& weights,
    const at::Tensor& transmittance) {
  const char* op = "volume_weights_bwd";
  check_volume_samples(sigmas, deltas, offsets, op);
  const int64_t S = sigmas.size(0), R = offsets.size(0) - 1;
  check_volume_vector(v_weights, "v_weights", S, sigmas, op);
  check_volume_vector(v_transmittance, "v_transmittance", R, sigmas, op);
  check_volume_vector(weights, "weights", S, sigmas, op);
  check_volume_vector(transmittance, "transmittance", R, sigmas, op);
  return {v_weights.contiguous(), v_transmittance.contiguous(), sigmas.contiguous(),
          deltas.contiguous(),    weights.contiguous(),         transmittance.contiguous(),
          R,                      at::empty({S}, sigmas.options())};
}

}  // namespace sparse3d
