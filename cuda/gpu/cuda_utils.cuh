// Launch helpers shared by the .cu files: CUDA runtime only, no Torch.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace sparse3d {

// Default threads per block of the sparse3d kernels.
constexpr int kThreads = 256;

// Blocks of `threads` threads that cover n elements.
inline unsigned blocks_for(int64_t n, int threads = kThreads) {
  return (unsigned)((n + threads - 1) / threads);
}

// Throws, naming the kernel, if its launch failed.
inline void check_launch(const char* name) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("sparse3d: ") + name + " failed: " + cudaGetErrorString(err));
}

}  // namespace sparse3d
