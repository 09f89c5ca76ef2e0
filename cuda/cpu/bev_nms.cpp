// CPU kernels of the rotated BEV IoU matrix and the greedy rotated NMS
// (cuda/include/sparse3d/box_overlap.h holds the geometry). Every output element, IoU entry or
// suppression flag, has exactly one writer and depends only on its own pair of boxes, so
// the results do not depend on the thread count.
#include <ATen/Dispatch.h>
#include <ATen/ops/tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "../glue/bev_nms_args.h"
#include "parallel.h"
#include "sparse3d/box_overlap.h"

namespace sparse3d {
namespace {

constexpr int64_t kBoxGrain = 1024;
// Box pairs per task of the IoU matrix: rows cost differently (most pairs stop at the
// circumcircle test, overlapping ones clip), so rows are handed out dynamically.
constexpr int64_t kPairGrain = 8192;
// Candidates per thread in one NMS suppression pass. A pass over N candidates costs about
// N x 20-100 ns, so waking the threads (one fork-join per kept box) only pays off for large
// passes; with a core busy elsewhere, a 512 grain made 1000-box NMS 9x slower than serial.
constexpr int64_t kNmsGrain = 2048;

// BEV footprints of the rows of a contiguous [N, D] box tensor.
std::vector<BevBox> bev_boxes(const at::Tensor& boxes) {
  const int64_t N = boxes.size(0), D = boxes.size(1);
  std::vector<BevBox> out(N);
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "bev_boxes", [&] {
    const scalar_t* p = boxes.data_ptr<scalar_t>();
    parallel_for(0, N, kBoxGrain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) out[i] = make_bev_box(p + i * D);
    });
  });
  return out;
}

at::Tensor bev_iou_cpu(const at::Tensor& boxes_a, const at::Tensor& boxes_b) {
  const BevIouCall call = prepare_bev_iou(boxes_a, boxes_b);
  const int64_t N = call.N, M = call.M;
  if (N == 0 || M == 0) return call.out;
  const std::vector<BevBox> a = bev_boxes(call.a), b = bev_boxes(call.b);
  float* out = call.out.data_ptr<float>();
  parallel_for_dynamic(N, std::max<int64_t>(1, kPairGrain / M), [&](auto take) {
    for (int64_t i0, i1; take(i0, i1);)
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t j = 0; j < M; ++j) out[i * M + j] = float(bev_box_iou(a[i], b[j]));
  });
  return call.out;
}

// Greedy NMS over the boxes in score order: the best remaining box is kept, and one pass
// drops every later remaining box whose IoU with it exceeds the threshold (strictly). Only
// the pairs of a kept box with the boxes still alive are ever evaluated, so clustered
// detections cost about N IoUs per kept box and the worst case is O(N^2).
at::Tensor rotated_nms_cpu(const at::Tensor& boxes, const at::Tensor& scores,
                           double iou_threshold) {
  const RotatedNmsCall call = prepare_rotated_nms(boxes, scores);
  const std::vector<BevBox> sorted = bev_boxes(call.boxes);
  std::vector<int64_t> alive(call.N);  // sorted positions not yet kept or dropped, ascending
  std::iota(alive.begin(), alive.end(), int64_t(0));
  std::vector<uint8_t> drop(call.N);
  std::vector<int64_t> keep;
  while (!alive.empty()) {
    const BevBox& top = sorted[alive[0]];
    keep.push_back(alive[0]);
    const int64_t n = int64_t(alive.size());
    parallel_for(1, n, kNmsGrain, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) drop[t] = bev_box_iou(top, sorted[alive[t]]) > iou_threshold;
    });
    int64_t m = 0;
    for (int64_t t = 1; t < n; ++t)
      if (!drop[t]) alive[m++] = alive[t];
    alive.resize(m);
  }
  return call.order.index_select(0, at::tensor(c10::ArrayRef<int64_t>(keep), call.order.options()));
}

}  // namespace

TORCH_LIBRARY_IMPL(sparse3d, CPU, m) {
  m.impl("bev_iou", &bev_iou_cpu);
  m.impl("rotated_nms", &rotated_nms_cpu);
}

}  // namespace sparse3d
