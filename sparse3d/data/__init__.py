"""Multi-view data: nerfstudio, Blender and COLMAP readers/writers into one
:class:`MultiViewDataset` (the synthetic objects are made by ``sparse3d.synthetic.objects``)."""

from sparse3d.data.dataset import MultiViewDataset
from sparse3d.data.loader import detect_format, load_multiview

__all__ = ["MultiViewDataset", "detect_format", "load_multiview"]
