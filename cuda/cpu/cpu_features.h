// Run-time CPU feature checks for kernels compiled with __attribute__((target(...))): the
// build targets baseline x86-64, and the vector paths are picked when the CPU has them.
#pragma once

#if defined(__x86_64__)
#include <immintrin.h>

#define SP3D_AVX2 __attribute__((target("avx2,fma")))
#define SP3D_AVX512 __attribute__((target("avx512f")))

namespace sparse3d {

inline bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}

inline bool cpu_has_avx512() {
  static const bool has = __builtin_cpu_supports("avx512f");
  return has;
}

}  // namespace sparse3d
#endif  // __x86_64__
