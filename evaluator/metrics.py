"""Accuracy metrics of predicted against simulated figures (fractions, not percentages).

All regression metrics take positive physical values (cycles, pJ, mm^2), the simulator's
first. Ratios are relative to the simulated value: a prediction is "within 10%" when
``|predicted - simulated| <= 0.10 * simulated``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats

REGRESSION_METRICS: tuple[str, ...] = (
    "n", "mape", "median_ape", "rmse_log", "within_5pct", "within_10pct", "kendall_tau", "spearman_rho",
)


def _as_pairs(simulated: Any, predicted: Any) -> tuple[np.ndarray, np.ndarray]:
    simulated = np.asarray(simulated, dtype=np.float64).reshape(-1)
    predicted = np.asarray(predicted, dtype=np.float64).reshape(-1)
    if simulated.shape != predicted.shape:
        raise ValueError(f"simulated has {simulated.size} values, predicted {predicted.size}: expected the same")
    if np.any(~np.isfinite(simulated)) or np.any(simulated <= 0):
        raise ValueError("simulated: expected finite positive values (filter infeasible rows first)")
    if np.any(np.isnan(predicted)) or np.any(predicted < 0):
        raise ValueError("predicted: expected non-negative values without NaN")
    return simulated, predicted


def relative_errors(simulated: Any, predicted: Any) -> np.ndarray:
    """``|predicted - simulated| / simulated`` per pair."""
    simulated, predicted = _as_pairs(simulated, predicted)
    return np.abs(predicted - simulated) / simulated


def mape(simulated: Any, predicted: Any) -> float:
    """Mean absolute percentage error, as a fraction (0.05 = 5%)."""
    return float(np.mean(relative_errors(simulated, predicted)))


def rmse_log(simulated: Any, predicted: Any) -> float:
    """Root mean squared error of natural logs: ``sqrt(mean((ln p - ln s)**2))``."""
    simulated, predicted = _as_pairs(simulated, predicted)
    with np.errstate(divide="ignore"):
        diff = np.log(predicted) - np.log(simulated)
    return float(np.sqrt(np.mean(diff**2)))


def within(simulated: Any, predicted: Any, tolerance: float) -> float:
    """Share of pairs whose relative error is at most ``tolerance`` (a fraction)."""
    return float(np.mean(relative_errors(simulated, predicted) <= tolerance + 1e-12))


def kendall_tau(simulated: Any, predicted: Any) -> float:
    """Kendall's tau-b between simulated and predicted (rank agreement, -1..1; NaN if n < 2)."""
    simulated, predicted = _as_pairs(simulated, predicted)
    if simulated.size < 2:
        return math.nan
    return float(stats.kendalltau(simulated, predicted).statistic)


def spearman_rho(simulated: Any, predicted: Any) -> float:
    """Spearman's rank correlation between simulated and predicted (-1..1; NaN if n < 2)."""
    simulated, predicted = _as_pairs(simulated, predicted)
    if simulated.size < 2:
        return math.nan
    return float(stats.spearmanr(simulated, predicted).statistic)


def regression_metrics(simulated: Any, predicted: Any) -> dict[str, float]:
    """Every regression metric of one target on one set (keys: `REGRESSION_METRICS`).

    An empty set gives ``n = 0`` and NaN elsewhere (JSON: null).
    """
    simulated, predicted = _as_pairs(simulated, predicted)
    if simulated.size == 0:
        return {name: (0 if name == "n" else math.nan) for name in REGRESSION_METRICS}
    errors = np.abs(predicted - simulated) / simulated
    return {
        "n": int(simulated.size),
        "mape": float(np.mean(errors)),
        "median_ape": float(np.median(errors)),
        "rmse_log": rmse_log(simulated, predicted),
        "within_5pct": float(np.mean(errors <= 0.05 + 1e-12)),
        "within_10pct": float(np.mean(errors <= 0.10 + 1e-12)),
        "kendall_tau": kendall_tau(simulated, predicted),
        "spearman_rho": spearman_rho(simulated, predicted),
    }


def classification_metrics(feasible: Any, probability: Any) -> dict[str, float]:
    """Feasibility accuracy (threshold 0.5), precision and recall of "feasible", share feasible, n."""
    truth = np.asarray(feasible, dtype=bool).reshape(-1)
    probability = np.asarray(probability, dtype=np.float64).reshape(-1)
    if truth.shape != probability.shape:
        raise ValueError(f"feasible has {truth.size} values, probability {probability.size}: expected the same")
    if truth.size == 0:
        return {"n": 0, "accuracy": math.nan, "precision": math.nan, "recall": math.nan, "share_feasible": math.nan}
    guess = probability >= 0.5
    true_positive = int(np.sum(guess & truth))
    return {
        "n": int(truth.size),
        "accuracy": float(np.mean(guess == truth)),
        "precision": true_positive / int(guess.sum()) if guess.any() else math.nan,
        "recall": true_positive / int(truth.sum()) if truth.any() else math.nan,
        "share_feasible": float(np.mean(truth)),
    }
