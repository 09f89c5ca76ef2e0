// CUDA glue of the DSVT set partition: the host steps shared with the CPU glue
// (../glue/partition_args.h) around the two launchers of partition.cu.
#include <ATen/cuda/CUDAContext.h>
#include <torch/library.h>

#include "../glue/partition_args.h"
#include "launch.h"

namespace sparse3d {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> set_partition_cuda(
    const at::Tensor& coords, c10::IntArrayRef sparse_shape, c10::IntArrayRef window,
    c10::IntArrayRef shift, int64_t set_size) {
  const WindowKeysCall call = prepare_window_keys(coords, sparse_shape, window, shift, set_size);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  launch_window_keys_kernel(call.coords.data_ptr<int32_t>(), call.N, call.g,
                            call.in_win.data_ptr<int32_t>(), call.keys.data_ptr<int64_t>(),
                            stream);
  const FillSetsCall sets = prepare_fill_sets(call);
  launch_fill_sets_kernel(sets.order.data_ptr<int64_t>(), call.N,
                          sets.win_begin.data_ptr<int64_t>(), sets.win_count.data_ptr<int64_t>(),
                          sets.win_set_begin.data_ptr<int64_t>(),
                          sets.set_window.data_ptr<int64_t>(), sets.M, call.S,
                          sets.inds.data_ptr<int64_t>(), sets.mask.data_ptr<bool>(),
                          sets.first_slot.data_ptr<int64_t>(), stream);
  return {sets.inds, sets.mask, sets.first_slot, call.in_win};
}

}  // namespace

TORCH_LIBRARY_IMPL(sparse3d, CUDA, m) { m.impl("set_partition", &set_partition_cuda); }

}  // namespace sparse3d
