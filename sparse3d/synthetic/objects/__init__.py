"""Synthetic multi-view object data, rendered by sparse3d's own mesh rasterizer."""

from sparse3d.synthetic.objects.generator import (
    SyntheticObjectsConfig,
    write_synthetic_objects,
)

__all__ = ["SyntheticObjectsConfig", "write_synthetic_objects"]
