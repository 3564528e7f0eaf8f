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

``uncertainty`` (`network_uncertainty`) holds the evaluator's own uncertainty about the
design, next to its actual error: ``sigma``, the calibrated standard deviation of
ln(predicted figure) (about a relative error: 0.03 is +-3% at one sigma; null for a
single-network evaluator, ``model.ensemble = 1``), ``band_2sigma`` (the predicted value
times ``exp(+-2 sigma)``), ``z`` (``ln(simulated / predicted) / sigma``), ``within_2sigma``
and ``warnings``. Network latency and energy are sums over layers; their sigma treats the
layers' log errors as fully correlated (one systematic error on one accelerator, the
conservative case): ``sigma = sum_l w_l sigma_l`` with ``w_l`` layer l's share of the
predicted total. ``sigma_if_independent`` (``sqrt(sum_l w_l^2 sigma_l^2)``) is the other
extreme. edp and edap add the sigmas of their factors (correlated too). A warning is logged
(and listed) when the simulated-vs-predicted error or the predicted 2-sigma band exceeds
`WARN_RELATIVE`, or when the simulated value falls outside the 2-sigma band.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from dataset_gen.adapters import ERROR_COLUMN
from dataset_gen.network_json import save_network
from dataset_gen.space import Accelerator, Layer
from dataset_gen.common.files import json_safe
from search.cost import CostSpec, figures
from search.simulated import SimulatorCache

__all__ = ["verify_design", "simulated_figures", "write_result", "network_uncertainty", "FIGURES",
           "WARN_RELATIVE"]

FIGURES: tuple[str, ...] = ("latency_s", "energy_pj", "area_mm2", "edp", "edap")
# The figures a warning is about (edp and edap follow from them).
_WARNED: tuple[str, ...] = ("latency_s", "energy_pj", "area_mm2")
# A relative error, or a predicted 2-sigma half-band (exp(2 sigma) - 1), above this is warned about.
WARN_RELATIVE = 0.10

log = logging.getLogger("search")


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
        ``simulator_errors``, ``cost``, ``limits``, ``simulated_by`` and ``uncertainty``
        (`network_uncertainty`; its warnings are logged too); ``per_layer`` one row per layer
        with both sides (and each further simulator's latency and energy, and, for an
        ensemble evaluator, the predicted sigma of each layer's latency and energy).
    """
    layers = list(layers)
    uncertain = getattr(evaluator, "ensemble", 1) > 1  # a single network has no uncertainty
    predicted_layers = evaluator.predict(layers, accelerator, return_std=True) if uncertain \
        else evaluator.predict(layers, accelerator)
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
        "uncertainty": network_uncertainty(predicted_layers, predicted, {key: main[key] for key in FIGURES},
                                           getattr(evaluator, "ensemble", 1)),
    }
    for warning in summary["uncertainty"]["warnings"]:
        log.warning("verify: %s", warning)
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
    if uncertain:
        per_layer["predicted_latency_sigma"] = predicted_layers["latency_s_std"].to_numpy()
        per_layer["predicted_energy_sigma"] = predicted_layers["energy_pj_std"].to_numpy()
    for name, other in (others or {}).items():
        by, rows = simulated_figures(layers, accelerator, other, predicted)
        summary["simulated_by"][name] = {"simulator": other.identity, **by}
        per_layer[f"{name}_latency_s"] = rows["latency_s"].to_numpy()
        per_layer[f"{name}_energy_pj"] = rows["energy_pj"].to_numpy()
    return summary, per_layer


def network_uncertainty(predicted_layers: pd.DataFrame, predicted: Mapping[str, float],
                        simulated: Mapping[str, float], ensemble: int = 1) -> dict[str, Any]:
    """The evaluator's uncertainty about a whole design, next to its actual error.

    Parameters
    ----------
    predicted_layers : pandas.DataFrame
        ``Evaluator.predict(layers, accelerator, return_std=True)``: per-layer figures and their
        calibrated log-space stds (without the std columns: no uncertainty).
    predicted, simulated : mapping
        The design's `FIGURES`, predicted and simulated (NaN where infeasible).
    ensemble : int
        The evaluator's ensemble size (reported).

    Returns
    -------
    dict
        ``ensemble``, ``sigma`` (figure -> calibrated std of its natural log, layers fully
        correlated; None without uncertainty), ``sigma_if_independent`` (latency and energy,
        layers independent), ``band_2sigma`` (figure -> [low, high]), ``z`` (figure ->
        ``ln(simulated / predicted) / sigma``), ``within_2sigma`` (figure -> bool), ``combination``
        (how layers were combined, in words) and ``warnings`` (sentences; see `WARN_RELATIVE`).
    """
    sigma, independent = _network_sigmas(predicted_layers)
    result: dict[str, Any] = {
        "ensemble": int(ensemble),
        "sigma": sigma,
        "sigma_if_independent": independent,
        "band_2sigma": {}, "z": {}, "within_2sigma": {},
        "combination": "latency and energy: layers' log errors fully correlated, sigma = sum_l w_l sigma_l "
                       "(w_l: the layer's share of the predicted total); edp, edap: sigmas of the factors added",
    }
    for key in FIGURES if sigma is not None else ():
        low, high = predicted[key] * math.exp(-2 * sigma[key]), predicted[key] * math.exp(2 * sigma[key])
        result["band_2sigma"][key] = [low, high]
        log_error = math.log(simulated[key] / predicted[key]) if simulated[key] > 0 and predicted[key] > 0 else math.nan
        result["z"][key] = log_error / sigma[key] if sigma[key] > 0 else math.nan
        known = math.isfinite(simulated[key]) and math.isfinite(sigma[key])  # else: no verdict
        result["within_2sigma"][key] = bool(low <= simulated[key] <= high) if known else None
    result["warnings"] = _uncertainty_warnings(predicted, simulated, result)
    return result


def _network_sigmas(predicted_layers: pd.DataFrame) -> tuple[dict[str, float] | None, dict[str, float] | None]:
    """Sigma of ln(network figure): layers fully correlated, and independent (latency, energy)."""
    if "latency_s_std" not in predicted_layers:
        return None, None
    correlated, independent = {}, {}
    for key in ("latency_s", "energy_pj"):
        values = predicted_layers[key].to_numpy(dtype=np.float64)
        stds = predicted_layers[f"{key}_std"].to_numpy(dtype=np.float64)
        weights = values / values.sum()
        correlated[key] = float(np.sum(weights * stds))
        independent[key] = float(np.sqrt(np.sum(np.square(weights * stds))))
    correlated["area_mm2"] = float(predicted_layers["area_mm2_std"].iloc[0])
    correlated["edp"] = correlated["latency_s"] + correlated["energy_pj"]
    correlated["edap"] = correlated["edp"] + correlated["area_mm2"]
    return correlated, independent


def _uncertainty_warnings(predicted: Mapping[str, float], simulated: Mapping[str, float],
                          uncertainty: Mapping[str, Any]) -> list[str]:
    """Sentences about errors or uncertainties beyond `WARN_RELATIVE`, and misses of the 2-sigma band."""
    warnings = []
    sigma = uncertainty["sigma"]
    for key in _WARNED:
        if simulated[key] and math.isfinite(simulated[key]):
            error = (predicted[key] - simulated[key]) / simulated[key]
            if abs(error) > WARN_RELATIVE:
                warnings.append(f"{key}: the evaluator's prediction is off by {error:+.1%} from the simulator's "
                                f"(more than {WARN_RELATIVE:.0%})")
        if sigma is None or not math.isfinite(sigma[key]):
            continue
        half_band = math.exp(2 * sigma[key]) - 1
        if half_band > WARN_RELATIVE:
            warnings.append(f"{key}: the evaluator is uncertain here: its 2-sigma band is +-{half_band:.1%} "
                            f"(more than {WARN_RELATIVE:.0%}); trust the simulated figure, not the prediction")
        if uncertainty["within_2sigma"].get(key) is False:
            warnings.append(f"{key}: the simulated value lies outside the predicted 2-sigma band "
                            f"(z = {uncertainty['z'][key]:+.1f}): the evaluator's uncertainty is too small here")
    return warnings


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
