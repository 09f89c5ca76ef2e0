"""The file layout of a nuScenes detection submission: per-sample box lists under
``results`` beside a ``meta`` block naming the sensors used. Validation and conversion
from LiDAR-frame boxes are in :mod:`sparse3d.detection.nuscenes.submission`."""


def make_submission(results: dict[str, list[dict]], use_lidar: bool = True, use_camera: bool = False) -> dict:
    """Wraps per-sample box lists into a submission with its ``meta`` block."""
    meta = {"use_camera": use_camera, "use_lidar": use_lidar, "use_radar": False, "use_map": False,
            "use_external": False}
    return {"meta": meta, "results": results}
