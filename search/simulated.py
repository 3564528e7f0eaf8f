"""Simulator figures of layers on accelerators, memoised, and network totals from them.

The simulator is the ground truth of every hardware number the search reports, and its
slow part: a (layer, accelerator) pair is simulated once per process and looked up after.
Which simulator is a `dataset_gen.adapters.SimulatorAdapter` (``builtin`` by default; the
search uses the one its evaluator imitates, see `search.context`). A pair the simulator
fails on (its ``error`` column) counts as infeasible here: the search cannot use a design
whose cost is unknown.
Network figures follow the evaluator's composition (DANCE): layers run one after the other,
so latency and energy are sums over layers; area is the accelerator's. A network with any
layer that the accelerator cannot map is infeasible (its latency and energy are infinite).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from dataset_gen.adapters import ERROR_COLUMN, SimulatorAdapter, make_adapter
from dataset_gen.space import ACCELERATOR_FIELDS, LAYER_FIELDS, Accelerator, Layer, SpaceError
from search.cost import CostSpec, combine

__all__ = ["SimTable", "SimulatorCache", "network_totals", "best_accelerators", "layers_frame"]


def layers_frame(layers: pd.DataFrame | Iterable[Layer]) -> pd.DataFrame:
    """The `LAYER_FIELDS` columns of layers given as a DataFrame or a list of `Layer`."""
    if isinstance(layers, pd.DataFrame):
        return layers[list(LAYER_FIELDS)].reset_index(drop=True).astype("int64")
    return pd.DataFrame([layer.to_dict() for layer in layers], columns=list(LAYER_FIELDS)).astype("int64")


def _accelerator_frame(accelerators: pd.DataFrame | Iterable[Accelerator]) -> pd.DataFrame:
    if isinstance(accelerators, pd.DataFrame):
        return accelerators[list(ACCELERATOR_FIELDS)].reset_index(drop=True)
    return pd.DataFrame([a.to_dict() for a in accelerators], columns=list(ACCELERATOR_FIELDS))


@dataclass(frozen=True)
class SimTable:
    """Per-layer simulator figures of L layers on A accelerators.

    ``latency_s``, ``energy_pj`` are ``(A, L)`` float64 (NaN where infeasible),
    ``feasible`` is ``(A, L)`` bool and ``area_mm2`` is ``(A,)``.
    """

    latency_s: np.ndarray
    energy_pj: np.ndarray
    feasible: np.ndarray
    area_mm2: np.ndarray


def network_totals(table: SimTable, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Network latency and energy for weighted layer sets, on every accelerator of a table.

    Parameters
    ----------
    table : SimTable
        ``(A, L)`` per-layer figures.
    weights : numpy.ndarray
        ``(B, L)`` or ``(L,)`` layer weights: 0/1 for discrete networks (a layer's presence),
        probabilities for an expected cost.

    Returns
    -------
    dict of numpy.ndarray
        ``latency_s``, ``energy_pj`` ``(B, A)`` (inf where a layer with a positive weight is
        infeasible), ``area_mm2`` ``(A,)`` and ``feasible`` ``(B, A)``.
    """
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))  # (B, L)
    used = weights > 0
    infeasible = (used.astype(np.float64) @ (~table.feasible).T.astype(np.float64)) > 0  # (B, A)
    latency = weights @ np.nan_to_num(table.latency_s, nan=0.0).T  # (B, A)
    energy = weights @ np.nan_to_num(table.energy_pj, nan=0.0).T
    latency[infeasible] = np.inf
    energy[infeasible] = np.inf
    return {"latency_s": latency, "energy_pj": energy, "area_mm2": table.area_mm2, "feasible": ~infeasible}


def best_accelerators(weights: np.ndarray, table: SimTable, spec: CostSpec) -> tuple[np.ndarray, np.ndarray]:
    """Index (into the table's accelerators) of the lowest-cost accelerator per weighting.

    Infeasible accelerators and those breaking a hard limit are excluded (when every one
    breaks a limit, the limits are ignored rather than leaving no target).

    Returns
    -------
    (best, values)
        ``best`` ``(B,)`` and the metric values ``(B, A)`` (inf where infeasible).
    """
    totals = network_totals(table, weights)
    values = combine(totals["latency_s"], totals["energy_pj"], totals["area_mm2"][None, :], spec.metric)
    allowed = np.isfinite(values)
    limits = spec.limit_values(totals["latency_s"], totals["energy_pj"], np.broadcast_to(totals["area_mm2"], values.shape))
    within = allowed.copy()
    for key, limit in spec.limits.items():
        within &= limits[key] <= limit
    ranked = np.where(within.any(axis=1, keepdims=True) & ~within, np.inf, values)
    return np.argmin(ranked, axis=1), values


class SimulatorCache:
    """Memoised calls of one simulator adapter (with its mapping policy and objective).

    Parameters
    ----------
    mapping : {"search", "scalesim"}
        The mapping policy (docs/simulator.md) of the default ``builtin`` adapter; ``search``
        is our mapper, dance-sim's default.
    objective : {"latency", "energy", "edp"}
        What the default adapter's mapper minimises.
    chunk : int
        Pairs per simulator call (bounds memory).
    adapter : SimulatorAdapter, optional
        The simulator (default: ``builtin`` with ``mapping`` and ``objective``).
    """

    def __init__(self, mapping: str = "search", objective: str = "latency", chunk: int = 20000,
                 adapter: SimulatorAdapter | None = None) -> None:
        self.adapter = adapter if adapter is not None else make_adapter(
            {"name": "builtin", "mapping": mapping, "objective": objective})
        self.chunk = chunk
        self._results: dict[tuple, tuple[float, float, bool, float]] = {}
        self.errors: dict[tuple, str] = {}  # pairs the simulator failed on, and why
        self.simulated_pairs = 0
        self.seconds = 0.0

    @property
    def name(self) -> str:
        """The adapter's name (``builtin``, ``zigzag``...)."""
        return self.adapter.name

    @property
    def identity(self) -> dict:
        """The adapter's identity (name, version, settings), as result.json records it."""
        return self.adapter.identity()

    @property
    def mapping(self) -> str | None:
        return self.adapter.settings.get("mapping")

    @property
    def objective(self) -> str | None:
        return self.adapter.settings.get("objective")

    def __len__(self) -> int:
        return len(self._results)

    def table(self, layers: pd.DataFrame | Iterable[Layer],
              accelerators: pd.DataFrame | Iterable[Accelerator]) -> SimTable:
        """Simulate every (accelerator, layer) pair not simulated yet, and return the table."""
        layer_frame = layers_frame(layers)
        acc_frame = _accelerator_frame(accelerators)
        layer_keys = [tuple(int(v) for v in row) for row in layer_frame.itertuples(index=False)]
        acc_keys = [_accelerator_key(row) for row in acc_frame.itertuples(index=False)]
        unique_layers = list(dict.fromkeys(layer_keys))
        missing = [(a, l) for a in dict.fromkeys(acc_keys) for l in unique_layers if (a, l) not in self._results]
        for start in range(0, len(missing), self.chunk):
            self._simulate(missing[start:start + self.chunk])
        shape = (len(acc_keys), len(layer_keys))
        latency = np.empty(shape)
        energy = np.empty(shape)
        feasible = np.empty(shape, dtype=bool)
        area = np.empty(len(acc_keys))
        for i, a in enumerate(acc_keys):
            for j, l in enumerate(layer_keys):
                latency[i, j], energy[i, j], feasible[i, j], area[i] = self._results[(a, l)]
        return SimTable(latency, energy, feasible, area)

    def _simulate(self, keys: Sequence[tuple]) -> None:
        if not keys:
            return
        rows = [{**dict(zip(ACCELERATOR_FIELDS, a)), **dict(zip(LAYER_FIELDS, l))} for a, l in keys]
        started = time.perf_counter()
        results = self.adapter.simulate(pd.DataFrame(rows))
        self.seconds += time.perf_counter() - started
        self.simulated_pairs += len(keys)
        for key, lat, en, ok, area, error in zip(keys, results["latency_s"].to_numpy(),
                                                 results["energy_pj"].to_numpy(), results["feasible"].to_numpy(),
                                                 results["area_mm2"].to_numpy(), results[ERROR_COLUMN].to_numpy()):
            if error:
                self.errors[key] = str(error)
            self._results[key] = (float(lat), float(en), bool(ok) and not error, float(area))

    def simulate_network(self, layers: Sequence[Layer], accelerator: Accelerator) -> pd.DataFrame:
        """Full simulator results of a network's layers (one row per layer: ``name``, the
        `RESULT_FIELDS` and ``error``, non-empty where the simulator failed)."""
        if not layers:
            raise SpaceError("simulate_network: the network has no layers")
        pairs = pd.DataFrame([{**layer.to_dict(), **accelerator.to_dict()} for layer in layers])
        started = time.perf_counter()
        results = self.adapter.simulate(pairs).reset_index(drop=True)
        self.seconds += time.perf_counter() - started
        results.insert(0, "name", [layer.name for layer in layers])
        return results


def _accelerator_key(row) -> tuple:
    values = row._asdict() if hasattr(row, "_asdict") else dict(row)
    return tuple(
        str(values[f]) if f in _TEXT_FIELDS else (int(values[f]) if f in ("pe_rows", "pe_cols", "rf_bytes", "word_bits")
                                                  else float(values[f]))
        for f in ACCELERATOR_FIELDS
    )


_TEXT_FIELDS = ("dataflow", "pe_kind")  # categorical accelerator fields (names, not numbers)
