// CPU kernels for deterministic batch-norm statistics: one task per (fixed chunk of rows),
// each writing its own partial statistics, then one pass per channel combining the
// chunks in order (sparse3d/batch_norm.h).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <vector>

#include "sparse3d/batch_norm.h"

namespace sparse3d {
namespace {

void check_rows(const at::Tensor& x, const char* op, const char* name) {
  TORCH_CHECK(x.dim() == 2 && x.is_floating_point(), "sparse3d.", op, ": ", name,
              " must be a float [N, C] tensor, got ", x.scalar_type(), " ", x.sizes());
}

std::tuple<at::Tensor, at::Tensor> batch_norm_stats_cpu(const at::Tensor& values) {
  check_rows(values, "batch_norm_stats", "values");
  const at::Tensor x = values.contiguous();
  const int64_t N = x.size(0), C = x.size(1), chunks = stat_chunks(N);
  at::Tensor mean = at::empty({C}, x.options()), var = at::empty({C}, x.options());
  std::vector<double> means(chunks * C), m2s(chunks * C);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "batch_norm_stats_cpu", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    at::parallel_for(0, chunks, 1, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k)
        chunk_mean_m2(xp, k * kStatChunk, std::min(N, (k + 1) * kStatChunk), C,
                      &means[k * C], &m2s[k * C]);
    });
    scalar_t* mp = mean.data_ptr<scalar_t>();
    scalar_t* vp = var.data_ptr<scalar_t>();
    for (int64_t c = 0; c < C; ++c) {
      double m, v;
      combine_mean_m2(means.data(), m2s.data(), chunks, N, C, c, &m, &v);
      mp[c] = (scalar_t)m;
      vp[c] = (scalar_t)v;
    }
  });
  return {mean, var};
}

std::tuple<at::Tensor, at::Tensor> batch_norm_bwd_reduce_cpu(const at::Tensor& v_out,
                                                             const at::Tensor& values,
                                                             const at::Tensor& mean) {
  check_rows(v_out, "batch_norm_bwd_reduce", "v_out");
  check_rows(values, "batch_norm_bwd_reduce", "values");
  TORCH_CHECK(v_out.sizes() == values.sizes() && mean.dim() == 1 &&
                  mean.size(0) == values.size(1),
              "sparse3d.batch_norm_bwd_reduce: need v_out and values [N, C] and mean [C], got ",
              v_out.sizes(), ", ", values.sizes(), ", ", mean.sizes());
  const at::Tensor g = v_out.contiguous(), x = values.contiguous(), mu = mean.contiguous();
  const int64_t N = x.size(0), C = x.size(1), chunks = stat_chunks(N);
  at::Tensor sum_v = at::empty({C}, x.options()), sum_vx = at::empty({C}, x.options());
  std::vector<double> a(chunks * C), b(chunks * C);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "batch_norm_bwd_reduce_cpu", [&] {
    const scalar_t* gp = g.data_ptr<scalar_t>();
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* mp = mu.data_ptr<scalar_t>();
    at::parallel_for(0, chunks, 1, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k)
        chunk_grad_sums(gp, xp, mp, k * kStatChunk, std::min(N, (k + 1) * kStatChunk), C,
                        &a[k * C], &b[k * C]);
    });
    scalar_t* sv = sum_v.data_ptr<scalar_t>();
    scalar_t* svx = sum_vx.data_ptr<scalar_t>();
    for (int64_t c = 0; c < C; ++c) combine_grad_sums(a.data(), b.data(), chunks, C, c, sv, svx);
  });
  return {sum_v, sum_vx};
}

}  // namespace

TORCH_LIBRARY_IMPL(sparse3d, CPU, m) {
  m.impl("batch_norm_stats", &batch_norm_stats_cpu);
  m.impl("batch_norm_bwd_reduce", &batch_norm_bwd_reduce_cpu);
}

}  // namespace sparse3d
