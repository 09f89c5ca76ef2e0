// Argument checks and small conversions shared by the CPU and CUDA op glue.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <string_view>

#include "sparse3d/common.h"

namespace sparse3d {

inline Reduce parse_reduce(std::string_view name) {
  if (name == "sum") return Reduce::Sum;
  if (name == "mean") return Reduce::Mean;
  if (name == "max") return Reduce::Max;
  TORCH_CHECK(false, "sparse3d: reduce must be 'sum', 'mean' or 'max', got '", name, "'");
}

// Offsets of S segments: int64 [S + 1], starting at 0 and ending at n_rows.
inline void check_offsets(const at::Tensor& offsets, int64_t n_rows) {
  TORCH_CHECK(offsets.dim() == 1 && offsets.size(0) >= 1,
              "sparse3d: offsets must be 1-D [S + 1], got shape ", offsets.sizes());
  TORCH_CHECK(offsets.scalar_type() == at::kLong, "sparse3d: offsets must be int64, got ",
              offsets.scalar_type());
  TORCH_CHECK(offsets.is_contiguous(), "sparse3d: offsets must be contiguous");
  if (offsets.is_cpu()) {
    const int64_t* o = offsets.data_ptr<int64_t>();
    const int64_t S = offsets.size(0) - 1;
    TORCH_CHECK(o[0] == 0 && o[S] == n_rows, "sparse3d: offsets must start at 0 and end at ",
                n_rows, " (the number of rows), got ", o[0], " and ", o[S]);
    for (int64_t s = 0; s < S; ++s)
      TORCH_CHECK(o[s] <= o[s + 1], "sparse3d: offsets must be non-decreasing, offsets[", s,
                  "] = ", o[s], " > offsets[", s + 1, "] = ", o[s + 1]);
  }
}

}  // namespace sparse3d
