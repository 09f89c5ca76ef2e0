"""Mock detection submissions made from a database's GT: a stand-in detector whose errors
exercise every subtle point of the nuScenes evaluation.

Per GT box: misses, centre / size / yaw noise, yaw flips by pi, class confusions, wrong
attributes, velocity noise and NaN velocities; plus duplicates with equal scores, scores
rounded to two decimals (many ties) and some exactly 0, false positives (some beyond the
class range), and one sample left with an empty list. Deterministic from the seed.
"""

import numpy as np

from sparse3d.data.nuscenes.classes import (
    CLASS_ATTRIBUTES,
    DETECTION_NAMES,
    category_to_detection_name,
)
from sparse3d.data.nuscenes.results import make_submission
from sparse3d.data.nuscenes.tables import NuScenesTables
from sparse3d.geometry.rotations import (
    quats_from_rotmats,
    rotmats_from_quats,
    yaw_matrices,
)


def mock_submission(
    db: NuScenesTables, sample_tokens: list[str], seed: int = 0, shuffle_samples: bool = True,
    false_positives_per_sample: float = 3.0,
) -> dict:
    """A submission for the given samples, derived from their GT with seeded noise.

    Args:
        db: the database holding the GT.
        sample_tokens: the samples to predict (all get an entry; the second one stays empty).
        seed: RNG seed.
        shuffle_samples: list the samples in a random order in ``results`` (the devkit's
            tie-breaking follows that order).
        false_positives_per_sample: mean number of random extra boxes per sample (real
            detectors emit hundreds of low-score boxes per sample).

    Returns:
        ``{"meta": ..., "results": {token: [box, ...]}}`` ready for ``json.dump``.
    """
    rng = np.random.default_rng(seed)
    results = {}
    for s, token in enumerate(sample_tokens):
        anns = [a for a in db.sample_annotations(token) if category_to_detection_name(db.category_name(a))]
        ego = np.array(db.get("ego_pose", db.keyframe_lidar(token)["ego_pose_token"])["translation"], np.float64)
        velocities = db.box_velocities(anns)[:, :2] if anns else np.zeros((0, 2))
        boxes = [] if s == 1 else (_detections(rng, db, token, anns, velocities)
                                   + _false_positives(rng, token, ego, false_positives_per_sample))
        results[token] = boxes
    order = list(results)
    if shuffle_samples:
        order = [order[i] for i in rng.permutation(len(order))]
    return make_submission({t: results[t] for t in order})


def _detections(rng, db, token, anns, velocities) -> list[dict]:
    out = []
    for ann, gt_velocity in zip(anns, velocities):
        if rng.random() < 0.15:
            continue
        name = category_to_detection_name(db.category_name(ann))
        if rng.random() < 0.05:
            name = str(rng.choice(DETECTION_NAMES))
        scale = float(rng.choice([0.1, 0.4, 1.5]))
        translation = np.array(ann["translation"]) + rng.normal(0.0, scale, 3) * [1.0, 1.0, 0.3]
        size = np.maximum(np.array(ann["size"]) * (1.0 + rng.normal(0.0, 0.1, 3)), 0.05)
        yaw_noise = rng.normal(0.0, 0.15) + (np.pi if rng.random() < 0.1 else 0.0)
        rotation = _rotate_about_z(np.array(ann["rotation"], np.float64), yaw_noise)
        if np.isnan(gt_velocity).any():
            velocity = rng.normal(0.0, 2.0, 2)
        else:
            velocity = gt_velocity + rng.normal(0.0, 0.5, 2)
        if rng.random() < 0.05:
            velocity = np.array([np.nan, np.nan])
        box = _box(token, translation, size, rotation, velocity, name, _score(rng), _attribute(rng, db, ann, name))
        out.append(box)
        if rng.random() < 0.08:
            # An exact duplicate with an equal score: the tie-breaking decides which one matches.
            out.append(dict(box))
        if rng.random() < 0.05:
            shifted = dict(box, translation=(translation + [0.3, -0.2, 0.0]).tolist(), detection_score=_score(rng))
            out.append(shifted)
    return out


def _false_positives(rng, token, ego, mean_count: float) -> list[dict]:
    out = []
    for _ in range(min(int(rng.poisson(mean_count)), 400)):
        name = str(rng.choice(DETECTION_NAMES))
        distance, bearing = rng.uniform(2.0, 65.0), rng.uniform(-np.pi, np.pi)
        translation = ego + [distance * np.cos(bearing), distance * np.sin(bearing), 1.0]
        size = rng.uniform(0.4, 5.0, 3)
        rotation = _rotate_about_z(np.array([1.0, 0.0, 0.0, 0.0]), rng.uniform(-np.pi, np.pi))
        attrs = CLASS_ATTRIBUTES[name]
        attribute = str(rng.choice(attrs)) if attrs else ""
        # Like a real detector's extra boxes, false positives mostly score low.
        score = round(0.05 + 0.6 * float(rng.random()) ** 2, 2)
        out.append(_box(token, translation, size, rotation, rng.normal(0.0, 3.0, 2), name, score, attribute))
    return out


def _score(rng) -> float:
    # Two decimals make ties common; a few exact zeros exercise the max-recall index.
    return 0.0 if rng.random() < 0.02 else round(float(rng.uniform(0.05, 1.0)), 2)


def _attribute(rng, db, ann, name: str) -> str:
    attrs = CLASS_ATTRIBUTES[name]
    if not attrs:
        return ""
    gt_names = [db.get("attribute", t)["name"] for t in ann["attribute_tokens"]]
    if gt_names and gt_names[0] in attrs and rng.random() < 0.8:
        return gt_names[0]
    return str(rng.choice(attrs))


def _rotate_about_z(quaternion: np.ndarray, angle: float) -> np.ndarray:
    return quats_from_rotmats(yaw_matrices(angle) @ rotmats_from_quats(quaternion))


def _box(token, translation, size, rotation, velocity, name, score, attribute) -> dict:
    return {"sample_token": token, "translation": [float(v) for v in translation], "size": [float(v) for v in size],
            "rotation": [float(v) for v in rotation], "velocity": [float(v) for v in velocity],
            "detection_name": name, "detection_score": score, "attribute_name": attribute}
