// CPU kernels for kernel maps. Every nbr entry has exactly one writer, so maps do not
// depend on the thread count.
//   kernel_map: nbr of given output sites. Submanifold maps merge sorted keys (half the
//     taps, mirroring the other half, since tap k from o to i is tap K-1-k from i to o);
//     other maps look taps up in an open-addressing hash table filled in parallel by
//     compare-and-swap (a lookup's answer does not depend on where a key landed).
//   conv_map: output sites of a regular conv (unique candidate keys, sorted) and their
//     nbr, both from one radix sort of the (output key, input, tap) candidates.
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "../glue/conv_args.h"
#include "parallel.h"
#include "radix_sort.h"
#include "sparse3d/kernel_map.h"

namespace sparse3d {
namespace {

constexpr int64_t kRowGrain = 512;

struct HostHash {
  std::vector<int64_t> keys;
  std::vector<int32_t> values;
  int64_t capacity = 0;

  explicit HostHash(int64_t n)
      : keys(hash_capacity(n), kNoKey), values(hash_capacity(n), -1), capacity(hash_capacity(n)) {}

  int32_t find(int64_t key) const { return hash_find(keys.data(), values.data(), capacity, key); }
};

// Table of the rows of `coords` ([N, 4]) keyed on `shape`; raises on duplicate sites.
void insert_coords(HostHash& h, const int32_t* coords, int64_t N, const int64_t* shape,
                   const char* op) {
  std::atomic<int64_t> duplicate{-1};
  parallel_for(0, N, 4 * kRowGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int32_t* c = coords + 4 * i;
      if (!hash_insert_atomic(h.keys.data(), h.values.data(), h.capacity,
                              coord_key(c[0], c[1], c[2], c[3], shape), (int32_t)i))
        duplicate.store(i);
    }
  });
  const int64_t d = duplicate.load();
  TORCH_CHECK(d < 0, "sparse3d.", op, ": duplicate input site (", coords[4 * d], ", ",
              coords[4 * d + 1], ", ", coords[4 * d + 2], ", ", coords[4 * d + 3],
              "); input coordinates must be unique");
}

bool is_submanifold(const at::Tensor& in_coords, const at::Tensor& out_coords,
                    const ConvGeom& g) {
  if (!in_coords.is_same(out_coords)) return false;
  for (int d = 0; d < 3; ++d)
    if (g.stride[d] != 1 || g.in_shape[d] != g.out_shape[d] || g.kernel[d] % 2 == 0 ||
        g.padding[d] != g.kernel[d] / 2 * g.dilation[d])
      return false;
  return true;
}

// Keys of the rows with the spatial axes taken in the order `axes` (a permutation of
// 0, 1, 2); raises on a negative batch index.
std::vector<int64_t> axis_order_keys(const int32_t* coords, int64_t N, const int64_t* shape,
                                     const int* axes) {
  std::vector<int64_t> keys(N);
  std::atomic<bool> negative{false};
  parallel_for(0, N, 4 * kRowGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int32_t* c = coords + 4 * i;
      keys[i] = (((int64_t)c[0] * shape[axes[0]] + c[1 + axes[0]]) * shape[axes[1]] +
                 c[1 + axes[1]]) * shape[axes[2]] + c[1 + axes[2]];
      if (keys[i] < 0) negative.store(true);
    }
  });
  TORCH_CHECK(!negative.load(), "sparse3d.kernel_map: coords have a negative batch index");
  return keys;
}

bool strictly_increasing(const std::vector<int64_t>& keys) {
  for (size_t i = 1; i < keys.size(); ++i)
    if (keys[i - 1] >= keys[i]) return false;
  return true;
}

// Submanifold map by sorted merge: with the keys sorted, the keys of one tap's neighbours
// (key + delta, for the rows whose neighbour lies inside the grid) are sorted too, so each
// tap is a linear merge of two sorted sequences. Taps before the centre are merged, the
// centre is the row itself, and taps after it are mirrors (tap k from o to i is tap
// K-1-k from i to o). Rows are split into fixed chunks, each owning its merge results.
//
// The key's axis order is free: rows already sorted by (batch, c0, c1, c2) or by (batch,
// c2, c1, c0) (a voxelizer's (x, y, z) order read as OpenPCDet's (z, y, x)) are merged in
// place, with sequential reads; other inputs are radix-sorted first.
void fill_submanifold_map(const int32_t* coords, int64_t N, const ConvGeom& g, int32_t* nbr) {
  const int64_t K = conv_taps(g), centre = K / 2;
  int axes[3] = {0, 1, 2};
  std::vector<int64_t> keys = axis_order_keys(coords, N, g.in_shape, axes);
  bool sorted = strictly_increasing(keys);
  if (!sorted) {
    const int reversed[3] = {2, 1, 0};
    std::vector<int64_t> reversed_keys = axis_order_keys(coords, N, g.in_shape, reversed);
    if (strictly_increasing(reversed_keys)) {
      std::copy(reversed, reversed + 3, axes);
      keys.swap(reversed_keys);
      sorted = true;
    }
  }
  std::vector<int32_t> order(N);  // rows by ascending key
  for (int64_t i = 0; i < N; ++i) order[i] = (int32_t)i;
  if (!sorted) {
    std::vector<uint64_t> unsigned_keys(keys.begin(), keys.end());
    radix_sort_pairs(unsigned_keys, order,
                     key_bits(*std::max_element(unsigned_keys.begin(), unsigned_keys.end())));
    std::copy(unsigned_keys.begin(), unsigned_keys.end(), keys.begin());
  }
  for (int64_t i = 1; i < N; ++i)
    TORCH_CHECK(keys[i - 1] != keys[i], "sparse3d.kernel_map: duplicate input site (",
                coords[4 * order[i]], ", ", coords[4 * order[i] + 1], ", ",
                coords[4 * order[i] + 2], ", ", coords[4 * order[i] + 3],
                "); input coordinates must be unique");
  parallel_for(0, N, 4 * kRowGrain, [&](int64_t i0, int64_t i1) {
    std::fill(nbr + i0 * K, nbr + i1 * K, -1);
    for (int64_t i = i0; i < i1; ++i) nbr[i * K + centre] = (int32_t)i;
  });
  // Tap offsets per axis and the key delta of each tap before the centre.
  std::vector<int64_t> delta(centre), off(3 * centre);
  for (int64_t k = 0; k < centre; ++k) {
    int64_t rest = k;
    for (int d = 2; d >= 0; --d) {
      off[3 * k + d] = (rest % g.kernel[d]) * g.dilation[d] - g.padding[d];
      rest /= g.kernel[d];
    }
    const int64_t* o = &off[3 * k];
    delta[k] = (o[axes[0]] * g.in_shape[axes[1]] + o[axes[1]]) * g.in_shape[axes[2]] + o[axes[2]];
  }
  parallel_for(0, N, 4 * kRowGrain, [&](int64_t s0, int64_t s1) {
    for (int64_t k = 0; k < centre; ++k) {
      // Merge position: the first key >= the chunk's first query.
      int64_t j = std::lower_bound(keys.begin(), keys.end(), keys[s0] + delta[k]) - keys.begin();
      for (int64_t s = s0; s < s1; ++s) {
        const int64_t q = keys[s] + delta[k];
        while (j < N && keys[j] < q) ++j;
        if (j == N) break;
        if (keys[j] != q) continue;
        const int32_t* c = coords + 4 * order[s];
        bool inside = true;  // a key match across a grid edge is a different site
        for (int d = 0; d < 3; ++d) {
          const int64_t v = c[d + 1] + off[3 * k + d];
          inside = inside && v >= 0 && v < g.in_shape[d];
        }
        if (!inside) continue;
        const int64_t o = order[s], i = order[j];
        nbr[o * K + k] = (int32_t)i;
        nbr[i * K + (K - 1 - k)] = (int32_t)o;  // the one writer of this entry
      }
    }
  });
}

at::Tensor kernel_map_cpu(const at::Tensor& in_coords, const at::Tensor& out_coords,
                          c10::IntArrayRef in_shape, c10::IntArrayRef out_shape,
                          c10::IntArrayRef kernel, c10::IntArrayRef stride,
                          c10::IntArrayRef padding, c10::IntArrayRef dilation) {
  const ConvGeom g =
      kernel_map_geom(in_coords, out_coords, in_shape, out_shape, kernel, stride, padding, dilation);
  const int64_t N = in_coords.size(0), M = out_coords.size(0), K = conv_taps(g);
  at::Tensor nbr = at::empty({M, K}, in_coords.options());
  const int32_t* oc = out_coords.data_ptr<int32_t>();
  int32_t* m = nbr.data_ptr<int32_t>();
  if (is_submanifold(in_coords, out_coords, g)) {
    fill_submanifold_map(oc, M, g, m);
    return nbr;
  }
  HostHash h(N);
  insert_coords(h, in_coords.data_ptr<int32_t>(), N, g.in_shape, "kernel_map");
  parallel_for(0, M, kRowGrain, [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o)
      kernel_map_row(oc + 4 * o, g, h.keys.data(), h.values.data(), h.capacity, m + o * K);
  });
  return nbr;
}

// Output sites of a regular (dilating) or transposed sparse conv, sorted by key, and its
// kernel map.
// Every (input, tap) that reaches an output site becomes a candidate (output key, input
// row * K + tap); a stable radix sort by key groups the candidates of each output site,
// in ascending key order, so the groups are the output rows and each group fills its own
// nbr row. No hash table: the candidates (a few per input) are sorted in a few linear
// passes.
std::tuple<at::Tensor, at::Tensor> conv_map_cpu(const at::Tensor& coords,
                                                c10::IntArrayRef in_shape,
                                                c10::IntArrayRef out_shape,
                                                c10::IntArrayRef kernel,
                                                c10::IntArrayRef stride,
                                                c10::IntArrayRef padding,
                                                c10::IntArrayRef dilation, bool transposed) {
  const ConvGeom g =
      conv_map_geom(coords, in_shape, out_shape, kernel, stride, padding, dilation, transposed);
  const int64_t N = coords.size(0), K = conv_taps(g);
  const int32_t* c = coords.data_ptr<int32_t>();
  const int64_t chunks = (N + kRowGrain - 1) / kRowGrain;
  // Candidates of each chunk of input rows, in row then tap order, then concatenated.
  std::vector<std::vector<uint64_t>> chunk_keys(chunks);
  std::vector<std::vector<int64_t>> chunk_sources(chunks);
  std::vector<int64_t> chunk_min(chunks, 0), chunk_max(chunks, 0);
  parallel_for(0, chunks, 1, [&](int64_t t0, int64_t t1) {
    std::vector<int64_t> keys(K), taps(K);
    for (int64_t t = t0; t < t1; ++t) {
      int64_t lo = 0, hi = 0;
      for (int64_t i = t * kRowGrain; i < std::min(N, (t + 1) * kRowGrain); ++i) {
        const int64_t n = conv_output_sites(c + 4 * i, g, keys.data(), taps.data());
        for (int64_t j = 0; j < n; ++j) {
          lo = std::min(lo, keys[j]);
          hi = std::max(hi, keys[j]);
          chunk_keys[t].push_back((uint64_t)keys[j]);
          chunk_sources[t].push_back(i * K + taps[j]);
        }
      }
      chunk_min[t] = lo;
      chunk_max[t] = hi;
    }
  });
  std::vector<int64_t> offset(chunks + 1, 0);
  for (int64_t t = 0; t < chunks; ++t) offset[t + 1] = offset[t] + (int64_t)chunk_keys[t].size();
  const int64_t P = offset[chunks];
  std::vector<uint64_t> keys(P);
  std::vector<int64_t> sources(P);  // input row * K + tap
  parallel_for(0, chunks, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      std::copy(chunk_keys[t].begin(), chunk_keys[t].end(), keys.begin() + offset[t]);
      std::copy(chunk_sources[t].begin(), chunk_sources[t].end(), sources.begin() + offset[t]);
    }
  });
  const int64_t min_key = chunks ? *std::min_element(chunk_min.begin(), chunk_min.end()) : 0;
  TORCH_CHECK(min_key >= 0, "sparse3d.conv_map: coords have a negative batch index");
  const int64_t max_key = chunks ? *std::max_element(chunk_max.begin(), chunk_max.end()) : 0;
  radix_sort_pairs(keys, sources, key_bits((uint64_t)max_key));
  std::vector<int64_t> group_start;  // first candidate of each output row, then P
  for (int64_t j = 0; j < P; ++j)
    if (j == 0 || keys[j] != keys[j - 1]) group_start.push_back(j);
  const int64_t M = (int64_t)group_start.size();
  group_start.push_back(P);
  TORCH_CHECK(M < INT32_MAX, "sparse3d.conv_map: at most 2^31 - 1 output rows, got ", M);
  at::Tensor out = at::empty({M, 4}, coords.options());
  at::Tensor nbr = at::empty({M, K}, coords.options());
  int32_t* oc = out.data_ptr<int32_t>();
  int32_t* m = nbr.data_ptr<int32_t>();
  // Each output row is one group, filled by one task. Two inputs reach the same output
  // through the same tap only when they share a site.
  std::atomic<int64_t> duplicate{-1};
  parallel_for(0, M, kRowGrain, [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o) {
      key_coord((int64_t)keys[group_start[o]], g.out_shape, oc + 4 * o);
      int32_t* row = m + o * K;
      std::fill(row, row + K, -1);
      for (int64_t j = group_start[o]; j < group_start[o + 1]; ++j) {
        const int64_t i = sources[j] / K, k = sources[j] % K;
        if (row[k] != -1) duplicate.store(i);
        row[k] = (int32_t)i;
      }
    }
  });
  const int64_t d = duplicate.load();
  TORCH_CHECK(d < 0, "sparse3d.conv_map: duplicate input site (", c[4 * d], ", ",
              c[4 * d + 1], ", ", c[4 * d + 2], ", ", c[4 * d + 3],
              "); input coordinates must be unique");
  return {out, nbr};
}

// Transposed map: inv[i, k] = o where nbr[o, k] = i. A conv map sends each (input, tap)
// to at most one output, so every inv entry has at most one writer.
at::Tensor invert_kernel_map_cpu(const at::Tensor& nbr, int64_t n_in) {
  check_nbr(nbr, "invert_kernel_map");
  const int64_t M = nbr.size(0), K = nbr.size(1);
  TORCH_CHECK(M < INT32_MAX, "sparse3d.invert_kernel_map: at most 2^31 - 1 rows, got ", M);
  at::Tensor inv = at::full({n_in, K}, -1, nbr.options());
  const int32_t* m = nbr.data_ptr<int32_t>();
  int32_t* v = inv.data_ptr<int32_t>();
  std::atomic<int64_t> bad{-1};
  parallel_for(0, M, kRowGrain, [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o)
      for (int64_t k = 0; k < K; ++k) {
        const int32_t i = m[o * K + k];
        if (i >= n_in) bad.store(o * K + k);
        else if (i >= 0) v[(int64_t)i * K + k] = (int32_t)o;
      }
  });
  TORCH_CHECK(bad.load() < 0, "sparse3d.invert_kernel_map: nbr refers to row ",
              bad.load() < 0 ? 0 : m[bad.load()], " but n_in is ", n_in);
  return inv;
}

}  // namespace

TORCH_LIBRARY_IMPL(sparse3d, CPU, m) {
  m.impl("kernel_map", &kernel_map_cpu);
  m.impl("conv_map", &conv_map_cpu);
  m.impl("invert_kernel_map", &invert_kernel_map_cpu);
}

}  // namespace sparse3d
