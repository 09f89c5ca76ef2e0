// Checked arguments and allocated outputs of the segment ops, shared by the CPU kernels
// and the CUDA glue so that both validate and allocate identically.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include "checks.h"

namespace sparse3d {

struct SegmentReduceCall {
  at::Tensor values;  // [N, C], contiguous
  Reduce reduce;
  int64_t S, C;
  at::Tensor out;  // [S, C]
  at::Tensor arg;  // int64 [S, C] for Max (first argmax row), [0, C] otherwise
};

inline SegmentReduceCall prepare_segment_reduce(const at::Tensor& values, const at::Tensor& offsets,
                                                c10::string_view reduce_name) {
  TORCH_CHECK(values.dim() == 2, "sparse3d.segment_reduce: values must be [N, C], got shape ",
              values.sizes());
  check_offsets(offsets, values.size(0));
  const Reduce reduce = parse_reduce(reduce_name);
  at::Tensor x = values.contiguous();
  const int64_t S = offsets.size(0) - 1, C = x.size(1);
  at::Tensor out = at::empty({S, C}, x.options());
  at::Tensor arg = at::empty({reduce == Reduce::Max ? S : 0, C}, offsets.options());
  return {x, reduce, S, C, out, arg};
}

struct SegmentReduceBwdCall {
  at::Tensor v_out;  // [S, C], contiguous
  Reduce reduce;
  int64_t S, C;
  at::Tensor v_values;  // [n, C]; every row lies in one segment, so no zero-fill is needed
};

inline SegmentReduceBwdCall prepare_segment_reduce_bwd(const at::Tensor& v_out, const at::Tensor& offsets,
                                                       c10::string_view reduce_name, int64_t n) {
  check_offsets(offsets, n);
  at::Tensor g = v_out.contiguous();
  const int64_t S = offsets.size(0) - 1, C = g.size(1);
  return {g, parse_reduce(reduce_name), S, C, at::empty({n, C}, g.options())};
}

}  // namespace sparse3d
