// CUDA glue of the sparse convolution: checks, allocation, and the launchers of
// sparse_conv.cu on the current stream.
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "../glue/conv_args.h"
#include "launch.h"
#include "sparse3d/conv.h"

namespace sparse3d {
namespace {

at::Tensor sparse_conv_cuda(const at::Tensor& feats, const at::Tensor& weight,
                            const at::Tensor& nbr,
                            const std::optional<at::Tensor>& /*inv: backward only*/,
                            const std::optional<at::Tensor>& bias) {
  check_nbr(nbr, "sparse_conv");
  TORCH_CHECK(feats.dim() == 2 && weight.dim() == 3 && weight.size(0) == nbr.size(1) &&
                  weight.size(1) == feats.size(1),
              "sparse3d.sparse_conv: need feats [N, Cin] and weight [K, Cin, Cout], got ",
              feats.sizes(), " and ", weight.sizes());
  check_conv_bias(bias, weight);
  const at::Tensor x = feats.contiguous(), w = weight.contiguous();
  const at::Tensor b = bias.has_value() ? bias->contiguous() : at::Tensor();
  const int64_t M = nbr.size(0), K = nbr.size(1), Cin = x.size(1), Cout = w.size(2);
  at::Tensor out = at::empty({M, Cout}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "sparse_conv_cuda", [&] {
    launch_sparse_conv_kernel<scalar_t>(x.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(),
                                        b.defined() ? b.data_ptr<scalar_t>() : nullptr,
                                        nbr.data_ptr<int32_t>(), M, K, Cin, Cout,
                                        out.data_ptr<scalar_t>(),
                                        at::cuda::getCurrentCUDAStream());
  });
  return out;
}

at::Tensor sparse_conv_bwd_weight_cuda(const at::Tensor& feats, const at::Tensor& v_out,
                                       const at::Tensor& nbr) {
  check_nbr(nbr, "sparse_conv_bwd_weight");
  TORCH_CHECK(feats.dim() == 2 && v_out.dim() == 2 && v_out.size(0) == nbr.size(0),
              "sparse3d.sparse_conv_bwd_weight: need feats [N, Cin] and v_out [M, Cout], got ",
              feats.sizes(), " and ", v_out.sizes());
  const at::Tensor x = feats.contiguous(), g = v_out.contiguous();
  const int64_t M = nbr.size(0), K = nbr.size(1), Cin = x.size(1), Cout = g.size(1);
  at::Tensor partial = at::empty({K, weight_grad_chunks(M), Cin, Cout}, x.options());
  at::Tensor v_weight = at::empty({K, Cin, Cout}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "sparse_conv_bwd_weight_cuda", [&] {
    launch_sparse_conv_bwd_weight_kernel<scalar_t>(
        x.data_ptr<scalar_t>(), g.data_ptr<scalar_t>(), nbr.data_ptr<int32_t>(), M, K, Cin,
        Cout, partial.data_ptr<scalar_t>(), v_weight.data_ptr<scalar_t>(),
        at::cuda::getCurrentCUDAStream());
  });
  return v_weight;
}

}  // namespace

TORCH_LIBRARY_IMPL(sparse3d, CUDA, m) {
  m.impl("sparse_conv", &sparse_conv_cuda);
  m.impl("sparse_conv_bwd_weight", &sparse_conv_bwd_weight_cuda);
}

}  // namespace sparse3d
