// CPU kernels for segment reductions: one task per segment, so every output element has
// exactly one writer and the result does not depend on the thread count.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include "checks.h"
#include "sparse3d/segment.h"

namespace sparse3d {
namespace {

// Segments per parallel task; small segments make finer grains pure overhead.
constexpr int64_t kGrain = 256;

std::tuple<at::Tensor, at::Tensor> segment_reduce_cpu(const at::Tensor& values,
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
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "segment_reduce_cpu", [&] {
    const scalar_t* v = x.data_ptr<scalar_t>();
    const int64_t* o = offsets.data_ptr<int64_t>();
    scalar_t* y = out.data_ptr<scalar_t>();
    int64_t* a = reduce == Reduce::Max ? arg.data_ptr<int64_t>() : nullptr;
    at::parallel_for(0, S, kGrain, [&](int64_t s0, int64_t s1) {
      int64_t unused;
      for (int64_t s = s0; s < s1; ++s)
        for (int64_t c = 0; c < C; ++c)
          segment_reduce_channel(v, o[s], o[s + 1], C, c, reduce, y + s * C + c,
                                 a ? a + s * C + c : &unused);
    });
  });
  return {out, arg};
}

at::Tensor segment_reduce_bwd_cpu(const at::Tensor& v_out, const at::Tensor& offsets,
                                  const at::Tensor& arg, c10::string_view reduce_name,
                                  int64_t n) {
  check_offsets(offsets, n);
  const Reduce reduce = parse_reduce(reduce_name);
  const at::Tensor g = v_out.contiguous();
  const int64_t S = offsets.size(0) - 1, C = g.size(1);
  // Rows outside every segment cannot exist (offsets cover [0, n)), so empty is safe.
  at::Tensor v_values = at::empty({n, C}, g.options());
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "segment_reduce_bwd_cpu", [&] {
    const scalar_t* gv = g.data_ptr<scalar_t>();
    const int64_t* o = offsets.data_ptr<int64_t>();
    const int64_t* a = reduce == Reduce::Max ? arg.data_ptr<int64_t>() : nullptr;
    scalar_t* vv = v_values.data_ptr<scalar_t>();
    at::parallel_for(0, S, kGrain, [&](int64_t s0, int64_t s1) {
      for (int64_t s = s0; s < s1; ++s)
        for (int64_t c = 0; c < C; ++c)
          segment_reduce_channel_bwd(gv[s * C + c], a ? a[s * C + c] : -1, o[s], o[s + 1], C,
                                     c, reduce, vv);
    });
  });
  return v_values;
}

}  // namespace

TORCH_LIBRARY_IMPL(sparse3d, CPU, m) {
  m.impl("segment_reduce", &segment_reduce_cpu);
  m.impl("segment_reduce_bwd", &segment_reduce_bwd_cpu);
}

}  // namespace sparse3d
