"""Training: fit the evaluator with Lightning, validate it, freeze it into one file.

`train` is what ``dance-train`` runs once Hydra has built the objects; it is importable and
testable without Hydra.
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping

from dataset_gen.reader import simulator_identity
from evaluator.artifact import save
from evaluator.data import PairsDataModule
from evaluator.model import EvaluatorModule
from evaluator.predictor import Evaluator
from evaluator.report import format_table, write_report
from evaluator.validate import ValidationConfig, calibrate, validate


@dataclass
class TrainResult:
    """What a training run produced."""

    evaluator: Evaluator
    report: dict[str, Any]
    artifact: Path
    report_path: Path
    best_checkpoint: str | None
    seconds: float


def _best_weights(trainer: L.Trainer, model: EvaluatorModule) -> str | None:
    """Load the best checkpoint's weights into ``model`` (plain tensors: weights_only)."""
    callback = trainer.checkpoint_callback
    best = getattr(callback, "best_model_path", "") if callback is not None else ""
    if best and Path(best).is_file():
        state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
        model.load_state_dict(state)
        return best
    return None


def _raise_epochs_to_reach(trainer: L.Trainer, datamodule: PairsDataModule, min_steps: int, log: Any) -> None:
    """Raise ``max_epochs`` so that the run holds at least ``min_steps`` optimiser steps.

    The epoch count in conf/trainer/ suits the default 100,000-row dataset; a few thousand
    rows from a slow simulator make that a few dozen steps, far from trained. The
    learning-rate schedule is sized from ``max_epochs`` when fitting starts, so it follows.
    Early stopping's patience (in epochs) grows by the same factor: it then waits as many
    optimiser steps as it would have, instead of stopping a 3,000-step one-cycle schedule
    after ~200 steps, still in its warm-up (1,500 ZigZag rows: 24 of 188 epochs).
    """
    batches = math.ceil(datamodule.rows["train"] / datamodule.train_batch_size)
    epochs = trainer.fit_loop.max_epochs
    if not min_steps or epochs is None or epochs < 0 or batches * epochs >= min_steps:
        return
    trainer.fit_loop.max_epochs = math.ceil(min_steps / batches)
    factor = trainer.fit_loop.max_epochs / max(epochs, 1)
    patience = ""
    for callback in trainer.callbacks:
        if isinstance(callback, EarlyStopping):
            callback.patience = math.ceil(callback.patience * factor)
            patience = f"; early-stopping patience {callback.patience} epochs"
    log(f"small dataset: {batches} batches of {datamodule.train_batch_size} per epoch; training "
        f"{trainer.fit_loop.max_epochs} epochs instead of {epochs} to reach min_steps = {min_steps}{patience}")


def train(model: EvaluatorModule, datamodule: PairsDataModule, trainer: L.Trainer, out: str | os.PathLike,
          ckpt_path: str | None = None, seed: int = 0, validation: ValidationConfig | None = None,
          config: dict[str, Any] | None = None, log: Any = print, min_steps: int = 0,
          calibration: str = "bands") -> TrainResult:
    """Train, validate and save an evaluator.

    Parameters
    ----------
    model : EvaluatorModule
    datamodule : PairsDataModule
    trainer : lightning.Trainer
        With its callbacks (early stopping, checkpointing) and loggers.
    out : str or PathLike
        Output directory: ``evaluator.pt``, ``report.json``, ``report.txt``, parity PNGs.
    ckpt_path : str, optional
        Resume from this Lightning checkpoint (loaded with ``weights_only=True``).
    seed : int
        Seeds torch, numpy and Python (``seed_everything``) and the validation.
    validation : ValidationConfig, optional
    config : dict, optional
        The resolved run config, kept in the artifact.
    log : callable
        Receives progress lines.
    min_steps : int
        Optimiser steps the schedule must hold at least: on a small dataset (a slow
        simulator's few thousand rows) ``trainer``'s ``max_epochs`` is raised to reach them.
    calibration : {"bands", "2sigma", "1sigma", "rms"}
        How a deep ensemble's uncertainty is calibrated on the validation split
        (`evaluator.validate.calibrate`); a single network has none.

    Returns
    -------
    TrainResult
    """
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(seed, workers=True, verbose=False)
    datamodule.setup("fit")
    rows = datamodule.rows
    failed = sum(datamodule.error_rows.values())
    simulator = simulator_identity(datamodule.metadata)
    log(f"dataset {datamodule.path}: {rows['train']} train / {rows['val']} val / {rows['test']} test pairs "
        f"({'streamed' if datamodule.streaming else 'in memory'})"
        + (f", {failed} rows left out: the simulator failed on them (their error column says why)" if failed else "")
        + f"; simulator {simulator['name']} {simulator['version']}, space {datamodule.metadata.get('space_hash')}")
    model.set_statistics(datamodule.statistics)
    _raise_epochs_to_reach(trainer, datamodule, min_steps, log)
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    best = _best_weights(trainer, model)
    trained_seconds = time.perf_counter() - started
    evaluator = Evaluator(
        copy.deepcopy(model.network).cpu(),
        dataset_metadata=datamodule.metadata,
        extra={"split": datamodule.split_definition, "rows": dict(rows), "error_rows": dict(datamodule.error_rows),
               "config": config or {},
               "hparams": dict(model.hparams), "epochs": int(trainer.current_epoch),
               "train_seconds": round(trained_seconds, 1), "best_checkpoint": best},
    )
    evaluator.calibration = calibrate(evaluator, datamodule.path, calibration, seed=seed)
    _log_calibration(evaluator, log)
    validation = validation or ValidationConfig(seed=seed)
    report = validate(evaluator, datamodule.path, out, validation, split="test",
                      artifact=str(out / "evaluator.pt"), log=log)
    evaluator.metrics = report
    artifact = save(evaluator, out / "evaluator.pt")
    paths = write_report(report, out)  # again: the report now knows the artifact exists
    seconds = time.perf_counter() - started
    log(format_table(report))
    test, ood = report.get("test", {}), report.get("ood", {})
    log(
        f"Trained the evaluator of simulator {simulator['name']} {simulator['version']} on {rows['train']} pairs"
        + (f" ({failed} rows the simulator failed on left out)" if failed else "")
        + f" for {trainer.current_epoch} epochs in "
        f"{trained_seconds:.0f} s, validated in {seconds - trained_seconds:.0f} s. Test split: latency within 10% "
        f"for {100 * test.get('latency', {}).get('within_10pct', float('nan')):.1f}% of pairs (Kendall tau "
        f"{test.get('latency', {}).get('kendall_tau', float('nan')):.3f}), energy "
        f"{100 * test.get('energy', {}).get('within_10pct', float('nan')):.1f}%"
        + (f"; OOD: latency {100 * ood['latency']['within_10pct']:.1f}%, energy "
           f"{100 * ood['energy']['within_10pct']:.1f}%" if ood.get("latency") else "")
        + _coverage_text(report)
        + f". Artifact: {artifact}; report: {paths['json']} and {paths['table']}."
    )
    return TrainResult(evaluator, report, artifact, paths["json"], best, seconds)


def _log_calibration(evaluator: Evaluator, log: Any) -> None:
    """One line on the fitted uncertainty calibration (or on its absence)."""
    calibration = evaluator.calibration
    if not calibration:
        log("uncertainty: none (a single network, model.ensemble = 1)")
        return
    departure = calibration.get("departure_scale") or {}
    parts = ", ".join(f"{target} x{scale:.2f}" + (f" (+ departure x{departure[target]:.2f})" if target in departure
                                                 else "")
                      + f" ({calibration['n'][target]} pairs, 1- / 2-sigma bands hold "
                      f"{100 * calibration['coverage_1sigma'][target]:.1f}% / "
                      f"{100 * calibration['coverage_2sigma'][target]:.1f}%)"
                      for target, scale in calibration["scale"].items())
    log(f"uncertainty: {evaluator.ensemble}-member ensemble, spread scaled on the {calibration['split']} split "
        f"({calibration['method']}): {parts}")


def _coverage_text(report: dict[str, Any]) -> str:
    """The test split's 2-sigma coverage of latency and energy, for the final line ('' without one)."""
    test = report.get("test", {})
    shares = {target: (test.get(target, {}).get("uncertainty") or {}).get("coverage_2sigma")
              for target in ("latency", "energy")}
    if any(share is None for share in shares.values()):
        return ""
    return (f"; predicted 2-sigma bands hold {100 * shares['latency']:.1f}% (latency) and "
            f"{100 * shares['energy']:.1f}% (energy) of the test pairs")
