"""The viewer's colours: fixed palettes for classes and outcomes, and a colour map for
scalar values (depth, height, intensity, time)."""

import numpy as np
from matplotlib import colormaps

DEFAULT_COLOR = (90, 200, 255)
"""RGB of points and meshes without colours, and of unlabelled boxes."""
LABEL_COLORS = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
                (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212))
"""RGB of boxes by class label (cycled); one each for the 10 nuScenes detection classes."""
OUTCOME_COLORS = ((40, 220, 60), (255, 40, 40), (255, 160, 0), (150, 150, 150))
"""RGB of true positives, false positives, false negatives and ignored boxes (in the
order of the outcome codes of ``sparse3d.detection.nuscenes.eval.outcomes``)."""
INVALID_COLOR = (255, 255, 255)
"""RGB of values a colour map cannot show (NaN, infinite, or not positive where asked)."""


def label_color(label: int) -> tuple[int, int, int]:
    """RGB of class ``label`` (the palette is cycled)."""
    return LABEL_COLORS[label % len(LABEL_COLORS)]


def mapped_colors(values: np.ndarray, valid: np.ndarray | None = None, quantiles: tuple[float, float] = (0.02, 0.98),
                  value_range: tuple[float, float] | None = None) -> np.ndarray:
    """uint8 [..., 3] turbo colours of float ``values`` [...], stretched between the given
    quantiles of the valid values (so that a few outliers do not flatten the rest), or over
    a fixed ``value_range``.

    Args:
        values: float array of any shape.
        valid: bool array of the same shape, the values to colour (default: the finite
            ones); the others get :data:`INVALID_COLOR`.
        quantiles: the values at these quantiles map to the two ends of the colour map.
        value_range: (low, high) mapped to the two ends instead (values beyond are clipped).
    """
    values = np.asarray(values, np.float64)
    valid = np.isfinite(values) if valid is None else valid & np.isfinite(values)
    colors = np.empty((*values.shape, 3), np.uint8)
    colors[...] = INVALID_COLOR
    if valid.any():
        low, high = value_range if value_range is not None else np.quantile(values[valid], quantiles)
        scaled = np.clip((values[valid] - low) / max(high - low, 1e-12), 0.0, 1.0)
        colors[valid] = (colormaps["turbo"](scaled)[:, :3] * 255).round().astype(np.uint8)
    return colors
