"""Reading the JSON files of the nuScenes code with clear errors (writes go through
:mod:`sparse3d.core.io`)."""

import json
import os
from pathlib import Path
from typing import Any

from sparse3d.detection.nuscenes.errors import NuScenesFormatError


def read_json(path: str | os.PathLike, what: str) -> Any:
    """Loads a JSON file; a missing or malformed file raises NuScenesFormatError naming ``what``."""
    path = Path(path)
    if not path.is_file():
        raise NuScenesFormatError(f"{what}: file not found: {path}")
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise NuScenesFormatError(f"{what}: {path} is not valid JSON ({err})") from err
