"""nuScenes splits: the official scene lists and custom splits from ``splits.json``.

The official lists are stored as inclusive ranges of scene numbers (``scene-0001`` is 1);
they are the nuScenes v1.0 split definitions.
"""

from pathlib import Path

from sparse3d.data.nuscenes.errors import NuScenesFormatError
from sparse3d.io.read import read_json

_VAL_RANGES = (
    (3, 3), (12, 18), (35, 36), (38, 39), (92, 110), (221, 221), (268, 278), (329, 332), (344, 346),
    (519, 524), (552, 565), (625, 627), (629, 630), (632, 638), (770, 771), (775, 775), (777, 778),
    (780, 784), (794, 800), (802, 802), (904, 917), (919, 931), (962, 963), (966, 969), (971, 972),
    (1059, 1073),
)
_TEST_RANGES = (
    (77, 91), (111, 119), (140, 140), (142, 148), (265, 266), (279, 282), (307, 314), (333, 343), (481, 498),
    (547, 551), (601, 604), (606, 624), (827, 831), (833, 842), (844, 846), (932, 933), (935, 943),
    (1026, 1043),
)
_TRAIN_DETECT_RANGES = (
    (1, 2), (41, 76), (161, 168), (170, 176), (190, 196), (199, 200), (202, 204), (206, 214), (254, 264),
    (283, 306), (315, 318), (321, 321), (323, 324), (347, 375), (382, 382), (420, 439), (457, 459),
    (461, 465), (467, 469), (471, 472), (474, 480), (566, 566), (568, 568), (570, 578), (580, 580),
    (582, 583), (665, 679), (681, 681), (683, 689), (739, 741), (744, 744), (746, 747), (749, 752),
    (757, 765), (767, 769), (868, 873), (875, 878), (880, 880), (882, 903), (945, 945), (947, 947),
    (949, 949), (952, 953), (955, 961), (975, 984), (988, 991), (1011, 1025), (1074, 1102), (1104, 1105),
)
_TRAIN_TRACK_RANGES = (
    (4, 11), (19, 34), (120, 135), (138, 139), (149, 152), (154, 155), (157, 160), (177, 185), (187, 188),
    (218, 220), (222, 222), (224, 253), (328, 328), (376, 381), (383, 386), (388, 403), (405, 408),
    (410, 419), (440, 456), (499, 502), (504, 515), (517, 518), (525, 539), (541, 546), (584, 600),
    (639, 664), (695, 698), (700, 701), (703, 719), (726, 728), (730, 731), (733, 738), (786, 787),
    (789, 792), (803, 806), (808, 813), (815, 817), (819, 822), (847, 856), (858, 858), (860, 866),
    (992, 992), (994, 1010), (1044, 1058), (1106, 1110),
)
_MINI_TRAIN = ("scene-0061", "scene-0553", "scene-0655", "scene-0757", "scene-0796", "scene-1077", "scene-1094",
               "scene-1100")
_MINI_VAL = ("scene-0103", "scene-0916")

# Which version suffix each official split needs (the devkit asserts the same pairing).
_SPLIT_VERSION_SUFFIX = {
    "train": "trainval", "val": "trainval", "train_detect": "trainval", "train_track": "trainval",
    "test": "test", "mini_train": "mini", "mini_val": "mini",
}


def official_splits() -> dict[str, list[str]]:
    """The predefined nuScenes splits: split name -> scene names (sorted)."""
    train_detect, train_track = _expand(_TRAIN_DETECT_RANGES), _expand(_TRAIN_TRACK_RANGES)
    return {
        "train": sorted(train_detect + train_track), "val": _expand(_VAL_RANGES), "test": _expand(_TEST_RANGES),
        "mini_train": list(_MINI_TRAIN), "mini_val": list(_MINI_VAL),
        "train_detect": train_detect, "train_track": train_track,
    }


def is_official_split(split: str) -> bool:
    """Whether ``split`` names a predefined nuScenes split (else it must be a custom one)."""
    return split in _SPLIT_VERSION_SUFFIX


def scenes_of_split(dataroot: str | Path, version: str, split: str) -> list[str]:
    """Scene names of an official split, or of a custom split in ``<dataroot>/<version>/splits.json``.

    Raises:
        NuScenesFormatError: the split does not fit the version (e.g. ``val`` on a mini
            version), or a custom split is missing or malformed.
    """
    if is_official_split(split):
        suffix = _SPLIT_VERSION_SUFFIX[split]
        if not version.endswith(suffix):
            raise NuScenesFormatError(f"split {split!r} needs a version ending in {suffix!r}, got version {version!r}")
        return official_splits()[split]
    path = Path(dataroot) / version / "splits.json"
    if not path.is_file():
        raise NuScenesFormatError(
            f"split {split!r} is not an official nuScenes split and there is no custom split file {path}"
        )
    splits = read_json(path, "custom splits", NuScenesFormatError)
    if not isinstance(splits, dict) or split not in splits:
        known = sorted(splits) if isinstance(splits, dict) else []
        raise NuScenesFormatError(f"{path}: no split {split!r} (splits in the file: {known})")
    scenes = splits[split]
    if not isinstance(scenes, list) or not all(isinstance(s, str) for s in scenes):
        raise NuScenesFormatError(f"{path}: split {split!r} must be a list of scene names")
    return scenes


def _expand(ranges: tuple[tuple[int, int], ...]) -> list[str]:
    return [f"scene-{n:04d}" for lo, hi in ranges for n in range(lo, hi + 1)]
