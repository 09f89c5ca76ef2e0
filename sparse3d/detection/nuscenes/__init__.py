"""nuScenes v1.0: the database reader, a synthetic nuScenes-format generator, submission
conversion / validation and an exact, fast re-implementation of the detection metrics.

Nothing here imports the official devkit; it is only the reference in tests.
"""

from sparse3d.detection.nuscenes.errors import NuScenesFormatError

__all__ = ["NuScenesFormatError"]
