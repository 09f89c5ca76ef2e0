"""Detectors: point clouds in, boxes out (voxel encoder, 3D backbone, BEV neck, dense head)."""
