// CUDA glue of the rotated BEV IoU and NMS: the shared checks, sort and allocation
// (../glue/bev_nms_args.h), the launchers of bev_nms.cu on the current stream, and for NMS
// the greedy pass over the suppression mask on the host (N x N/64 words: a few hundred KB
// at N = 1000, read in one sequential sweep).
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/tensor.h>
#include <torch/library.h>

#include <cstdint>
#include <vector>

#include "../glue/bev_nms_args.h"

typedef struct CUstream_st* cudaStream_t;

namespace sparse3d {

// Launchers defined in bev_nms.cu (pointers, sizes and a stream only, as in launch.h).
// out: float32 [N, M] row-major.
template <typename scalar_t>
void launch_bev_iou_kernel(const scalar_t* a, int64_t N, int64_t Da, const scalar_t* b,
                           int64_t M, int64_t Db, float* out, cudaStream_t stream);
// boxes: [N, D] sorted by score; mask: [N, ceil(N / 64)] words, of which row i's words
// from i / 64 on are written.
template <typename scalar_t>
void launch_bev_nms_mask_kernel(const scalar_t* boxes, int64_t N, int64_t D,
                                double iou_threshold, uint64_t* mask, cudaStream_t stream);

namespace {

constexpr int64_t kWordBits = 64;
// The kernels index row tiles with blockIdx.y, which CUDA caps at 65535.
constexpr int64_t kMaxRowTiles = 65535;

void check_row_tiles(int64_t rows, const char* op) {
  TORCH_CHECK((rows + kWordBits - 1) / kWordBits <= kMaxRowTiles, "sparse3d.", op,
              ": at most ", kMaxRowTiles * kWordBits, " boxes on CUDA, got ", rows);
}

at::Tensor bev_iou_cuda(const at::Tensor& boxes_a, const at::Tensor& boxes_b) {
  const BevIouCall call = prepare_bev_iou(boxes_a, boxes_b);
  check_row_tiles(call.N, "bev_iou");
  AT_DISPATCH_FLOATING_TYPES(call.a.scalar_type(), "bev_iou_cuda", [&] {
    launch_bev_iou_kernel<scalar_t>(call.a.data_ptr<scalar_t>(), call.N, call.a.size(1),
                                    call.b.data_ptr<scalar_t>(), call.M, call.b.size(1),
                                    call.out.data_ptr<float>(), at::cuda::getCurrentCUDAStream());
  });
  return call.out;
}

at::Tensor rotated_nms_cuda(const at::Tensor& boxes, const at::Tensor& scores,
                            double iou_threshold) {
  const RotatedNmsCall call = prepare_rotated_nms(boxes, scores);
  const int64_t N = call.N, words = (N + kWordBits - 1) / kWordBits;
  check_row_tiles(N, "rotated_nms");
  at::Tensor mask = at::empty({N, words}, call.order.options());
  AT_DISPATCH_FLOATING_TYPES(call.boxes.scalar_type(), "rotated_nms_cuda", [&] {
    launch_bev_nms_mask_kernel<scalar_t>(call.boxes.data_ptr<scalar_t>(), N, call.boxes.size(1),
                                         iou_threshold,
                                         reinterpret_cast<uint64_t*>(mask.data_ptr<int64_t>()),
                                         at::cuda::getCurrentCUDAStream());
  });
  // Greedy in score order: keep i unless a kept box already suppressed it, then add the boxes
  // i suppresses. Only words from i's own on are read: the kernel writes no others.
  const at::Tensor host = mask.cpu();
  const uint64_t* m = reinterpret_cast<const uint64_t*>(host.data_ptr<int64_t>());
  std::vector<uint64_t> removed(words, 0);
  std::vector<int64_t> keep;
  for (int64_t i = 0; i < N; ++i) {
    const int64_t w = i / kWordBits;
    if (removed[w] >> (i % kWordBits) & 1) continue;
    keep.push_back(i);
    for (int64_t k = w; k < words; ++k) removed[k] |= m[i * words + k];
  }
  const at::Tensor kept = at::tensor(c10::ArrayRef<int64_t>(keep), host.options());
  return call.order.index_select(0, kept.to(call.order.device()));
}

}  // namespace

TORCH_LIBRARY_IMPL(sparse3d, CUDA, m) {
  m.impl("bev_iou", &bev_iou_cuda);
  m.impl("rotated_nms", &rotated_nms_cuda);
}

}  // namespace sparse3d
