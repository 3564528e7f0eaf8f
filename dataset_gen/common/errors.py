"""The one error policy of every command (``dance-sim``, ``dance-gen``, ``dance-train``,
``dance-validate``, ``dance-search``, ``dance-demo``).

=========  ==================================================================================
exit code  meaning
=========  ==================================================================================
0          done
1          a bug: the traceback is printed (please report it)
2          the user's input or environment is wrong: one line ``PROG: error: MESSAGE`` on
           stderr naming the file, key or field and what is allowed; nothing half-written
130        interrupted (Ctrl-C): finished work is kept, the same command resumes
=========  ==================================================================================

Errors the user can fix derive from `UserError` (a ``ValueError``, so library callers
catching ``ValueError`` keep working); file-system errors (``OSError``: missing file,
permission, read-only file system, a path under a file) and a missing mandatory setting
(OmegaConf's ``???``) are reported the same way, with the path or key they name.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from typing import Iterator, NoReturn

__all__ = ["UserError", "EXIT_OK", "EXIT_BUG", "EXIT_USER_ERROR", "EXIT_INTERRUPTED",
           "user_error_message", "fail", "cli_errors"]

EXIT_OK = 0
EXIT_BUG = 1
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class UserError(ValueError):
    """Input the user can fix: a bad setting, a foreign or damaged file, a missing package."""


_OS_HINTS = {
    errno.EROFS: "the file system is read-only; choose an output folder you can write to",
    errno.EACCES: "permission denied; choose a path you can write to (or read)",
    errno.EPERM: "operation not permitted; choose a path you can write to",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "the path is a folder where a file was expected",
    errno.EEXIST: "the path exists and is not a folder",
    errno.ENOSPC: "no space left on the device",
    errno.ENOENT: "no such file or folder",
}


def _os_message(error: OSError) -> str:
    where = error.filename if error.filename is not None else ""
    if error.errno in _OS_HINTS:
        text = _OS_HINTS[error.errno]
        return f"{where}: {text}" if where else text
    # pyarrow reports damaged data (e.g. "ZSTD decompression failed") as a bare OSError.
    detail = error.strerror or str(error)
    return f"{where}: {detail}" if where else f"{detail}"


def user_error_message(error: BaseException) -> str | None:
    """The one-line message for an error the user can fix, or None for a bug."""
    if isinstance(error, UserError):
        return str(error)
    if isinstance(error, OSError):
        return _os_message(error)
    try:  # OmegaConf: a setting marked ??? that the command line did not give
        from omegaconf.errors import MissingMandatoryValue
    except ImportError:  # pragma: no cover - omegaconf comes with hydra-core
        MissingMandatoryValue = ()  # type: ignore[assignment]
    if MissingMandatoryValue and isinstance(error, MissingMandatoryValue):
        key = getattr(error, "full_key", None) or getattr(error, "key", None) or "?"
        return f"the setting {key!r} is required; give it on the command line ({key}=...)"
    return None


def fail(program: str, message: str, status: int = EXIT_USER_ERROR) -> NoReturn:
    """Print ``PROG: error: MESSAGE`` on stderr and exit with ``status``."""
    sys.stdout.flush()
    print(f"{program}: error: {message}", file=sys.stderr)
    sys.stderr.flush()
    raise SystemExit(status)


@contextlib.contextmanager
def cli_errors(program: str, *, interrupted: str = "") -> Iterator[None]:
    """Apply the error policy around a command's work.

    Parameters
    ----------
    program : str
        The command's name, the first word of every message (``dance-train``).
    interrupted : str
        What to tell the user after Ctrl-C (what was kept, how to resume).
    """
    try:
        yield
    except KeyboardInterrupt:
        sys.stdout.flush()
        print(f"\n{program}: interrupted." + (f" {interrupted}" if interrupted else ""), file=sys.stderr)
        sys.stderr.flush()
        # Leave at once: a normal exit joins concurrent.futures' manager thread, which can
        # block on pool workers that were interrupted mid-task.
        os._exit(EXIT_INTERRUPTED)
    except Exception as error:  # noqa: BLE001 - sorted into user errors and bugs right here
        message = user_error_message(error)
        if message is None:
            raise
        fail(program, message)
