// Run-time CPU feature checks for kernels compiled with __attribute__((target(...))): the
// build targets baseline x86-64, and the vector paths are picked when the CPU has them.
#pragma once

#if defined(__x86_64__)
#include <immintrin.h>

#include <cstdlib>
#include <cstring>

#define SP3D_AVX2 __attribute__((target("avx2,fma")))
#define SP3D_AVX512 __attribute__((target("avx512f")))
#define SP3D_AVX512_BF16 __attribute__((target("avx512f,avx512bf16")))

namespace sparse3d {

// The highest vector level allowed by ATEN_CPU_CAPABILITY, the variable that caps torch's
// own kernels ("default" < "avx2" < "avx512"): ours follow the same cap, so that one
// machine runs (and tests) every path. 0 = scalar, 1 = AVX2, 2 = AVX-512.
inline int allowed_vector_level() {
  const char* cap = std::getenv("ATEN_CPU_CAPABILITY");
  if (cap == nullptr) return 2;
  if (std::strcmp(cap, "default") == 0) return 0;
  if (std::strcmp(cap, "avx2") == 0) return 1;
  return 2;
}

inline bool cpu_has_avx2() {
  static const bool has =
      allowed_vector_level() >= 1 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}

inline bool cpu_has_avx512() {
  static const bool has = allowed_vector_level() >= 2 && __builtin_cpu_supports("avx512f");
  return has;
}

// VDPBF16PS (AVX512-BF16: Cooper Lake, Sapphire Rapids and later Xeons, AMD Zen 4 and
// later): bf16 pairs multiplied and added into fp32, twice the products of an fp32 FMA.
inline bool cpu_has_avx512_bf16() {
  static const bool has = cpu_has_avx512() && __builtin_cpu_supports("avx512bf16");
  return has;
}

}  // namespace sparse3d
#endif  // __x86_64__
