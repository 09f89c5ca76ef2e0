"""The nuScenes detection classes, their category mapping, attributes and ranges."""

DETECTION_NAMES: tuple[str, ...] = (
    "car", "truck", "bus", "trailer", "construction_vehicle",
    "pedestrian", "motorcycle", "bicycle", "traffic_cone", "barrier",
)
"""The 10 detection classes, in the order of the official config (= printing order)."""

ATTRIBUTE_NAMES: tuple[str, ...] = (
    "vehicle.moving", "vehicle.parked", "vehicle.stopped",
    "pedestrian.moving", "pedestrian.standing", "pedestrian.sitting_lying_down",
    "cycle.with_rider", "cycle.without_rider",
)
"""The 8 attributes a box may carry ('' for none)."""

BICYCLE_RACK = "static_object.bicycle_rack"
"""Category whose boxes remove bicycles / motorcycles parked inside them from the eval."""

_CATEGORY_TO_DETECTION = {
    "movable_object.barrier": "barrier",
    "vehicle.bicycle": "bicycle",
    "vehicle.bus.bendy": "bus",
    "vehicle.bus.rigid": "bus",
    "vehicle.car": "car",
    "vehicle.construction": "construction_vehicle",
    "vehicle.motorcycle": "motorcycle",
    "human.pedestrian.adult": "pedestrian",
    "human.pedestrian.child": "pedestrian",
    "human.pedestrian.construction_worker": "pedestrian",
    "human.pedestrian.police_officer": "pedestrian",
    "movable_object.trafficcone": "traffic_cone",
    "vehicle.trailer": "trailer",
    "vehicle.truck": "truck",
}

CLASS_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    **{name: ATTRIBUTE_NAMES[0:3] for name in ("car", "truck", "bus", "trailer", "construction_vehicle")},
    "pedestrian": ATTRIBUTE_NAMES[3:6],
    "motorcycle": ATTRIBUTE_NAMES[6:8],
    "bicycle": ATTRIBUTE_NAMES[6:8],
    "traffic_cone": (),
    "barrier": (),
}
"""Attributes that are meaningful for each detection class."""

DEFAULT_ATTRIBUTE: dict[str, str] = {
    "car": "vehicle.parked", "truck": "vehicle.parked", "bus": "vehicle.moving", "trailer": "vehicle.parked",
    "construction_vehicle": "vehicle.parked", "pedestrian": "pedestrian.moving",
    "motorcycle": "cycle.without_rider", "bicycle": "cycle.without_rider", "traffic_cone": "", "barrier": "",
}
"""The attribute guessed for a class when nothing better is known."""

_VEHICLES = frozenset({"car", "truck", "bus", "trailer", "construction_vehicle"})
_CYCLES = frozenset({"motorcycle", "bicycle"})


def category_to_detection_name(category: str) -> str | None:
    """The detection class of a nuScenes general category, or None if it is not evaluated."""
    return _CATEGORY_TO_DETECTION.get(category)


def guess_attribute(detection_name: str, speed: float) -> str:
    """The usual attribute heuristic for detectors without an attribute head.

    Moving (speed > 0.2 m/s) vehicles are ``vehicle.moving`` and cycles ``cycle.with_rider``;
    a slow pedestrian is ``pedestrian.standing`` and a slow bus ``vehicle.stopped``; every
    other case takes :data:`DEFAULT_ATTRIBUTE`.

    Args:
        detection_name: one of :data:`DETECTION_NAMES`.
        speed: ground speed in m/s (NaN counts as not moving).
    """
    if speed > 0.2:
        if detection_name in _VEHICLES:
            return "vehicle.moving"
        if detection_name in _CYCLES:
            return "cycle.with_rider"
    else:
        if detection_name == "pedestrian":
            return "pedestrian.standing"
        if detection_name == "bus":
            return "vehicle.stopped"
    return DEFAULT_ATTRIBUTE[detection_name]
