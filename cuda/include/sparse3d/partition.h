// DSVT window and set partition, per-element math shared by the CPU and CUDA kernels.
//
// A voxel (b, x, y, z) is shifted by `shift`, falls in window floor(shifted / window) and
// sits at in-window coordinates shifted % window. Inside a window its rank follows one of
// two orderings (0: y-major, 1: x-major). A window with n voxels gets n_sets = ceil(n / S)
// sets of S slots; slot t of its set j holds the voxel of rank
// floor((j * S + t) * n / (n_sets * S)), so every voxel is used and the slack is filled by
// repeating voxels in consecutive slots.
#pragma once

#include "sparse3d/common.h"

namespace sparse3d {

struct WindowGeom {
  int64_t shape[3];   // sparse shape (X, Y, Z)
  int64_t window[3];  // window size per axis
  int64_t shift[3];   // shift per axis, 0 <= shift < window
  int64_t n_win[3];   // windows per axis and sample: ceil(shape / window) + 1
};

// Cells per window.
SP3D_HD inline int64_t window_volume(const WindowGeom& g) {
  return g.window[0] * g.window[1] * g.window[2];
}

// Window of one voxel and its sort keys window_id * volume + in-window rank key, for the
// y-major (y, x, z) and x-major (x, y, z) orderings. Keys sort voxels by window first.
SP3D_HD inline void voxel_window_keys(
    // inputs
    const int32_t* coord,  // [4] (batch, x, y, z)
    const WindowGeom& g,
    // outputs
    int32_t* in_win,  // [3] in-window coordinates
    int64_t* key_y, int64_t* key_x) {
  int64_t w[3], c[3];
  for (int d = 0; d < 3; ++d) {
    const int64_t s = (int64_t)coord[d + 1] + g.shift[d];
    w[d] = s / g.window[d];
    c[d] = s % g.window[d];
    in_win[d] = (int32_t)c[d];
  }
  const int64_t win_id = (((int64_t)coord[0] * g.n_win[0] + w[0]) * g.n_win[1] + w[1]) *
                             g.n_win[2] + w[2];
  const int64_t base = win_id * window_volume(g);
  *key_y = base + (c[1] * g.window[0] + c[0]) * g.window[2] + c[2];
  *key_x = base + (c[0] * g.window[1] + c[1]) * g.window[2] + c[2];
}

// In-window rank held by flat slot f = j * S + t of a window with n voxels in n_sets sets.
SP3D_HD inline int64_t slot_rank(int64_t f, int64_t n, int64_t n_sets, int64_t S) {
  return f * n / (n_sets * S);
}

// Fills one set: its S voxel indices, its key mask (slot repeats the previous slot of the
// same set) and, for every voxel whose first slot in the window lies in this set, that
// slot's flat index into [num_sets * S]. Each voxel has exactly one first slot, so every
// first_slot entry has exactly one writer.
SP3D_HD inline void fill_set(
    // inputs
    const int64_t* order,  // voxel rows of this window in rank order, [n]
    int64_t n, int64_t n_sets, int64_t j, int64_t S, int64_t set_row,
    // outputs
    int64_t* inds,        // [S]
    bool* mask,           // [S]
    int64_t* first_slot   // [N]
) {
  for (int64_t t = 0; t < S; ++t) {
    const int64_t f = j * S + t;
    const int64_t r = slot_rank(f, n, n_sets, S);
    const bool repeat = f > 0 && slot_rank(f - 1, n, n_sets, S) == r;
    inds[t] = order[r];
    mask[t] = repeat && t > 0;
    if (!repeat) first_slot[order[r]] = set_row * S + t;
  }
}

}  // namespace sparse3d
