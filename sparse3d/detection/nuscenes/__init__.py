"""nuScenes detection: the LiDAR sample reader, submission conversion / validation and an
exact, fast re-implementation of the detection metrics (the format itself -- tables,
classes, splits -- is :mod:`sparse3d.data.nuscenes`; the generator
:mod:`sparse3d.synthetic.nuscenes`).

Nothing here imports the official devkit; it is only the reference in tests.
"""

from sparse3d.data.nuscenes.errors import NuScenesFormatError

__all__ = ["NuScenesFormatError"]
