// CPU kernels for segment reductions: one task per segment, so every output element has
// exactly one writer and the result does not depend on the thread count.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "segment_args.h"
#include "sparse3d/segment.h"

namespace sparse3d {
namespace {

// Segments per parallel task; small segments make finer grains pure overhead.
constexpr int64_t kGrain = 256;

std::tuple<at::Tensor, at::Tensor> segment_reduce_cpu(const at::Tensor& values,
                                                      const at::Tensor& offsets,
                                                      c10::string_view reduce_name) {
  SegmentReduceCall call = prepare_segment_reduce(values, offsets, reduce_name);
  const int64_t C = call.C;
  const Reduce reduce = call.reduce;
  AT_DISPATCH_FLOATING_TYPES(call.values.scalar_type(), "segment_reduce_cpu", [&] {
    const scalar_t* v = call.values.data_ptr<scalar_t>();
    const int64_t* o = offsets.data_ptr<int64_t>();
    scalar_t* y = call.out.data_ptr<scalar_t>();
    int64_t* a = reduce == Reduce::Max ? call.arg.data_ptr<int64_t>() : nullptr;
    at::parallel_for(0, call.S, kGrain, [&](int64_t s0, int64_t s1) {
      int64_t unused;
      for (int64_t s = s0; s < s1; ++s)
        for (int64_t c = 0; c < C; ++c)
          segment_reduce_channel(v, o[s], o[s + 1], C, c, reduce, y + s * C + c,
                                 a ? a + s * C + c : &unused);
    });
  });
  return {call.out, call.arg};
}

at::Tensor segment_reduce_bwd_cpu(const at::Tensor& v_out, const at::Tensor& offsets,
                                  const at::Tensor& arg, c10::string_view reduce_name,
                                  int64_t n) {
  SegmentReduceBwdCall call = prepare_segment_reduce_bwd(v_out, offsets, reduce_name, n);
  const int64_t C = call.C;
  const Reduce reduce = call.reduce;
  AT_DISPATCH_FLOATING_TYPES(call.v_out.scalar_type(), "segment_reduce_bwd_cpu", [&] {
    const scalar_t* gv = call.v_out.data_ptr<scalar_t>();
    const int64_t* o = offsets.data_ptr<int64_t>();
    const int64_t* a = reduce == Reduce::Max ? arg.data_ptr<int64_t>() : nullptr;
    scalar_t* vv = call.v_values.data_ptr<scalar_t>();
    at::parallel_for(0, call.S, kGrain, [&](int64_t s0, int64_t s1) {
      for (int64_t s = s0; s < s1; ++s)
        for (int64_t c = 0; c < C; ++c)
          segment_reduce_channel_bwd(gv[s * C + c], a ? a[s * C + c] : -1, o[s], o[s + 1], C,
                                     c, reduce, vv);
    });
  });
  return call.v_values;
}

}  // namespace

TORCH_LIBRARY_IMPL(sparse3d, CPU, m) {
  m.impl("segment_reduce", &segment_reduce_cpu);
  m.impl("segment_reduce_bwd", &segment_reduce_bwd_cpu);
}

}  // namespace sparse3d
