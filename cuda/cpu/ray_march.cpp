// CPU kernel of march_rays: each ray's runs of steps in occupied voxels are walked with
// march_ray (ray_march.h), once: pieces of consecutive rays buffer their samples while
// counting them, then a scan of the counts places each piece's block in the output. Which
// thread walks a piece does not change its block, so the result does not depend on the
// thread count.
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../glue/ray_march_args.h"
#include "parallel.h"

namespace sparse3d {
namespace {

// Rays per piece of work: rays cost from a few evaluations (a miss) to a few hundred
// (a long walk through the grid), so pieces are handed out dynamically.
constexpr int64_t kRayGrain = 64;

// march_ray's emit: appends the t of the emitted steps to a buffer.
struct BufferSteps {
  std::vector<float>& out;

  void operator()(const RayWalk& w, int64_t k0, int64_t k1) {
    TORCH_CHECK(k1 < kUnboundedSteps, "sparse3d.march_rays: a ray's samples never end (a ray "
                "without direction and an infinite t_end?)");
    for (int64_t k = k0; k < k1; ++k) out.push_back(w.t(k));
  }
};

std::tuple<at::Tensor, at::Tensor> march_rays_cpu(
    const at::Tensor& origins, const at::Tensor& dirs, const at::Tensor& t_start,
    const at::Tensor& t_end, const at::Tensor& jitter, const at::Tensor& occupied,
    at::ArrayRef<double> lower, double voxel_size, c10::IntArrayRef shape, double step) {
  MarchRaysCall call = prepare_march_rays(origins, dirs, t_start, t_end, jitter, occupied,
                                          lower, voxel_size, shape, step);
  const at::TensorOptions float_options = origins.options().dtype(at::kFloat);
  if (call.R == 0 || call.M == 0) return {call.offsets, at::empty({0}, float_options)};

  // The occupied voxels' table, filled in parallel (a lookup's answer does not depend on
  // where a key landed); negative keys are no voxel of the grid.
  const int64_t capacity = hash_capacity(call.M);
  std::vector<int64_t> keys(capacity, kNoKey);
  std::vector<int32_t> values(capacity, -1);
  const int64_t* occ = call.occupied.data_ptr<int64_t>();
  parallel_for(0, call.M, 4096, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      if (occ[i] >= 0) hash_insert_atomic(keys.data(), values.data(), capacity, occ[i], (int32_t)i);
  });
  const OccupiedTable table{keys.data(), values.data(), capacity};
  const int64_t n_steps = march_step_count(call.max_steps.item<float>());

  // One walk per ray: each piece of rays buffers its samples while counting them; they are
  // a contiguous block of the output, at the offset of the piece's first ray.
  int64_t* offsets = call.offsets.data_ptr<int64_t>();
  std::vector<std::vector<float>> blocks((call.R + kRayGrain - 1) / kRayGrain);
  parallel_for_dynamic(call.R, kRayGrain, [&](auto take) {
    int64_t r0, r1;
    while (take(r0, r1)) {
      BufferSteps buffer{blocks[r0 / kRayGrain]};
      for (int64_t r = r0; r < r1; ++r)
        offsets[r + 1] = march_ray(call.in.ray(r), call.grid, table, n_steps, buffer);
    }
  });
  for (int64_t r = 0; r < call.R; ++r) offsets[r + 1] += offsets[r];
  at::Tensor t = at::empty({offsets[call.R]}, float_options);
  float* out = t.data_ptr<float>();
  parallel_for(0, (int64_t)blocks.size(), 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      std::copy(blocks[b].begin(), blocks[b].end(), out + offsets[b * kRayGrain]);
  });
  return {call.offsets, t};
}

}  // namespace

TORCH_LIBRARY_IMPL(sparse3d, CPU, m) { m.impl("march_rays", &march_rays_cpu); }

}  // namespace sparse3d
