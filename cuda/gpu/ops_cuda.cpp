// CUDA implementations of the ops: checks and allocation with ATen, then the plain
// launchers of the .cu files on the current stream. Built only with a CUDA torch.
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "../cpu/checks.h"
#include "launch.h"

namespace sparse3d {
namespace {

std::tuple<at::Tensor, at::Tensor> segment_reduce_cuda(const at::Tensor& values,
                                                       const at::Tensor& offsets,
                                                       c10::string_view reduce_name) {
  TORCH_CHECK(values.dim() == 2, "sparse3d.segment_reduce: values must be [N, C], got shape ",
              values.sizes());
  check_offsets(offsets, values.size(0));
  const Reduce reduce = parse_reduce(reduce_name);
  const at::Tensor x = values.contiguous();
  const int64_t S = offsets.size(0) - 1, C = x.size(1);
  at::Tensor out = at::empty({S, C}, x.options());
  at::Tensor arg = at::empty({reduce == Reduce::Max ? S : 0, C}, offsets.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "segment_reduce_cuda", [&] {
    launch_segment_reduce_kernel<scalar_t>(
        x.data_ptr<scalar_t>(), offsets.data_ptr<int64_t>(), S, C, reduce,
        out.data_ptr<scalar_t>(), reduce == Reduce::Max ? arg.data_ptr<int64_t>() : nullptr,
        at::cuda::getCurrentCUDAStream());
  });
  return {out, arg};
}

at::Tensor segment_reduce_bwd_cuda(const at::Tensor& v_out, const at::Tensor& offsets,
                                   const at::Tensor& arg, c10::string_view reduce_name,
                                   int64_t n) {
  check_offsets(offsets, n);
  const Reduce reduce = parse_reduce(reduce_name);
  const at::Tensor g = v_out.contiguous();
  const int64_t S = offsets.size(0) - 1, C = g.size(1);
  at::Tensor v_values = at::empty({n, C}, g.options());
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "segment_reduce_bwd_cuda", [&] {
    launch_segment_reduce_bwd_kernel<scalar_t>(
        g.data_ptr<scalar_t>(), offsets.data_ptr<int64_t>(),
        reduce == Reduce::Max ? arg.data_ptr<int64_t>() : nullptr, S, C, reduce,
        v_values.data_ptr<scalar_t>(), at::cuda::getCurrentCUDAStream());
  });
  return v_values;
}

}  // namespace

TORCH_LIBRARY_IMPL(sparse3d, CUDA, m) {
  m.impl("segment_reduce", &segment_reduce_cuda);
  m.impl("segment_reduce_bwd", &segment_reduce_bwd_cuda);
}

}  // namespace sparse3d
