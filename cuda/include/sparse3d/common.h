// Shared by the CPU (.cpp) and CUDA (.cu) kernels: no ATen, no Torch, only the C++
// standard library, so nvcc compiles every .cu file without a CUDA build of torch.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define SP3D_HD __host__ __device__
#else
#define SP3D_HD
#endif

namespace sparse3d {

// Reduction kinds shared by the segment and voxelization kernels.
enum class Reduce : int { Sum = 0, Mean = 1, Max = 2 };

}  // namespace sparse3d
