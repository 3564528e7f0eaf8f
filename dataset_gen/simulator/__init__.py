"""The cycle-level DNN-accelerator simulator (docs/simulator.md is its specification).

Public API::

    simulate(layer, accelerator, mapping="search", objective="latency", engine="fast") -> SimResult
    simulate_batch(pairs, mapping="search", objective="latency", engine="fast") -> DataFrame
    candidate_mappings(layer, accelerator) -> list[Mapping]

Two engines give identical results, field for field and bit for bit: ``reference`` steps
the schedule in plain Python (a mapping search steps every candidate: seconds to minutes
per layer); ``fast`` is vectorised over pairs and candidate mappings.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..space import (ACCELERATOR_FIELDS, ACCELERATOR_LIMITS, DATAFLOWS, LAYER_DEFAULTS, LAYER_FIELDS, LAYER_LIMITS,
                     PE_KINDS, PRECISION_BITS, PRECISION_FIELDS, WORD_BITS, Accelerator, Layer, Mapping, SpaceError, accelerator_from_mapping,
                     layer_from_mapping)
from . import fast
from .mapper import OBJECTIVES, candidate_mappings, check_objective
from . import reference
from .reference import RESULT_DTYPES, RESULT_FIELDS, SimResult

SIMULATOR_VERSION = "2.3.0"
ENGINES: tuple[str, ...] = ("fast", "reference")

__all__ = ["SIMULATOR_VERSION", "RESULT_FIELDS", "RESULT_DTYPES", "OBJECTIVES", "ENGINES", "SimResult",
           "simulate", "simulate_batch", "candidate_mappings"]

_ACCELERATOR_DEFAULTS = Accelerator().to_dict()
_INT_ACCELERATOR_FIELDS = ("pe_rows", "pe_cols", "rf_bytes", "word_bits")
_CATEGORICAL = {"dataflow": DATAFLOWS, "pe_kind": PE_KINDS}  # string columns, simulated as their codes


def _row_error(pairs: pd.DataFrame, position: int) -> SpaceError:
    """The error that space.py gives for one row (it names the field and the allowed range)."""
    index = pairs.index[position]
    row = pairs.iloc[position].to_dict()
    where = f" (row {index!r})"
    try:
        layer_from_mapping(row, where)
        accelerator_from_mapping(row, where)
    except SpaceError as error:
        return error
    return SpaceError(f"pairs row {index!r}: invalid values {row}")


def _validated_columns(pairs: pd.DataFrame) -> dict[str, np.ndarray]:
    """The layer and accelerator columns as arrays; SpaceError names the first bad row."""
    if not isinstance(pairs, pd.DataFrame):
        raise SpaceError(f"pairs = {type(pairs).__name__}: expected a pandas DataFrame")
    missing = [f for f in LAYER_FIELDS if f not in pairs.columns and f not in LAYER_DEFAULTS]
    if missing:
        raise SpaceError(f"pairs: missing column(s) {missing}; required: {list(LAYER_FIELDS[:4])}")
    count = len(pairs)
    columns: dict[str, np.ndarray] = {}
    bad = np.zeros(count, dtype=bool)
    try:
        for field in LAYER_FIELDS + ACCELERATOR_FIELDS:
            if field in _CATEGORICAL:
                continue
            if field in pairs.columns:
                values = pairs[field].to_numpy(dtype=np.float64)
            else:
                default = LAYER_DEFAULTS.get(field, _ACCELERATOR_DEFAULTS.get(field))
                values = np.full(count, float(default))
            bad |= np.isnan(values)
            if field in LAYER_FIELDS or field in _INT_ACCELERATOR_FIELDS:
                bad |= values != np.floor(values)
            if field in LAYER_LIMITS:
                low, high = LAYER_LIMITS[field]
            elif field in ACCELERATOR_LIMITS:
                low, high = ACCELERATOR_LIMITS[field]
            else:  # word_bits
                low, high = min(WORD_BITS), max(WORD_BITS)
            bad |= ~((values >= low) & (values <= high))
            safe = np.where(np.isfinite(values), values, 1.0)
            is_int = field in LAYER_FIELDS or field in _INT_ACCELERATOR_FIELDS
            columns[field] = safe.astype(np.int64) if is_int else safe
    except (TypeError, ValueError):
        bad[:] = True  # a non-numeric entry somewhere: let the row-wise check find it
        columns = {}
    if not bad.any():
        for field, names in _CATEGORICAL.items():
            if field in pairs.columns:
                values = pairs[field].astype(object).to_numpy()
            else:
                values = np.full(count, _ACCELERATOR_DEFAULTS[field], dtype=object)
            codes = np.full(count, -1, dtype=np.int64)
            for code, name in enumerate(names):
                codes[values == name] = code
            bad |= codes < 0
            columns[field] = codes
        bad |= ~np.isin(columns["word_bits"], WORD_BITS)
        for field in PRECISION_FIELDS:
            bad |= ~np.isin(columns[field], PRECISION_BITS)
        bad |= (columns["in_c"] % columns["groups"] != 0) | (columns["out_c"] % columns["groups"] != 0)
        bad |= columns["k_h"] > columns["in_h"] + 2 * columns["pad"]
        bad |= columns["k_w"] > columns["in_w"] + 2 * columns["pad"]
    if bad.any():
        for position in np.flatnonzero(bad) if columns else range(count):
            error = _row_error(pairs, int(position))
            if error is not None:
                raise error
    return columns


def _frame(records: dict[str, Any], index: pd.Index) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(np.asarray(records[name]), index=index).astype(RESULT_DTYPES[name])
                         for name in RESULT_FIELDS}, index=index)


def simulate_batch(pairs: pd.DataFrame, mapping: str | Mapping = "search", objective: str = "latency",
                   engine: str = "fast") -> pd.DataFrame:
    """Simulate many (layer, accelerator) pairs.

    Parameters
    ----------
    pairs : pandas.DataFrame
        One row per pair with the LAYER_FIELDS and ACCELERATOR_FIELDS columns (missing
        optional fields take `Layer`'s and `Accelerator`'s defaults).
    mapping : {"search", "scalesim"} or Mapping
        As in `simulate`; one `Mapping` applies to every row.
    objective : {"latency", "energy", "edp"}
        What the mapper minimises.
    engine : {"fast", "reference"}
        Both give identical frames; ``reference`` loops `simulate`.

    Returns
    -------
    pandas.DataFrame
        Same index as ``pairs``, the RESULT_FIELDS columns in order (dtypes RESULT_DTYPES).

    Raises
    ------
    SpaceError
        For an invalid row (naming the row index and the field) or argument.
    """
    check_objective(objective)
    if engine not in ENGINES:
        raise SpaceError(f"engine = {engine!r}: expected one of {list(ENGINES)}")
    if not (isinstance(mapping, Mapping) or mapping in ("search", "scalesim")):
        raise SpaceError(f"mapping = {mapping!r}: expected 'search', 'scalesim' or a Mapping")
    columns = _validated_columns(pairs)
    if engine == "reference":
        rows = []
        for position in range(len(pairs)):
            values = {field: columns[field][position] for field in LAYER_FIELDS}
            accelerator_values = {field: columns[field][position] for field in ACCELERATOR_FIELDS}
            for field, names in _CATEGORICAL.items():
                accelerator_values[field] = names[int(columns[field][position])]
            for field in _INT_ACCELERATOR_FIELDS:
                accelerator_values[field] = int(accelerator_values[field])
            rows.append(reference.simulate(Layer(**values), Accelerator(**accelerator_values), mapping, objective))
        records = {name: [getattr(row, name) for row in rows] for name in RESULT_FIELDS}
        if not rows:
            records = {name: [] for name in RESULT_FIELDS}
    else:
        records = fast.simulate_columns(columns, mapping, objective)
    return _frame(records, pairs.index)


def simulate(layer: Layer, accelerator: Accelerator, mapping: str | Mapping = "search", objective: str = "latency",
             engine: str = "fast") -> SimResult:
    """Simulate one layer on one accelerator: `reference.simulate`'s arguments and result
    (mapping ``"search"``, ``"scalesim"`` or a `Mapping`; objective ``"latency"``,
    ``"energy"`` or ``"edp"``; ``feasible=False`` when nothing maps), computed by ``engine``
    (``"fast"`` or ``"reference"``: the same result; the reference's mapping search steps
    every candidate in Python).
    """
    if engine == "reference":
        return reference.simulate(layer, accelerator, mapping, objective)
    if not isinstance(layer, Layer):
        raise SpaceError(f"layer = {layer!r}: expected a Layer")
    if not isinstance(accelerator, Accelerator):
        raise SpaceError(f"accelerator = {accelerator!r}: expected an Accelerator")
    frame = simulate_batch(pd.DataFrame([{**layer.to_dict(), **accelerator.to_dict()}]), mapping, objective, engine)
    return SimResult(**{name: value.item() if hasattr(value, "item") else value
                        for name, value in frame.iloc[0].to_dict().items()})
