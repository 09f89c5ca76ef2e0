// Box lookup (sparse3d/core/box_lookup.py): which cubes centred on occupied voxels hold a
// point, the K nearest, with inverse-distance weights. Shared by the CPU and CUDA kernels;
// each float op is the one box_lookup_ref (and VoxelGrid.centers) rounds in float32.
#pragma once

#include <math.h>

#include "sparse3d/hash.h"
#include "sparse3d/rounding.h"

typedef struct CUstream_st* cudaStream_t;

namespace sparse3d {

// The placement grid of the boxes and their half-size, in the float32 the reference uses.
struct BoxGrid {
  float lower[3];
  float voxel_size;
  int64_t shape[3];
  float half_size;
};

// The 2 x 2 x 2 voxels around a point are the only ones whose boxes can hold it.
constexpr int kBoxCandidates = 8;

// The K nearest boxes holding point p [3] (nearest first, ties to the lower box number),
// -1 after the last, and their weights 1 / (d + 1e-6) normalised to sum to 1 (summed
// nearest first), 0 after the last. keys / values / capacity: the hash of the occupied
// keys (box n under key occupied[n]).
SP3D_HD inline void box_lookup_point(
    // inputs
    const float* p, const BoxGrid& g, const int64_t* keys, const int32_t* values,
    int64_t capacity, int64_t K,
    // outputs
    int64_t* index,  // [K]
    float* weights   // [K]
) {
  int64_t base[3];  // the voxel whose centre is just below p, per axis
  bool any = true;
  for (int a = 0; a < 3; ++a) {
    const float t = floorf((p[a] - g.lower[a]) / g.voxel_size - 0.5f);
    // Both candidates (base, base + 1) lie outside the grid (or p is not finite).
    if (!(t >= -1.0f && t < (float)g.shape[a])) any = false;
    base[a] = any ? (int64_t)t : 0;
  }
  // The found boxes sorted by (distance, box): insertion into a list of at most 8.
  int32_t box[kBoxCandidates];
  float dist[kBoxCandidates];
  int found = 0;
  for (int c = 0; any && c < kBoxCandidates; ++c) {
    const int64_t cell[3] = {base[0] + (c >> 2), base[1] + ((c >> 1) & 1), base[2] + (c & 1)};
    if (cell[0] < 0 || cell[1] < 0 || cell[2] < 0 || cell[0] >= g.shape[0] ||
        cell[1] >= g.shape[1] || cell[2] >= g.shape[2])
      continue;
    const int32_t n = hash_find(keys, values, capacity, coord_key(0, cell[0], cell[1], cell[2], g.shape));
    if (n < 0) continue;
    float o[3];
    bool inside = true;
    for (int a = 0; a < 3; ++a) {
      const float centre = add_rn(mul_rn((float)cell[a] + 0.5f, g.voxel_size), g.lower[a]);
      o[a] = p[a] - centre;
      inside = inside && fabsf(o[a]) <= g.half_size;
    }
    if (!inside) continue;
    const float d = sqrtf(add_rn(add_rn(mul_rn(o[0], o[0]), mul_rn(o[1], o[1])), mul_rn(o[2], o[2])));
    int j = found++;
    for (; j > 0 && (dist[j - 1] > d || (dist[j - 1] == d && box[j - 1] > n)); --j) {
      box[j] = box[j - 1];
      dist[j] = dist[j - 1];
    }
    box[j] = n;
    dist[j] = d;
  }
  const int kept = found < K ? found : (int)K;
  float total = 0.0f;
  for (int j = 0; j < kept; ++j) {
    weights[j] = 1.0f / (dist[j] + 1e-6f);
    total += weights[j];
  }
  for (int j = 0; j < kept; ++j) {
    index[j] = box[j];
    weights[j] = weights[j] / total;
  }
  for (int64_t j = kept; j < K; ++j) {
    index[j] = -1;
    weights[j] = 0.0f;
  }
}

// --- CUDA launchers (box_lookup.cu)
// keys / values: [capacity] filled with kNoKey / -1; inserts occupied[n] -> n
void launch_box_hash_build_kernel(const int64_t* occupied, int64_t N, int64_t* keys,
                                  int32_t* values, int64_t capacity, cudaStream_t stream);
void launch_box_lookup_kernel(const float* points, int64_t S, const BoxGrid& g,
                              const int64_t* keys, const int32_t* values, int64_t capacity,
                              int64_t K, int64_t* index, float* weights, cudaStream_t stream);

}  // namespace sparse3d
