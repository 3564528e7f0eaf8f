"""The one atomic file writer and the one JSON-safe converter of the project.

Every file the project writes (Parquet shards, artifacts, reports, plots, configs) goes
through `atomic_write`: the content is written to a hidden temporary file in
the destination's folder, flushed to disk and renamed over the destination, so a reader
only ever sees the old file or the whole new one, and a killed writer leaves at most a
hidden ``.NAME.tmp-PID`` behind. The file gets the mode an ordinary ``open(path, "w")``
would give (``0o666`` less the umask), so a shared output folder stays readable to
colleagues (``tempfile.mkstemp`` alone would make it ``0o600``).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path, PurePath
from typing import Any, Callable, IO

__all__ = ["atomic_write", "atomic_write_text", "atomic_write_bytes", "write_json", "json_safe",
           "temporary_name", "fsync_dir"]


def _umask() -> int:
    # os.umask can only be read by setting it; set it straight back (not thread-safe in
    # theory, harmless in practice: both calls restore the same value).
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temporary_name(path: Path) -> Path:
    """The hidden temporary name ``path`` is written under before its rename."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def fsync_dir(directory: Path) -> None:
    """Flush a directory entry (a rename) to disk where the file system allows it."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # some file systems don't open directories; the rename is still atomic
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any], *, durable: bool = True) -> Path:
    """Write a file through a hidden temporary name and a rename.

    Parameters
    ----------
    path : path-like
        The destination; its folder is created if missing.
    write : callable
        Called with a binary stream open on the temporary file; writes the whole content
        (``lambda stream: torch.save(payload, stream)``, ``figure.savefig(stream, format="png")``).
    durable : bool
        Flush the file and the rename to disk (``fsync``) before returning.

    Returns
    -------
    Path
        The destination.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_name(path)
    try:
        with open(temporary, "wb") as stream:
            write(stream)
            stream.flush()
            if durable:
                os.fsync(stream.fileno())
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:  # Ctrl-C mid-write included; a SIGKILL leaves the hidden name
        temporary.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, durable: bool = True) -> Path:
    """`atomic_write` of a bytes object."""
    return atomic_write(path, lambda stream: stream.write(data), durable=durable)


def atomic_write_text(path: str | os.PathLike, text: str, *, durable: bool = True) -> Path:
    """`atomic_write` of a text, UTF-8 encoded, newlines as given."""
    return atomic_write_bytes(path, text.encode("utf-8"), durable=durable)


def json_safe(value: Any) -> Any:
    """``value`` as plain, strict-JSON data, recursively.

    Mappings become dicts with string keys, tuples/sets/arrays lists, numpy scalars Python
    numbers, paths strings, and NaN or infinite floats ``None`` (JSON has no NaN).
    """
    if isinstance(value, dict) or hasattr(value, "items") and callable(value.items):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(item) for item in value]
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays and scalars, tensors
        return json_safe(value.tolist())
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, PurePath):
        return str(value)
    return str(value)


def write_json(path: str | os.PathLike, value: Any, *, indent: int = 2) -> Path:
    """Write ``json_safe(value)`` as strict JSON (atomically), ending in a newline."""
    text = json.dumps(json_safe(value), indent=indent, allow_nan=False) + "\n"
    return atomic_write_text(path, text)
