// CPU kernels of the volume-rendering weights: one ray per task, its samples in order, so
// every output has one writer and the result does not depend on the thread count.
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>

#include "../glue/volume_args.h"
#include "exp_avx512.h"
#include "parallel.h"
#include "sparse3d/volume.h"

namespace sparse3d {
namespace {

// Samples per parallel grain: rays of a few samples are batched into one grain, since a
// grain per tiny ray would cost more in scheduling than the exps it runs.
constexpr int64_t kGrainSamples = 8192;

// Samples per block of a ray on the vector path: the 16 float lanes of one AVX-512 exp.
constexpr int kVectorBlock = 16;

#if defined(__x86_64__)
struct Avx512Exp {
  void operator()(const float* x, int n, float* out) const { exp_avx512(x, n, out); }
};
#endif

// Calls ray(block, exp_block) with the exps the CPU runs fastest: AVX-512 exps on float32
// samples in blocks of 16 where the CPU has AVX-512, one std::exp per value otherwise. The
// forward and the backward take the same path (one process, one CPU), so the backward's
// replay finds the very stop of its forward.
template <typename scalar_t, typename Ray>
void with_exp_policy(const Ray& ray) {
#if defined(__x86_64__)
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (cpu_has_avx512()) {
      ray(std::integral_constant<int, kVectorBlock>(), Avx512Exp());
      return;
    }
  }
#endif
  ray(std::integral_constant<int, 1>(), ScalarExp<scalar_t>());
}

// Runs fn(r) for every ray r of R rays holding S samples in all, in parallel.
template <typename Fn>
void for_each_ray(int64_t S, int64_t R, const Fn& fn) {
  const int64_t samples_per_ray = std::max<int64_t>(1, S / std::max<int64_t>(1, R));
  parallel_for(0, R, std::max<int64_t>(1, kGrainSamples / samples_per_ray),
                   [&](int64_t r0, int64_t r1) {
                     for (int64_t r = r0; r < r1; ++r) fn(r);
                   });
}

std::tuple<at::Tensor, at::Tensor> volume_weights_cpu(const at::Tensor& sigmas,
                                                      const at::Tensor& deltas,
                                                      const at::Tensor& offsets,
                                                      double min_transmittance) {
  VolumeWeightsCall call = prepare_volume_weights(sigmas, deltas, offsets);
  AT_DISPATCH_FLOATING_TYPES(call.sigmas.scalar_type(), "volume_weights_cpu", [&] {
    const scalar_t* s = call.sigmas.data_ptr<scalar_t>();
    const scalar_t* d = call.deltas.data_ptr<scalar_t>();
    const int64_t* o = offsets.data_ptr<int64_t>();
    scalar_t* w = call.weights.data_ptr<scalar_t>();
    scalar_t* t = call.transmittance.data_ptr<scalar_t>();
    const scalar_t min_t = static_cast<scalar_t>(min_transmittance);
    with_exp_policy<scalar_t>([&](auto block, const auto& exp_block) {
      for_each_ray(call.sigmas.size(0), call.R, [&](int64_t r) {
        volume_weights_ray<scalar_t, block()>(s, d, o[r], o[r + 1], min_t, w, t + r, exp_block);
      });
    });
  });
  return {call.weights, call.transmittance};
}

at::Tensor volume_weights_bwd_cpu(const at::Tensor& v_weights, const at::Tensor& v_transmittance,
                                  const at::Tensor& sigmas, const at::Tensor& deltas,
                                  const at::Tensor& offsets, const at::Tensor& weights,
                                  const at::Tensor& transmittance, double min_transmittance) {
  VolumeWeightsBwdCall call = prepare_volume_weights_bwd(v_weights, v_transmittance, sigmas,
                                                         deltas, offsets, weights, transmittance);
  AT_DISPATCH_FLOATING_TYPES(call.sigmas.scalar_type(), "volume_weights_bwd_cpu", [&] {
    const scalar_t* gw = call.v_weights.data_ptr<scalar_t>();
    const scalar_t* gt = call.v_transmittance.data_ptr<scalar_t>();
    const scalar_t* s = call.sigmas.data_ptr<scalar_t>();
    const scalar_t* d = call.deltas.data_ptr<scalar_t>();
    const scalar_t* w = call.weights.data_ptr<scalar_t>();
    const scalar_t* t = call.transmittance.data_ptr<scalar_t>();
    const int64_t* o = offsets.data_ptr<int64_t>();
    scalar_t* vs = call.v_sigmas.data_ptr<scalar_t>();
    const scalar_t min_t = static_cast<scalar_t>(min_transmittance);
    with_exp_policy<scalar_t>([&](auto block, const auto& exp_block) {
      for_each_ray(call.sigmas.size(0), call.R, [&](int64_t r) {
        volume_weights_ray_bwd<scalar_t, block()>(gw, gt[r], s, d, w, t[r], o[r], o[r + 1], min_t,
                                                   vs, exp_block);
      });
    });
  });
  return call.v_sigmas;
}

}  // namespace

TORCH_LIBRARY_IMPL(sparse3d, CPU, m) {
  m.impl("volume_weights", &volume_weights_cpu);
  m.impl("volume_weights_bwd", &volume_weights_bwd_cpu);
}

}  // namespace sparse3d
