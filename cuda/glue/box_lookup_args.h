// Checked arguments and allocated outputs of box_lookup, shared by the CPU kernel and the
// CUDA glue so that both validate and allocate identically.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Exception.h>

#include <string>

#include "sparse3d/box_lookup.h"

namespace sparse3d {

struct BoxLookupCall {
  at::Tensor points;    // float32 [S, 3], contiguous
  at::Tensor occupied;  // int64 [N], contiguous
  BoxGrid g;
  int64_t S, N, K;
  at::Tensor keys, values;  // the empty hash table: int64 [capacity] kNoKey, int32 -1
  at::Tensor index;         // int64 [S, K]
  at::Tensor weights;       // float32 [S, K]
};

inline BoxLookupCall prepare_box_lookup(const at::Tensor& points, const at::Tensor& occupied,
                                        at::ArrayRef<double> lower, double voxel_size,
                                        c10::IntArrayRef shape, double half_size, int64_t k) {
  TORCH_CHECK(points.dim() == 2 && points.size(1) == 3 && points.scalar_type() == at::kFloat,
              "sparse3d.box_lookup: points must be float32 [S, 3], got ", points.scalar_type(),
              " ", points.sizes());
  TORCH_CHECK(occupied.dim() == 1 && occupied.scalar_type() == at::kLong,
              "sparse3d.box_lookup: occupied must be int64 [N], got ", occupied.scalar_type(),
              " ", occupied.sizes());
  TORCH_CHECK(occupied.device() == points.device(),
              "sparse3d.box_lookup: points and occupied must be on one device");
  TORCH_CHECK(lower.size() == 3 && shape.size() == 3,
              "sparse3d.box_lookup: lower and shape need 3 entries each");
  TORCH_CHECK(voxel_size > 0 && half_size > 0 && half_size < voxel_size,
              "sparse3d.box_lookup: need 0 < half_size < voxel_size, got ", half_size, " and ",
              voxel_size);
  TORCH_CHECK(k >= 1, "sparse3d.box_lookup: k must be >= 1, got ", k);
  TORCH_CHECK(occupied.size(0) < INT32_MAX,
              "sparse3d.box_lookup: at most 2^31 - 1 occupied voxels, got ", occupied.size(0));
  BoxLookupCall call;
  call.points = points.contiguous();
  call.occupied = occupied.contiguous();
  for (int a = 0; a < 3; ++a) {
    TORCH_CHECK(shape[a] >= 1, "sparse3d.box_lookup: shape must be positive, got ", shape);
    call.g.lower[a] = (float)lower[a];
    call.g.shape[a] = shape[a];
  }
  call.g.voxel_size = (float)voxel_size;
  call.g.half_size = (float)half_size;
  call.S = points.size(0);
  call.N = occupied.size(0);
  call.K = k;
  if (occupied.is_cpu()) {  // a GPU check would wait for the device
    const int64_t* o = call.occupied.data_ptr<int64_t>();
    const int64_t volume = shape[0] * shape[1] * shape[2];
    for (int64_t n = 0; n < call.N; ++n)
      TORCH_CHECK(o[n] >= (n ? o[n - 1] + 1 : 0) && o[n] < volume,
                  "sparse3d.box_lookup: occupied must be sorted unique keys in [0, ", volume,
                  "), got occupied[", n, "] = ", o[n], n ? " after " : "",
                  n ? std::to_string(o[n - 1]) : "");
  }
  const int64_t capacity = hash_capacity(call.N);
  call.keys = at::full({capacity}, kNoKey, call.occupied.options());
  call.values = at::full({capacity}, -1, call.occupied.options().dtype(at::kInt));
  call.index = at::empty({call.S, k}, call.occupied.options());
  call.weights = at::empty({call.S, k}, call.points.options());
  return call;
}

}  // namespace sparse3d
