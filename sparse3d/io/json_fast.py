"""The fast JSON decoder and encoder (msgspec, the optional ``fastjson`` extra) behind one switch.

Large record files (nuScenes tables, detection submissions: up to millions of records)
cost more in the Python objects built per record, and in the garbage collector walking
them, than in parsing the text. With msgspec, :func:`decode` reads records straight into
typed structs that hold only a schema's fields and that the collector does not track.
Measured on a 20 MB submission of 50k boxes: typed structs 65 ms, msgspec's dicts 155 ms,
orjson's dicts 157 ms (so orjson, which has no typed decoding, is not used), the json
module 410 ms. Without msgspec, readers get dicts from the json module
(:func:`sparse3d.io.read.read_json`); :func:`column` and :func:`values` read a field of
either kind of record, so the code above has one path for both.

``msgspec`` below is the one switch: None (msgspec not installed, or set so by a test)
sends every read through the json module.
"""

import dataclasses
import typing
from functools import cache
from itertools import chain
from operator import attrgetter, itemgetter, methodcaller
from typing import Any

import numpy as np

try:
    import msgspec
except ImportError:
    msgspec = None

_REQUIRED = object()


def enabled() -> bool:
    """Whether the fast decoder is in use."""
    return msgspec is not None


def decode(data: bytes, schema: Any = Any) -> Any:
    """Decodes JSON bytes with msgspec into ``schema``.

    Args:
        data: the JSON text.
        schema: a type built from ``list``, ``dict``, ``tuple``, unions, scalars and
            dataclasses; each dataclass is decoded as a typed record with its fields (and
            their defaults), other keys of the object are skipped. ``Any`` gives plain
            Python values.

    Raises:
        RuntimeError: the fast decoder is off (check :func:`enabled` first).
        ValueError: the data is not JSON (msgspec reads no ``NaN`` literal) or does not
            fit the schema; callers fall back to the json module, which words the error.
    """
    if msgspec is None:
        raise RuntimeError("json_fast.decode: msgspec is not installed")
    return _decoder(schema).decode(data)  # msgspec.DecodeError is a ValueError


def encode(data: Any) -> bytes | None:
    """``data`` as compact JSON, or None when the fast encoder is off or would write it
    differently from the json module: msgspec writes NaN and infinities as null, so output
    holding a null is left to the json module, as are types msgspec does not take."""
    if msgspec is None:
        return None
    try:
        text = msgspec.json.encode(data)
    except (TypeError, ValueError):
        return None
    return None if b"null" in text else text


def is_record(value: Any) -> bool:
    """Whether ``value`` is a typed record made by :func:`decode`."""
    return msgspec is not None and isinstance(value, msgspec.Struct)


def as_dict(record: Any) -> dict:
    """A typed record's fields as a dict (dicts are returned as they are)."""
    return msgspec.structs.asdict(record) if is_record(record) else record


def values(records: list, field: str, default: Any = _REQUIRED) -> list:
    """Field ``field`` of every record (typed or dict; ``default`` where a dict lacks it)."""
    return list(map(_getter(records, field, default), records))


def column(records: list, field: str, dtype: Any, width: int | None = None, default: Any = _REQUIRED) -> np.ndarray:
    """Field ``field`` of every record as a numpy array (JSON null reads as NaN in floats).

    Args:
        records: typed records or dicts.
        field: the field.
        dtype: the array's dtype.
        width: for fields holding ``width`` numbers: typed records must declare them as a
            tuple of that many, so that they can be read without a shape check.
        default: the value where a dict lacks the field (typed records have their
            schema's); without it, a missing field is a KeyError.

    Returns:
        [N] or [N, width].

    Raises:
        ValueError, TypeError, KeyError: a dict record's field is missing, ragged or not a
            number.
    """
    n, get = len(records), _getter(records, field, default)
    if n == 0:
        return np.zeros((0,) if width is None else (0, width), dtype)
    if width is None:
        try:
            return np.fromiter(map(get, records), dtype, count=n)
        except TypeError:  # a None, which np.array turns into NaN
            return np.array(list(map(get, records)), dtype)
    if is_record(records[0]):
        # One flat stream is several times faster than np.array over a list of tuples;
        # the schema guarantees every tuple's length.
        try:
            return np.fromiter(chain.from_iterable(map(get, records)), dtype, count=n * width).reshape(n, width)
        except TypeError:  # a None: np.array over the flat values makes it NaN
            return np.array(list(chain.from_iterable(map(get, records))), dtype).reshape(n, width)
    array = np.array(list(map(get, records)), dtype)
    if array.shape != (n, width):
        raise ValueError(f"field {field!r}: expected {width} numbers per record, got an array of shape {array.shape}")
    return array


def _getter(records: list, field: str, default: Any):
    if records and is_record(records[0]):
        return attrgetter(field)
    return itemgetter(field) if default is _REQUIRED else methodcaller("get", field, default)


@cache
def _decoder(schema: Any):
    return msgspec.json.Decoder(_struct_type(schema))


def _struct_type(tp: Any) -> Any:
    """``tp`` with every dataclass replaced by a msgspec Struct of the same fields that the
    garbage collector does not track (safe: decoded records hold no reference cycles)."""
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        fields = [(f.name, _struct_type(hints[f.name]))
                  + (() if f.default is dataclasses.MISSING else (f.default,)) for f in dataclasses.fields(tp)]
        return msgspec.defstruct(tp.__name__, fields, gc=False)
    origin = typing.get_origin(tp)
    if origin in (list, dict, tuple):
        return origin[tuple(_struct_type(arg) for arg in typing.get_args(tp))]
    return tp
