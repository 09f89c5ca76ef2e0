// Plain-C++ declarations of the CUDA launchers: pointers, sizes and a stream only, so the
// .cu files need no Torch headers and the glue (*_glue.cpp) needs no CUDA compiler.
#pragma once

#include <cstdint>

#include "sparse3d/common.h"
#include "sparse3d/coords.h"     // ConvGeom
#include "sparse3d/partition.h"  // WindowGeom
#include "sparse3d/voxelize.h"   // VoxelGrid

typedef struct CUstream_st* cudaStream_t;

namespace sparse3d {

// --- segment reductions (segment.cu)
template <typename scalar_t>
void launch_segment_reduce_kernel(const scalar_t* values, const int64_t* offsets, int64_t S,
                                  int64_t C, Reduce reduce, scalar_t* out, int64_t* arg,
                                  cudaStream_t stream);

template <typename scalar_t>
void launch_segment_reduce_bwd_kernel(const scalar_t* v_out, const int64_t* offsets,
                                      const int64_t* arg, int64_t S, int64_t C, Reduce reduce,
                                      scalar_t* v_values, cudaStream_t stream);

// --- kernel maps (kernel_map.cu)
void launch_hash_build_kernel(const int32_t* coords, int64_t N, const ConvGeom& g,
                              int64_t* keys, int32_t* values, int64_t capacity,
                              cudaStream_t stream);
void launch_kernel_map_kernel(const int32_t* out_coords, int64_t M, const ConvGeom& g,
                              const int64_t* keys, const int32_t* values, int64_t capacity,
                              int32_t* nbr, cudaStream_t stream);
void launch_conv_candidates_kernel(const int32_t* coords, int64_t N, const ConvGeom& g,
                                   int64_t* cand, cudaStream_t stream);
void launch_keys_to_coords_kernel(const int64_t* keys, int64_t M, const ConvGeom& g,
                                  int32_t* coords, cudaStream_t stream);
// nbr[groups[t], rows[t] % K] = rows[t] / K for t < T (one writer per entry)
void launch_conv_map_scatter_kernel(const int64_t* rows, const int64_t* groups, int64_t T,
                                    int64_t K, int32_t* nbr, cudaStream_t stream);
void launch_invert_kernel_map_kernel(const int32_t* nbr, int64_t M, int64_t K, int32_t* inv,
                                     cudaStream_t stream);

// --- sparse convolution (sparse_conv.cu)
// bias may be null (no bias)
template <typename scalar_t>
void launch_sparse_conv_kernel(const scalar_t* feats, const scalar_t* weight,
                               const scalar_t* bias, const int32_t* nbr, int64_t M, int64_t K,
                               int64_t Cin, int64_t Cout, scalar_t* out, cudaStream_t stream);
// partial: scratch [K, ceil(M / kWeightGradChunk), Cin, Cout]
template <typename scalar_t>
void launch_sparse_conv_bwd_weight_kernel(const scalar_t* feats, const scalar_t* v_out,
                                          const int32_t* nbr, int64_t M, int64_t K,
                                          int64_t Cin, int64_t Cout, scalar_t* partial,
                                          scalar_t* v_weight, cudaStream_t stream);

// --- voxelization (voxelize.cu)
// voxel key per point (kNoKey outside the grid) / per coordinate row (g.in_shape is the
// spatial shape; kNoKey for rows outside it or with a negative batch)
template <typename scalar_t>
void launch_point_keys_kernel(const scalar_t* points, const int32_t* batch, int64_t P,
                              int64_t D, const VoxelGrid<scalar_t>& g, int64_t* keys,
                              cudaStream_t stream);
void launch_coord_keys_kernel(const int32_t* coords, int64_t N, const ConvGeom& g,
                              int64_t* keys, cudaStream_t stream);

// --- batch norm (batch_norm.cu)
// statistics over fixed row chunks; scratch: double [2 * chunks * C]
template <typename scalar_t>
void launch_batch_norm_stats_kernel(const scalar_t* x, int64_t N, int64_t C, double* scratch,
                                    scalar_t* mean, scalar_t* var, cudaStream_t stream);
template <typename scalar_t>
void launch_batch_norm_bwd_reduce_kernel(const scalar_t* v, const scalar_t* x,
                                         const scalar_t* mean, int64_t N, int64_t C,
                                         double* scratch, scalar_t* sum_v, scalar_t* sum_vx,
                                         cudaStream_t stream);
// residual may be null (no residual add)
template <typename scalar_t>
void launch_affine_act_kernel(const scalar_t* x, const scalar_t* scale, const scalar_t* shift,
                              const scalar_t* residual, bool relu, int64_t N, int64_t C,
                              scalar_t* out, cudaStream_t stream);

// --- DSVT set partition (partition.cu)
// keys: [2, N] window-major sort keys (row 0 y-major, row 1 x-major); in_win: [N, 3]
void launch_window_keys_kernel(const int32_t* coords, int64_t N, const WindowGeom& g,
                               int32_t* in_win, int64_t* keys, cudaStream_t stream);
// order: [2, N] voxel rows sorted by key; window runs from prepare_fill_sets(); outputs
// inds / mask [2, M, S] and first_slot [2, N]
void launch_fill_sets_kernel(const int64_t* order, int64_t N, const int64_t* win_begin,
                             const int64_t* win_count, const int64_t* win_set_begin,
                             const int64_t* set_window, int64_t M, int64_t S, int64_t* inds,
                             bool* mask, int64_t* first_slot, cudaStream_t stream);

}  // namespace sparse3d
