// CPU kernels for segment reductions: every output element has exactly one writer and
// sums its segment's rows in order, so the result does not depend on the thread count.
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <algorithm>

#include "../glue/segment_args.h"
#include "parallel.h"
#include "sparse3d/segment.h"

namespace sparse3d {
namespace {

// Channels per task: a task reduces one segment's block of channels row by row, so the
// inner loop runs along contiguous memory (and vectorises), and a few long segments (the
// chunks of a column sum) still spread over the threads. Each channel is still summed in
// row order from 0, exactly as segment_reduce_channel does on the GPU.
constexpr int64_t kChannelBlock = 64;
// Values per parallel grain: small segments make finer grains pure overhead.
constexpr int64_t kGrainValues = 16384;

// Runs fn(s, c0, c1) for every (segment, block of channels) of an [N, C] array split into
// S segments, in parallel; each call owns its rows' channels [c0, c1).
template <typename Fn>
void for_each_segment_block(int64_t N, int64_t C, int64_t S, const Fn& fn) {
  const int64_t blocks = (C + kChannelBlock - 1) / kChannelBlock;
  const int64_t tasks = S * blocks;
  const int64_t values_per_task = std::max<int64_t>(1, N * C / std::max<int64_t>(1, tasks));
  parallel_for(0, tasks, std::max<int64_t>(1, kGrainValues / values_per_task),
                   [&](int64_t t0, int64_t t1) {
                     for (int64_t t = t0; t < t1; ++t) {
                       const int64_t c0 = t % blocks * kChannelBlock;
                       fn(t / blocks, c0, std::min(C, c0 + kChannelBlock));
                     }
                   });
}

// Segment [begin, end) of channels [c0, c1): y, arg are the segment's output rows [C].
template <typename scalar_t>
void reduce_block(const scalar_t* v, int64_t begin, int64_t end, int64_t C, int64_t c0,
                  int64_t c1, Reduce reduce, scalar_t* y, int64_t* arg) {
  if (reduce == Reduce::Max) {
    for (int64_t c = c0; c < c1; ++c) {
      y[c] = begin < end ? v[begin * C + c] : scalar_t(0);
      arg[c] = begin < end ? begin : -1;
    }
    for (int64_t i = begin + 1; i < end; ++i)
      for (int64_t c = c0; c < c1; ++c)
        if (v[i * C + c] > y[c]) {
          y[c] = v[i * C + c];
          arg[c] = i;
        }
    return;
  }
  std::fill(y + c0, y + c1, scalar_t(0));
  for (int64_t i = begin; i < end; ++i)
    for (int64_t c = c0; c < c1; ++c) y[c] += v[i * C + c];
  if (reduce == Reduce::Mean && end > begin)
    for (int64_t c = c0; c < c1; ++c) y[c] /= scalar_t(end - begin);
}

// Gradient of reduce_block for rows [begin, end), channels [c0, c1): g, arg are the
// segment's rows [C] of v_out and of the max's arg.
template <typename scalar_t>
void reduce_block_bwd(const scalar_t* g, const int64_t* arg, int64_t begin, int64_t end,
                      int64_t C, int64_t c0, int64_t c1, Reduce reduce, scalar_t* v_values) {
  for (int64_t i = begin; i < end; ++i) {
    scalar_t* row = v_values + i * C;
    for (int64_t c = c0; c < c1; ++c) {
      if (reduce == Reduce::Max)
        row[c] = i == arg[c] ? g[c] : scalar_t(0);
      else
        row[c] = reduce == Reduce::Mean ? g[c] / scalar_t(end - begin) : g[c];
    }
  }
}

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
    for_each_segment_block(call.values.size(0), C, call.S, [&](int64_t s, int64_t c0, int64_t c1) {
      reduce_block(v, o[s], o[s + 1], C, c0, c1, reduce, y + s * C, a ? a + s * C : nullptr);
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
    for_each_segment_block(n, C, call.S, [&](int64_t s, int64_t c0, int64_t c1) {
      reduce_block_bwd(gv + s * C, a ? a + s * C : nullptr, o[s], o[s + 1], C, c0, c1, reduce, vv);
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
