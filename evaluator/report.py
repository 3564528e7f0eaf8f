"""The validation report: metrics per target and set, a readable table, parity plots.

`report.json` layout (all shares are fractions in 0..1; NaN is written as null)::

    {
      "format": "dance-evaluator-report", "format_version": 2,
      "simulator": {"name": "builtin", "version": "...", "settings": {...}},  # what it imitates
      "simulator_version": "...", "space_hash": "...", "artifact": "...", "dataset": "...",
      "error_rows": {"test": int, "ood": int},       # simulator failures, left out of the sets
      "ensemble": int,                               # members of the evaluator's deep ensemble
      "analytic_base": {"latency": "builtin" | "roofline",  # the base fitted to the simulator
                        "objective": "latency" | "energy" | "edp",  # the mapping it follows
                        "energy_scales": {"mac": w, "rf": w, ...}},
      "calibration": {"scale": {"latency": s, ...}, "departure_scale": {"latency": b, ...},
                      "tie_scale": {"energy": 1.0}, "method": "bands", "split": "val", ...},
      "ood_skipped": "...",                          # only when the OOD set could not be simulated
      "goal": {"within_10pct": 0.95, "kendall_tau": 0.95,
               "met": {"test": true, "ood": false}},
      "test": SET, "ood": SET,                       # the evaluator
      "baselines": {"analytic_base": {"test": SET, "ood": SET},   # the evaluator's base alone
                    "hist_gradient_boosting": {"test": SET, "ood": SET},
                    "k_neighbors": {"test": SET, "ood": SET}}
    }

    SET = {"n_pairs": int,
           "latency": TARGET, "energy": TARGET,       # over the simulator-feasible pairs
           "area": TARGET,                            # over every pair (area is always defined)
           "feasibility": {"n", "accuracy", "precision", "recall", "share_feasible"},
           "description": "..."}
    TARGET = {"n", "mape", "median_ape", "rmse_log", "within_5pct", "within_10pct",
              "kendall_tau", "spearman_rho",
              "uncertainty": UNCERTAINTY}                # only for an ensemble (std predicted)
    UNCERTAINTY = {"n", "coverage_1sigma", "coverage_2sigma", "rms_z", "median_sigma",
                   "sigma_error_spearman", "misses",   # `evaluator.metrics.uncertainty_metrics`
                   "misses_in_2sigma"}

``test`` is the held-out random split of the dataset; ``ood`` the layers of real networks
not used in training, on random accelerators of the dataset's space, simulated fresh.
``baselines.analytic_base`` is the evaluator's analytic base alone (the estimate it corrects,
as fitted to the simulator), written with every report since it came.
``UNCERTAINTY`` says how well the calibrated std (``predict(..., return_std=True)``)
describes the set's actual log errors: the shares inside the 1- and 2-sigma bands (ideal
0.683 / 0.954), the rank correlation of sigma with the absolute log error, and of the pairs
more than 10% off (``misses``) the share inside their 2-sigma band (flagged). Format
version 2 added ``ensemble``, ``calibration`` and ``uncertainty`` (``misses`` and
``misses_in_2sigma`` came later within it: older reports lack them); the rest is version 1's.
"""

from __future__ import annotations

import math
import os
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dataset_gen.common.files import atomic_write, atomic_write_text, write_json
from evaluator.metrics import (NORMAL_COVERAGE, classification_metrics, coverage_curve, log_errors,
                               regression_metrics, uncertainty_metrics)

REPORT_FORMAT = "dance-evaluator-report"
# (report target, simulator column, rows it is measured on)
TARGET_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("latency", "latency_s", "feasible"),
    ("energy", "energy_pj", "feasible"),
    ("area", "area_mm2", "all"),
)
GOAL = {"within_10pct": 0.95, "kendall_tau": 0.95}


def evaluate_set(simulated: pd.DataFrame, predicted: pd.DataFrame, description: str = "") -> dict[str, Any]:
    """Metrics of one predictor on one set of pairs.

    Parameters
    ----------
    simulated : pandas.DataFrame
        The simulator's results (``feasible``, ``latency_s``, ``energy_pj``, ``area_mm2``).
    predicted : pandas.DataFrame
        Aligned predictions (`Evaluator.predict` columns); with the std columns
        (``return_std=True``), each target also gets its ``uncertainty`` metrics.
    description : str
        What the set is (kept in the report).

    Returns
    -------
    dict
        A ``SET`` object of the report (see the module docstring).
    """
    if len(simulated) != len(predicted):
        raise ValueError(f"simulated has {len(simulated)} rows, predicted {len(predicted)}: expected the same")
    feasible = simulated["feasible"].to_numpy(dtype=bool)
    result: dict[str, Any] = {"n_pairs": int(len(simulated)), "description": description}
    for target, column, rows in TARGET_COLUMNS:
        truth = simulated[column].to_numpy(dtype=np.float64)
        guess = predicted[column].to_numpy(dtype=np.float64)
        mask = feasible.copy() if rows == "feasible" else np.ones(len(truth), dtype=bool)
        mask &= np.isfinite(truth) & (truth > 0)
        result[target] = regression_metrics(truth[mask], guess[mask])
        if f"{column}_std" in predicted:
            std = predicted[f"{column}_std"].to_numpy(dtype=np.float64)
            result[target]["uncertainty"] = uncertainty_metrics(truth[mask], guess[mask], std[mask])
    result["feasibility"] = classification_metrics(feasible, predicted["p_feasible"].to_numpy(dtype=np.float64))
    return result


def goal_met(set_metrics: dict[str, Any]) -> bool:
    """Latency and energy within 10% for >= 95% of pairs and Kendall tau >= 0.95."""
    for target in ("latency", "energy"):
        metrics = set_metrics.get(target) or {}
        if not metrics.get("n"):
            return False
        if not (metrics["within_10pct"] >= GOAL["within_10pct"] and metrics["kendall_tau"] >= GOAL["kendall_tau"]):
            return False
    return True


def _cell(value: Any, percent: bool) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.1f}%" if percent else f"{value:.3f}"


def _misses(uncertainty: dict[str, Any]) -> str:
    """``inside/misses`` of the pairs more than 10% off, "" where not measured (no ensemble, or
    a report written before the column)."""
    misses, share = uncertainty.get("misses"), uncertainty.get("misses_in_2sigma")
    if misses is None:
        return ""
    return f"{round(share * misses) if misses else 0}/{misses}"


_OBJECTIVE_MAPPINGS = {"energy": "least-energy", "edp": "least energy x delay"}


def _base_line(base: dict) -> str:
    """The report's line on the analytic base the evaluator corrects (`Evaluator.analytic_base`)."""
    mapping = _OBJECTIVE_MAPPINGS.get(base.get("objective"))
    if base.get("latency") != "roofline" and mapping:
        return f"analytic base: latency and energy the builtin estimate of the {mapping} mapping (fitted to the training split)"
    scales = base.get("energy_scales") or {}
    scaled = any(value != 1.0 for value in scales.values())
    nest = base.get("loopnest") or {}
    details = (f"ZigZag's rules: lpf_limit {nest.get('lpf_limit')}, max_orderings {nest.get('max_orderings')}, "
               f"{nest.get('energies')} energies, objective {nest.get('objective', 'energy')}")
    nest_energy, nest_cycles = bool(nest) and nest.get("energy", True), bool(nest) and nest.get("cycles", False)
    if nest_energy:
        energy = f"the loop-nest model's ({details}) plus leakage"
    elif scaled:
        energy = "parts weighed " + ", ".join(f"{part} {value:.3g}" for part, value in scales.items())
    else:
        energy = "the builtin estimate's parts as they are"
    if nest_cycles:
        latency = "the loop-nest model's cycles" + ("" if nest_energy else f" ({details})")
    elif base.get("latency") == "roofline":
        latency = "the roofline (whole loop dimensions unrolled, the least-traffic mapping's DRAM time)"
    else:
        latency = "the builtin estimate"
    feasible = "; feasibility whether a loop nest fits the memories" if nest.get("feasible") else ""
    return f"analytic base: latency {latency}; energy {energy}{feasible} (fitted to the training split)"


def format_table(report: dict[str, Any]) -> str:
    """A readable fixed-width table: one line per (model, set, target).

    With an ensemble's uncertainty, four more columns: the shares of simulated values inside
    the predicted 1- and 2-sigma bands, the rank correlation of sigma with the error, and how
    many of the pairs more than 10% off lie inside their 2-sigma band (``3/4``: flagged).
    """
    header = f"{'model':<24} {'set':<5} {'target':<8} {'n':>7} {'MAPE':>7} {'<=5%':>7} {'<=10%':>7} " \
             f"{'RMSElog':>8} {'tau':>6} {'rho':>6} {'feas.acc':>8} {'in1sig':>7} {'in2sig':>7} {'rho_sig':>7} " \
             f"{'miss2sig':>8}"
    lines = [header, "-" * len(header)]
    simulator = report.get("simulator")
    if simulator:
        settings = ", ".join(f"{key} {value}" for key, value in sorted((simulator.get("settings") or {}).items()))
        failed = sum((report.get("error_rows") or {}).values())
        lines.insert(0, f"imitating simulator {simulator.get('name')} {simulator.get('version')}"
                        + (f" ({settings})" if settings else "")
                        + (f"; {failed} rows the simulator failed on left out" if failed else ""))
    base = report.get("analytic_base")
    if base:
        lines.insert(1 if simulator else 0, _base_line(base))
    models = [("evaluator", {name: report[name] for name in ("test", "ood") if name in report})]
    models += [(name, sets) for name, sets in (report.get("baselines") or {}).items()]
    for model, sets in models:
        for set_name, metrics in sets.items():
            accuracy = (metrics.get("feasibility") or {}).get("accuracy")
            for target in ("latency", "energy", "area"):
                m = metrics.get(target) or {}
                u = m.get("uncertainty") or {}
                lines.append(
                    f"{model:<24} {set_name:<5} {target:<8} {m.get('n', 0):>7} {_cell(m.get('mape'), True):>7} "
                    f"{_cell(m.get('within_5pct'), True):>7} {_cell(m.get('within_10pct'), True):>7} "
                    f"{_cell(m.get('rmse_log'), False):>8} {_cell(m.get('kendall_tau'), False):>6} "
                    f"{_cell(m.get('spearman_rho'), False):>6} "
                    f"{_cell(accuracy, True) if target == 'latency' else '':>8} "
                    f"{_cell(u.get('coverage_1sigma'), True):>7} {_cell(u.get('coverage_2sigma'), True):>7} "
                    f"{_cell(u.get('sigma_error_spearman'), False):>7} {_misses(u):>8}".rstrip()
                )
    if report.get("ood_skipped"):
        lines.append(report["ood_skipped"])
    lines += _uncertainty_lines(report)
    goal = report.get("goal")
    if goal:
        met = ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in goal.get("met", {}).items())
        lines.append("")
        lines.append(f"goal (latency and energy within 10% for >= {100 * goal['within_10pct']:.0f}% of pairs, "
                     f"Kendall tau >= {goal['kendall_tau']}): {met}")
    return "\n".join(lines) + "\n"


def _uncertainty_lines(report: dict[str, Any]) -> list[str]:
    """What the uncertainty columns mean and how the std was calibrated (nothing without one)."""
    ensemble = report.get("ensemble")
    if ensemble is None:
        return []
    if ensemble < 2:
        return ["", "uncertainty: none (a single network, model.ensemble = 1): in1sig, in2sig, rho_sig are -"]
    calibration = report.get("calibration") or {}
    scale = ", ".join(f"{target} {_cell(value, False)}" for target, value in (calibration.get("scale") or {}).items())
    fitted = f"{calibration.get('split', '?')} split ({calibration.get('method', '?')})"
    departure = calibration.get("departure_scale")
    tie = {target: value for target, value in (calibration.get("tie_scale") or {}).items() if value}
    if departure:
        described = ("std of ln(prediction) = sqrt((scale x the members' spread)^2 + (departure scale x |ln prediction "
                     "- ln analytic estimate|)^2" + (" + (tie scale x energy tie)^2" if tie else "") + ")")
        scale += "; departure scale " + ", ".join(f"{target} {_cell(value, False)}"
                                                  for target, value in departure.items())
        if tie:
            scale += "; tie scale " + ", ".join(f"{target} {_cell(value, False)}" for target, value in tie.items()) + (
                " (fixed; the energy tie: how far the energies of the mappings near-tied in time lie from the "
                "analytic estimate)")
    else:
        described = "std of ln(prediction) = scale x the members' spread"
    if calibration.get("floor"):
        described += f", with a floor of {calibration['floor']:g} in quadrature"
    return ["", f"uncertainty: {ensemble}-member ensemble; {described}, scales fitted on the {fitted}: {scale}",
            f"in1sig / in2sig: simulated values inside prediction x exp(+-sigma) / exp(+-2 sigma) (ideal "
            f"{100 * NORMAL_COVERAGE['1sigma']:.1f}% / {100 * NORMAL_COVERAGE['2sigma']:.1f}%); rho_sig: Spearman "
            "correlation of sigma with |ln pred - ln sim|; miss2sig: of the pairs more than 10% off, those inside "
            "their 2-sigma band (flagged as uncertain)"]


def parity_plot(simulated: pd.DataFrame, predicted: pd.DataFrame, path: str | os.PathLike, title: str) -> Path:
    """Predicted against simulated, log-log, one panel per target, with +-10% bands (PNG)."""
    import matplotlib

    matplotlib.use("Agg")  # headless: never open a window
    from matplotlib import pyplot as plt

    path = Path(path)
    feasible = simulated["feasible"].to_numpy(dtype=bool)
    figure, axes = plt.subplots(1, 3, figsize=(13.5, 4.5))
    for axis, (target, column, rows) in zip(axes, TARGET_COLUMNS):
        truth = simulated[column].to_numpy(dtype=np.float64)
        guess = predicted[column].to_numpy(dtype=np.float64)
        mask = (feasible if rows == "feasible" else np.ones(len(truth), dtype=bool)) & np.isfinite(truth) & (truth > 0)
        truth, guess = truth[mask], np.maximum(guess[mask], 1e-300)
        if truth.size:
            axis.scatter(truth, guess, s=3, alpha=0.35, linewidths=0)
            low, high = float(min(truth.min(), guess.min())), float(max(truth.max(), guess.max()))
            line = np.geomspace(low, high, 50)
            axis.plot(line, line, color="black", linewidth=0.8, label="y = x")
            axis.plot(line, line * 1.1, color="grey", linewidth=0.6, linestyle="--", label="+-10%")
            axis.plot(line, line / 1.1, color="grey", linewidth=0.6, linestyle="--")
            axis.set_xscale("log")
            axis.set_yscale("log")
            axis.legend(loc="upper left", fontsize=8)
        within = float(np.mean(np.abs(guess - truth) <= 0.1 * truth)) if truth.size else math.nan
        axis.set_title(f"{target} ({column}), n={truth.size}, <=10%: {_cell(within, True)}", fontsize=9)
        axis.set_xlabel("simulated")
        axis.set_ylabel("predicted")
    return _save_figure(figure, title, path)


def calibration_plot(sets: dict[str, tuple[pd.DataFrame, pd.DataFrame]], path: str | os.PathLike,
                     title: str) -> Path:
    """Observed against expected coverage of the predicted sigma bands, one panel per target (PNG).

    Parameters
    ----------
    sets : dict
        Set name -> (simulated, predicted with the std columns).
    path : str or PathLike
    title : str

    The band of expected level ``p`` is ``prediction x exp(+-z std)``, ``z`` the normal quantile
    of ``(1 + p) / 2``; a calibrated std lies on the diagonal, an overconfident one below it.
    """
    import matplotlib

    matplotlib.use("Agg")  # headless: never open a window
    from matplotlib import pyplot as plt

    path = Path(path)
    levels = np.linspace(0.0, 0.99, 34)
    figure, axes = plt.subplots(1, 3, figsize=(13.5, 4.5))
    for axis, (target, column, rows) in zip(axes, TARGET_COLUMNS):
        axis.plot([0, 1], [0, 1], color="black", linewidth=0.8, label="calibrated")
        for name, (simulated, predicted) in sets.items():
            truth = simulated[column].to_numpy(dtype=np.float64)
            mask = np.isfinite(truth) & (truth > 0)
            if rows == "feasible":
                mask &= simulated["feasible"].to_numpy(dtype=bool)
            errors = log_errors(truth[mask], predicted[column].to_numpy(dtype=np.float64)[mask])
            observed = coverage_curve(errors, predicted[f"{column}_std"].to_numpy(dtype=np.float64)[mask], levels)
            axis.plot(levels, observed, marker=".", markersize=3, label=f"{name} (n={int(mask.sum())})")
        for expected in NORMAL_COVERAGE.values():
            axis.axvline(expected, color="grey", linewidth=0.5, linestyle=":")
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1)
        axis.set_title(f"{target} ({column})", fontsize=9)
        axis.set_xlabel("expected coverage (normal band)")
        axis.set_ylabel("observed coverage")
        axis.legend(loc="upper left", fontsize=8)
    return _save_figure(figure, title, path)


def _save_figure(figure: Any, title: str, path: Path) -> Path:
    """Title, lay out and write ``figure`` to ``path`` atomically (PNG), then close it."""
    import matplotlib.pyplot as plt

    figure.suptitle(textwrap.fill(title, width=120), fontsize=10)
    figure.tight_layout()
    try:
        atomic_write(path, lambda stream: figure.savefig(stream, dpi=110, format="png"))
    finally:
        plt.close(figure)
    return path


def write_report(report: dict[str, Any], out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``report.json`` and ``report.txt`` (the table) into ``out_dir``, atomically."""
    out_dir = Path(out_dir)
    paths = {"json": out_dir / "report.json", "table": out_dir / "report.txt"}
    write_json(paths["json"], report)
    atomic_write_text(paths["table"], format_table(report))
    return paths
