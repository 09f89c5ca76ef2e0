// CUDA glue of the kernel maps: the shared checks (../glue/conv_args.h), allocation, and
// the launchers of kernel_map.cu on the current stream. kernel_map probes a hash table of
// the input sites; conv_map finds its output sites with a sort-based unique.
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/_unique2.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <torch/library.h>

#include "../glue/conv_args.h"
#include "launch.h"
#include "sparse3d/hash.h"

namespace sparse3d {
namespace {

at::Tensor kernel_map_cuda(const at::Tensor& in_coords, const at::Tensor& out_coords,
                           c10::IntArrayRef in_shape, c10::IntArrayRef out_shape,
                           c10::IntArrayRef kernel, c10::IntArrayRef stride,
                           c10::IntArrayRef padding, c10::IntArrayRef dilation) {
  const ConvGeom g =
      kernel_map_geom(in_coords, out_coords, in_shape, out_shape, kernel, stride, padding, dilation);
  const int64_t N = in_coords.size(0), M = out_coords.size(0), K = conv_taps(g);
  const int64_t capacity = hash_capacity(N);
  at::Tensor keys = at::full({capacity}, kNoKey, in_coords.options().dtype(at::kLong));
  at::Tensor values = at::full({capacity}, -1, in_coords.options());
  at::Tensor nbr = at::empty({M, K}, in_coords.options());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  launch_hash_build_kernel(in_coords.data_ptr<int32_t>(), N, g, keys.data_ptr<int64_t>(),
                           values.data_ptr<int32_t>(), capacity, stream);
  launch_kernel_map_kernel(out_coords.data_ptr<int32_t>(), M, g, keys.data_ptr<int64_t>(),
                           values.data_ptr<int32_t>(), capacity, nbr.data_ptr<int32_t>(),
                           stream);
  return nbr;
}

std::tuple<at::Tensor, at::Tensor> conv_map_cuda(const at::Tensor& coords,
                                                 c10::IntArrayRef in_shape,
                                                 c10::IntArrayRef out_shape,
                                                 c10::IntArrayRef kernel,
                                                 c10::IntArrayRef stride,
                                                 c10::IntArrayRef padding,
                                                 c10::IntArrayRef dilation, bool transposed) {
  const ConvGeom g =
      conv_map_geom(coords, in_shape, out_shape, kernel, stride, padding, dilation, transposed);
  const int64_t N = coords.size(0), K = conv_taps(g);
  at::Tensor cand = at::empty({N * K}, coords.options().dtype(at::kLong));
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  launch_conv_candidates_kernel(coords.data_ptr<int32_t>(), N, g, cand.data_ptr<int64_t>(),
                                stream);
  // Sort-based unique: sorted keys give the same output order as the CPU kernel.
  const at::Tensor rows = cand.ne(kNoKey).nonzero().view(-1);
  auto [keys, groups, counts] = at::_unique2(cand.index_select(0, rows), true, true, false);
  const int64_t M = keys.size(0);
  at::Tensor out = at::empty({M, 4}, coords.options());
  launch_keys_to_coords_kernel(keys.data_ptr<int64_t>(), M, g, out.data_ptr<int32_t>(),
                               stream);
  at::Tensor nbr = at::full({M, K}, -1, coords.options());
  launch_conv_map_scatter_kernel(rows.data_ptr<int64_t>(), groups.data_ptr<int64_t>(),
                                 rows.size(0), K, nbr.data_ptr<int32_t>(), stream);
  return {out, nbr};
}

at::Tensor invert_kernel_map_cuda(const at::Tensor& nbr, int64_t n_in) {
  check_nbr(nbr, "invert_kernel_map");
  const int64_t M = nbr.size(0), K = nbr.size(1);
  at::Tensor inv = at::full({n_in, K}, -1, nbr.options());
  launch_invert_kernel_map_kernel(nbr.data_ptr<int32_t>(), M, K, inv.data_ptr<int32_t>(),
                                  at::cuda::getCurrentCUDAStream());
  return inv;
}

}  // namespace

TORCH_LIBRARY_IMPL(sparse3d, CUDA, m) {
  m.impl("kernel_map", &kernel_map_cuda);
  m.impl("conv_map", &conv_map_cuda);
  m.impl("invert_kernel_map", &invert_kernel_map_cuda);
}

}  // namespace sparse3d
