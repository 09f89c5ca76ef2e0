// Argument checks of affine_act shared by the CPU and CUDA glue.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <optional>

namespace sparse3d {

// values: float [N, C]; scale, shift: [C] of the same dtype; residual: like values.
inline void check_affine_act_args(const at::Tensor& values, const at::Tensor& scale,
                                  const at::Tensor& shift,
                                  const std::optional<at::Tensor>& residual) {
  TORCH_CHECK(values.dim() == 2 && values.is_floating_point(),
              "sparse3d.affine_act: values must be a float [N, C] tensor, got ",
              values.scalar_type(), " ", values.sizes());
  const int64_t C = values.size(1);
  for (const at::Tensor* t : {&scale, &shift})
    TORCH_CHECK(t->dim() == 1 && t->size(0) == C && t->scalar_type() == values.scalar_type(),
                "sparse3d.affine_act: scale and shift must be ", values.scalar_type(), " [", C,
                "], got ", t->scalar_type(), " ", t->sizes());
  if (residual.has_value())
    TORCH_CHECK(residual->sizes() == values.sizes() &&
                    residual->scalar_type() == values.scalar_type(),
                "sparse3d.affine_act: residual must be ", values.scalar_type(), " ",
                values.sizes(), ", got ", residual->scalar_type(), " ", residual->sizes());
}

}  // namespace sparse3d
