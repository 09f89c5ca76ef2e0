// Groups rows by int64 key on the CPU: the unique keys in ascending order and each row's
// group. The hash table is filled serially and the groups are numbered by sorted key, so
// the result is fixed whatever the thread count.
#pragma once


#include <algorithm>
#include <vector>

#include "parallel.h"
#include "sparse3d/hash.h"

namespace sparse3d {

struct KeyGroups {
  std::vector<int64_t> keys;   // [V] unique keys, ascending
  std::vector<int32_t> group;  // [P] group of each row, -1 for kNoKey rows
};

inline KeyGroups group_keys(const int64_t* keys, int64_t P) {
  KeyGroups out;
  int64_t capacity = hash_capacity(std::min<int64_t>(P, 1 << 20));
  std::vector<int64_t> table(capacity, kNoKey);
  std::vector<int32_t> values(capacity, 0);
  for (int64_t i = 0; i < P; ++i) {
    const int64_t key = keys[i];
    if (key == kNoKey) continue;
    if ((int64_t)out.keys.size() * 2 >= capacity) {  // keep the load factor <= 1/2
      capacity *= 2;
      table.assign(capacity, kNoKey);
      values.assign(capacity, 0);
      for (int64_t u : out.keys) hash_insert_serial(table.data(), values.data(), capacity, u, 0);
    }
    if (hash_insert_serial(table.data(), values.data(), capacity, key, 0) < 0)
      out.keys.push_back(key);
  }
  std::sort(out.keys.begin(), out.keys.end());
  const int64_t V = (int64_t)out.keys.size();
  for (int64_t v = 0; v < V; ++v) {  // number the groups by sorted key
    const uint64_t mask = (uint64_t)capacity - 1;
    for (uint64_t s = hash_mix((uint64_t)out.keys[v]) & mask;; s = (s + 1) & mask)
      if (table[s] == out.keys[v]) {
        values[s] = (int32_t)v;
        break;
      }
  }
  out.group.resize(P);
  parallel_for(0, P, 4096, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      out.group[i] = hash_find(table.data(), values.data(), capacity, keys[i]);
  });
  return out;
}

}  // namespace sparse3d
