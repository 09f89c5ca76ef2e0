// Checked arguments and allocated outputs of march_rays, shared by the CPU kernel and the
// CUDA glue so that both validate, round and allocate identically.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>

#include "sparse3d/ray_march.h"

namespace sparse3d {

struct MarchRaysCall {
  MarchInputs in;  // pointers into the contiguous inputs below
  at::Tensor origins, dirs, t_start, t_end, jitter, occupied;
  MarchGrid grid;
  int64_t R, M;
  at::Tensor max_steps;  // float32 0-dim: ceil(max(t_end - t_start, 0) / step) over the rays
  at::Tensor offsets;    // int64 [R + 1], zeros
};

inline MarchRaysCall prepare_march_rays(const at::Tensor& origins, const at::Tensor& dirs,
                                        const at::Tensor& t_start, const at::Tensor& t_end,
                                        const at::Tensor& jitter, const at::Tensor& occupied,
                                        at::ArrayRef<double> lower, double voxel_size,
                                        c10::IntArrayRef shape, double step) {
  const int64_t R = origins.dim() > 0 ? origins.size(0) : 0;
  auto check_ray_input = [&](const char* name, const at::Tensor& x, bool vector) {
    const bool shape_ok = vector ? x.dim() == 2 && x.size(0) == R && x.size(1) == 3
                                 : x.dim() == 1 && x.size(0) == R;
    TORCH_CHECK(shape_ok && x.scalar_type() == at::kFloat, "sparse3d.march_rays: ", name,
                " must be float32 [", R, vector ? ", 3]" : "]", ", got ", x.scalar_type(), " ",
                x.sizes());
    TORCH_CHECK(x.device() == origins.device(), "sparse3d.march_rays: ", name, " is on ",
                x.device(), ", origins on ", origins.device());
  };
  check_ray_input("origins", origins, true);
  check_ray_input("dirs", dirs, true);
  check_ray_input("t_start", t_start, false);
  check_ray_input("t_end", t_end, false);
  check_ray_input("jitter", jitter, false);
  TORCH_CHECK(occupied.dim() == 1 && occupied.scalar_type() == at::kLong &&
                  occupied.device() == origins.device(),
              "sparse3d.march_rays: occupied must be int64 [M] on ", origins.device(), ", got ",
              occupied.scalar_type(), " ", occupied.sizes(), " on ", occupied.device());
  TORCH_CHECK(occupied.size(0) < INT32_MAX, "sparse3d.march_rays: at most 2^31 - 1 occupied "
              "voxels, got ", occupied.size(0));
  TORCH_CHECK(lower.size() == 3 && shape.size() == 3,
              "sparse3d.march_rays: lower and shape need 3 entries each");
  // Cells are compared as float32, exact up to 2^24; keys need the volume in int64.
  bool shape_ok = true;
  for (int64_t s : shape) shape_ok = shape_ok && s >= 1 && s <= (int64_t(1) << 24);
  TORCH_CHECK(shape_ok && (double)shape[0] * shape[1] * shape[2] < (double)kUnboundedSteps,
              "sparse3d.march_rays: shape must be 3 sizes in [1, 2^24], less than 2^62 voxels in "
              "all, got ", shape);
  TORCH_CHECK(voxel_size > 0 && step > 0, "sparse3d.march_rays: voxel_size and step must be "
              "> 0, got ", voxel_size, " and ", step);

  MarchRaysCall call;
  call.origins = origins.contiguous();
  call.dirs = dirs.contiguous();
  call.t_start = t_start.contiguous();
  call.t_end = t_end.contiguous();
  call.jitter = jitter.contiguous();
  call.occupied = occupied.contiguous();
  call.in = {call.origins.data_ptr<float>(), call.dirs.data_ptr<float>(),
             call.t_start.data_ptr<float>(), call.t_end.data_ptr<float>(),
             call.jitter.data_ptr<float>(), (float)step};
  // As VoxelGrid.cells: lower and voxel_size become float32; torch's CUDA kernels take the
  // reciprocal of the float32 voxel size in float32.
  const float size = (float)voxel_size;
  call.grid = {{(float)lower[0], (float)lower[1], (float)lower[2]},
               size,
               1.0f / size,
               {shape[0], shape[1], shape[2]}};
  call.R = R;
  call.M = occupied.size(0);
  // The reference's own expression, so that it rounds the same on each device.
  if (R > 0) call.max_steps = call.t_end.sub(call.t_start).clamp_min(0).div(step).ceil().amax();
  call.offsets = at::zeros({R + 1}, origins.options().dtype(at::kLong));
  return call;
}

}  // namespace sparse3d
