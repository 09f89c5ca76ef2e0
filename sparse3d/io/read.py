"""Reading JSON and YAML files, with errors that name the file (writes go through
:mod:`sparse3d.io.atomic`).

Every layer reads its metadata, tables and configs through these functions, raising its
own error type (``error=``) so that command-line front ends report the message. Errors
lead with ``what`` the file is for (e.g. "submission") and then name its path, or lead
with the path when no ``what`` is given.
"""

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml

from sparse3d.io import json_fast


def read_json(
    path: str | os.PathLike, what: str | None = None, error: type[Exception] = ValueError, schema: Any = None
) -> Any:
    """Parses the JSON file at ``path`` into Python values (dict, list, str, int, float,
    bool, None; ``NaN`` literals as float NaN, as Python's json module reads them).

    With the fast decoder (:mod:`sparse3d.io.json_fast`) and a ``schema``, a file that fits
    the schema comes back with typed records in place of the schema's dataclasses; read
    their fields with :func:`~sparse3d.io.json_fast.column` / ``values``, which take dicts
    too. Any file the fast decoder rejects (one holding NaN literals, or not fitting the
    schema) goes through the json module, which also words the errors.

    Raises:
        error: the file does not exist or is not valid JSON.
    """
    data = _read_bytes(path, what, error)
    if json_fast.enabled():
        for candidate in (Any,) if schema is None else (schema, Any):
            try:
                return json_fast.decode(data, candidate)
            except ValueError:
                pass
    return _decode(json.loads, data, path, what, error, "JSON")


def read_yaml(path: str | os.PathLike, what: str | None = None, error: type[Exception] = ValueError) -> Any:
    """Parses the YAML file at ``path`` with :func:`parse_yaml`'s rules; an empty file gives None.

    Raises:
        error: the file does not exist or is not valid YAML.
    """
    return _decode(parse_yaml, _read_bytes(path, what, error), path, what, error, "YAML")


def parse_yaml(text: str | bytes) -> Any:
    """Parses YAML text with ``yaml.safe_load``'s rules (YAML 1.1: ``true``/``yes`` are
    booleans, ``null``/``~``/empty are None), except that a number in exponent form without
    a dot, such as ``1e-3``, is a float (YAML 1.2), not the string PyYAML makes of it.

    Raises:
        yaml.YAMLError: the text is not valid YAML.
    """
    return yaml.load(text, Loader=_Loader)  # safe: _Loader constructs only what SafeLoader does


class _Loader(yaml.SafeLoader):
    """SafeLoader that also resolves YAML 1.2's exponent floats without a dot (``1e-3``)."""


# add_implicit_resolver copies the inherited table first, so SafeLoader itself is unchanged.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _read_bytes(path: str | os.PathLike, what: str | None, error: type[Exception]) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise error(f"{what}: file not found: {path}" if what else f"{path}: file not found")
    return path.read_bytes()


def _decode(decode, data: bytes, path, what: str | None, error: type[Exception], kind: str) -> Any:
    try:
        return decode(data)
    except (ValueError, yaml.YAMLError) as err:  # json's errors and UnicodeDecodeError are ValueErrors
        message = f"{what}: {path} is not valid {kind}" if what else f"{path}: not valid {kind}"
        raise error(f"{message} ({err})") from err
