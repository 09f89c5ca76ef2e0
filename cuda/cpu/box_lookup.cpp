// CPU kernel of box_lookup: the hash of the occupied keys is filled serially, then every
// point is looked up on its own (box_lookup_point), so the result is fixed at any thread
// count.
#include <torch/library.h>

#include "../glue/box_lookup_args.h"
#include "parallel.h"

namespace sparse3d {
namespace {

constexpr int64_t kGrain = 1024;

std::tuple<at::Tensor, at::Tensor> box_lookup_cpu(const at::Tensor& points,
                                                  const at::Tensor& occupied,
                                                  at::ArrayRef<double> lower, double voxel_size,
                                                  c10::IntArrayRef shape, double half_size,
                                                  int64_t k) {
  BoxLookupCall call = prepare_box_lookup(points, occupied, lower, voxel_size, shape, half_size, k);
  int64_t* keys = call.keys.data_ptr<int64_t>();
  int32_t* values = call.values.data_ptr<int32_t>();
  const int64_t capacity = call.keys.size(0);
  const int64_t* o = call.occupied.data_ptr<int64_t>();
  for (int64_t n = 0; n < call.N; ++n) hash_insert_serial(keys, values, capacity, o[n], (int32_t)n);
  const float* p = call.points.data_ptr<float>();
  int64_t* index = call.index.data_ptr<int64_t>();
  float* weights = call.weights.data_ptr<float>();
  const int64_t K = call.K;
  parallel_for(0, call.S, kGrain, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s)
      box_lookup_point(p + 3 * s, call.g, keys, values, capacity, K, index + s * K, weights + s * K);
  });
  return {call.index, call.weights};
}

}  // namespace

TORCH_LIBRARY_IMPL(sparse3d, CPU, m) { m.impl("box_lookup", &box_lookup_cpu); }

}  // namespace sparse3d
