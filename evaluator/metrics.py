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


# --------------------------------------------------------------------------- uncertainty

# Shares of a normal distribution within 1 and 2 standard deviations: what a calibrated
# std's bands should hold.
NORMAL_COVERAGE: dict[str, float] = {"1sigma": math.erf(1 / math.sqrt(2)), "2sigma": math.erf(2 / math.sqrt(2))}
UNCERTAINTY_METRICS: tuple[str, ...] = (
    "n", "coverage_1sigma", "coverage_2sigma", "rms_z", "median_sigma", "sigma_error_spearman",
    "misses", "misses_in_2sigma",
)
# A "miss": a prediction more than 10% off the simulator (the accuracy goal's threshold).
MISS = math.log(1.1)
CALIBRATION_METHODS: tuple[str, ...] = ("bands", "2sigma", "1sigma", "rms")
# Departure scales tried by the ``bands`` calibration (`band_calibration`), 0 first.
DEPARTURE_SCALES = np.concatenate([[0.0], np.geomspace(0.01, 20.0, 81)])


def log_errors(simulated: Any, predicted: Any) -> np.ndarray:
    """``ln predicted - ln simulated`` per pair (the error a log-space std describes)."""
    simulated, predicted = _as_pairs(simulated, predicted)
    with np.errstate(divide="ignore"):
        return np.log(predicted) - np.log(simulated)


def _as_std(std: Any, n: int) -> np.ndarray:
    std = np.asarray(std, dtype=np.float64).reshape(-1)
    if std.size != n:
        raise ValueError(f"std has {std.size} values for {n} pairs: expected the same")
    if np.any(std[np.isfinite(std)] < 0):
        raise ValueError("std: expected non-negative values")
    return std


def uncertainty_metrics(simulated: Any, predicted: Any, std: Any) -> dict[str, float]:
    """How well a predicted log-space std describes the actual errors (keys: `UNCERTAINTY_METRICS`).

    Parameters
    ----------
    simulated, predicted : array-like
        Positive physical values, the simulator's first.
    std : array-like
        The predicted standard deviation of ``ln predicted`` per pair.

    Returns
    -------
    dict
        ``coverage_1sigma`` / ``coverage_2sigma``: the share of pairs whose simulated value
        lies in ``predicted * exp(+-k std)`` (a calibrated normal std gives 0.683 / 0.954);
        ``misses``: the pairs more than 10% off (``|ln p - ln s| > ln 1.1``) and
        ``misses_in_2sigma`` the share of them inside their 2-sigma band, the misses the
        uncertainty flags (NaN without misses);
        ``rms_z``: the root mean square of ``|ln p - ln s| / std`` (1 when calibrated in the
        RMS sense); ``median_sigma``: the typical std; ``sigma_error_spearman``: Spearman's rank
        correlation between the std and the absolute log error (does a larger std flag a larger
        error? 0: no, 1: perfectly). NaN everywhere (n = 0) when no std is finite (a single
        network has none).
    """
    errors = np.abs(log_errors(simulated, predicted))
    std = _as_std(std, errors.size)
    usable = np.isfinite(std) & np.isfinite(errors)
    errors, std = errors[usable], std[usable]
    if errors.size == 0:
        return {name: (0 if name in ("n", "misses") else math.nan) for name in UNCERTAINTY_METRICS}
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(std > 0, errors / std, np.where(errors > 0, np.inf, 0.0))
    spearman = (float(stats.spearmanr(std, errors).statistic)
                if errors.size >= 2 and np.ptp(std) > 0 and np.ptp(errors) > 0 else math.nan)
    return {
        "n": int(errors.size),
        "coverage_1sigma": float(np.mean(z <= 1.0)),
        "coverage_2sigma": float(np.mean(z <= 2.0)),
        "rms_z": float(np.sqrt(np.mean(np.square(z)))),
        "median_sigma": float(np.median(std)),
        "sigma_error_spearman": spearman,
        "misses": int(np.sum(errors > MISS)),
        "misses_in_2sigma": float(np.mean(z[errors > MISS] <= 2.0)) if np.any(errors > MISS) else math.nan,
    }


def calibration_scale(errors: Any, spread: Any, method: str = "2sigma") -> float:
    """The factor ``s`` that turns an ensemble's spread into a calibrated std: ``std = s * spread``.

    Parameters
    ----------
    errors : array-like
        Log errors ``ln predicted - ln simulated`` on a calibration set (signs do not matter).
    spread : array-like
        The ensemble's raw spread (std of the members' logs) on the same pairs.
    method : {"2sigma", "1sigma", "rms"}
        ``2sigma``: ``s`` = half the 95.4% quantile of ``|error| / spread``, so that the
        2-sigma band holds 95.4% of the pairs, as a normal error's would; ``1sigma``: ``s`` = the
        68.3% quantile, so that the 1-sigma band holds 68.3%; ``rms``:
        ``s = sqrt(mean((error / spread)**2))``, so that the z-scores ``|error| / (s * spread)``
        have unit root mean square. They agree for normal errors; for heavy-tailed ones (most
        pairs nearly exact, a few far off) ``rms`` is set by the few worst pairs and widens
        every band (the 2-sigma band holds ~99%), ``1sigma`` leaves the 2-sigma band short
        (~88%), and ``2sigma`` is right where the bands are used (warnings at 2 sigma),
        over-covering at one sigma.

    Returns
    -------
    float
        ``s`` (NaN when no pair has a finite, positive spread and a finite error).
    """
    if method not in CALIBRATION_METHODS or method == "bands":
        spread_only = [m for m in CALIBRATION_METHODS if m != "bands"]
        raise ValueError(f"calibration = {method!r}: expected one of {spread_only} (bands: band_calibration)")
    errors = np.abs(np.asarray(errors, dtype=np.float64).reshape(-1))
    spread = _as_std(spread, errors.size)
    usable = np.isfinite(errors) & np.isfinite(spread) & (spread > 0)
    if not usable.any():
        return math.nan
    ratio = errors[usable] / spread[usable]
    if method == "rms":
        return float(np.sqrt(np.mean(np.square(ratio))))
    sigmas = 2.0 if method == "2sigma" else 1.0
    return float(np.quantile(ratio, NORMAL_COVERAGE[method]) / sigmas)


def band_calibration(errors: Any, spread: Any, departure: Any, fixed: Any = None) -> tuple[float, float]:
    """The ``bands`` calibration: factors ``(a, b)`` of ``std = sqrt((a * spread)**2 + (b *
    departure)**2 + fixed**2)`` whose 2-sigma band holds 95.4% of the pairs and whose 1-sigma
    band comes as close to 68.3% as any ``b`` of `DEPARTURE_SCALES` allows. ``fixed`` (default
    0) is a term already scaled (the energy tie), in place while ``a`` and ``b`` are fitted.

    One factor on the spread alone (the other methods) cannot do both: the errors are heavy
    tailed (most pairs nearly exact, a few far off), so a spread scaled for the 2-sigma band
    over-covers at one sigma. The departure (how far the prediction lies from the analytic
    estimate it corrects) is large exactly where the few far-off pairs are, so a second term
    lets the bands narrow elsewhere. For each ``b``, ``a`` is the least that puts 95.4% inside
    2 sigma (the coverage only grows with ``a``), found by bisection (a ``b`` whose departure
    term alone holds more is too large and skipped); ties in the 1-sigma distance go to the
    smaller ``b``.

    Returns
    -------
    (float, float)
        ``(a, b)``; ``(nan, 0.0)`` when no pair has a finite, positive spread and a finite
        error.
    """
    errors = np.abs(np.asarray(errors, dtype=np.float64).reshape(-1))
    spread = _as_std(spread, errors.size)
    departure = np.abs(_as_std(departure, errors.size))
    fixed = np.zeros(errors.size) if fixed is None else np.abs(_as_std(fixed, errors.size))
    usable = np.isfinite(errors) & np.isfinite(spread) & (spread > 0) & np.isfinite(departure) & np.isfinite(fixed)
    if not usable.any():
        return math.nan, 0.0
    errors, spread, departure, fixed = errors[usable], spread[usable], departure[usable], fixed[usable]
    target_2, target_1 = NORMAL_COVERAGE["2sigma"], NORMAL_COVERAGE["1sigma"]
    best = None
    for b in DEPARTURE_SCALES:
        def coverage(a: float, sigmas: float) -> float:
            return float(np.mean(errors <= sigmas * np.sqrt((a * spread) ** 2 + (b * departure) ** 2 + fixed ** 2)))

        if coverage(0.0, 2.0) >= target_2:  # the departure alone over-covers: b too large (or all exact)
            if b > 0:
                continue
            a = 0.0
        else:
            low, high = 0.0, float(np.max(errors / spread))  # coverage(high, 2) = 1
            for _ in range(60):
                middle = 0.5 * (low + high)
                low, high = (low, middle) if coverage(middle, 2.0) >= target_2 else (middle, high)
            a = high
        distance = abs(coverage(a, 1.0) - target_1)
        if best is None or distance < best[0] - 1e-12:
            best = (distance, a, float(b))
    return best[1], best[2]


def coverage_curve(errors: Any, std: Any, levels: Any) -> np.ndarray:
    """Observed coverage of central normal bands: for each expected level ``p``, the share of
    pairs with ``|error| <= z_p * std``, ``z_p`` the normal quantile of ``(1 + p) / 2``
    (a calibration plot's y against x = ``p``)."""
    errors = np.abs(np.asarray(errors, dtype=np.float64).reshape(-1))
    std = _as_std(std, errors.size)
    usable = np.isfinite(errors) & np.isfinite(std)
    errors, std = errors[usable], std[usable]
    levels = np.asarray(levels, dtype=np.float64)
    if errors.size == 0:
        return np.full(levels.shape, math.nan)
    z = stats.norm.ppf((1.0 + levels) / 2.0)
    return np.array([float(np.mean(errors <= q * std)) for q in z])
