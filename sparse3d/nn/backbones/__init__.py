"""Sparse voxel encoders (3-D backbones)."""
