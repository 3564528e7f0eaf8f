"""Verification by simulation: the evaluator's prediction and the simulator's figures for a
derived design, side by side, and the search result files.

``result.json`` follows the network JSON format (`dataset_gen.network_json`): ``network``
(the derived layers with their names) and ``accelerator``, so that
``dance-sim --network result.json`` re-simulates it, plus the search's own keys:
``predicted`` and ``simulated`` (``latency_s``, ``energy_pj``, ``area_mm2``, ``edp``,
``edap``), ``relative_error`` (``(predicted - simulated) / simulated`` per figure),
``test_accuracy`` and the settings that produced it. ``simulator`` is the identity (name,
version, settings) of the simulator that produced ``simulated``: the one the evaluator
imitates. ``simulated_by`` holds, for every further simulator asked for
(``verify.simulators``), the same figures with their ``relative_error`` against the
prediction, side by side. Non-finite numbers (an infeasible design's simulated figures)
are written as ``null``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from dataset_gen.adapters import ERROR_COLUMN
from dataset_gen.network_json import save_network
from dataset_gen.space import Accelerator, Layer
from dataset_gen.common.files import json_safe
from search.cost import CostSpec, figures
from search.simulated import SimulatorCache

__all__ = ["verify_design", "simulated_figures", "write_result", "FIGURES"]

FIGURES: tuple[str, ...] = ("latency_s", "energy_pj", "area_mm2", "edp", "edap")


def simulated_figures(layers: Sequence[Layer], accelerator: Accelerator, simulator: SimulatorCache,
                      predicted: Mapping[str, float] | None = None) -> tuple[dict[str, Any], pd.DataFrame]:
    """One simulator's figures of a discrete design.

    Parameters
    ----------
    layers : sequence of Layer
    accelerator : Accelerator
    simulator : SimulatorCache
        The simulator (its adapter, mapping policy and objective).
    predicted : mapping, optional
        The evaluator's figures: ``relative_error`` is measured against them.

    Returns
    -------
    (figures, per_layer)
        ``figures`` holds `FIGURES` (NaN for latency and energy of an infeasible design),
        ``feasible``, ``infeasible_layers``, ``errors`` (layer name -> the simulator's message,
        for layers it failed on: their figures are unknown, so the design counts as not
        feasible) and, with ``predicted``, ``relative_error``; ``per_layer`` is the
        simulator's row per layer.
    """
    layers = list(layers)
    per_layer = simulator.simulate_network(layers, accelerator)
    failed = per_layer[ERROR_COLUMN].astype(str) != "" if ERROR_COLUMN in per_layer else pd.Series(False, per_layer.index)
    ok = per_layer["feasible"].astype(bool) & ~failed
    feasible = bool(ok.all())
    areas = per_layer["area_mm2"].dropna()
    area = float(areas.iloc[0]) if len(areas) else math.nan  # the accelerator's, whatever the layer
    if feasible:
        result = figures(per_layer["latency_s"].sum(), per_layer["energy_pj"].sum(), area)
    else:  # latency and energy do not exist for an unmappable design; area does
        result = {"latency_s": math.nan, "energy_pj": math.nan, "area_mm2": area, "edp": math.nan, "edap": math.nan}
    result = {key: float(value) for key, value in result.items()}
    summary: dict[str, Any] = {**result, "feasible": feasible,
                               "infeasible_layers": per_layer.loc[~ok, "name"].tolist(),
                               "errors": dict(zip(per_layer.loc[failed, "name"], per_layer.loc[failed, ERROR_COLUMN]))}
    if predicted is not None:
        summary["relative_error"] = relative_errors(predicted, result)
    return summary, per_layer


def relative_errors(predicted: Mapping[str, float], simulated: Mapping[str, float]) -> dict[str, float]:
    """``(predicted - simulated) / simulated`` per figure (NaN where the simulation has none)."""
    return {key: (predicted[key] - simulated[key]) / simulated[key] if simulated[key] else math.nan
            for key in FIGURES}


def verify_design(layers: Sequence[Layer], accelerator: Accelerator, evaluator: Any, simulator: SimulatorCache,
                  spec: CostSpec, others: Mapping[str, SimulatorCache] | None = None
                  ) -> tuple[dict[str, Any], pd.DataFrame]:
    """Predict and simulate a discrete design.

    Parameters
    ----------
    layers : sequence of Layer
        The derived network at the deployment resolution.
    accelerator : Accelerator
    evaluator : evaluator.predictor.Evaluator
        Its ``predict(layers, accelerator)`` gives per-layer figures.
    simulator : SimulatorCache
        The main verifier: the simulator the evaluator imitates (adapter, mapping policy
        and objective); ``simulated``, ``feasible``, the cost and the limits are its.
    spec : CostSpec
        Metric, limits and reference (to report the cost and whether limits are met).
    others : mapping of str to SimulatorCache, optional
        Further simulators by name: their figures go to ``simulated_by``, side by side.

    Returns
    -------
    (summary, per_layer)
        ``summary`` holds ``simulator`` (the main verifier's identity), ``predicted``,
        ``simulated``, ``relative_error``, ``feasible``, ``infeasible_layers``,
        ``simulator_errors``, ``cost``, ``limits`` and ``simulated_by``; ``per_layer`` one
        row per layer with both sides (and each further simulator's latency and energy).
    """
    layers = list(layers)
    predicted_layers = evaluator.predict(layers, accelerator)
    predicted = figures(predicted_layers["latency_s"].sum(), predicted_layers["energy_pj"].sum(),
                        predicted_layers["area_mm2"].iloc[0])
    main, simulated_layers = simulated_figures(layers, accelerator, simulator, predicted)
    feasible = main["feasible"]
    simulated = {key: main[key] for key in FIGURES}
    metric_key = {"latency": "latency_s", "energy": "energy_pj"}.get(spec.metric, spec.metric)
    summary = {
        "simulator": simulator.identity,
        "predicted": predicted,
        "simulated": simulated,
        "relative_error": main["relative_error"],
        "feasible": feasible,
        "infeasible_layers": main["infeasible_layers"],
        "simulator_errors": main["errors"],
        "cost": {
            "metric": spec.metric,
            "predicted": predicted[metric_key],
            "simulated": simulated[metric_key],
            "normalised_simulated": float(spec.normalised(simulated[metric_key])) if feasible else math.nan,
        },
        "limits": spec.limits_met(simulated["latency_s"], simulated["energy_pj"], simulated["area_mm2"])
        if feasible else {key: {"limit": v, "value": math.nan, "met": False} for key, v in spec.limits.items()},
        "simulated_by": {},
    }
    per_layer = pd.DataFrame({
        "name": [layer.name for layer in layers],
        **{field: [getattr(layer, field) for layer in layers] for field in layers[0].to_dict()},
        "predicted_latency_s": predicted_layers["latency_s"].to_numpy(),
        "simulated_latency_s": simulated_layers["latency_s"].to_numpy(),
        "predicted_energy_pj": predicted_layers["energy_pj"].to_numpy(),
        "simulated_energy_pj": simulated_layers["energy_pj"].to_numpy(),
        "predicted_p_feasible": predicted_layers["p_feasible"].to_numpy(),
        "simulated_feasible": simulated_layers["feasible"].to_numpy(),
        "utilization": simulated_layers["utilization"].to_numpy(),
        "map_order": simulated_layers["map_order"].to_numpy(),
        "map_tile_p": simulated_layers["map_tile_p"].to_numpy(),
        "map_tile_c": simulated_layers["map_tile_c"].to_numpy(),
        "map_tile_k": simulated_layers["map_tile_k"].to_numpy(),
    })
    for name, other in (others or {}).items():
        by, rows = simulated_figures(layers, accelerator, other, predicted)
        summary["simulated_by"][name] = {"simulator": other.identity, **by}
        per_layer[f"{name}_latency_s"] = rows["latency_s"].to_numpy()
        per_layer[f"{name}_energy_pj"] = rows["energy_pj"].to_numpy()
    return summary, per_layer


def write_result(out_dir: str | Path, layers: Sequence[Layer], accelerator: Accelerator,
                 extra: Mapping[str, Any], per_layer: pd.DataFrame | None = None) -> Path:
    """Write ``result.json`` (and ``layers.csv``) atomically into ``out_dir``; returns the JSON path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = save_network(out / "result.json", layers, accelerator, extra=json_safe(dict(extra)))
    if per_layer is not None:
        temporary = out / ".layers.csv.tmp"
        per_layer.to_csv(temporary, index=False)
        temporary.replace(out / "layers.csv")
    return path


def read_result(path: str | Path) -> dict[str, Any]:
    """A result.json (or a folder holding one) as a dict."""
    path = Path(path)
    if path.is_dir():
        path = path / "result.json"
    return json.loads(path.read_text(encoding="utf-8"))
