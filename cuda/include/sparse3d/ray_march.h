// Ray marching through the occupied voxels of a grid (sparse3d/core/ray_march.py), shared by
// the CPU and CUDA kernels.
//
// The reference steps every ray uniformly and keeps step k when the float32 cell of its
// point is occupied. Each axis of that cell is a monotone function of k: every float32
// operation on the way (t from k, o + t * d, minus lower, over voxel_size, floor) rounds
// monotonically. So a ray's steps split into runs of consecutive steps with one cell each,
// and march_ray walks these runs in order like a 3D-DDA (Amanatides & Woo) in step space:
// where an axis's cell next changes is found by a search that starts at the step where the
// exact ray crosses the voxel face. Only one hash lookup per run is made, yet every step's
// cell is the one the reference computes, so the kept steps are the same bit for bit. A DDA
// over the exact ray would not do: where a ray grazes a face (a tiny direction component),
// rounding moves the cell's change by many steps, even into voxels off the exact path.
#pragma once

#include <math.h>

#include "sparse3d/hash.h"
#include "sparse3d/rounding.h"

namespace sparse3d {

// Step count that stands for "no bound": searches over [0, kUnboundedSteps) take at most
// ~124 evaluations, and no real ray has that many steps.
constexpr int64_t kUnboundedSteps = int64_t(1) << 62;

// The grid as VoxelGrid.cells sees it: float32 corner and voxel size.
struct MarchGrid {
  float lower[3];
  float voxel_size;
  float inv_voxel_size;  // float32 1 / voxel_size (see grid_units)
  int64_t shape[3];      // each at most 2^24, so that cells compare exactly as float32
};

// One ray's inputs.
struct MarchRay {
  float origin[3], dir[3];
  float t_start, t_end, jitter, step;
};

// Read-only view of the hash table of the occupied voxels' keys (hash.h).
struct OccupiedTable {
  const int64_t* keys;
  const int32_t* values;
  int64_t capacity;
};

// The batch of rays: pointers to the contiguous float32 inputs.
struct MarchInputs {
  const float* origins;  // [R, 3]
  const float* dirs;     // [R, 3]
  const float* t_start;  // [R]
  const float* t_end;    // [R]
  const float* jitter;   // [R]
  float step;

  SP3D_HD MarchRay ray(int64_t r) const {
    MarchRay m;
    for (int a = 0; a < 3; ++a) {
      m.origin[a] = origins[3 * r + a];
      m.dir[a] = dirs[3 * r + a];
    }
    m.t_start = t_start[r];
    m.t_end = t_end[r];
    m.jitter = jitter[r];
    m.step = step;
    return m;
  }
};

// x / voxel_size as torch computes it for a float32 tensor and a Python float: a division on
// the CPU, but on CUDA a product with the float32 reciprocal (BinaryDivTrueKernel.cu divides
// by a CPU scalar that way). Each device matches the reference run on that device.
SP3D_HD inline float grid_units(float x, const MarchGrid& g) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(x, g.inv_voxel_size);
#else
  return x / g.voxel_size;
#endif
}

// The steps k < the returned count are marched: ceil(max span / step) + 1, as the reference
// sizes its [R, steps] block from the longest ray; max_steps = ceil(max span / step) is
// computed by ATen ops (so that it rounds as the reference), inf or nan means no bound.
SP3D_HD inline int64_t march_step_count(float max_steps) {
  return max_steps < (float)(kUnboundedSteps - 1) ? (int64_t)max_steps + 1 : kUnboundedSteps;
}

// The smallest k in [lo, hi) with pred(k), or hi if none; pred must be monotone (false,
// then true). Gallops from `guess` in [lo, hi], so a good guess costs one or two calls.
template <typename Pred>
SP3D_HD inline int64_t first_step(int64_t lo, int64_t hi, int64_t guess, const Pred& pred) {
  auto test = [&](int64_t k) { return k >= hi || pred(k); };
  int64_t a, b;  // the answer lies in [a, b]; test(b) holds, and test(a - 1) fails if a > lo
  if (test(guess)) {
    a = lo;
    b = guess;
    for (int64_t s = 1; b - s >= lo; s *= 2) {
      if (!test(b - s)) {
        a = b - s + 1;
        break;
      }
      b -= s;
    }
  } else {
    a = guess + 1;
    b = hi;
    for (int64_t s = 1; a + s - 1 < hi; s *= 2) {
      if (test(a + s - 1)) {
        b = a + s - 1;
        break;
      }
      a += s;
    }
  }
  while (a < b) {
    const int64_t m = a + (b - a) / 2;
    if (test(m))
      b = m;
    else
      a = m + 1;
  }
  return b;
}

// ceil(k) clamped to [lo, hi] (nan gives lo).
SP3D_HD inline int64_t clamp_step(double k, int64_t lo, int64_t hi) {
  if (!(k > (double)lo)) return lo;
  if (!(k < (double)hi)) return hi;
  const int64_t i = (int64_t)k;  // k > lo >= 0, so truncation rounds down
  return i < k ? i + 1 : i;
}

// One ray's steps as the reference computes them, and where the exact (real-number) ray
// reaches a given t or voxel face as a fractional step index, which seeds the searches.
struct RayWalk {
  MarchRay r;
  MarchGrid g;
  double k_per_t, k_at_t0;          // exact step of t: t * k_per_t - k_at_t0
  double k_per_cell[3], k_at_cell[3];  // exact step at which cell v of axis a is reached:
                                       // v * k_per_cell[a] + k_at_cell[a] (dir[a] != 0)

  SP3D_HD RayWalk(const MarchRay& ray, const MarchGrid& grid) : r(ray), g(grid) {
    k_per_t = 1.0 / r.step;
    k_at_t0 = r.t_start * k_per_t + r.jitter;
    for (int a = 0; a < 3; ++a) {
      // Moving up an axis, cell v starts at the face lower + v * size; moving down, at the
      // face lower + (v + 1) * size.
      const double per_unit = k_per_t / r.dir[a];
      const double face0 = (double)g.lower[a] + (r.dir[a] < 0 ? g.voxel_size : 0.0);
      k_per_cell[a] = g.voxel_size * per_unit;
      k_at_cell[a] = (face0 - r.origin[a]) * per_unit - k_at_t0;
    }
  }

  // t of step k: (k + jitter) * step + t_start.
  SP3D_HD float t(int64_t k) const {
    return add_rn(mul_rn(add_rn((float)k, r.jitter), r.step), r.t_start);
  }

  // Cell along axis a of step k's point, floor((o + t * d - lower) / voxel_size): an integer
  // as a float (or +-inf / nan, which lie outside every grid).
  SP3D_HD float cell(int a, int64_t k) const {
    const float p = add_rn(r.origin[a], mul_rn(t(k), r.dir[a]));
    return floorf(grid_units(sub_rn(p, g.lower[a]), g));
  }

  // The first step in [0, hi) with t >= t_end (or nan), or hi.
  SP3D_HD int64_t first_past_end(int64_t hi) const {
    return first_step(0, hi, clamp_step(r.t_end * k_per_t - k_at_t0, 0, hi),
                      [&](int64_t k) { return !(t(k) < r.t_end); });
  }

  // The first step in [lo, hi) whose cell along axis a has reached v (>= v moving up the
  // axis, <= v moving down; dir[a] != 0), or hi; `reached` gets that step's cell.
  SP3D_HD int64_t first_at_cell(int a, float v, int64_t lo, int64_t hi, float& reached) const {
    const bool up = r.dir[a] > 0;
    int64_t first = hi;  // the first step seen to reach v: the answer, when there is one
    return first_step(lo, hi, clamp_step(v * k_per_cell[a] + k_at_cell[a], lo, hi),
                      [&](int64_t k) {
                        const float c = cell(a, k);
                        const bool hit = up ? c >= v : c <= v;
                        if (hit && k < first) {
                          first = k;
                          reached = c;
                        }
                        return hit;
                      });
  }

  // The first step in (k, hi) at which the cell along axis a changes from `from`, or hi;
  // `to` gets the new cell.
  SP3D_HD int64_t next_change(int a, float from, int64_t k, int64_t hi, float& to) const {
    if (!(r.dir[a] > 0 || r.dir[a] < 0)) return hi;
    return first_at_cell(a, from + (r.dir[a] > 0 ? 1.0f : -1.0f), k + 1, hi, to);
  }
};

// Walks ray r's first n_steps steps in order and calls emit(walk, k0, k1) for each run
// [k0, k1) of steps with t < t_end whose points lie in one occupied voxel (increasing k;
// walk.t(k) is a step's t); returns the number of steps in these runs.
template <typename Emit>
SP3D_HD inline int64_t march_ray(const MarchRay& r, const MarchGrid& g, const OccupiedTable& occ,
                                 int64_t n_steps, Emit& emit) {
  const RayWalk w(r, g);
  // t grows with k, so the steps with t < t_end are a prefix.
  int64_t k_in = 0, k_out = w.first_past_end(n_steps);
  // The steps inside the grid: an interval per axis, as the cell moves one way along it.
  for (int a = 0; a < 3; ++a) {
    const float last = (float)(g.shape[a] - 1);
    if (r.dir[a] > 0 || r.dir[a] < 0) {
      const bool up = r.dir[a] > 0;
      float reached;  // not needed: the walk starts from all three cells at k_in
      k_in = w.first_at_cell(a, up ? 0.0f : last, k_in, k_out, reached);
      k_out = w.first_at_cell(a, up ? last + 1.0f : -1.0f, k_in, k_out, reached);
    } else {  // the cell is the same at every step (nan: outside)
      const float c = w.cell(a, 0);
      if (!(c >= 0.0f && c <= last)) return 0;
    }
    if (k_in >= k_out) return 0;
  }

  // The runs: next[a] is the first step after the current one at which cell[a] changes, to
  // next_cell[a].
  float cell[3], next_cell[3];
  int64_t next[3];
  for (int a = 0; a < 3; ++a) {
    cell[a] = w.cell(a, k_in);
    next[a] = w.next_change(a, cell[a], k_in, k_out, next_cell[a]);
  }
  int64_t count = 0;
  for (int64_t k = k_in;;) {
    const int64_t end = next[0] < next[1] ? (next[0] < next[2] ? next[0] : next[2])
                                          : (next[1] < next[2] ? next[1] : next[2]);
    const int64_t key =
        coord_key(0, (int64_t)cell[0], (int64_t)cell[1], (int64_t)cell[2], g.shape);
    if (hash_find(occ.keys, occ.values, occ.capacity, key) >= 0) {
      emit(w, k, end);
      count += end - k;
    }
    if (end >= k_out) return count;
    k = end;
    for (int a = 0; a < 3; ++a)
      if (next[a] == k) {
        cell[a] = next_cell[a];
        next[a] = w.next_change(a, cell[a], k, k_out, next_cell[a]);
      }
  }
}

// march_ray's emit for a pass that only counts.
struct SkipSteps {
  SP3D_HD void operator()(const RayWalk&, int64_t, int64_t) const {}
};

// march_ray's emit for a pass that writes the t of the emitted steps, in order.
struct WriteSteps {
  float* out;  // the ray's next sample

  SP3D_HD void operator()(const RayWalk& w, int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) *out++ = w.t(k);
  }
};

}  // namespace sparse3d
