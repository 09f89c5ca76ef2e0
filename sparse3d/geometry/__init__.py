"""Geometry shared by every layer: cameras (OpenCV world-to-camera ``viewmats`` and
intrinsics ``Ks``, conversions from other conventions) and rotations. Imports nothing
else of sparse3d."""
