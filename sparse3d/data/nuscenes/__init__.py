"""The nuScenes v1.0 format, shared by the detectors, the evaluation and the generator:
the JSON tables (``tables``), class and attribute names (``classes``), split lists
(``splits``), the submission file layout (``results``) and the format error."""

from sparse3d.data.nuscenes.errors import NuScenesFormatError

__all__ = ["NuScenesFormatError"]
