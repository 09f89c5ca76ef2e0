// CPU kernels of trivector_features. The forward owns one output row per sample and sums
// its tensors in slot order; the backward sorts the (tensor, sample, slot) pairs by tensor
// (a stable sort, so each tensor's samples stay ascending) and lets each tensor's task
// accumulate its own gradient over its pairs in that order. Neither result depends on the
// thread count.
//
// Both run the component loop innermost over contiguous memory: the vectors are read (and
// the backward's gradient accumulated) in a [3, D, R] layout per tensor, so the two values
// around a sample on one axis are two contiguous rows of R components. The loops are
// compiled twice, for baseline x86-64 and for AVX2 without FMA: both round every product
// and sum alike, so the bits do not depend on the path either.
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../glue/trivector_args.h"
#include "cpu_features.h"
#include "parallel.h"
#include "radix_sort.h"

#if defined(__x86_64__)
// AVX2 without FMA: a fused multiply-add would round differently from the baseline path.
#define SP3D_TRIVECTOR_AVX2 __attribute__((target("avx2")))
#endif
// The hot loops are inlined into each target's entry point, to be vectorised for it.
#define SP3D_HOT inline __attribute__((always_inline))

namespace sparse3d {
namespace {

// Samples per parallel grain of the forward, and tensors per grain of the backward.
constexpr int64_t kSampleGrain = 256;
constexpr int64_t kTensorGrain = 4;
// The forward asks for the rows of the sample this many ahead while it computes one: in
// random sample order the rows are cache misses.
constexpr int64_t kPrefetchAhead = 2;
// The backward asks for the point and output gradient of the pair this many ahead.
constexpr int64_t kPrefetchPairs = 4;

// One tensor's vectors [3, R, D] -> [3, D, R] (forward) or back (inverse).
template <typename scalar_t>
void transpose_tensor(const scalar_t* src, int64_t R, int64_t D, scalar_t* dst, bool inverse) {
  for (int64_t a = 0; a < 3; ++a)
    for (int64_t r = 0; r < R; ++r)
      for (int64_t d = 0; d < D; ++d) {
        const int64_t rd = (a * R + r) * D + d, dr = (a * D + d) * R + r;
        dst[inverse ? rd : dr] = src[inverse ? dr : rd];
      }
}

// The rows [R] of the two values around a sample on each axis, in a [3, D, R] array.
template <typename scalar_t>
struct Rows {
  const scalar_t* lo[3];
  const scalar_t* hi[3];
};

template <typename scalar_t>
SP3D_HOT Rows<scalar_t> rows_of(const scalar_t* vt, const int64_t* i0, int64_t D, int64_t R) {
  Rows<scalar_t> rows;
  for (int a = 0; a < 3; ++a) {
    rows.lo[a] = vt + (a * D + i0[a]) * R;
    rows.hi[a] = rows.lo[a] + R;
  }
  return rows;
}

// acc[r] += w * prod_a lerp(lo_a[r], hi_a[r], f_a) for r < R: the reference's float ops.
template <typename scalar_t>
SP3D_HOT void add_sample(const Rows<scalar_t>& v, const scalar_t* f, scalar_t w, int64_t R,
                         scalar_t* __restrict__ acc) {
  const scalar_t* __restrict__ lo0 = v.lo[0];
  const scalar_t* __restrict__ hi0 = v.hi[0];
  const scalar_t* __restrict__ lo1 = v.lo[1];
  const scalar_t* __restrict__ hi1 = v.hi[1];
  const scalar_t* __restrict__ lo2 = v.lo[2];
  const scalar_t* __restrict__ hi2 = v.hi[2];
  for (int64_t r = 0; r < R; ++r) {
    const scalar_t value = trivector_lerp(lo0[r], hi0[r], f[0]) *
                           trivector_lerp(lo1[r], hi1[r], f[1]) *
                           trivector_lerp(lo2[r], hi2[r], f[2]);
    acc[r] += w * value;
  }
}

// The gradient of add_sample with respect to its six rows lo_a / hi_a, given the
// output's gradient g [R]: grad_lo_a[r] += t_a (1 - f_a), grad_hi_a[r] += t_a f_a with t_a =
// g[r] w times the other two axes' lerps. Every row is its own restrict argument: the six
// gradient rows are disjoint, which lets the loop vectorise.
template <typename scalar_t>
SP3D_HOT void add_sample_grad(const scalar_t* __restrict__ lo0, const scalar_t* __restrict__ hi0,
                              const scalar_t* __restrict__ lo1, const scalar_t* __restrict__ hi1,
                              const scalar_t* __restrict__ lo2, const scalar_t* __restrict__ hi2,
                              const scalar_t* f, scalar_t w, const scalar_t* __restrict__ g,
                              int64_t R, scalar_t* __restrict__ glo0, scalar_t* __restrict__ ghi0,
                              scalar_t* __restrict__ glo1, scalar_t* __restrict__ ghi1,
                              scalar_t* __restrict__ glo2, scalar_t* __restrict__ ghi2) {
  const scalar_t f0 = f[0], f1 = f[1], f2 = f[2];
  const scalar_t e0 = scalar_t(1) - f0, e1 = scalar_t(1) - f1, e2 = scalar_t(1) - f2;
  for (int64_t r = 0; r < R; ++r) {
    const scalar_t l0 = trivector_lerp(lo0[r], hi0[r], f0);
    const scalar_t l1 = trivector_lerp(lo1[r], hi1[r], f1);
    const scalar_t l2 = trivector_lerp(lo2[r], hi2[r], f2);
    const scalar_t gw = g[r] * w;
    const scalar_t t0 = gw * (l1 * l2), t1 = gw * (l0 * l2), t2 = gw * (l0 * l1);
    glo0[r] += t0 * e0;
    ghi0[r] += t0 * f0;
    glo1[r] += t1 * e1;
    ghi1[r] += t1 * f1;
    glo2[r] += t2 * e2;
    ghi2[r] += t2 * f2;
  }
}

// The inputs of both passes; vectors: [N, 3, D, R] in the forward (its transposed copy),
// [N, 3, R, D] in the backward.
template <typename scalar_t>
struct Inputs {
  const scalar_t* points;
  const int64_t* index;
  const scalar_t* weights;
  const scalar_t* vectors;
  const scalar_t* centers;
  int64_t K, R, D;
  TrivectorGeom<scalar_t> geom;
};

// Output rows [s0, s1) of the forward.
template <typename scalar_t>
SP3D_HOT void forward_samples(const Inputs<scalar_t>& in, int64_t s0, int64_t s1,
                              scalar_t* out) {
  const int64_t K = in.K, R = in.R, D = in.D, block = 3 * D * R;
  for (int64_t s = s0; s < s1; ++s) {
    if (s + kPrefetchAhead < s1)
      for (int64_t k = 0; k < K; ++k) {
        const int64_t ahead = s + kPrefetchAhead, n = in.index[ahead * K + k];
        if (n < 0) continue;
        int64_t i0[3];
        scalar_t f[3];
        trivector_cell(in.points + 3 * ahead, in.centers + 3 * n, in.geom, i0, f);
        const Rows<scalar_t> rows = rows_of(in.vectors + n * block, i0, D, R);
        for (int a = 0; a < 3; ++a)
          for (int64_t r = 0; r < 2 * R; r += 64 / (int64_t)sizeof(scalar_t))
            __builtin_prefetch(rows.lo[a] + r);
      }
    scalar_t* acc = out + s * R;
    std::fill(acc, acc + R, scalar_t(0));
    for (int64_t k = 0; k < K; ++k) {
      const int64_t n = in.index[s * K + k];
      if (n < 0) continue;
      int64_t i0[3];
      scalar_t f[3];
      trivector_cell(in.points + 3 * s, in.centers + 3 * n, in.geom, i0, f);
      add_sample(rows_of(in.vectors + n * block, i0, D, R), f, in.weights[s * K + k], R, acc);
    }
  }
}

// Tensor n's gradient gn [3, R, D] from its pairs (p = s * K + k) order[0:count], in order;
// vt, gt: scratch [3, D, R].
template <typename scalar_t>
SP3D_HOT void backward_tensor(const Inputs<scalar_t>& in, const scalar_t* v_out, int64_t n,
                              const int64_t* order, int64_t count, scalar_t* vt, scalar_t* gt,
                              scalar_t* gn) {
  const int64_t K = in.K, R = in.R, D = in.D, block = 3 * D * R;
  if (count == 0) {
    std::fill(gn, gn + block, scalar_t(0));
    return;
  }
  transpose_tensor(in.vectors + n * block, R, D, vt, false);
  std::fill(gt, gt + block, scalar_t(0));
  for (int64_t i = 0; i < count; ++i) {
    if (i + kPrefetchPairs < count) {  // the samples of a tensor are scattered in memory
      const int64_t ahead = order[i + kPrefetchPairs] / K;
      __builtin_prefetch(in.points + 3 * ahead);
      for (int64_t r = 0; r < R; r += 64 / (int64_t)sizeof(scalar_t))
        __builtin_prefetch(v_out + ahead * R + r);
    }
    const int64_t pair = order[i], s = pair / K;
    int64_t i0[3];
    scalar_t f[3];
    trivector_cell(in.points + 3 * s, in.centers + 3 * n, in.geom, i0, f);
    const Rows<scalar_t> v = rows_of(vt, i0, D, R);
    scalar_t* glo[3];
    for (int a = 0; a < 3; ++a) glo[a] = gt + (v.lo[a] - vt);  // the same rows of gt
    add_sample_grad(v.lo[0], v.hi[0], v.lo[1], v.hi[1], v.lo[2], v.hi[2], f, in.weights[pair],
                    v_out + s * R, R, glo[0], glo[0] + R, glo[1], glo[1] + R, glo[2], glo[2] + R);
  }
  transpose_tensor(gt, R, D, gn, true);
}

template <typename scalar_t>
void forward_samples_base(const Inputs<scalar_t>& in, int64_t s0, int64_t s1, scalar_t* out) {
  forward_samples(in, s0, s1, out);
}

template <typename scalar_t>
void backward_tensor_base(const Inputs<scalar_t>& in, const scalar_t* v_out, int64_t n,
                          const int64_t* order, int64_t count, scalar_t* vt, scalar_t* gt,
                          scalar_t* gn) {
  backward_tensor(in, v_out, n, order, count, vt, gt, gn);
}

#if defined(__x86_64__)
template <typename scalar_t>
SP3D_TRIVECTOR_AVX2 void forward_samples_avx2(const Inputs<scalar_t>& in, int64_t s0,
                                              int64_t s1, scalar_t* out) {
  forward_samples(in, s0, s1, out);
}

template <typename scalar_t>
SP3D_TRIVECTOR_AVX2 void backward_tensor_avx2(const Inputs<scalar_t>& in,
                                              const scalar_t* v_out, int64_t n,
                                              const int64_t* order, int64_t count,
                                              scalar_t* vt, scalar_t* gt, scalar_t* gn) {
  backward_tensor(in, v_out, n, order, count, vt, gt, gn);
}
#endif

template <typename scalar_t>
Inputs<scalar_t> inputs_of(const TrivectorCall& call, const scalar_t* vectors) {
  return {call.points.data_ptr<scalar_t>(), call.index.data_ptr<int64_t>(),
          call.weights.data_ptr<scalar_t>(), vectors, call.centers.data_ptr<scalar_t>(),
          call.K, call.R, call.D, call.geom<scalar_t>()};
}

at::Tensor trivector_features_cpu(const at::Tensor& points, const at::Tensor& index,
                                  const at::Tensor& weights, const at::Tensor& vectors,
                                  const at::Tensor& centers, double half_size) {
  const TrivectorCall call =
      prepare_trivector(points, index, weights, vectors, centers, half_size, "trivector_features");
  at::Tensor out = trivector_output(call);
  // [N, 3, D, R]: one pass over the vectors, then every sample reads contiguous rows.
  at::Tensor vt = at::empty(call.vectors.sizes(), call.vectors.options());
  AT_DISPATCH_FLOATING_TYPES(call.vectors.scalar_type(), "trivector_features_cpu", [&] {
    const int64_t block = 3 * call.R * call.D;
    const scalar_t* v = call.vectors.data_ptr<scalar_t>();
    scalar_t* t = vt.data_ptr<scalar_t>();
    parallel_for(0, call.N, 16, [&](int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; ++n)
        transpose_tensor(v + n * block, call.R, call.D, t + n * block, false);
    });
    const Inputs<scalar_t> in = inputs_of<scalar_t>(call, t);
    scalar_t* o = out.data_ptr<scalar_t>();
    parallel_for(0, call.S, kSampleGrain, [&](int64_t s0, int64_t s1) {
#if defined(__x86_64__)
      if (cpu_has_avx2()) return forward_samples_avx2(in, s0, s1, o);
#endif
      forward_samples_base(in, s0, s1, o);
    });
  });
  return out;
}

// The (sample, slot) pairs p = s * K + k of every tensor, sorted by tensor with p ascending
// within one: order [P] and offsets [N + 1] (tensor n owns order[offsets[n]:offsets[n + 1]]).
// Slots with index -1 sort after the last tensor.
struct PairsByTensor {
  std::vector<int64_t> order;
  std::vector<int64_t> offsets;
};

PairsByTensor sort_pairs_by_tensor(const int64_t* index, int64_t P, int64_t N) {
  std::vector<uint64_t> keys(P);
  PairsByTensor pairs{std::vector<int64_t>(P), std::vector<int64_t>(N + 1)};
  parallel_for(0, P, 16384, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      keys[p] = index[p] < 0 ? (uint64_t)N : (uint64_t)index[p];
      pairs.order[p] = p;
    }
  });
  radix_sort_pairs(keys, pairs.order, key_bits((uint64_t)N));
  parallel_for(0, N + 1, 1024, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n)
      pairs.offsets[n] = std::lower_bound(keys.begin(), keys.end(), (uint64_t)n) - keys.begin();
  });
  return pairs;
}

at::Tensor trivector_features_bwd_cpu(const at::Tensor& v_out, const at::Tensor& points,
                                      const at::Tensor& index, const at::Tensor& weights,
                                      const at::Tensor& vectors, const at::Tensor& centers,
                                      double half_size) {
  const TrivectorCall call = prepare_trivector(points, index, weights, vectors, centers,
                                               half_size, "trivector_features_bwd");
  auto [g_out, v_vectors] = prepare_trivector_bwd(v_out, call);
  const PairsByTensor pairs =
      sort_pairs_by_tensor(call.index.data_ptr<int64_t>(), call.S * call.K, call.N);
  AT_DISPATCH_FLOATING_TYPES(call.vectors.scalar_type(), "trivector_features_bwd_cpu", [&] {
    const int64_t block = 3 * call.R * call.D;
    const Inputs<scalar_t> in = inputs_of<scalar_t>(call, call.vectors.data_ptr<scalar_t>());
    const scalar_t* g = g_out.data_ptr<scalar_t>();
    scalar_t* gv = v_vectors.data_ptr<scalar_t>();
    // Tensors differ in their number of samples: hand them out dynamically.
    parallel_for_dynamic(call.N, kTensorGrain, [&](const auto& take) {
      std::vector<scalar_t> vt(block), gt(block);  // a tensor's vectors and gradient [3, D, R]
      for (int64_t n0, n1; take(n0, n1);)
        for (int64_t n = n0; n < n1; ++n) {
          const int64_t* order = pairs.order.data() + pairs.offsets[n];
          const int64_t count = pairs.offsets[n + 1] - pairs.offsets[n];
#if defined(__x86_64__)
          if (cpu_has_avx2()) {
            backward_tensor_avx2(in, g, n, order, count, vt.data(), gt.data(), gv + n * block);
            continue;
          }
#endif
          backward_tensor_base(in, g, n, order, count, vt.data(), gt.data(), gv + n * block);
        }
    });
  });
  return v_vectors;
}

}  // namespace

TORCH_LIBRARY_IMPL(sparse3d, CPU, m) {
  m.impl("trivector_features", &trivector_features_cpu);
  m.impl("trivector_features_bwd", &trivector_features_bwd_cpu);
}

}  // namespace sparse3d
