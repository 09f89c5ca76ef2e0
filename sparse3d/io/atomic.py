"""Atomic file writes: a reader (or a run killed mid-write) never sees a partial file."""

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from sparse3d.io import json_fast


def _read_umask() -> int:
    """The process's file-creation mask. Reading it means setting it, so it is read once,
    at import, rather than while other threads may be creating files."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Calls ``write(tmp_path)`` on a temporary file beside ``path``, then renames it over ``path``.

    The rename is atomic on POSIX file systems, so ``path`` holds either the old or the new
    content, never a mix; the data is flushed to disk before the rename.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    # mkstemp creates the file readable by its owner alone; the result should carry the
    # mode any other new file gets (0666 less the umask), so that results can be shared.
    os.chmod(tmp, 0o666 & ~_UMASK)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically."""
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Writes raw bytes to ``path`` atomically."""
    write_atomic(path, lambda tmp: tmp.write_bytes(data))


def write_json_atomic(path: Path, data: Any, indent: int | None = 2) -> None:
    """Writes ``data`` as JSON to ``path`` atomically; NaN is written as the ``NaN`` literal
    (as Python's json and the nuScenes devkit do). ``indent=None`` is much faster for
    large files: the indenting encoder is pure Python, and compact output goes through
    the fast encoder (:func:`sparse3d.io.json_fast.encode`) when it is installed."""
    if indent is None:
        fast = json_fast.encode(data)
        if fast is not None:
            write_bytes_atomic(path, fast)
            return
    write_text_atomic(path, json.dumps(data, indent=indent, allow_nan=True) + ("\n" if indent is not None else ""))


def save_torch_atomic(path: Path, obj: Any) -> None:
    """``torch.save`` to ``path`` atomically (for checkpoints)."""
    write_atomic(path, lambda tmp: torch.save(obj, tmp))
