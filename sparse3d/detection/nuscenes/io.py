"""Reading the JSON files of the nuScenes code with clear errors (writes go through
:mod:`sparse3d.io.atomic`)."""

import json
import os
from pathlib import Path
from typing import Any

from sparse3d.detection.nuscenes.errors import NuScenesFormatError


def read_json(path: str | os.PathLike, what: str) -> Any:
    """Loads a JSON file; a missing or malformed file raises NuScenesFormatError naming ``what``.

    Parsing the tables dominates an evaluation, so msgspec's decoder (about 1.7x faster than
    the json module, same Python values) is used when installed; files it rejects, such as
    those holding NaN literals, go through the json module, which also words the errors.
    """
    path = Path(path)
    if not path.is_file():
        raise NuScenesFormatError(f"{what}: file not found: {path}")
    data = path.read_bytes()
    if _msgspec is not None:
        try:
            return _msgspec.json.decode(data)
        except _msgspec.DecodeError:
            pass
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise NuScenesFormatError(f"{what}: {path} is not valid JSON ({err})") from err


try:
    import msgspec as _msgspec
except ImportError:
    _msgspec = None
