"""The interface every simulator adapter implements, and the per-pair machinery external
tools share: per-pair timeout, retries, an error column, a content-hash cache.

An adapter is built from its config (``conf/simulator/NAME.yaml``) and used as::

    adapter = make_adapter({"name": "zigzag", ...}, cache=out / "_cache.sqlite")
    adapter.check()                       # fails early, naming the adapter, if it cannot run
    results = adapter.simulate(pairs)     # one row per pair, RESULT_DTYPES + "error"

Conventions of the result frame (those of the dataset): a pair no mapping fits is
``feasible = False`` with ints -1, floats NaN and strings ""; a pair the tool failed on
(crash, timeout, bad output) is the same with its message in ``error`` (otherwise "").
Readers that learn from a dataset skip rows with an error: they are not infeasible, only
unknown.
"""

from __future__ import annotations

import abc
import hashlib
import json
import signal
import time
from typing import Any, ClassVar, Mapping

import numpy as np
import pandas as pd

from dataset_gen.common.errors import UserError
from dataset_gen.simulator import RESULT_DTYPES
from dataset_gen.space import ACCELERATOR_FIELDS, LAYER_DEFAULTS, LAYER_FIELDS, Accelerator

__all__ = ["ERROR_COLUMN", "AdapterError", "PairTimeout", "SimulatorAdapter", "PairwiseAdapter", "empty_results",
           "result_columns", "pair_key"]

ERROR_COLUMN = "error"
PAIR_FIELDS: tuple[str, ...] = LAYER_FIELDS + ACCELERATOR_FIELDS
_MISSING = {"bool": False, "int64": -1, "float64": float("nan"), "str": ""}
_PAIR_DEFAULTS = {**LAYER_DEFAULTS, **Accelerator().to_dict()}


def native_precision_refusal(pair: Mapping[str, Any], tool: str) -> str:
    """Why a tool that models one word width cannot simulate ``pair`` ("" when it can): a
    layer precision other than the word width, or a precision-scalable PE array."""
    word_bits = int(pair.get("word_bits", _PAIR_DEFAULTS["word_bits"]))
    for field in ("w_bits", "a_bits"):
        bits = int(pair.get(field, 0))
        if bits not in (0, word_bits):
            return (f"{field} = {bits}: {tool} models every operand at the word width (word_bits = {word_bits}); "
                    f"only 0 or {word_bits} (the builtin simulator models layer precision)")
    if pair.get("pe_kind", "fixed") != "fixed":
        return (f"pe_kind = {pair['pe_kind']!r}: {tool} models fixed-precision MACs only "
                "(the builtin simulator models precision-scalable arrays)")
    return ""


class AdapterError(UserError):
    """An adapter that cannot run at all (missing package or environment, a command that
    does not start or speaks another protocol); the message names the adapter."""


class PairTimeout(Exception):
    """One pair took longer than the adapter's ``timeout_s``."""


def result_columns() -> dict[str, str]:
    """Every result column of a dataset and its dtype: the simulator's, then ``error``."""
    return {**RESULT_DTYPES, ERROR_COLUMN: "str"}


def empty_results(count: int, error: str = "") -> dict[str, list]:
    """``count`` rows of the infeasible conventions (column -> list), ``error`` in each."""
    columns = {name: [_MISSING[dtype]] * count for name, dtype in RESULT_DTYPES.items()}
    columns[ERROR_COLUMN] = [error] * count
    return columns


def frame_of(rows: list[Mapping[str, Any]], index: pd.Index) -> pd.DataFrame:
    """Result rows (dicts of some result columns) as a typed frame with every column."""
    columns = empty_results(len(rows))
    for position, row in enumerate(rows):
        for name, value in row.items():
            if name in columns:
                columns[name][position] = value
    frame = pd.DataFrame(columns, index=index)
    for name, dtype in result_columns().items():
        frame[name] = frame[name].astype(object if dtype == "str" else dtype)
    return frame


def pair_key(identity: Mapping[str, Any], pair: Mapping[str, Any]) -> str:
    """A pair's content hash under an adapter's identity: equal keys, equal results."""
    values = {field: (pair[field].item() if hasattr(pair[field], "item") else pair[field]) for field in PAIR_FIELDS}
    text = json.dumps({"adapter": identity, "pair": values}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class SimulatorAdapter(abc.ABC):
    """A simulator that turns (layer, accelerator) pairs into the dataset's result columns.

    Parameters
    ----------
    settings : mapping
        The adapter's config (``conf/simulator/NAME.yaml`` without ``name``); it is part of
        the adapter's identity, so two datasets made with other settings never mix.
    """

    #: the adapter's name in ``conf/simulator/`` and in every record
    name: ClassVar[str] = ""
    #: the result columns this adapter fills; the others keep the infeasible conventions
    provides: ClassVar[frozenset[str]] = frozenset()
    #: whether `make_adapter` gives it the run's result cache (slow tools only)
    uses_cache: ClassVar[bool] = False

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        self.settings = dict(settings or {})

    @property
    @abc.abstractmethod
    def version(self) -> str:
        """The adapter's and its tool's versions, as one string (``zigzag-dse 3.9.1 / adapter 1``)."""

    def identity(self) -> dict[str, Any]:
        """Name, version and settings: what a dataset, an artifact and a result record."""
        return {"name": self.name, "version": self.version, "settings": dict(self.settings)}

    def check(self) -> None:
        """Fail before any work if the adapter cannot run, naming it (`AdapterError`)."""

    @abc.abstractmethod
    def simulate(self, pairs: pd.DataFrame) -> pd.DataFrame:
        """Simulate every pair.

        Parameters
        ----------
        pairs : DataFrame
            One row per pair with the layer and accelerator columns (`PAIR_FIELDS`).

        Returns
        -------
        DataFrame
            Same index and order, the columns of `result_columns`.
        """

    def close(self) -> None:
        """Release what the adapter holds (a subprocess, a cache connection)."""


def _raise_timeout(signum, frame):  # noqa: ARG001 - a signal handler's signature
    raise PairTimeout()


class PairwiseAdapter(SimulatorAdapter):
    """An external tool called pair by pair, with the safety a slow, foreign tool needs.

    Settings every pairwise adapter understands:

    - ``timeout_s``: wall-clock limit of one pair (null: none); a pair over it is an error row;
    - ``retries``: further attempts after a failure or timeout before the pair is an error row;
    - identical pairs are simulated once: within a batch, and across the shard tasks of a
      run through the cache (`dataset_gen.adapters.cache.ResultCache`), when one is given.
    """

    uses_cache: ClassVar[bool] = True

    def __init__(self, settings: Mapping[str, Any] | None = None, cache: Any = None) -> None:
        super().__init__(settings)
        self.cache = cache
        self.timeout_s = self.settings.get("timeout_s")
        self.retries = int(self.settings.get("retries", 0))

    @abc.abstractmethod
    def simulate_pair(self, pair: Mapping[str, Any]) -> Mapping[str, Any]:
        """Simulate one pair; return some of the result columns (``feasible`` at least).

        Raise any exception for a failure of the tool on this pair: it is retried, then
        recorded in the ``error`` column. Raise `AdapterError` when the tool cannot run at
        all: that stops the run, naming the adapter.
        """

    def _attempt(self, pair: Mapping[str, Any]) -> Mapping[str, Any]:
        if not self.timeout_s:
            return self.simulate_pair(pair)
        # SIGALRM interrupts a pure-Python tool where a thread could not; shard tasks run in
        # a process's main thread (pool worker, Ray worker or the driver itself).
        previous = signal.signal(signal.SIGALRM, _raise_timeout)
        signal.setitimer(signal.ITIMER_REAL, float(self.timeout_s))
        try:
            return self.simulate_pair(pair)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    def _run_pair(self, pair: Mapping[str, Any]) -> dict[str, Any]:
        error = ""
        for attempt in range(self.retries + 1):
            try:
                result = dict(self._attempt(pair))
                result[ERROR_COLUMN] = ""
                return result
            except AdapterError:
                raise
            except PairTimeout:
                error = f"{self.name}: timed out after {self.timeout_s} s"
            except Exception as failure:  # noqa: BLE001 - a foreign tool's failure on one pair
                error = f"{self.name}: {type(failure).__name__}: {failure}"[:500]
            if attempt < self.retries:
                time.sleep(min(0.1 * 2 ** attempt, 2.0))
        return {"feasible": False, ERROR_COLUMN: error + (f" (after {self.retries + 1} attempts)"
                                                          if self.retries else "")}

    def simulate(self, pairs: pd.DataFrame) -> pd.DataFrame:
        # optional fields a caller may leave out (the precision, the PE kind) take their defaults
        missing = {field: _PAIR_DEFAULTS[field] for field in PAIR_FIELDS if field not in pairs.columns}
        records = pairs.assign(**missing)[list(PAIR_FIELDS)].to_dict("records")
        identity = self.identity()
        keys = [pair_key(identity, record) for record in records]
        known = self.cache.get_many(set(keys)) if self.cache is not None else {}
        results: dict[str, dict[str, Any]] = dict(known)
        for key, record in zip(keys, records):
            if key in results:
                continue  # cached, or a duplicate of an earlier pair of this batch
            results[key] = self._run_pair(record)
            if self.cache is not None and not results[key][ERROR_COLUMN]:
                self.cache.put(key, results[key])
        return frame_of([results[key] for key in keys], pairs.index)

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()


def as_python(value: Any) -> Any:
    """A numpy scalar as the Python value (JSON and subprocess protocols want plain types)."""
    return value.item() if isinstance(value, np.generic) else value
