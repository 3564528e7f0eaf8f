"""Verification by simulation: the evaluator's prediction and the simulator's figures for a
derived design, side by side, and the search result files.

``result.json`` follows the network JSON format (`dataset_gen.network_json`): ``network``
(the derived layers with their names) and ``accelerator``, so that
``dance-sim --network result.json`` re-simulates it, plus the search's own keys:
``predicted`` and ``simulated`` (``latency_s``, ``energy_pj``, ``area_mm2``, ``edp``,
``edap``), ``relative_error`` (``(predicted - simulated) / simulated`` per figure),
``test_accuracy`` and the settings that produced it. Non-finite numbers (an infeasible
design's simulated figures) are written as ``null``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from dataset_gen.network_json import save_network
from dataset_gen.space import Accelerator, Layer
from dataset_gen.common.files import json_safe
from search.cost import CostSpec, figures
from search.simulated import SimulatorCache

__all__ = ["verify_design", "write_result", "FIGURES"]

FIGURES: tuple[str, ...] = ("latency_s", "energy_pj", "area_mm2", "edp", "edap")


def verify_design(layers: Sequence[Layer], accelerator: Accelerator, evaluator: Any, simulator: SimulatorCache,
                  spec: CostSpec) -> tuple[dict[str, Any], pd.DataFrame]:
    """Predict and simulate a discrete design.

    Parameters
    ----------
    layers : sequence of Layer
        The derived network at the deployment resolution.
    accelerator : Accelerator
    evaluator : evaluator.predictor.Evaluator
        Its ``predict(layers, accelerator)`` gives per-layer figures.
    simulator : SimulatorCache
        Mapping policy and objective of the re-simulation.
    spec : CostSpec
        Metric, limits and reference (to report the cost and whether limits are met).

    Returns
    -------
    (summary, per_layer)
        ``summary`` holds ``predicted``, ``simulated``, ``relative_error``, ``feasible``,
        ``cost`` and ``limits``; ``per_layer`` one row per layer with both sides.
    """
    layers = list(layers)
    predicted_layers = evaluator.predict(layers, accelerator)
    simulated_layers = simulator.simulate_network(layers, accelerator)
    feasible = bool(simulated_layers["feasible"].all())
    predicted = figures(predicted_layers["latency_s"].sum(), predicted_layers["energy_pj"].sum(),
                        predicted_layers["area_mm2"].iloc[0])
    if feasible:
        simulated = figures(simulated_layers["latency_s"].sum(), simulated_layers["energy_pj"].sum(),
                            simulated_layers["area_mm2"].iloc[0])
    else:  # latency and energy do not exist for an unmappable design; area does
        area = float(simulated_layers["area_mm2"].iloc[0])
        simulated = {"latency_s": math.nan, "energy_pj": math.nan, "area_mm2": area, "edp": math.nan, "edap": math.nan}
    relative_error = {key: (predicted[key] - simulated[key]) / simulated[key] if simulated[key] else math.nan
                      for key in FIGURES}
    metric_key = {"latency": "latency_s", "energy": "energy_pj"}.get(spec.metric, spec.metric)
    summary = {
        "predicted": predicted,
        "simulated": simulated,
        "relative_error": relative_error,
        "feasible": feasible,
        "infeasible_layers": simulated_layers.loc[~simulated_layers["feasible"], "name"].tolist(),
        "cost": {
            "metric": spec.metric,
            "predicted": predicted[metric_key],
            "simulated": simulated[metric_key],
            "normalised_simulated": float(spec.normalised(simulated[metric_key])) if feasible else math.nan,
        },
        "limits": spec.limits_met(simulated["latency_s"], simulated["energy_pj"], simulated["area_mm2"])
        if feasible else {key: {"limit": v, "value": math.nan, "met": False} for key, v in spec.limits.items()},
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
