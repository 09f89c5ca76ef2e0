// CUDA glue of the segment reductions: the shared checks and allocation
// (../glue/segment_args.h), then the launchers of segment.cu on the current stream.
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <torch/library.h>

#include "../glue/segment_args.h"
#include "launch.h"

namespace sparse3d {
namespace {

std::tuple<at::Tensor, at::Tensor> segment_reduce_cuda(const at::Tensor& values,
                                                       const at::Tensor& offsets,
                                                       c10::string_view reduce_name) {
  SegmentReduceCall call = prepare_segment_reduce(values, offsets, reduce_name);
  AT_DISPATCH_FLOATING_TYPES(call.values.scalar_type(), "segment_reduce_cuda", [&] {
    launch_segment_reduce_kernel<scalar_t>(
        call.values.data_ptr<scalar_t>(), offsets.data_ptr<int64_t>(), call.S, call.C, call.reduce,
        call.out.data_ptr<scalar_t>(), call.reduce == Reduce::Max ? call.arg.data_ptr<int64_t>() : nullptr,
        at::cuda::getCurrentCUDAStream());
  });
  return {call.out, call.arg};
}

at::Tensor segment_reduce_bwd_cuda(const at::Tensor& v_out, const at::Tensor& offsets,
                                   const at::Tensor& arg, c10::string_view reduce_name,
                                   int64_t n) {
  SegmentReduceBwdCall call = prepare_segment_reduce_bwd(v_out, offsets, reduce_name, n);
  AT_DISPATCH_FLOATING_TYPES(call.v_out.scalar_type(), "segment_reduce_bwd_cuda", [&] {
    launch_segment_reduce_bwd_kernel<scalar_t>(
        call.v_out.data_ptr<scalar_t>(), offsets.data_ptr<int64_t>(),
        call.reduce == Reduce::Max ? arg.data_ptr<int64_t>() : nullptr, call.S, call.C, call.reduce,
        call.v_values.data_ptr<scalar_t>(), at::cuda::getCurrentCUDAStream());
  });
  return call.v_values;
}

}  // namespace

TORCH_LIBRARY_IMPL(sparse3d, CUDA, m) {
  m.impl("segment_reduce", &segment_reduce_cuda);
  m.impl("segment_reduce_bwd", &segment_reduce_bwd_cuda);
}

}  // namespace sparse3d
