"""Validation: the evaluator (and scikit-learn baselines) against the simulator.

`validate` measures a trained `Evaluator` on (a) the held-out test split of its dataset and
(b) the out-of-distribution set (`evaluator.ood`, simulated by the dataset's own simulator
adapter), fits the baselines on the training split, measures the evaluator's analytic base
alone (`base_predictions`: what the network adds to the physics) and writes the report
(`evaluator.report`), which names the simulator the evaluator imitates. Rows the simulator
failed on (non-empty ``error``) are left out of every set and counted in the report.
`validate_artifact` does the same for an artifact file and any dataset of the same
simulator (adapter and version) and design space.

`calibrate` fits the uncertainty of a deep ensemble after training: one factor per target
that scales the members' spread into a calibrated standard deviation of ln(prediction),
fitted on the validation split (the split the test metrics never see). The report then says,
per set and target, how often the simulated value fell inside the predicted 1- and 2-sigma
bands and how well sigma ranks the actual errors (`evaluator.report`).
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from dataset_gen.adapters import AdapterError
from dataset_gen.reader import simulator_identity
from evaluator.artifact import load
from evaluator.baselines import BASELINES, DEFAULT_MAX_TRAIN_ROWS, baseline_features, fit_baseline
from evaluator.data import INPUT_FIELDS, RESULT_COLUMNS, SPLITS, drop_error_rows, read_split
from evaluator.dataset import ForeignDatasetError, check_dataset
from evaluator.metrics import CALIBRATION_METHODS, band_calibration, calibration_scale, log_errors, uncertainty_metrics
from evaluator.network import TARGETS
from evaluator.ood import ood_set
from evaluator.features import PAIR_FEATURES
from evaluator.predictor import Evaluator
from evaluator.protocol import PREDICTION_COLUMNS

# The tie term's factor in the ``bands`` calibration: fixed, not fitted. The tie is how far the
# energies of the mappings near-tied in time lie from the estimate (`evaluator.analytic.TIE_BAND`),
# any of which the simulator may pick: at 1, such a mapping's energy lies within one sigma. The
# validation split cannot fit it (the network learns the tie-breaks of the layers it saw; the
# misses are on unseen ones, where a fitted factor of 0 would leave them unflagged).
TIE_SCALE = 1.0
# The report's row for the analytic base alone (among the baselines: a reference, not a model).
ANALYTIC_BASE_ROW = "analytic_base"


def tie_applies(simulator: dict[str, Any]) -> bool:
    """Whether the energy tie describes the imitated simulator: the builtin one picking the
    fastest mapping (``objective: latency``), whose mapper the analytic model replicates. Another
    tool's mapper has near-ties of its own (ZigZag's evaluator would flag the builtin mapper's:
    a searched design predicted within 2% of ZigZag's energy got a 2-sigma band of +-156%), and
    another objective breaks them otherwise."""
    settings = simulator.get("settings") or {}
    return simulator.get("name") == "builtin" and settings.get("objective", "latency") == "latency"
from evaluator.report import (GOAL, REPORT_FORMAT, TARGET_COLUMNS, calibration_plot, evaluate_set, goal_met,
                              parity_plot, write_report)


@dataclass
class ValidationConfig:
    """What the validation measures (``validation:`` in conf/train.yaml and conf/validate.yaml).

    Attributes
    ----------
    ood_pairs : int
        About this many out-of-distribution pairs (0: no OOD set).
    ood_networks : list of str, optional
        Zoo networks of the OOD set (default: those the dataset did not use).
    ood_input_sizes : list of int
        Input resolutions of the OOD networks.
    baselines : list of str
        scikit-learn baselines to fit and report (`evaluator.baselines.BASELINES`).
    max_baseline_rows : int, optional
        Training rows per baseline at most (default: each baseline's own cap).
    max_test_rows : int, optional
        Evaluate on a seeded random subset of at most this many test rows.
    plots : bool
        Write parity plots (PNG).
    seed : int
        Seeds the OOD accelerators and the subsets.
    """

    ood_pairs: int = 2000
    ood_networks: Sequence[str] | None = None
    ood_input_sizes: Sequence[int] = (224,)
    baselines: Sequence[str] = ("hist_gradient_boosting", "k_neighbors")
    max_baseline_rows: int | None = None
    max_test_rows: int | None = None
    plots: bool = True
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [name for name in self.baselines if name not in BASELINES]
        if unknown:
            raise ValueError(f"validation.baselines: unknown {unknown}; expected some of {sorted(BASELINES)}")
        if not isinstance(self.ood_pairs, int) or self.ood_pairs < 0:
            raise ValueError(f"validation.ood_pairs = {self.ood_pairs!r}: expected an integer >= 0")


def validate(evaluator: Evaluator, data: str | os.PathLike, out: str | os.PathLike,
             config: ValidationConfig | None = None, split: str = "test",
             fractions: Sequence[float] | None = None, salt: int | None = None,
             artifact: str | None = None, log: Any = print) -> dict[str, Any]:
    """Measure ``evaluator`` on a dataset's split and on the OOD set; write the report.

    Parameters
    ----------
    evaluator : Evaluator
    data : str or PathLike
        The dataset directory (already checked against the evaluator's metadata).
    out : str or PathLike
        Where ``report.json``, ``report.txt`` and ``parity_*.png`` go.
    config : ValidationConfig, optional
    split : {"test", "val", "train", "all"}
        The rows measured as the in-distribution set (``all``: a dataset not used in training).
    fractions, salt
        The split definition (default: the one stored with the evaluator).
    artifact : str, optional
        The artifact's path, recorded in the report.
    log : callable
        Receives progress lines.

    Returns
    -------
    dict
        The report (layout in `evaluator.report`).
    """
    config = config or ValidationConfig()
    if split not in (*SPLITS, "all"):
        raise ValueError(f"split = {split!r}: expected one of {[*SPLITS, 'all']}")
    stored = evaluator.extra.get("split") or {}
    fractions = fractions if fractions is not None else stored.get("fractions", (0.8, 0.1, 0.1))
    salt = salt if salt is not None else int(stored.get("salt", 0))
    out = Path(out)
    started = time.perf_counter()
    columns = [*INPUT_FIELDS, *RESULT_COLUMNS, "latency_s"]
    test = read_split(data, None if split == "all" else split, fractions, salt, columns=columns,
                      max_rows=config.max_test_rows, seed=config.seed)
    train = read_split(data, "train", fractions, salt, columns=columns)
    metadata = evaluator.dataset_metadata
    simulator = evaluator.simulator
    error_rows = {"test": int(test.attrs.get("error_rows", 0))}
    log(f"validation: {len(test)} {split} pairs; building the OOD set ({config.ood_pairs} pairs, simulated now by "
        f"{simulator['name']} {simulator['version']})")
    ood, ood_skipped = pd.DataFrame(), None
    if config.ood_pairs:
        try:
            ood = ood_set(metadata, train, config.ood_pairs, config.seed, config.ood_networks,
                          config.ood_input_sizes)
        except AdapterError as error:
            # the dataset's simulator is not installed here: the rest of the report needs none
            ood_skipped = f"no OOD set: its simulator cannot run here ({error})"
            warnings.warn(ood_skipped, stacklevel=2)
            log(f"validation: {ood_skipped}")
        ood, error_rows["ood"] = drop_error_rows(ood)
    sets = {"test": (test, f"{split} split of {os.fspath(data)}")}
    if len(ood):
        networks = sorted(set(ood["network"]))
        sets["ood"] = (ood, f"{ood['layer_name'].nunique()} unseen layers of {', '.join(networks)} "
                            f"(input sizes {list(config.ood_input_sizes)}) on random accelerators of the dataset's "
                            f"space, simulated by {simulator['name']} {simulator['version']}")
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "format_version": 2,
        "simulator": simulator,
        "simulator_version": evaluator.simulator_version,
        "space_hash": evaluator.space_hash,
        "artifact": artifact,
        "dataset": os.fspath(data),
        # rows the simulator failed on (unknown, not infeasible), left out of each set's metrics
        "error_rows": error_rows,
        "ensemble": evaluator.ensemble,
        "calibration": evaluator.calibration,
        "analytic_base": evaluator.analytic_base,
    }
    if ood_skipped:
        report["ood_skipped"] = ood_skipped
    uncertain = evaluator.ensemble > 1
    predictions = {}
    for name, (frame, description) in sets.items():
        predictions[name] = predicted = evaluator.predict(frame, return_std=uncertain)
        report[name] = evaluate_set(frame, predicted, description)
        if config.plots:
            parity_plot(frame, predicted, out / f"parity_{name}.png", f"evaluator, {name}: {description}")
    if config.plots and uncertain:
        calibration_plot({name: (frame, predictions[name]) for name, (frame, _) in sets.items()},
                         out / "calibration.png", f"{evaluator.ensemble}-member evaluator: coverage of the "
                         f"predicted sigma bands (std scaled on the {evaluator.calibration.get('split', '?')} split)")
    report["goal"] = {**GOAL, "met": {name: goal_met(report[name]) for name in sets}}
    report["baselines"] = {ANALYTIC_BASE_ROW: {
        set_name: evaluate_set(frame, base_predictions(evaluator, frame), description)
        for set_name, (frame, description) in sets.items()}}
    if config.baselines:
        # Features once for every baseline: a seeded subset of the training split (as large as
        # the largest baseline's cap; each baseline takes its own seeded subset of it).
        cap = max(config.max_baseline_rows or DEFAULT_MAX_TRAIN_ROWS[name] for name in config.baselines)
        subset = train.sample(n=min(cap, len(train)), random_state=config.seed)
        train_features = baseline_features(subset)
        set_features = {name: baseline_features(frame) for name, (frame, _) in sets.items()}
    for name in config.baselines:
        log(f"validation: fitting baseline {name}")
        baseline = fit_baseline(name, subset, seed=config.seed, max_train_rows=config.max_baseline_rows,
                                features=train_features)
        report["baselines"][name] = {
            set_name: evaluate_set(frame, baseline.predict(frame, set_features[set_name]), description)
            for set_name, (frame, description) in sets.items()
        }
    report["seconds"] = round(time.perf_counter() - started, 2)
    write_report(report, out)
    return report


def base_predictions(evaluator: Evaluator, frame: pd.DataFrame) -> pd.DataFrame:
    """What the evaluator's analytic base alone predicts (`EvaluatorNetwork.base`: the analytic
    estimate as fitted to the imitated simulator), as `Evaluator.predict` columns: the report's
    `ANALYTIC_BASE_ROW`, which shows what the network adds to the physics."""
    import torch

    from evaluator.features import encode_accelerators, encode_layers, pair_features

    columns: dict[str, list[np.ndarray]] = {name: [] for name in PREDICTION_COLUMNS}
    feasible = PAIR_FEATURES.index("est_feasible")
    with torch.no_grad():
        for start in range(0, len(frame), 65536):
            part = frame.iloc[start:start + 65536]
            layer_x, acc_x = encode_layers(part), encode_accelerators(part)
            pair_x = pair_features(layer_x, acc_x)
            logs = evaluator.network.base(pair_x, acc_x, layer_x)[:, :3].double().numpy()
            cycles = np.exp(logs[:, 0])
            columns["total_cycles"].append(cycles)
            columns["latency_s"].append(cycles / (part["freq_mhz"].to_numpy(dtype=np.float64) * 1e6))
            columns["energy_pj"].append(np.exp(logs[:, 1]))
            columns["area_mm2"].append(np.exp(logs[:, 2]))
            prior = evaluator.network.feasible_prior(layer_x, acc_x)  # the loop nest's fit, where it decides
            p_feasible = pair_x[:, feasible] if prior is None else torch.sigmoid(prior)
            columns["p_feasible"].append(p_feasible.double().numpy())
    return pd.DataFrame({name: np.concatenate(parts) if parts else np.empty(0) for name, parts in columns.items()},
                        index=frame.index)


# The least std of ln(prediction) a calibration lets an evaluator claim (about +-0.1%): where
# the base is the simulator's own arithmetic (the loop nest is ZigZag's) the errors are float32
# rounding (~0.001%) and the members' spread is that rounding too; bands fitted to it are noise.
STD_FLOOR = 1e-3


def calibrate(evaluator: Evaluator, data: str | os.PathLike, method: str = "bands", split: str = "val",
              max_rows: int | None = None, seed: int = 0) -> dict[str, Any]:
    """Fit the factor per target that turns the ensemble's spread into a calibrated std.

    Parameters
    ----------
    evaluator : Evaluator
        A trained ensemble (a single network has no spread: the result is empty).
    data : str or PathLike
        Its training dataset; the rows of ``split`` (by the split stored with the evaluator)
        are predicted and compared with the simulator's figures.
    method : {"bands", "2sigma", "1sigma", "rms"}
        ``bands`` (`evaluator.metrics.band_calibration`): ``std = sqrt((a * spread)**2 + (b *
        departure)**2 + (TIE_SCALE * tie)**2)`` (the tie term for energy only, at its fixed
        scale, `TIE_SCALE`, where `tie_applies`; else 0), the 2-sigma band ``prediction x exp(+-2 std)`` holding 95.4% of the
        rows and the 1-sigma band as close to 68.3% as the departure term allows (area: the
        spread alone, as ``2sigma``: its analytic estimate is exact, so its departure is its
        error). The others
        (`evaluator.metrics.calibration_scale`) scale the spread alone: ``2sigma`` makes the
        2-sigma band hold 95.4% (and over-covers at one sigma: the errors are heavy-tailed),
        ``1sigma`` makes the 1-sigma band hold 68.3%, ``rms`` gives the z-scores ``|ln sim -
        ln pred| / std`` unit root mean square (set by the few worst pairs). ``bands`` also
        adds `STD_FLOOR` in quadrature (``floor`` in the result), in place while it fits.
    split : {"val", "train", "test"}
        The calibration rows: ``val``, whose errors are held-out ones (training never fitted
        them; only early stopping looked at their loss) and which the test metrics never see.
    max_rows : int, optional
        A seeded random subset of at most this many rows.
    seed : int

    Returns
    -------
    dict
        ``{}`` for a single network, else ``method``, ``split``, ``scale`` (target -> factor;
        ``bands`` also ``departure_scale`` and ``tie_scale``),
        ``n`` (target -> pairs used) and ``coverage_1sigma`` / ``coverage_2sigma`` (target ->
        the share of the calibration rows inside the calibrated bands), to store in the
        artifact (`Evaluator.calibration`).
    """
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration = {method!r}: expected one of {list(CALIBRATION_METHODS)}")
    if evaluator.ensemble < 2:
        return {}
    stored = evaluator.extra.get("split") or {}
    frame = read_split(data, split, stored.get("fractions", (0.8, 0.1, 0.1)), int(stored.get("salt", 0)),
                       columns=[*INPUT_FIELDS, *RESULT_COLUMNS, "latency_s"], max_rows=max_rows, seed=seed)
    raw = Evaluator(evaluator.network).predict(frame, return_std=True)  # no calibration: the raw spread
    # the departure from the analytic estimate alone: a calibration of spread 0, departure 1
    departures = Evaluator(evaluator.network, calibration={
        "scale": dict.fromkeys(TARGETS, 0.0), "departure_scale": dict.fromkeys(TARGETS, 1.0)}).predict(
        frame, return_std=True) if method == "bands" else None
    # the energy tie alone (0 without the analytic base), in the std at its fixed scale
    tie_scale = TIE_SCALE if tie_applies(evaluator.simulator) else 0.0
    ties = Evaluator(evaluator.network, calibration={
        "scale": dict.fromkeys(TARGETS, 0.0), "tie_scale": {"energy": 1.0}}).predict(
        frame, return_std=True) if method == "bands" and tie_scale > 0 else None
    result: dict[str, Any] = {"method": method, "split": split, "scale": {}, "n": {},
                              "floor": STD_FLOOR if method == "bands" else 0.0,
                              "coverage_1sigma": {}, "coverage_2sigma": {}}
    if method == "bands":
        result["departure_scale"] = {}
        result["tie_scale"] = {"energy": tie_scale}
    feasible = frame["feasible"].to_numpy(dtype=bool)
    for target, column, rows in TARGET_COLUMNS:
        truth = frame[column].to_numpy(dtype=np.float64)
        mask = np.isfinite(truth) & (truth > 0) & (feasible if rows == "feasible" else True)
        guess = raw[column].to_numpy(dtype=np.float64)[mask]
        spread = raw[f"{column}_std"].to_numpy(dtype=np.float64)[mask]
        errors = log_errors(truth[mask], guess)
        if method == "bands" and target != "area":
            departure = departures[f"{column}_std"].to_numpy(dtype=np.float64)[mask]
            tie = (tie_scale * ties[f"{column}_std"].to_numpy(dtype=np.float64)[mask]
                   if target == "energy" and ties is not None else np.zeros_like(departure))
            fixed = np.sqrt(tie ** 2 + STD_FLOOR ** 2)  # in place while the scales are fitted
            scale, departure_scale = band_calibration(errors, spread, departure, fixed)
            result["departure_scale"][target] = departure_scale
            std = np.sqrt((spread * scale) ** 2 + (departure * departure_scale) ** 2 + fixed ** 2)
        elif method == "bands":  # the analytic area is exact: its departure would be the error itself
            scale, _ = band_calibration(errors, spread, np.zeros_like(spread), np.full_like(spread, STD_FLOOR))
            result["departure_scale"][target] = 0.0
            std = np.sqrt((spread * scale) ** 2 + STD_FLOOR ** 2)
        else:
            scale = calibration_scale(errors, spread, method)
            std = spread * scale
        check = uncertainty_metrics(truth[mask], guess, std)
        result["scale"][target] = scale
        result["n"][target] = check["n"]
        result["coverage_1sigma"][target] = check["coverage_1sigma"]
        result["coverage_2sigma"][target] = check["coverage_2sigma"]
    return result


def validate_artifact(artifact: str | os.PathLike, data: str | os.PathLike, out: str | os.PathLike,
                      config: ValidationConfig | None = None, split: str = "test", log: Any = print) -> dict[str, Any]:
    """Load an artifact, refuse data it was not trained for, and write its report.

    The artifact's load refuses one whose simulator is installed here in another version
    (`evaluator.load`); the dataset must come from the same simulator (adapter name and
    version) and design space as the artifact's training data.

    Raises
    ------
    ForeignDatasetError
        The dataset was made by another simulator (adapter or version), or on another design
        space, than the artifact's training data.
    """
    evaluator = load(artifact)
    version, space, simulator = evaluator.simulator_version, evaluator.space_hash, evaluator.simulator
    metadata = check_dataset(data, expect_simulator_version=version, expect_space_hash=space)
    theirs = simulator_identity(metadata)
    if theirs["name"] != simulator["name"]:
        raise ForeignDatasetError(
            f"dataset {os.fspath(data)!r} was made by simulator {theirs['name']!r}, but artifact "
            f"{os.fspath(artifact)!r} imitates {simulator['name']!r}: validate it on a dataset of its own simulator"
        )
    return validate(evaluator, data, out, config, split=split, artifact=os.fspath(artifact), log=log)
