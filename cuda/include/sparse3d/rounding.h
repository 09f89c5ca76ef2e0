// float32 operations rounded once each, as torch's separate elementwise kernels round them,
// for kernels that must reproduce a torch reference bit for bit. nvcc would contract
// a * b + c into an FMA (one rounding), hence the intrinsics; the host code is built as ISO
// C++ (-std=c++20), where GCC does not contract, and x86-64's baseline has no FMA anyway.
#pragma once

#include "sparse3d/common.h"

namespace sparse3d {

SP3D_HD inline float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

SP3D_HD inline float sub_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}

SP3D_HD inline float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

}  // namespace sparse3d
