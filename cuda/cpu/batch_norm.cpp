// CPU kernels for deterministic batch-norm statistics: one task per (fixed chunk of rows),
// each writing its own partial statistics, then one pass per channel combining the
// chunks in order (sparse3d/batch_norm.h).
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "../glue/batch_norm_args.h"
#include "cpu_features.h"
#include "parallel.h"
#include "sparse3d/batch_norm.h"

namespace sparse3d {
namespace {

void check_rows(const at::Tensor& x, const char* op, const char* name) {
  TORCH_CHECK(x.dim() == 2 && x.is_floating_point(), "sparse3d.", op, ": ", name,
              " must be a float [N, C] tensor, got ", x.scalar_type(), " ", x.sizes());
}

#if defined(__x86_64__)
// The header's chunk loops compiled for AVX-512. Each channel keeps its own accumulator
// and row order (the vectors run across channels, and ISO C++ builds do not contract into
// FMA), so the result is bit for bit the portable loop's.
SP3D_AVX512 void chunk_mean_m2_avx512(const float* x, int64_t r0, int64_t r1, int64_t C,
                                      double* mean, double* m2) {
  chunk_mean_m2(x, r0, r1, C, mean, m2);
}

SP3D_AVX512 void chunk_grad_sums_avx512(const float* v, const float* x, const float* mean,
                                        int64_t r0, int64_t r1, int64_t C, double* sum_v,
                                        double* sum_vx) {
  chunk_grad_sums(v, x, mean, r0, r1, C, sum_v, sum_vx);
}
#endif

template <typename scalar_t>
void chunk_mean_m2_fast(const scalar_t* x, int64_t r0, int64_t r1, int64_t C, double* mean,
                        double* m2) {
#if defined(__x86_64__)
  if constexpr (std::is_same_v<scalar_t, float>)
    if (cpu_has_avx512()) return chunk_mean_m2_avx512(x, r0, r1, C, mean, m2);
#endif
  chunk_mean_m2(x, r0, r1, C, mean, m2);
}

template <typename scalar_t>
void chunk_grad_sums_fast(const scalar_t* v, const scalar_t* x, const scalar_t* mean,
                          int64_t r0, int64_t r1, int64_t C, double* sum_v, double* sum_vx) {
#if defined(__x86_64__)
  if constexpr (std::is_same_v<scalar_t, float>)
    if (cpu_has_avx512()) return chunk_grad_sums_avx512(v, x, mean, r0, r1, C, sum_v, sum_vx);
#endif
  chunk_grad_sums(v, x, mean, r0, r1, C, sum_v, sum_vx);
}

std::tuple<at::Tensor, at::Tensor> batch_norm_stats_cpu(const at::Tensor& values) {
  check_rows(values, "batch_norm_stats", "values");
  const at::Tensor x = values.contiguous();
  const int64_t N = x.size(0), C = x.size(1), chunks = stat_chunks(N);
  at::Tensor mean = at::empty({C}, x.options()), var = at::empty({C}, x.options());
  std::vector<double> means(chunks * C), m2s(chunks * C);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "batch_norm_stats_cpu", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    parallel_for(0, chunks, 1, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k)
        chunk_mean_m2_fast(xp, k * kStatChunk, std::min(N, (k + 1) * kStatChunk), C,
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
    parallel_for(0, chunks, 1, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k)
        chunk_grad_sums_fast(gp, xp, mp, k * kStatChunk, std::min(N, (k + 1) * kStatChunk),
                             C, &a[k * C], &b[k * C]);
    });
    scalar_t* sv = sum_v.data_ptr<scalar_t>();
    scalar_t* svx = sum_vx.data_ptr<scalar_t>();
    for (int64_t c = 0; c < C; ++c) combine_grad_sums(a.data(), b.data(), chunks, C, c, sv, svx);
  });
  return {sum_v, sum_vx};
}

// out[r, c] = affine_act(x[r, c], scale[c], shift[c], residual[r, c]) over rows [r0, r1);
// the residual branch is a template argument so both loops vectorise.
template <typename scalar_t, bool kResidual>
void affine_act_rows(const scalar_t* x, const scalar_t* scale, const scalar_t* shift,
                     const scalar_t* residual, bool relu, int64_t r0, int64_t r1, int64_t C,
                     scalar_t* out) {
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t c = 0; c < C; ++c) {
      const int64_t e = r * C + c;
      out[e] = affine_act(x[e], scale[c], shift[c], kResidual ? residual[e] : scalar_t(0), relu);
    }
}

at::Tensor affine_act_cpu(const at::Tensor& values, const at::Tensor& scale,
                          const at::Tensor& shift, const std::optional<at::Tensor>& residual,
                          bool relu) {
  check_affine_act_args(values, scale, shift, residual);
  const at::Tensor x = values.contiguous(), s = scale.contiguous(), b = shift.contiguous();
  const at::Tensor res = residual.has_value() ? residual->contiguous() : at::Tensor();
  const int64_t N = x.size(0), C = x.size(1);
  at::Tensor out = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "affine_act_cpu", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* sp = s.data_ptr<scalar_t>();
    const scalar_t* bp = b.data_ptr<scalar_t>();
    const scalar_t* rp = res.defined() ? res.data_ptr<scalar_t>() : nullptr;
    scalar_t* op = out.data_ptr<scalar_t>();
    parallel_for(0, N, std::max<int64_t>(1, 16384 / std::max<int64_t>(C, 1)), [&](int64_t r0, int64_t r1) {
      if (rp != nullptr) affine_act_rows<scalar_t, true>(xp, sp, bp, rp, relu, r0, r1, C, op);
      else affine_act_rows<scalar_t, false>(xp, sp, bp, rp, relu, r0, r1, C, op);
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(sparse3d, CPU, m) {
  m.impl("batch_norm_stats", &batch_norm_stats_cpu);
  m.impl("batch_norm_bwd_reduce", &batch_norm_bwd_reduce_cpu);
  m.impl("affine_act", &affine_act_cpu);
}

}  // namespace sparse3d
