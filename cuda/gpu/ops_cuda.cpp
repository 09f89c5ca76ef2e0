// CUDA implementations of the ops: checks and allocation with ATen, then the plain
// launchers of the .cu files on the current stream. Built only with a CUDA torch.
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "../cpu/checks.h"
#include "../cpu/segment_args.h"
#include "launch.h"

namespace sparse3d {
namespace {

std::tuple<at::Tensor, at::Tensor> segment_reduce_cuda(const at::Tensor& values,
                                                       const at::Tensor& offsets,
                                                       c10::string_view reduce_name) {
  SegmentReduceCall call = prepare_segment_reduce(values, offsets, reduce_name);
  AT_DISPATCH_FLOATING_TYPES(call.values.scalar_type(), "segment_reduce_cuda", [&] {
    launch_segment_reduce_kernel<scalar_t>(
        call.values.data_ptr<scalar_t>(), offsets.data_ptr<int64_t>(), call.S, call.C, call.reduce,
        call.out.data_ptr<scalar_t>(), call.reduce == Reduce::Max ? call.arg.data_ptr<int64_t>() : nullptr,
        at::cuda::getCurrentCUDAStream());
  });
  return {call.out, call.arg};
}

at::Tensor segment_reduce_bwd_cuda(const at::Tensor& v_out, const at::Tensor& offsets,
                                   const at::Tensor& arg, c10::string_view reduce_name,
                                   int64_t n) {
  SegmentReduceBwdCall call = prepare_segment_reduce_bwd(v_out, offsets, reduce_name, n);
  AT_DISPATCH_FLOATING_TYPES(call.v_out.scalar_type(), "segment_reduce_bwd_cuda", [&] {
    launch_segment_reduce_bwd_kernel<scalar_t>(
        call.v_out.data_ptr<scalar_t>(), offsets.data_ptr<int64_t>(),
        call.reduce == Reduce::Max ? arg.data_ptr<int64_t>() : nullptr, call.S, call.C, call.reduce,
        call.v_values.data_ptr<scalar_t>(), at::cuda::getCurrentCUDAStream());
  });
  return call.v_values;
}

}  // namespace

TORCH_LIBRARY_IMPL(sparse3d, CUDA, m) {
  m.impl("segment_reduce", &segment_reduce_cuda);
  m.impl("segment_reduce_bwd", &segment_reduce_bwd_cuda);
}

}  // namespace sparse3d

// --- sparse-voxel core, issue 3: kernel maps and sparse convolution (CUDA glue) ---
#include <ATen/ops/_unique2.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/bincount.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>

#include "../cpu/conv_args.h"
#include "../cpu/batch_norm_args.h"
#include "sparse3d/batch_norm.h"
#include "sparse3d/conv.h"
#include "sparse3d/hash.h"

namespace sparse3d {
namespace {

at::Tensor kernel_map_cuda(const at::Tensor& in_coords, const at::Tensor& out_coords,
                           c10::IntArrayRef in_shape, c10::IntArrayRef out_shape,
                           c10::IntArrayRef kernel, c10::IntArrayRef stride,
                           c10::IntArrayRef padding, c10::IntArrayRef dilation) {
  const ConvGeom g =
      kernel_map_geom(in_coords, out_coords, in_shape, out_shape, kernel, stride, padding, dilation);
  const int64_t N = in_coords.size(0), M = out_coords.size(0), K = conv_taps(g);
  const int64_t capacity = hash_capacity(N);
  at::Tensor keys = at::full({capacity}, kNoKey, in_coords.options().dtype(at::kLong));
  at::Tensor values = at::full({capacity}, -1, in_coords.options());
  at::Tensor nbr = at::empty({M, K}, in_coords.options());
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  launch_hash_build_kernel(in_coords.data_ptr<int32_t>(), N, g, keys.data_ptr<int64_t>(),
                           values.data_ptr<int32_t>(), capacity, stream);
  launch_kernel_map_kernel(out_coords.data_ptr<int32_t>(), M, g, keys.data_ptr<int64_t>(),
                           values.data_ptr<int32_t>(), capacity, nbr.data_ptr<int32_t>(),
                           stream);
  return nbr;
}

std::tuple<at::Tensor, at::Tensor> conv_map_cuda(const at::Tensor& coords,
                                                 c10::IntArrayRef in_shape,
                                                 c10::IntArrayRef out_shape,
                                                 c10::IntArrayRef kernel,
                                                 c10::IntArrayRef stride,
                                                 c10::IntArrayRef padding,
                                                 c10::IntArrayRef dilation, bool transposed) {
  const ConvGeom g =
      conv_map_geom(coords, in_shape, out_shape, kernel, stride, padding, dilation, transposed);
  const int64_t N = coords.size(0), K = conv_taps(g);
  at::Tensor cand = at::empty({N * K}, coords.options().dtype(at::kLong));
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  launch_conv_candidates_kernel(coords.data_ptr<int32_t>(), N, g, cand.data_ptr<int64_t>(),
                                stream);
  // Sort-based unique: sorted keys give the same output order as the CPU kernel.
  const at::Tensor rows = cand.ne(kNoKey).nonzero().view(-1);
  auto [keys, groups, counts] = at::_unique2(cand.index_select(0, rows), true, true, false);
  const int64_t M = keys.size(0);
  at::Tensor out = at::empty({M, 4}, coords.options());
  launch_keys_to_coords_kernel(keys.data_ptr<int64_t>(), M, g, out.data_ptr<int32_t>(),
                               stream);
  at::Tensor nbr = at::full({M, K}, -1, coords.options());
  launch_conv_map_scatter_kernel(rows.data_ptr<int64_t>(), groups.data_ptr<int64_t>(),
                                 rows.size(0), K, nbr.data_ptr<int32_t>(), stream);
  return {out, nbr};
}

at::Tensor invert_kernel_map_cuda(const at::Tensor& nbr, int64_t n_in) {
  check_nbr(nbr, "invert_kernel_map");
  const int64_t M = nbr.size(0), K = nbr.size(1);
  at::Tensor inv = at::full({n_in, K}, -1, nbr.options());
  launch_invert_kernel_map_kernel(nbr.data_ptr<int32_t>(), M, K, inv.data_ptr<int32_t>(),
                                  at::cuda::getCurrentCUDAStream());
  return inv;
}

at::Tensor sparse_conv_cuda(const at::Tensor& feats, const at::Tensor& weight,
                            const at::Tensor& nbr,
                            const std::optional<at::Tensor>& /*inv: backward only*/,
                            const std::optional<at::Tensor>& bias) {
  check_nbr(nbr, "sparse_conv");
  TORCH_CHECK(feats.dim() == 2 && weight.dim() == 3 && weight.size(0) == nbr.size(1) &&
                  weight.size(1) == feats.size(1),
              "sparse3d.sparse_conv: need feats [N, Cin] and weight [K, Cin, Cout], got ",
              feats.sizes(), " and ", weight.sizes());
  check_conv_bias(bias, weight);
  const at::Tensor x = feats.contiguous(), w = weight.contiguous();
  const at::Tensor b = bias.has_value() ? bias->contiguous() : at::Tensor();
  const int64_t M = nbr.size(0), K = nbr.size(1), Cin = x.size(1), Cout = w.size(2);
  at::Tensor out = at::empty({M, Cout}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "sparse_conv_cuda", [&] {
    launch_sparse_conv_kernel<scalar_t>(x.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(),
                                        b.defined() ? b.data_ptr<scalar_t>() : nullptr,
                                        nbr.data_ptr<int32_t>(), M, K, Cin, Cout,
                                        out.data_ptr<scalar_t>(),
                                        at::cuda::getCurrentCUDAStream());
  });
  return out;
}

at::Tensor sparse_conv_bwd_weight_cuda(const at::Tensor& feats, const at::Tensor& v_out,
                                       const at::Tensor& nbr) {
  check_nbr(nbr, "sparse_conv_bwd_weight");
  TORCH_CHECK(feats.dim() == 2 && v_out.dim() == 2 && v_out.size(0) == nbr.size(0),
              "sparse3d.sparse_conv_bwd_weight: need feats [N, Cin] and v_out [M, Cout], got ",
              feats.sizes(), " and ", v_out.sizes());
  const at::Tensor x = feats.contiguous(), g = v_out.contiguous();
  const int64_t M = nbr.size(0), K = nbr.size(1), Cin = x.size(1), Cout = g.size(1);
  at::Tensor partial = at::empty({K, weight_grad_chunks(M), Cin, Cout}, x.options());
  at::Tensor v_weight = at::empty({K, Cin, Cout}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "sparse_conv_bwd_weight_cuda", [&] {
    launch_sparse_conv_bwd_weight_kernel<scalar_t>(
        x.data_ptr<scalar_t>(), g.data_ptr<scalar_t>(), nbr.data_ptr<int32_t>(), M, K, Cin,
        Cout, partial.data_ptr<scalar_t>(), v_weight.data_ptr<scalar_t>(),
        at::cuda::getCurrentCUDAStream());
  });
  return v_weight;
}

// Unique keys ascending [V] and each row's group int32 [P] (-1 for kNoKey rows), by sort.
std::tuple<at::Tensor, at::Tensor> group_keys_cuda(const at::Tensor& keys) {
  auto [unique, inverse, counts] = at::_unique2(keys, true, true, false);
  if (unique.numel() > 0 && unique[0].item<int64_t>() == kNoKey) {  // kNoKey sorts first
    unique = unique.slice(0, 1);
    inverse = inverse.sub(1);
  }
  return {unique, inverse.to(at::kInt)};
}

at::Tensor decode_keys_cuda(const at::Tensor& keys, c10::IntArrayRef shape,
                            const at::TensorOptions& int_options) {
  ConvGeom g{};
  for (int d = 0; d < 3; ++d) g.out_shape[d] = shape[d];
  at::Tensor coords = at::empty({keys.size(0), 4}, int_options);
  launch_keys_to_coords_kernel(keys.data_ptr<int64_t>(), keys.size(0), g,
                               coords.data_ptr<int32_t>(), at::cuda::getCurrentCUDAStream());
  return coords;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> voxelize_cuda(
    const at::Tensor& points, const at::Tensor& batch, at::ArrayRef<double> lower,
    at::ArrayRef<double> voxel_size, c10::IntArrayRef grid, int64_t max_points) {
  TORCH_CHECK(points.dim() == 2 && points.size(1) >= 3,
              "sparse3d.voxelize: points must be [P, D] with D >= 3, got ", points.sizes());
  const int64_t P = points.size(0);
  TORCH_CHECK(batch.dim() == 1 && batch.size(0) == P && batch.scalar_type() == at::kInt,
              "sparse3d.voxelize: batch must be int32 [P] with P = ", P);
  TORCH_CHECK(lower.size() == 3 && voxel_size.size() == 3 && grid.size() == 3,
              "sparse3d.voxelize: lower, voxel_size and grid need 3 entries each");
  const at::Tensor pts = points.contiguous(), b = batch.contiguous();
  at::Tensor keys = at::empty({P}, points.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES(pts.scalar_type(), "voxelize_cuda", [&] {
    VoxelGrid<scalar_t> g;
    for (int d = 0; d < 3; ++d) {
      TORCH_CHECK(voxel_size[d] > 0 && grid[d] > 0,
                  "sparse3d.voxelize: voxel_size and grid must be positive");
      g.lower[d] = (scalar_t)lower[d];
      g.size[d] = (scalar_t)voxel_size[d];
      g.shape[d] = grid[d];
    }
    launch_point_keys_kernel<scalar_t>(pts.data_ptr<scalar_t>(), b.data_ptr<int32_t>(), P,
                                       pts.size(1), g, keys.data_ptr<int64_t>(),
                                       at::cuda::getCurrentCUDAStream());
  });
  auto [unique, group] = group_keys_cuda(keys);
  const int64_t V = unique.size(0);
  // A stable sort by group keeps input order inside each voxel; ungrouped rows (-1) first.
  auto [sorted_group, sorted_index] = at::sort(group.to(at::kLong), true, 0, false);
  const at::Tensor valid = sorted_group.ge(0);
  const at::Tensor rows = sorted_index.masked_select(valid);
  const at::Tensor groups_of_rows = sorted_group.masked_select(valid);
  const at::Tensor counts = at::bincount(groups_of_rows, {}, V);
  const at::Tensor starts = counts.cumsum(0).sub(counts);
  const at::Tensor rank =
      at::arange(rows.size(0), rows.options()).sub(starts.index_select(0, groups_of_rows));
  const int64_t cap = max_points > 0 ? max_points : P;
  const at::Tensor order = rows.masked_select(rank.lt(cap));
  const at::Tensor offsets =
      at::cat({at::zeros({1}, counts.options()), counts.clamp_max(cap).cumsum(0)});
  return {decode_keys_cuda(unique, grid, points.options().dtype(at::kInt)), group, order, offsets};
}

std::tuple<at::Tensor, at::Tensor> unique_coords_cuda(const at::Tensor& coords,
                                                      c10::IntArrayRef spatial_shape) {
  check_coords(coords, "unique_coords", "coords");
  ConvGeom g{};
  copy_triple(spatial_shape, "unique_coords", "spatial_shape", 1, g.in_shape);
  at::Tensor keys = at::empty({coords.size(0)}, coords.options().dtype(at::kLong));
  launch_coord_keys_kernel(coords.data_ptr<int32_t>(), coords.size(0), g,
                           keys.data_ptr<int64_t>(), at::cuda::getCurrentCUDAStream());
  TORCH_CHECK(!keys.eq(kNoKey).any().item<bool>(), "sparse3d.unique_coords: a row has a ",
              "negative batch or lies outside spatial_shape ", spatial_shape);
  auto [unique, group] = group_keys_cuda(keys);
  return {decode_keys_cuda(unique, spatial_shape, coords.options()), group};
}

std::tuple<at::Tensor, at::Tensor> batch_norm_stats_cuda(const at::Tensor& values) {
  TORCH_CHECK(values.dim() == 2 && values.is_floating_point(),
              "sparse3d.batch_norm_stats: values must be a float [N, C] tensor, got ",
              values.sizes());
  const at::Tensor x = values.contiguous();
  const int64_t N = x.size(0), C = x.size(1);
  at::Tensor mean = at::empty({C}, x.options()), var = at::empty({C}, x.options());
  at::Tensor scratch = at::empty({2 * stat_chunks(N) * C}, x.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "batch_norm_stats_cuda", [&] {
    launch_batch_norm_stats_kernel<scalar_t>(x.data_ptr<scalar_t>(), N, C,
                                             scratch.data_ptr<double>(),
                                             mean.data_ptr<scalar_t>(), var.data_ptr<scalar_t>(),
                                             at::cuda::getCurrentCUDAStream());
  });
  return {mean, var};
}

std::tuple<at::Tensor, at::Tensor> batch_norm_bwd_reduce_cuda(const at::Tensor& v_out,
                                                              const at::Tensor& values,
                                                              const at::Tensor& mean) {
  TORCH_CHECK(v_out.dim() == 2 && v_out.sizes() == values.sizes() && mean.dim() == 1 &&
                  mean.size(0) == values.size(1),
              "sparse3d.batch_norm_bwd_reduce: need v_out and values [N, C] and mean [C]");
  const at::Tensor g = v_out.contiguous(), x = values.contiguous(), mu = mean.contiguous();
  const int64_t N = x.size(0), C = x.size(1);
  at::Tensor sum_v = at::empty({C}, x.options()), sum_vx = at::empty({C}, x.options());
  at::Tensor scratch = at::empty({2 * stat_chunks(N) * C}, x.options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "batch_norm_bwd_reduce_cuda", [&] {
    launch_batch_norm_bwd_reduce_kernel<scalar_t>(
        g.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), mu.data_ptr<scalar_t>(), N, C,
        scratch.data_ptr<double>(), sum_v.data_ptr<scalar_t>(), sum_vx.data_ptr<scalar_t>(),
        at::cuda::getCurrentCUDAStream());
  });
  return {sum_v, sum_vx};
}

at::Tensor affine_act_cuda(const at::Tensor& values, const at::Tensor& scale,
                           const at::Tensor& shift, const std::optional<at::Tensor>& residual,
                           bool relu) {
  check_affine_act_args(values, scale, shift, residual);
  const at::Tensor x = values.contiguous(), s = scale.contiguous(), b = shift.contiguous();
  const at::Tensor res = residual.has_value() ? residual->contiguous() : at::Tensor();
  at::Tensor out = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "affine_act_cuda", [&] {
    launch_affine_act_kernel<scalar_t>(x.data_ptr<scalar_t>(), s.data_ptr<scalar_t>(),
                                       b.data_ptr<scalar_t>(),
                                       res.defined() ? res.data_ptr<scalar_t>() : nullptr, relu,
                                       x.size(0), x.size(1), out.data_ptr<scalar_t>(),
                                       at::cuda::getCurrentCUDAStream());
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(sparse3d, CUDA, m) {
  m.impl("affine_act", &affine_act_cuda);
  m.impl("kernel_map", &kernel_map_cuda);
  m.impl("conv_map", &conv_map_cuda);
  m.impl("invert_kernel_map", &invert_kernel_map_cuda);
  m.impl("sparse_conv", &sparse_conv_cuda);
  m.impl("sparse_conv_bwd_weight", &sparse_conv_bwd_weight_cuda);
  m.impl("voxelize", &voxelize_cuda);
  m.impl("unique_coords", &unique_coords_cuda);
  m.impl("batch_norm_stats", &batch_norm_stats_cuda);
  m.impl("batch_norm_bwd_reduce", &batch_norm_bwd_reduce_cuda);
}

}  // namespace sparse3d
// --- end of issue 3 section ---

// --- DSVT set partition, issue 6 (CUDA glue) ---
#include <ATen/ATen.h>

namespace sparse3d {

// Defined in cuda/cpu/partition.cpp (device-agnostic ATen, compiled into every build).
WindowGeom make_window_geom(const at::Tensor& coords, c10::IntArrayRef sparse_shape,
                            c10::IntArrayRef window, c10::IntArrayRef shift,
                            int64_t set_size);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> window_runs(
    const at::Tensor& sorted_keys, int64_t volume, int64_t set_size);

namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> set_partition_cuda(
    const at::Tensor& coords_in, c10::IntArrayRef sparse_shape, c10::IntArrayRef window,
    c10::IntArrayRef shift, int64_t set_size) {
  const WindowGeom g = make_window_geom(coords_in, sparse_shape, window, shift, set_size);
  const at::Tensor coords = coords_in.contiguous();
  const int64_t N = coords.size(0), S = set_size;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  at::Tensor in_win = at::empty({N, 3}, coords.options());
  at::Tensor keys = at::empty({2, N}, coords.options().dtype(at::kLong));
  launch_window_keys_kernel(coords.data_ptr<int32_t>(), N, g, in_win.data_ptr<int32_t>(),
                            keys.data_ptr<int64_t>(), stream);
  auto [sorted, order] = keys.sort(true, 1, false);
  order = order.contiguous();
  auto [win_begin, win_count, win_set_begin, set_window] =
      window_runs(sorted[0], window_volume(g), S);
  const int64_t M = set_window.size(0);
  at::Tensor inds = at::empty({2, M, S}, keys.options());
  at::Tensor mask = at::empty({2, M, S}, keys.options().dtype(at::kBool));
  at::Tensor first_slot = at::empty({2, N}, keys.options());
  launch_fill_sets_kernel(order.data_ptr<int64_t>(), N, win_begin.data_ptr<int64_t>(),
                          win_count.data_ptr<int64_t>(), win_set_begin.data_ptr<int64_t>(),
                          set_window.data_ptr<int64_t>(), M, S, inds.data_ptr<int64_t>(),
                          mask.data_ptr<bool>(), first_slot.data_ptr<int64_t>(), stream);
  return {inds, mask, first_slot, in_win};
}

}  // namespace

TORCH_LIBRARY_IMPL(sparse3d, CUDA, m) { m.impl("set_partition", &set_partition_cuda); }

}  // namespace sparse3d
// --- end of issue 6 section ---
