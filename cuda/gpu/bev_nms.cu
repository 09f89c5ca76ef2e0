// CUDA kernels of the rotated BEV IoU matrix and of the rotated NMS suppression mask, in
// tiles of kBevTile x kBevTile box pairs: each block puts one tile side's footprints
// (cuda/include/sparse3d/box_overlap.h) in shared memory, and each thread pairs its own box
// with them. The greedy pass over the mask runs on the host (bev_nms_glue.cpp).

#include "cuda_utils.cuh"
#include "sparse3d/box_overlap.h"

namespace sparse3d {
namespace {

// Boxes per tile side: one bit per column box in the 64-bit words of the NMS mask.
constexpr int kBevTile = 64;

// out[i, j] = IoU(a_i, b_j). Block (x, y) covers columns x * 64 + [0, 64) (one per thread,
// so the writes of a row are coalesced) and rows y * 64 + [0, 64) (in shared memory).
template <typename scalar_t>
__global__ void bev_iou_kernel(const scalar_t* a, int64_t N, int64_t Da, const scalar_t* b,
                               int64_t M, int64_t Db, float* out) {
  __shared__ BevBox rows[kBevTile];
  const int64_t row0 = (int64_t)blockIdx.y * kBevTile;
  const int64_t col = (int64_t)blockIdx.x * kBevTile + threadIdx.x;
  const int n_rows = (int)(N - row0 < kBevTile ? N - row0 : kBevTile);
  if ((int)threadIdx.x < n_rows) rows[threadIdx.x] = make_bev_box(a + (row0 + threadIdx.x) * Da);
  __syncthreads();
  if (col >= M) return;
  const BevBox mine = make_bev_box(b + col * Db);
  for (int r = 0; r < n_rows; ++r) out[(row0 + r) * M + col] = (float)bev_box_iou(rows[r], mine);
}

// Suppression mask of boxes sorted by score: bit c of mask[i, w] is set when the box at
// sorted position j = w * 64 + c, j > i, has IoU(box i, box j) > iou_threshold. Block
// (x, y) covers column word x for rows y * 64 + [0, 64), one row per thread. Words left of
// a row's own word (x < y) are never read by the greedy pass, so those blocks do nothing.
template <typename scalar_t>
__global__ void bev_nms_mask_kernel(const scalar_t* boxes, int64_t N, int64_t D,
                                    double iou_threshold, int64_t words, uint64_t* mask) {
  if (blockIdx.x < blockIdx.y) return;
  __shared__ BevBox cols[kBevTile];
  const int64_t col0 = (int64_t)blockIdx.x * kBevTile, row0 = (int64_t)blockIdx.y * kBevTile;
  const int n_cols = (int)(N - col0 < kBevTile ? N - col0 : kBevTile);
  const int n_rows = (int)(N - row0 < kBevTile ? N - row0 : kBevTile);
  if ((int)threadIdx.x < n_cols) cols[threadIdx.x] = make_bev_box(boxes + (col0 + threadIdx.x) * D);
  __syncthreads();
  if ((int)threadIdx.x >= n_rows) return;
  const int64_t i = row0 + threadIdx.x;
  const BevBox mine = make_bev_box(boxes + i * D);
  uint64_t bits = 0;
  // On the diagonal tile only the columns after the row itself are later boxes.
  for (int c = blockIdx.x == blockIdx.y ? (int)threadIdx.x + 1 : 0; c < n_cols; ++c)
    if (bev_box_iou(mine, cols[c]) > iou_threshold) bits |= 1ull << c;
  mask[i * words + blockIdx.x] = bits;
}

}  // namespace

template <typename scalar_t>
void launch_bev_iou_kernel(const scalar_t* a, int64_t N, int64_t Da, const scalar_t* b,
                           int64_t M, int64_t Db, float* out, cudaStream_t stream) {
  if (N == 0 || M == 0) return;
  const dim3 grid(blocks_for(M, kBevTile), blocks_for(N, kBevTile));
  bev_iou_kernel<scalar_t><<<grid, kBevTile, 0, stream>>>(a, N, Da, b, M, Db, out);
  check_launch("bev_iou_kernel");
}

template <typename scalar_t>
void launch_bev_nms_mask_kernel(const scalar_t* boxes, int64_t N, int64_t D,
                                double iou_threshold, uint64_t* mask, cudaStream_t stream) {
  if (N == 0) return;
  const unsigned words = blocks_for(N, kBevTile);
  bev_nms_mask_kernel<scalar_t><<<dim3(words, words), kBevTile, 0, stream>>>(
      boxes, N, D, iou_threshold, (int64_t)words, mask);
  check_launch("bev_nms_mask_kernel");
}

template void launch_bev_iou_kernel<float>(const float*, int64_t, int64_t, const float*, int64_t,
                                           int64_t, float*, cudaStream_t);
template void launch_bev_iou_kernel<double>(const double*, int64_t, int64_t, const double*,
                                            int64_t, int64_t, float*, cudaStream_t);
template void launch_bev_nms_mask_kernel<float>(const float*, int64_t, int64_t, double, uint64_t*,
                                                cudaStream_t);
template void launch_bev_nms_mask_kernel<double>(const double*, int64_t, int64_t, double,
                                                 uint64_t*, cudaStream_t);

}  // namespace sparse3d
