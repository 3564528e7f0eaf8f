"""``dance-train`` and ``dance-validate``: thin Hydra entry points.

They compose ``conf/train.yaml`` / ``conf/validate.yaml``, build the objects with
`hydra.utils.instantiate` and hand them to `evaluator.train.train` and
`evaluator.validate.validate_artifact`, which do the work::

    dance-train dataset=DIR out=DIR                       # datamodule=parquet|streaming
    dance-validate artifact=DIR/evaluator.pt dataset=DIR out=DIR

A run folder that already holds a run is refused unless resumed or ``overwrite=true``
(`dataset_gen.common.run_dir`); every user error is one line and exit status 2
(`dataset_gen.common.errors`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from dataset_gen.common.config import CONFIG_PATH, HYDRA_VERSION_BASE, require_settings
from dataset_gen.common.cpus import usable_cpus
from dataset_gen.common.errors import cli_errors
from dataset_gen.common.run_dir import RunDirGuard

__all__ = ["train_main", "validate_main", "train_run_dir_guard", "validate_run_dir_guard"]

# What each command writes into its out= folder (what overwrite=true removes first).
_REPORT_FILES = ("config.yaml", "report.json", "report.txt", "parity_*.png", "calibration.png")
TRAIN_WRITES = (*_REPORT_FILES, "evaluator.pt", "checkpoints", "logs")
VALIDATE_WRITES = _REPORT_FILES


def train_run_dir_guard() -> RunDirGuard:
    """The run-folder rule of ``dance-train`` (a Hydra callback, conf/train.yaml)."""
    return RunDirGuard("dance-train", TRAIN_WRITES, resume_key="ckpt_path")


def validate_run_dir_guard() -> RunDirGuard:
    """The run-folder rule of ``dance-validate`` (a Hydra callback, conf/validate.yaml)."""
    return RunDirGuard("dance-validate", VALIDATE_WRITES)


def _set_threads(cfg: DictConfig) -> None:
    import torch

    torch.set_num_threads(usable_cpus(cfg.get("threads")))


def _quiet_lightning() -> None:
    """One line per message: Hydra's handlers (console and run-dir log file) print Lightning's
    records already, so Lightning's own console handler would print each twice."""
    import logging
    import warnings

    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).handlers.clear()
    warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated")  # inside Lightning, not ours
    # a small dataset has fewer batches per epoch than the logging interval: epoch metrics still log
    warnings.filterwarnings("ignore", message=".*is smaller than the logging interval")


def _write_resolved_config(cfg: DictConfig, out: Path) -> None:
    from dataset_gen.common.files import atomic_write_text

    atomic_write_text(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))


def _validation_config(cfg: DictConfig) -> Any:
    from evaluator.validate import ValidationConfig

    values = OmegaConf.to_container(cfg, resolve=True)
    return ValidationConfig(**values)  # type: ignore[arg-type]


def _train(cfg: DictConfig) -> None:
    import lightning as L
    from hydra.utils import instantiate

    from evaluator.network import check_ensemble
    from evaluator.train import train

    require_settings(cfg)
    check_ensemble(cfg.model.get("ensemble", 1), "model.ensemble")  # one line, before any work
    out = Path(cfg.out)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    _write_resolved_config(cfg, out)
    _set_threads(cfg)
    _quiet_lightning()
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    if not loggers:  # a learning-rate monitor has nowhere to write without a logger
        callbacks = [c for c in callbacks if type(c).__name__ != "LearningRateMonitor"]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    # the initial weights (each ensemble member's own draw) follow from ``seed``
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    model = instantiate(cfg.model)
    datamodule = instantiate(cfg.datamodule)
    train(model, datamodule, trainer, out, ckpt_path=cfg.ckpt_path, seed=int(cfg.seed),
          validation=_validation_config(cfg.validation), config=resolved, min_steps=int(cfg.min_steps),  # type: ignore[arg-type]
          calibration=str(cfg.calibration))


def _validate(cfg: DictConfig) -> None:
    from evaluator.report import format_table
    from evaluator.validate import validate_artifact

    require_settings(cfg)
    out = Path(cfg.out)
    _write_resolved_config(cfg, out)
    _set_threads(cfg)
    report = validate_artifact(cfg.artifact, cfg.dataset, out, _validation_config(cfg.validation), split=cfg.split)
    print(format_table(report))
    print(f"Validated {cfg.artifact} on {cfg.dataset} ({cfg.split} split, {report['test']['n_pairs']} pairs"
          + (f", {report['ood']['n_pairs']} OOD pairs" if "ood" in report else "")
          + f") in {report['seconds']:.0f} s. Report: {out / 'report.json'}, {out / 'report.txt'}.")


# The error policy runs inside the task functions: Hydra reports (exit 1, its own format)
# whatever escapes them, but lets SystemExit through.
@hydra.main(config_path=CONFIG_PATH, config_name="train", version_base=HYDRA_VERSION_BASE)
def _train_app(cfg: DictConfig) -> None:
    with cli_errors("dance-train", interrupted=f"Resume with ckpt_path={cfg.out}/checkpoints/last.ckpt"):
        _train(cfg)


@hydra.main(config_path=CONFIG_PATH, config_name="validate", version_base=HYDRA_VERSION_BASE)
def _validate_app(cfg: DictConfig) -> None:
    with cli_errors("dance-validate"):
        _validate(cfg)


def train_main() -> None:
    """Console script ``dance-train``."""
    _train_app()


def validate_main() -> None:
    """Console script ``dance-validate``."""
    _validate_app()
