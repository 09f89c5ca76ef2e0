// Rotated bird's-eye-view (BEV) box overlap, shared by the CPU and CUDA kernels of
// sparse3d::bev_iou and sparse3d::rotated_nms.
//
// Boxes are LiDAR-frame rows (x, y, z, dx, dy, dz, yaw, ...): dx along the heading, yaw
// counter-clockwise about +z; only x, y, dx, dy and yaw are read. The overlap of two boxes is
// the exact area of their intersection: box a's rectangle, expressed in box b's frame
// (where b is the axis-aligned [-hx, hx] x [-hy, hy]), is clipped by b's four half-planes
// (Sutherland-Hodgman), and the clipped convex polygon's area is the shoelace sum. Nothing is
// widened by a margin, so touching boxes overlap by 0 and identical boxes by their area
// (up to rounding). Everything runs in double, whatever the input type.
#pragma once

#include <cmath>

#include "sparse3d/common.h"

namespace sparse3d {

// The IoU denominator's floor: IoU = inter / max(union, kBevMinUnion) (OpenPCDet's value),
// so two zero-area boxes give 0, not NaN.
constexpr double kBevMinUnion = 1e-8;

// Clipping a convex n-gon by one half-plane keeps its inside vertices and adds one vertex
// per crossing edge: m = inside + crossings <= inside + 2 min(inside, n - inside) <= 1.5 n.
// A convex polygon has at most 2 crossings, but rounding can misjudge nearly collinear
// vertices, so the buffer holds the bound for any sign pattern: 4 -> 6 -> 9 -> 13 -> 19.
constexpr int kBevClipMaxVerts = 19;

// One box's BEV footprint, computed once per box and reused for every pair.
struct BevBox {
  double x, y;    // centre
  double hx, hy;  // half sizes along the heading and across it (0 for a degenerate box)
  double c, s;    // cos and sin of the yaw
  double area;    // dx * dy, 0 unless dx > 0 and dy > 0
  double radius;  // circumradius sqrt(hx^2 + hy^2)
};

template <typename scalar_t>
SP3D_HD inline BevBox make_bev_box(const scalar_t* box) {  // [>= 7]
  BevBox b;
  const double dx = double(box[3]), dy = double(box[4]), yaw = double(box[6]);
  // `!(dx > 0 && dy > 0)` also catches NaN sizes: such a box overlaps nothing.
  const bool solid = dx > 0 && dy > 0;
  b.x = double(box[0]);
  b.y = double(box[1]);
  b.hx = solid ? 0.5 * dx : 0.0;
  b.hy = solid ? 0.5 * dy : 0.0;
  b.c = std::cos(yaw);
  b.s = std::sin(yaw);
  b.area = solid ? dx * dy : 0.0;
  b.radius = std::sqrt(b.hx * b.hx + b.hy * b.hy);
  return b;
}

// The corners of box a in the frame of box f (origin at f's centre, x along f's heading),
// counter-clockwise; an f with centre 0 and yaw 0 (c = 1, s = 0) gives the world corners.
SP3D_HD inline void bev_box_corners_in(const BevBox& a, const BevBox& f,  // inputs
                                       double* px, double* py) {           // outputs [4]
  const double dx = a.x - f.x, dy = a.y - f.y;
  const double cx = f.c * dx + f.s * dy, cy = -f.s * dx + f.c * dy;  // a's centre in f
  const double c = a.c * f.c + a.s * f.s, s = a.s * f.c - a.c * f.s;  // yaw of a relative to f
  const double ux = a.hx * c, uy = a.hx * s;    // half the heading edge
  const double vx = -a.hy * s, vy = a.hy * c;   // half the cross edge
  px[0] = cx - ux - vx; py[0] = cy - uy - vy;
  px[1] = cx + ux - vx; py[1] = cy + uy - vy;
  px[2] = cx + ux + vx; py[2] = cy + uy + vy;
  px[3] = cx - ux + vx; py[3] = cy - uy + vy;
}

// Clips the polygon (px, py)[n] by the half-plane sign * p[axis] <= h into (qx, qy); returns
// the new vertex count. A crossing vertex is placed exactly on the clipping line, so later
// half-planes and the area see the boundary value, not an interpolated approximation of it.
SP3D_HD inline int bev_clip_half_plane(const double* px, const double* py, int n,  // inputs
                                       int axis, double sign, double h,
                                       double* qx, double* qy) {  // outputs [kBevClipMaxVerts]
  int m = 0;
  for (int k = 0; k < n; ++k) {
    const int l = k + 1 == n ? 0 : k + 1;
    const double sk = h - sign * (axis == 0 ? px[k] : py[k]);  // >= 0: inside
    const double sl = h - sign * (axis == 0 ? px[l] : py[l]);
    if (sk >= 0) {
      qx[m] = px[k];
      qy[m] = py[k];
      ++m;
    }
    if ((sk >= 0) != (sl >= 0)) {
      // One slack is >= 0 and the other < 0, so sk - sl != 0 and t lies in [0, 1].
      const double t = sk / (sk - sl);
      qx[m] = axis == 0 ? sign * h : px[k] + t * (px[l] - px[k]);
      qy[m] = axis == 1 ? sign * h : py[k] + t * (py[l] - py[k]);
      ++m;
    }
  }
  return m;
}

// Area of the intersection of boxes a and b, in [0, min(a.area, b.area)].
SP3D_HD inline double bev_overlap_area(const BevBox& a, const BevBox& b) {
  if (a.area <= 0 || b.area <= 0) return 0.0;
  // Disjoint circumcircles: no overlap, and most pairs of a scene stop here.
  const double dx = a.x - b.x, dy = a.y - b.y, reach = a.radius + b.radius;
  if (dx * dx + dy * dy > reach * reach) return 0.0;
  double px[kBevClipMaxVerts], py[kBevClipMaxVerts], qx[kBevClipMaxVerts], qy[kBevClipMaxVerts];
  bev_box_corners_in(a, b, px, py);
  int n = 4;
  n = bev_clip_half_plane(px, py, n, 0, 1.0, b.hx, qx, qy);
  n = bev_clip_half_plane(qx, qy, n, 0, -1.0, b.hx, px, py);
  n = bev_clip_half_plane(px, py, n, 1, 1.0, b.hy, qx, qy);
  n = bev_clip_half_plane(qx, qy, n, 1, -1.0, b.hy, px, py);
  // Shoelace as a fan from vertex 0: relative coordinates keep the rounding at the scale of
  // the polygon, and a flat polygon on an axis-parallel line (touching boxes) sums to 0.
  double twice = 0.0;
  for (int k = 1; k + 1 < n; ++k)
    twice += (px[k] - px[0]) * (py[k + 1] - py[0]) - (px[k + 1] - px[0]) * (py[k] - py[0]);
  // Clipping keeps a's counter-clockwise order, so the sum is >= 0 up to rounding; the
  // clamps keep IoU in [0, 1] when rounding overshoots (identical or nested boxes).
  const double area = 0.5 * twice, cap = a.area < b.area ? a.area : b.area;
  return area < 0 ? 0.0 : (area > cap ? cap : area);
}

// Intersection over union of the BEV footprints of a and b, in [0, 1].
SP3D_HD inline double bev_box_iou(const BevBox& a, const BevBox& b) {
  const double inter = bev_overlap_area(a, b);
  const double uni = a.area + b.area - inter;
  return inter / (uni > kBevMinUnion ? uni : kBevMinUnion);
}

}  // namespace sparse3d
