// Plain-C++ declarations of the CUDA launchers: pointers, sizes and a stream only, so the
// .cu files need no Torch headers and the glue (ops_cuda.cpp) needs no CUDA compiler.
#pragma once

#include <cstdint>

#include "sparse3d/common.h"

typedef struct CUstream_st* cudaStream_t;

namespace sparse3d {

template <typename scalar_t>
void launch_segment_reduce_kernel(const scalar_t* values, const int64_t* offsets, int64_t S,
                                  int64_t C, Reduce reduce, scalar_t* out, int64_t* arg,
                                  cudaStream_t stream);

template <typename scalar_t>
void launch_segment_reduce_bwd_kernel(const scalar_t* v_out, const int64_t* offsets,
                                      const int64_t* arg, int64_t S, int64_t C, Reduce reduce,
                                      scalar_t* v_values, cudaStream_t stream);

}  // namespace sparse3d
