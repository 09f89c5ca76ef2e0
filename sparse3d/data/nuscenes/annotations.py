"""The ``sample_annotation`` table as columns: what the evaluation and the box velocities read.

Examples:
    >>> db = NuScenesTables("/data/nuscenes", "v1.0-mini")
    >>> ann = db.annotations
    >>> ann.velocities(ann.rows([ann.token[0]]))  # float64 [1, 3]
"""

from dataclasses import dataclass, fields
from itertools import repeat
from pathlib import Path

import numpy as np

from sparse3d.data.nuscenes.errors import NuScenesFormatError
from sparse3d.io.json_fast import column, values


@dataclass(frozen=True)
class AnnotationRecord:
    """The fields of a ``sample_annotation`` record that sparse3d reads (the decoding schema;
    the files hold more, such as ``visibility_token``)."""

    token: str
    sample_token: str
    instance_token: str
    # A tuple, not a list: tuples of strings leave the garbage collector's lists.
    attribute_tokens: tuple[str, ...]
    translation: tuple[float, float, float]
    size: tuple[float, float, float]
    rotation: tuple[float, float, float, float]
    prev: str
    next: str
    num_lidar_pts: int
    num_radar_pts: int


ANNOTATION_FIELDS = tuple(f.name for f in fields(AnnotationRecord))
"""The fields every ``sample_annotation`` record must have."""


@dataclass(frozen=True)
class AnnotationTable:
    """Every annotation of the database, one row per record in file order."""

    token: list[str]
    sample_token: list[str]
    instance_token: list[str]
    attribute_tokens: list
    """[A] each record's attribute tokens (a list or tuple)."""
    translation: np.ndarray
    """float64 [A, 3] box centre, global frame."""
    size: np.ndarray
    """float64 [A, 3] (w, l, h)."""
    rotation: np.ndarray
    """float64 [A, 4] quaternion (w, x, y, z)."""
    prev: np.ndarray
    """int64 [A] row of the instance's previous annotation, -1 for none."""
    next: np.ndarray
    """int64 [A] row of the instance's next annotation, -1 for none."""
    num_lidar_pts: np.ndarray
    """int64 [A]."""
    num_radar_pts: np.ndarray
    """int64 [A]."""
    timestamp: np.ndarray
    """int64 [A] timestamp (us) of the annotation's sample."""
    row_of: dict[str, int]
    """token -> row."""

    @staticmethod
    def from_records(records: list, sample_timestamp: dict[str, int], path: Path) -> "AnnotationTable":
        """Columns of the records (typed, or dicts with every field of :class:`AnnotationRecord`).

        Args:
            records: the table, in file order.
            sample_timestamp: sample token -> timestamp (us), for every record's sample.
            path: the table file, named in errors.

        Raises:
            NuScenesFormatError: a ``prev`` / ``next`` is not an annotation token, or a
                numeric field does not hold the expected numbers.
        """
        tokens = values(records, "token")
        row_of = {t: i for i, t in enumerate(tokens)}
        link_row = {**row_of, "": -1}  # an empty link is -1; -2 marks a dangling one
        links = {}
        for field in ("prev", "next"):
            linked = values(records, field)
            links[field] = np.fromiter(map(link_row.get, linked, repeat(-2)), np.int64, count=len(linked))
            bad = np.flatnonzero(links[field] == -2)
            if len(bad):
                raise NuScenesFormatError(f"{path}: record {bad[0]} field {field!r} = {linked[bad[0]]!r} "
                                          "is not an annotation token")
        sample_tokens = values(records, "sample_token")
        try:
            numbers = {name: column(records, name, np.float64, width) for name, width in
                       (("translation", 3), ("size", 3), ("rotation", 4))}
            numbers.update({name: column(records, name, np.int64) for name in ("num_lidar_pts", "num_radar_pts")})
        except (TypeError, ValueError) as err:
            raise NuScenesFormatError(f"{path}: malformed numeric field ({err})") from err
        return AnnotationTable(
            token=tokens, sample_token=sample_tokens, instance_token=values(records, "instance_token"),
            attribute_tokens=values(records, "attribute_tokens"), prev=links["prev"], next=links["next"],
            timestamp=np.fromiter(map(sample_timestamp.__getitem__, sample_tokens), np.int64, count=len(tokens)),
            row_of=row_of, **numbers,
        )

    def __len__(self) -> int:
        return len(self.token)

    def rows(self, tokens: list[str]) -> np.ndarray:
        """int64 [K] rows of these annotation tokens."""
        return np.fromiter(map(self.row_of.__getitem__, tokens), np.int64, count=len(tokens))

    def velocities(self, rows: np.ndarray, max_time_diff: float = 1.5) -> np.ndarray:
        """Global-frame velocities of annotated boxes from their neighbours in the instance chain.

        A centred difference over ``prev`` / ``next`` (one-sided at the ends) with the
        sample timestamps; NaN for a lone annotation or a gap over ``max_time_diff``
        seconds (doubled when centred). Same float64 arithmetic as the devkit's
        ``box_velocity``, vectorised.

        Args:
            rows: int64 [K] annotation rows.

        Returns:
            float64 [K, 3] m/s.
        """
        rows = np.asarray(rows, np.int64)
        prev, nxt = self.prev[rows], self.next[rows]
        first, last = np.where(prev >= 0, prev, rows), np.where(nxt >= 0, nxt, rows)
        pos_diff = self.translation[last] - self.translation[first]
        time_diff = 1e-6 * self.timestamp[last] - 1e-6 * self.timestamp[first]
        limit = np.where((prev >= 0) & (nxt >= 0), 2 * max_time_diff, max_time_diff)
        invalid = ((prev < 0) & (nxt < 0)) | (time_diff > limit)
        with np.errstate(divide="ignore", invalid="ignore"):
            velocity = pos_diff / time_diff[:, None]
        velocity[invalid] = np.nan
        return velocity
