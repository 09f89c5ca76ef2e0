// CPU kernels for the EWA projection of N Gaussians into C pinhole cameras, and its
// backward. One task per range of Gaussians; each Gaussian sums its C cameras in order,
// so every output has one writer and the result does not depend on the thread count.
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include "parallel.h"
#include "sparse3d/gaussian_projection.h"

namespace sparse3d {
namespace {

constexpr int64_t kGrain = 512;

void check_project_inputs(const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales,
                          const at::Tensor& viewmats, const at::Tensor& Ks) {
  TORCH_CHECK(means.dim() == 2 && means.size(1) == 3, "sparse3d.gaussian_project: means must be [N, 3], got ",
              means.sizes());
  const int64_t N = means.size(0);
  TORCH_CHECK(quats.sizes() == at::IntArrayRef({N, 4}), "sparse3d.gaussian_project: quats must be [N, 4] = [", N,
              ", 4], got ", quats.sizes());
  TORCH_CHECK(scales.sizes() == at::IntArrayRef({N, 3}), "sparse3d.gaussian_project: scales must be [N, 3] = [",
              N, ", 3], got ", scales.sizes());
  TORCH_CHECK(viewmats.dim() == 3 && viewmats.size(1) == 4 && viewmats.size(2) == 4,
              "sparse3d.gaussian_project: viewmats must be [C, 4, 4], got ", viewmats.sizes());
  TORCH_CHECK(Ks.sizes() == at::IntArrayRef({viewmats.size(0), 3, 3}),
              "sparse3d.gaussian_project: Ks must be [C, 3, 3] with C = ", viewmats.size(0), ", got ", Ks.sizes());
  for (const at::Tensor* t : {&quats, &scales, &viewmats, &Ks})
    TORCH_CHECK(t->scalar_type() == means.scalar_type(),
                "sparse3d.gaussian_project: all inputs must share one dtype, got ", means.scalar_type(), " and ",
                t->scalar_type());
}

template <typename scalar_t>
ProjectCamera<scalar_t> camera_of(const scalar_t* viewmats, const scalar_t* Ks, int64_t c, int64_t width,
                                  int64_t height, double near_plane, double far_plane, double eps2d,
                                  double radius_clip) {
  const scalar_t* K = Ks + 9 * c;
  return {viewmats + 16 * c, K[0], K[4], K[2], K[5], width, height, scalar_t(near_plane), scalar_t(far_plane),
          scalar_t(eps2d), scalar_t(radius_clip)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> gaussian_project_cpu(
    const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales, const at::Tensor& viewmats,
    const at::Tensor& Ks, int64_t width, int64_t height, double near_plane, double far_plane, double eps2d,
    double radius_clip) {
  check_project_inputs(means, quats, scales, viewmats, Ks);
  const int64_t N = means.size(0), C = viewmats.size(0);
  const at::Tensor m = means.contiguous(), q = quats.contiguous(), s = scales.contiguous(),
                   vm = viewmats.contiguous(), k = Ks.contiguous();
  at::Tensor means2d = at::empty({C, N, 2}, m.options());
  at::Tensor conics = at::empty({C, N, 3}, m.options());
  at::Tensor depths = at::empty({C, N}, m.options());
  at::Tensor radii = at::empty({C, N, 2}, m.options().dtype(at::kInt));
  at::Tensor comps = at::empty({C, N}, m.options());
  AT_DISPATCH_FLOATING_TYPES(m.scalar_type(), "gaussian_project_cpu", [&] {
    const scalar_t *mp = m.data_ptr<scalar_t>(), *qp = q.data_ptr<scalar_t>(), *sp = s.data_ptr<scalar_t>();
    parallel_for(0, N, kGrain, [&](int64_t n0, int64_t n1) {
      ProjectState<scalar_t> st;
      for (int64_t c = 0; c < C; ++c) {
        const ProjectCamera<scalar_t> cam = camera_of(vm.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(), c, width,
                                                      height, near_plane, far_plane, eps2d, radius_clip);
        for (int64_t n = n0; n < n1; ++n) {
          const int64_t i = c * N + n;
          project_state(mp + 3 * n, qp + 4 * n, sp + 3 * n, cam, st);
          project_outputs(st, cam, means2d.data_ptr<scalar_t>() + 2 * i, conics.data_ptr<scalar_t>() + 3 * i,
                          depths.data_ptr<scalar_t>() + i, radii.data_ptr<int32_t>() + 2 * i,
                          comps.data_ptr<scalar_t>() + i);
        }
      }
    });
  });
  return {means2d, conics, depths, radii, comps};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> gaussian_project_bwd_cpu(
    const at::Tensor& means, const at::Tensor& quats, const at::Tensor& scales, const at::Tensor& viewmats,
    const at::Tensor& Ks, int64_t width, int64_t height, double near_plane, double far_plane, double eps2d,
    const at::Tensor& radii, const at::Tensor& v_means2d, const at::Tensor& v_conics, const at::Tensor& v_depths,
    const at::Tensor& v_compensations) {
  check_project_inputs(means, quats, scales, viewmats, Ks);
  const int64_t N = means.size(0), C = viewmats.size(0);
  TORCH_CHECK(radii.sizes() == at::IntArrayRef({C, N, 2}) && v_means2d.sizes() == at::IntArrayRef({C, N, 2}) &&
                  v_conics.sizes() == at::IntArrayRef({C, N, 3}) && v_depths.sizes() == at::IntArrayRef({C, N}) &&
                  v_compensations.sizes() == at::IntArrayRef({C, N}),
              "sparse3d.gaussian_project_bwd: radii and gradients must be [C, N, 2], [C, N, 2], [C, N, 3], "
              "[C, N], [C, N] with C = ",
              C, ", N = ", N);
  const at::Tensor m = means.contiguous(), q = quats.contiguous(), s = scales.contiguous(),
                   vm = viewmats.contiguous(), k = Ks.contiguous(), r = radii.contiguous(),
                   g_m2d = v_means2d.contiguous(), g_con = v_conics.contiguous(), g_d = v_depths.contiguous(),
                   g_comp = v_compensations.contiguous();
  at::Tensor v_means = at::zeros({N, 3}, m.options());
  at::Tensor v_quats = at::zeros({N, 4}, m.options());
  at::Tensor v_scales = at::zeros({N, 3}, m.options());
  AT_DISPATCH_FLOATING_TYPES(m.scalar_type(), "gaussian_project_bwd_cpu", [&] {
    const scalar_t *mp = m.data_ptr<scalar_t>(), *qp = q.data_ptr<scalar_t>(), *sp = s.data_ptr<scalar_t>();
    const int32_t* rp = r.data_ptr<int32_t>();
    parallel_for(0, N, kGrain, [&](int64_t n0, int64_t n1) {
      ProjectState<scalar_t> st;
      for (int64_t n = n0; n < n1; ++n)
        for (int64_t c = 0; c < C; ++c) {
          const int64_t i = c * N + n;
          // Culled pairs have no intersections, hence no gradient (the reference agrees).
          if (rp[2 * i] <= 0 && rp[2 * i + 1] <= 0) continue;
          const ProjectCamera<scalar_t> cam = camera_of(vm.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(), c, width,
                                                        height, near_plane, far_plane, eps2d, 0.0);
          project_state(mp + 3 * n, qp + 4 * n, sp + 3 * n, cam, st);
          project_vjp(qp + 4 * n, sp + 3 * n, st, cam, g_m2d.data_ptr<scalar_t>() + 2 * i,
                      g_con.data_ptr<scalar_t>() + 3 * i, g_d.data_ptr<scalar_t>()[i],
                      g_comp.data_ptr<scalar_t>()[i], v_means.data_ptr<scalar_t>() + 3 * n,
                      v_quats.data_ptr<scalar_t>() + 4 * n, v_scales.data_ptr<scalar_t>() + 3 * n);
        }
    });
  });
  return {v_means, v_quats, v_scales};
}

}  // namespace

TORCH_LIBRARY_IMPL(sparse3d, CPU, m) {
  m.impl("gaussian_project", &gaussian_project_cpu);
  m.impl("gaussian_project_bwd", &gaussian_project_bwd_cpu);
}

}  // namespace sparse3d
