// Stable LSD radix sort of (key, value) pairs on the CPU, multi-threaded and deterministic.
//
// Elements are cut into fixed chunks (not one per thread): each pass counts the digits of
// every chunk in parallel, turns the counts into write offsets in (digit, chunk) order,
// and scatters every chunk in parallel to its own offsets. The placement is the stable
// sorted order whatever the thread count, so the result is too.
#pragma once


#include <cstdint>
#include <vector>

#include "parallel.h"

namespace sparse3d {

constexpr int kRadixBits = 11;  // 2048 buckets: three passes cover 33-bit keys
constexpr int64_t kRadixChunk = 1 << 15;

// Number of significant bits of `max_key` (0 for 0).
inline int key_bits(uint64_t max_key) {
  int bits = 0;
  while (bits < 64 && (max_key >> bits) != 0) ++bits;
  return bits;
}

// Sorts keys[0:n] ascending, carrying values along; equal keys keep their order. Only
// the low `bits` bits of the keys are looked at (every key must be < 2^bits).
template <typename Value>
void radix_sort_pairs(std::vector<uint64_t>& keys, std::vector<Value>& values, int bits) {
  const int64_t n = (int64_t)keys.size();
  const int64_t chunks = (n + kRadixChunk - 1) / kRadixChunk;
  constexpr int64_t kBuckets = int64_t(1) << kRadixBits;
  std::vector<uint64_t> keys_tmp(n);
  std::vector<Value> values_tmp(n);
  std::vector<int64_t> offsets(chunks * kBuckets);  // [chunk, digit]
  for (int shift = 0; shift < bits; shift += kRadixBits) {
    const uint64_t* src_k = keys.data();
    const Value* src_v = values.data();
    parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        int64_t* count = offsets.data() + c * kBuckets;
        std::fill(count, count + kBuckets, 0);
        for (int64_t i = c * kRadixChunk; i < std::min(n, (c + 1) * kRadixChunk); ++i)
          ++count[(src_k[i] >> shift) & (kBuckets - 1)];
      }
    });
    int64_t total = 0;  // exclusive prefix over (digit, chunk): stable placement
    for (int64_t d = 0; d < kBuckets; ++d)
      for (int64_t c = 0; c < chunks; ++c) {
        const int64_t count = offsets[c * kBuckets + d];
        offsets[c * kBuckets + d] = total;
        total += count;
      }
    parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        int64_t* next = offsets.data() + c * kBuckets;
        for (int64_t i = c * kRadixChunk; i < std::min(n, (c + 1) * kRadixChunk); ++i) {
          const int64_t dst = next[(src_k[i] >> shift) & (kBuckets - 1)]++;
          keys_tmp[dst] = src_k[i];
          values_tmp[dst] = src_v[i];
        }
      }
    });
    keys.swap(keys_tmp);
    values.swap(values_tmp);
  }
}

}  // namespace sparse3d
