"""``dance-train`` and ``dance-validate``: thin Hydra entry points.

They compose ``conf/train.yaml`` / ``conf/validate.yaml``, build the objects with
`hydra.utils.instantiate` and hand them to `evaluator.train.train` and
`evaluator.validate.validate_artifact`, which do the work.

``data=DIR`` on the command line is short for ``data.path=DIR`` (in ``dance-train``,
``data`` is also the config group of the data module: ``data=streaming`` still picks that
group option; a dataset directory that shares a group option's name needs ``data.path=``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors caused by the user's input: reported as one line, without a traceback."""
    from dataset_gen.reader import DatasetError
    from dataset_gen.space import SpaceError
    from evaluator.artifact import EvaluatorLoadError
    from evaluator.dataset import ForeignDatasetError

    return (SpaceError, DatasetError, EvaluatorLoadError, ForeignDatasetError, FileNotFoundError)


def _data_groups() -> set[str]:
    return {path.stem for path in (CONF_DIR / "data").glob("*.yaml")}


def _rewrite_data_argument(argv: list[str], groups: set[str]) -> list[str]:
    """``data=DIR`` -> ``data.path=DIR`` unless DIR names an option of the ``data`` group."""
    rewritten = []
    for argument in argv:
        if argument.startswith("data=") and argument[len("data="):] not in groups:
            argument = "data.path=" + argument[len("data="):]
        rewritten.append(argument)
    return rewritten


def _set_threads(cfg: DictConfig) -> None:
    if cfg.get("threads"):
        import torch

        torch.set_num_threads(int(cfg.threads))


def _quiet_lightning() -> None:
    """One line per message: Hydra's handlers (console and run-dir log file) print Lightning's
    records already, so Lightning's own console handler would print each twice."""
    import logging
    import warnings

    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).handlers.clear()
    warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated")  # inside Lightning, not ours


def _write_resolved_config(cfg: DictConfig, out: Path) -> None:
    from dataset_gen.common.files import atomic_write_text

    atomic_write_text(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))


def _validation_config(cfg: DictConfig) -> Any:
    from evaluator.validate import ValidationConfig

    values = OmegaConf.to_container(cfg, resolve=True)
    return ValidationConfig(**values)  # type: ignore[arg-type]


@hydra.main(config_path=str(CONF_DIR), config_name="train", version_base="1.3")
def _train_app(cfg: DictConfig) -> None:
    from hydra.utils import instantiate

    from evaluator.train import train

    out = Path(cfg.out)
    _write_resolved_config(cfg, out)
    _set_threads(cfg)
    _quiet_lightning()
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    if not loggers:  # a learning-rate monitor has nowhere to write without a logger
        callbacks = [c for c in callbacks if type(c).__name__ != "LearningRateMonitor"]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    model = instantiate(cfg.model)
    datamodule = instantiate(cfg.data)
    try:
        train(model, datamodule, trainer, out, ckpt_path=cfg.ckpt_path, seed=int(cfg.seed),
              validation=_validation_config(cfg.validation),
              config=OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
    except _user_errors() as error:
        raise SystemExit(f"dance-train: {error}") from None


@hydra.main(config_path=str(CONF_DIR), config_name="validate", version_base="1.3")
def _validate_app(cfg: DictConfig) -> None:
    from evaluator.report import format_table
    from evaluator.validate import validate_artifact

    out = Path(cfg.out)
    _write_resolved_config(cfg, out)
    _set_threads(cfg)
    try:
        report = validate_artifact(cfg.artifact, cfg.data.path, out, _validation_config(cfg.validation),
                                   split=cfg.split)
    except _user_errors() as error:
        raise SystemExit(f"dance-validate: {error}") from None
    print(format_table(report))
    print(f"Validated {cfg.artifact} on {cfg.data.path} ({cfg.split} split, {report['test']['n_pairs']} pairs"
          + (f", {report['ood']['n_pairs']} OOD pairs" if "ood" in report else "")
          + f") in {report['seconds']:.0f} s. Report: {out / 'report.json'}, {out / 'report.txt'}.")


def train_main() -> None:
    """Console script ``dance-train``."""
    sys.argv = [sys.argv[0], *_rewrite_data_argument(sys.argv[1:], _data_groups())]
    _train_app()


def validate_main() -> None:
    """Console script ``dance-validate``."""
    sys.argv = [sys.argv[0], *_rewrite_data_argument(sys.argv[1:], set())]
    _validate_app()
