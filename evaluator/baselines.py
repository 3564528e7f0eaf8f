"""scikit-learn baselines fitted on the evaluator's own features, for the validation report.

Each baseline fits one regressor per target (natural logs, as the evaluator: cycles and
energy on feasible rows, area on every row) and one classifier for feasibility, on the
network's own inputs: `encode_layers`, `encode_accelerators` and `pair_features` (the
analytic estimates included), concatenated. Like the evaluator it is an
`evaluator.protocol.Predictor`, so both go through the same report code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from evaluator.features import D_LAYER, FREQ_FEATURE_INDEX, encode_accelerators, encode_layers, pair_features
from evaluator.protocol import PREDICTION_COLUMNS, check_pairs


def _hist_gradient_boosting(seed: int) -> tuple[Any, Any]:
    # 150 rounds of 63-leaf trees: most of what more rounds give, in tens of seconds.
    regressor = HistGradientBoostingRegressor(max_iter=150, learning_rate=0.15, max_leaf_nodes=63,
                                              early_stopping=False, random_state=seed)
    classifier = HistGradientBoostingClassifier(max_iter=50, early_stopping=False, random_state=seed)
    return regressor, classifier


def _k_neighbors(seed: int) -> tuple[Any, Any]:
    # Distance weighting so that an exact duplicate of a training pair predicts its value.
    regressor = make_pipeline(StandardScaler(), KNeighborsRegressor(n_neighbors=5, weights="distance"))
    classifier = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=5))
    return regressor, classifier


BASELINES: dict[str, Callable[[int], tuple[Any, Any]]] = {
    "hist_gradient_boosting": _hist_gradient_boosting,
    "k_neighbors": _k_neighbors,
}
# Rows each baseline is fitted on at most (KNN prediction cost grows with its training set).
DEFAULT_MAX_TRAIN_ROWS: dict[str, int] = {"hist_gradient_boosting": 50_000, "k_neighbors": 50_000}


def baseline_features(pairs: pd.DataFrame) -> np.ndarray:
    """``(n, d_layer + d_acc + d_pair)`` float64 features of a frame of pairs."""
    layer_x, acc_x = encode_layers(pairs), encode_accelerators(pairs)
    with torch.no_grad():
        pair_x = pair_features(layer_x, acc_x)
    return torch.cat([layer_x, acc_x, pair_x], dim=1).double().numpy()


@dataclass
class Baseline:
    """A fitted scikit-learn baseline: log-target regressors and a feasibility classifier."""

    name: str
    regressors: dict[str, Any] = field(default_factory=dict)
    classifier: Any = None
    constant_feasible: float | None = None  # when the training rows were all one class

    def predict(self, pairs: pd.DataFrame, features: np.ndarray | None = None) -> pd.DataFrame:
        """Same columns as `Evaluator.predict`, one row per pair (`evaluator.protocol.Predictor`).

        ``features`` may pass `baseline_features(pairs)` when the caller has it already.
        """
        check_pairs(pairs)
        if len(pairs) == 0:
            return pd.DataFrame({c: np.empty(0) for c in PREDICTION_COLUMNS}, index=pairs.index)
        with threadpool_limits(limits=1):
            return self._predict(pairs, baseline_features(pairs) if features is None else features)

    def _predict(self, pairs: pd.DataFrame, x: np.ndarray) -> pd.DataFrame:
        log_cycles = self.regressors["total_cycles"].predict(x)
        log2_freq = x[:, D_LAYER + FREQ_FEATURE_INDEX]
        cycles = np.exp(log_cycles)
        if self.constant_feasible is not None:
            p_feasible = np.full(len(pairs), self.constant_feasible)
        else:
            p_feasible = self.classifier.predict_proba(x)[:, list(self.classifier.classes_).index(True)]
        frame = pd.DataFrame({
            "total_cycles": cycles,
            "latency_s": cycles / (np.exp2(log2_freq) * 1e6),
            "energy_pj": np.exp(self.regressors["energy_pj"].predict(x)),
            "area_mm2": np.exp(self.regressors["area_mm2"].predict(x)),
            "p_feasible": p_feasible,
        }, index=pairs.index)
        return frame[list(PREDICTION_COLUMNS)]


def fit_baseline(name: str, train: pd.DataFrame, seed: int = 0, max_train_rows: int | None = None,
                 threads: int | None = 1, features: np.ndarray | None = None) -> Baseline:
    """Fit one baseline on a training frame (layer, accelerator and result columns).

    Parameters
    ----------
    name : str
        One of `BASELINES`.
    train : pandas.DataFrame
        Training pairs with ``feasible``, ``total_cycles``, ``energy_pj``, ``area_mm2``.
    seed : int
        Seeds the subsample and the estimators.
    max_train_rows : int, optional
        Subsample to at most this many rows (default: `DEFAULT_MAX_TRAIN_ROWS`).
    features : numpy.ndarray, optional
        `baseline_features(train)`, when the caller has it already (rows aligned with ``train``).
    threads : int, optional
        OpenMP / BLAS threads while fitting (None: the libraries' default). One by default:
        on a shared CPU, OpenMP's busy-waiting threads made a 3,000-row gradient-boosting fit
        take 92 s with two threads against 6 s with one.

    Returns
    -------
    Baseline
    """
    if name not in BASELINES:
        raise ValueError(f"baseline = {name!r}: expected one of {sorted(BASELINES)}")
    if len(train) == 0:
        raise ValueError("baseline training frame is empty")
    limit = max_train_rows or DEFAULT_MAX_TRAIN_ROWS[name]
    if len(train) > limit:
        rows = np.random.default_rng(seed).choice(len(train), size=limit, replace=False)
        train = train.iloc[rows]
        features = None if features is None else features[rows]
    with threadpool_limits(limits=threads):
        return _fit(name, train, seed, baseline_features(train) if features is None else features)


def _fit(name: str, train: pd.DataFrame, seed: int, x: np.ndarray) -> Baseline:
    feasible = train["feasible"].to_numpy(dtype=bool)
    baseline = Baseline(name)
    for column in ("total_cycles", "energy_pj", "area_mm2"):
        values = train[column].to_numpy(dtype=np.float64)
        rows = np.isfinite(values) & (values > 0)
        if column != "area_mm2":
            rows &= feasible
        if not rows.any():
            raise ValueError(f"baseline {name}: no training rows with a defined {column}")
        regressor, _ = BASELINES[name](seed)
        regressor.fit(x[rows], np.log(values[rows]))
        baseline.regressors[column] = regressor
    if feasible.all() or not feasible.any():
        baseline.constant_feasible = float(feasible[0])
    else:
        _, classifier = BASELINES[name](seed)
        classifier.fit(x, feasible)
        baseline.classifier = classifier
    return baseline
