// CUDA glue of the volume-rendering weights: the shared checks and allocation
// (../glue/volume_args.h), then the launchers of volume.cu on the current stream.
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <torch/library.h>

#include <cstdint>

#include "../glue/volume_args.h"

typedef struct CUstream_st* cudaStream_t;

namespace sparse3d {

// Launchers defined in volume.cu (pointers, sizes and a stream only, as in launch.h).
// Sample arrays are [S], ray arrays [R]; offsets int64 [R + 1].
template <typename scalar_t>
void launch_volume_weights_kernel(const scalar_t* sigmas, const scalar_t* deltas,
                                  const int64_t* offsets, int64_t R, scalar_t min_t,
                                  scalar_t* weights, scalar_t* transmittance,
                                  cudaStream_t stream);
template <typename scalar_t>
void launch_volume_weights_bwd_kernel(const scalar_t* v_weights, const scalar_t* v_transmittance,
                                      const scalar_t* sigmas, const scalar_t* deltas,
                                      const scalar_t* weights, const scalar_t* transmittance,
                                      const int64_t* offsets, int64_t R, scalar_t min_t,
                                      scalar_t* v_sigmas, cudaStream_t stream);

namespace {

std::tuple<at::Tensor, at::Tensor> volume_weights_cuda(const at::Tensor& sigmas,
                                                       const at::Tensor& deltas,
                                                       const at::Tensor& offsets,
                                                       double min_transmittance) {
  VolumeWeightsCall call = prepare_volume_weights(sigmas, deltas, offsets);
  AT_DISPATCH_FLOATING_TYPES(call.sigmas.scalar_type(), "volume_weights_cuda", [&] {
    launch_volume_weights_kernel<scalar_t>(
        call.sigmas.data_ptr<scalar_t>(), call.deltas.data_ptr<scalar_t>(),
        offsets.data_ptr<int64_t>(), call.R, static_cast<scalar_t>(min_transmittance),
        call.weights.data_ptr<scalar_t>(), call.transmittance.data_ptr<scalar_t>(),
        at::cuda::getCurrentCUDAStream());
  });
  return {call.weights, call.transmittance};
}

at::Tensor volume_weights_bwd_cuda(const at::Tensor& v_weights, const at::Tensor& v_transmittance,
                                   const at::Tensor& sigmas, const at::Tensor& deltas,
                                   const at::Tensor& offsets, const at::Tensor& weights,
                                   const at::Tensor& transmittance, double min_transmittance) {
  VolumeWeightsBwdCall call = prepare_volume_weights_bwd(v_weights, v_transmittance, sigmas,
                                                         deltas, offsets, weights, transmittance);
  AT_DISPATCH_FLOATING_TYPES(call.sigmas.scalar_type(), "volume_weights_bwd_cuda", [&] {
    launch_volume_weights_bwd_kernel<scalar_t>(
        call.v_weights.data_ptr<scalar_t>(), call.v_transmittance.data_ptr<scalar_t>(),
        call.sigmas.data_ptr<scalar_t>(), call.deltas.data_ptr<scalar_t>(),
        call.weights.data_ptr<scalar_t>(), call.transmittance.data_ptr<scalar_t>(),
        offsets.data_ptr<int64_t>(), call.R, static_cast<scalar_t>(min_transmittance),
        call.v_sigmas.data_ptr<scalar_t>(), at::cuda::getCurrentCUDAStream());
  });
  return call.v_sigmas;
}

}  // namespace

TORCH_LIBRARY_IMPL(sparse3d, CUDA, m) {
  m.impl("volume_weights", &volume_weights_cuda);
  m.impl("volume_weights_bwd", &volume_weights_bwd_cuda);
}

}  // namespace sparse3d
