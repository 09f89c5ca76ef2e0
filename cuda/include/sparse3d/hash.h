// Open-addressing hash table from non-negative int64 keys to int32 row indices (linear
// probing, capacity a power of two >= 2x the key count, empty slot = kNoKey). The CPU
// fills it serially; the GPU inserts with atomicCAS. Lookups are read-only and run in
// parallel on both.
#pragma once

#include "sparse3d/coords.h"

namespace sparse3d {

// Smallest power of two >= 2 * n (and >= 16).
inline int64_t hash_capacity(int64_t n) {
  int64_t cap = 16;
  while (cap < 2 * n) cap <<= 1;
  return cap;
}

// splitmix64 finaliser: voxel keys of a surface are strided, so identity hashing would
// cluster them into long probe runs.
SP3D_HD inline uint64_t hash_mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

// Row stored under `key`, or -1.
SP3D_HD inline int32_t hash_find(const int64_t* keys, const int32_t* values, int64_t capacity,
                                 int64_t key) {
  if (key < 0) return -1;
  const uint64_t mask = (uint64_t)capacity - 1;
  for (uint64_t slot = hash_mix((uint64_t)key) & mask;; slot = (slot + 1) & mask) {
    const int64_t k = keys[slot];
    if (k == key) return values[slot];
    if (k == kNoKey) return -1;
  }
}

// Serial insert; returns the row already stored under `key` (a duplicate), or -1.
inline int32_t hash_insert_serial(int64_t* keys, int32_t* values, int64_t capacity,
                                  int64_t key, int32_t value) {
  const uint64_t mask = (uint64_t)capacity - 1;
  for (uint64_t slot = hash_mix((uint64_t)key) & mask;; slot = (slot + 1) & mask) {
    if (keys[slot] == key) return values[slot];
    if (keys[slot] == kNoKey) {
      keys[slot] = key;
      values[slot] = value;
      return -1;
    }
  }
}

}  // namespace sparse3d

#if defined(__CUDACC__)
namespace sparse3d {

// Device insert by atomicCAS on the key slot; keys must be unique (a duplicate key would
// leave whichever value was written last).
__device__ inline void hash_insert_device(int64_t* keys, int32_t* values, int64_t capacity,
                                          int64_t key, int32_t value) {
  unsigned long long* slots = reinterpret_cast<unsigned long long*>(keys);
  const uint64_t mask = (uint64_t)capacity - 1;
  for (uint64_t slot = hash_mix((uint64_t)key) & mask;; slot = (slot + 1) & mask) {
    const unsigned long long prev =
        atomicCAS(slots + slot, (unsigned long long)kNoKey, (unsigned long long)key);
    if (prev == (unsigned long long)kNoKey || prev == (unsigned long long)key) {
      values[slot] = value;
      return;
    }
  }
}

}  // namespace sparse3d
#endif

#if !defined(__CUDACC__)
namespace sparse3d {

// Thread-safe CPU insert (compare-and-swap on the key slot). Returns false when `key` is
// already present (a duplicate). Where a key lands depends on the insertion order, but
// what a lookup returns does not, since each key has one value.
inline bool hash_insert_atomic(int64_t* keys, int32_t* values, int64_t capacity, int64_t key,
                               int32_t value) {
  const uint64_t mask = (uint64_t)capacity - 1;
  for (uint64_t slot = hash_mix((uint64_t)key) & mask;; slot = (slot + 1) & mask) {
    int64_t expected = kNoKey;
    if (__atomic_compare_exchange_n(keys + slot, &expected, key, false, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED)) {
      values[slot] = value;
      return true;
    }
    if (expected == key) return false;
  }
}

}  // namespace sparse3d
#endif
