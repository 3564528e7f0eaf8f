"""Strict reading of the keys of a user's file: unknown or repeated keys are errors.

A misspelled key (``ArrayHieght``, ``"strides"``) that a reader skips silently turns into
a default value and a wrong answer; so the readers of SCALE-Sim configs and network JSON
refuse unknown and repeated keys, naming them and the closest known key. ``lenient=True``
(``dance-sim --lenient``) turns these refusals into warnings (`InputWarning`) and goes on.
"""

from __future__ import annotations

import difflib
import warnings
from typing import Iterable

from dataset_gen.space import SpaceError

__all__ = ["InputWarning", "closest", "complain", "check_keys"]


class InputWarning(UserWarning):
    """A questionable input that ``lenient`` mode lets through (unknown or repeated key)."""


def closest(key: str, known: Iterable[str], cutoff: float = 0.6) -> str:
    """`` (did you mean 'X'?)`` for the known key nearest to ``key`` (case aside, similarity
    at least ``cutoff``, difflib's ratio), or an empty string."""
    folded = {name.lower(): name for name in known}
    match = difflib.get_close_matches(key.lower(), list(folded), n=1, cutoff=cutoff)
    return f" (did you mean {folded[match[0]]!r}?)" if match else ""


def complain(message: str, lenient: bool, consequence: str = "ignored") -> None:
    """Raise `SpaceError` with ``message``; when ``lenient``, warn instead (`InputWarning`)
    with what happens to the input (``consequence``) and go on."""
    if not lenient:
        raise SpaceError(message)
    warnings.warn(f"{message} ({consequence})", InputWarning, stacklevel=3)


def check_keys(where: str, keys: Iterable[str], known: Iterable[str], lenient: bool) -> None:
    """Refuse (or, when ``lenient``, warn about and ignore) every key not in ``known``.

    Parameters
    ----------
    where : str
        The file and place (``"net.json: network[3]"``), the start of the message.
    keys : iterable of str
        The keys found.
    known : iterable of str
        The keys allowed there (named in the message).
    lenient : bool
        Warn instead of raising.

    Raises
    ------
    SpaceError
        Naming the first unknown key, the closest known key and the allowed ones.
    """
    known = list(known)
    for key in keys:
        if key not in known:
            complain(f"{where}: unknown key {key!r}{closest(key, known)}; expected one of {known}", lenient)
