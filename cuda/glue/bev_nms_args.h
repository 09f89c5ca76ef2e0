// Checked arguments and allocated outputs of the rotated BEV IoU and NMS ops, shared by the
// CPU kernels and the CUDA glue so that both validate, sort and allocate identically.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <cstdint>

namespace sparse3d {

// Boxes: float32 or float64 [N, D >= 7] (x, y, z, dx, dy, dz, yaw, ...).
inline void check_bev_boxes(const at::Tensor& boxes, const char* op, const char* name) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) >= 7, "sparse3d.", op, ": ", name,
              " must be [N, 7] (x, y, z, dx, dy, dz, yaw) or wider, got shape ", boxes.sizes());
  TORCH_CHECK(boxes.scalar_type() == at::kFloat || boxes.scalar_type() == at::kDouble,
              "sparse3d.", op, ": ", name, " must be float32 or float64, got ",
              boxes.scalar_type());
}

struct BevIouCall {
  at::Tensor a, b;  // [N, Da], [M, Db], contiguous, one dtype
  int64_t N, M;
  at::Tensor out;  // float32 [N, M]
};

inline BevIouCall prepare_bev_iou(const at::Tensor& boxes_a, const at::Tensor& boxes_b) {
  check_bev_boxes(boxes_a, "bev_iou", "boxes_a");
  check_bev_boxes(boxes_b, "bev_iou", "boxes_b");
  TORCH_CHECK(boxes_a.scalar_type() == boxes_b.scalar_type(),
              "sparse3d.bev_iou: boxes_a and boxes_b must have one dtype, got ",
              boxes_a.scalar_type(), " and ", boxes_b.scalar_type());
  TORCH_CHECK(boxes_a.device() == boxes_b.device(),
              "sparse3d.bev_iou: boxes_a and boxes_b must be on one device, got ",
              boxes_a.device(), " and ", boxes_b.device());
  const int64_t N = boxes_a.size(0), M = boxes_b.size(0);
  return {boxes_a.contiguous(), boxes_b.contiguous(), N, M,
          at::empty({N, M}, boxes_a.options().dtype(at::kFloat))};
}

struct RotatedNmsCall {
  at::Tensor order;  // int64 [N]: input rows by descending score, ties by lower row first
  at::Tensor boxes;  // [N, D] rows in that order, contiguous
  int64_t N;
};

inline RotatedNmsCall prepare_rotated_nms(const at::Tensor& boxes, const at::Tensor& scores) {
  check_bev_boxes(boxes, "rotated_nms", "boxes");
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == boxes.size(0),
              "sparse3d.rotated_nms: scores must be [N] with N = ", boxes.size(0),
              " (the boxes), got shape ", scores.sizes());
  TORCH_CHECK(scores.device() == boxes.device(),
              "sparse3d.rotated_nms: boxes and scores must be on one device, got ",
              boxes.device(), " and ", scores.device());
  // A stable sort is what makes equal scores keep the lower row first on every backend.
  at::Tensor order = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  return {order, boxes.index_select(0, order).contiguous(), boxes.size(0)};
}

}  // namespace sparse3d
