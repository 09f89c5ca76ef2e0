// CUDA glue of the batch-norm ops: checks (affine_act's shared with the CPU glue, in
// ../glue/batch_norm_args.h), allocation of the outputs and of the per-chunk scratch, and
// the launchers of batch_norm.cu on the current stream.
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include "../glue/batch_norm_args.h"
#include "launch.h"
#include "sparse3d/batch_norm.h"

namespace sparse3d {
namespace {

std::tuple<at::Tensor, at::Tensor> batch_norm_stats_cuda(const at::Tensor& values) {
  TORCH_CHECK(values.dim() == 2 && values.is_floating_point(),
              "sparse3d.batch_norm_stats: values must be a float [N, C] tensor, got ",
              values.sizes());
  const at::Tensor x = values.contiguous();
  const int64_t N = x.size(0), C = x.size(1);
  at::Tensor mean = at::empty({C}, x.options()), var = at::empty({C}, x.options());
  at::Tensor scratch = at::empty({2 * stat_chunks(N) * C}, x.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "batch_norm_stats_cuda", [&] {
    launch_batch_norm_stats_kernel<scalar_t>(x.data_ptr<scalar_t>(), N, C,
                                             scratch.data_ptr<double>(),
                                             mean.data_ptr<scalar_t>(), var.data_ptr<scalar_t>(),
                                             at::cuda::getCurrentCUDAStream());
  });
  return {mean, var};
}

std::tuple<at::Tensor, at::Tensor> batch_norm_bwd_reduce_cuda(const at::Tensor& v_out,
                                                              const at::Tensor& values,
                                                              const at::Tensor& mean) {
  TORCH_CHECK(v_out.dim() == 2 && v_out.sizes() == values.sizes() && mean.dim() == 1 &&
                  mean.size(0) == values.size(1),
              "sparse3d.batch_norm_bwd_reduce: need v_out and values [N, C] and mean [C]");
  const at::Tensor g = v_out.contiguous(), x = values.contiguous(), mu = mean.contiguous();
  const int64_t N = x.size(0), C = x.size(1);
  at::Tensor sum_v = at::empty({C}, x.options()), sum_vx = at::empty({C}, x.options());
  at::Tensor scratch = at::empty({2 * stat_chunks(N) * C}, x.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "batch_norm_bwd_reduce_cuda", [&] {
    launch_batch_norm_bwd_reduce_kernel<scalar_t>(
        g.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), mu.data_ptr<scalar_t>(), N, C,
        scratch.data_ptr<double>(), sum_v.data_ptr<scalar_t>(), sum_vx.data_ptr<scalar_t>(),
        at::cuda::getCurrentCUDAStream());
  });
  return {sum_v, sum_vx};
}

at::Tensor affine_act_cuda(const at::Tensor& values, const at::Tensor& scale,
                           const at::Tensor& shift, const std::optional<at::Tensor>& residual,
                           bool relu) {
  check_affine_act_args(values, scale, shift, residual);
  const at::Tensor x = values.contiguous(), s = scale.contiguous(), b = shift.contiguous();
  const at::Tensor res = residual.has_value() ? residual->contiguous() : at::Tensor();
  at::Tensor out = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "affine_act_cuda", [&] {
    launch_affine_act_kernel<scalar_t>(x.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(),
                                       b.data_ptr<scalar_t>(),
                                       res.defined() ? res.data_ptr<scalar_t>() : nullptr, relu,
                                       x.size(0), x.size(1), out.data_ptr<scalar_t>(),
                                       at::cuda::getCurrentCUDAStream());
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(sparse3d, CUDA, m) {
  m.impl("batch_norm_stats", &batch_norm_stats_cuda);
  m.impl("batch_norm_bwd_reduce", &batch_norm_bwd_reduce_cuda);
  m.impl("affine_act", &affine_act_cuda);
}

}  // namespace sparse3d
