"""Plain training of a fixed network (the derived one, or a baseline's candidate) with Lightning,
and the one place where the search's Lightning trainers are built.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import lightning as L
import torch
from torch import nn

from dataset_gen.common.cpus import usable_cpus

__all__ = ["ClassifierModule", "train_classifier", "make_trainer", "quiet_lightning", "use_threads"]

_LIGHTNING_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda",
                      "lightning.fabric.utilities.seed", "lightning.pytorch.trainer.connectors.signal_connector")


@contextmanager
def quiet_lightning(enabled: bool = True) -> Iterator[None]:
    """Silence Lightning's per-trainer banner (GPU available..., seed set...) for inner loops."""
    if not enabled:
        yield
        return
    saved = {}
    for name in _LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        saved[name] = logger.level
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def use_threads(requested: int | None) -> int:
    """Set torch's intra-op threads for a search on a possibly shared machine.

    Parameters
    ----------
    requested : int or None
        The config's ``threads``: None (or 0) takes the CPUs free right now, a count is a
        cap (never more than this process may run on).

    Returns
    -------
    int
        The number of threads set.
    """
    threads = usable_cpus(requested)
    torch.set_num_threads(threads)
    return threads


def make_trainer(settings: Mapping[str, Any] | None, max_epochs: int, log_dir: str | Path | None = None,
                 name: str = "search", progress: bool | None = None) -> L.Trainer:
    """A CPU Lightning trainer from ``trainer`` config settings.

    Parameters
    ----------
    settings : mapping, optional
        Keyword arguments for `lightning.Trainer` (``accelerator``, ``devices``,
        ``enable_progress_bar``, ``log_every_n_steps``...); ``logger`` may be ``csv``,
        ``tensorboard`` or ``false``.
    max_epochs : int
        Epochs to run (positive).
    log_dir : path-like, optional
        Where the logger writes (``<log_dir>/<name>/``); no logger when None.
    name : str
        The logger's run name.
    progress : bool, optional
        Overrides ``enable_progress_bar``.
    """
    if not isinstance(max_epochs, int) or max_epochs < 1:
        raise ValueError(f"epochs = {max_epochs!r}: expected a positive integer")
    kwargs = dict(settings or {})
    logger_kind = kwargs.pop("logger", "csv")
    if log_dir is None or logger_kind in (False, None, "none", "false"):
        logger: Any = False
    elif logger_kind == "csv":
        logger = L.pytorch.loggers.CSVLogger(str(log_dir), name=name)
    elif logger_kind == "tensorboard":
        logger = L.pytorch.loggers.TensorBoardLogger(str(log_dir), name=name)
    else:
        raise ValueError(f"trainer.logger = {logger_kind!r}: expected csv, tensorboard or false")
    kwargs.setdefault("accelerator", "cpu")
    kwargs.setdefault("devices", 1)
    kwargs.setdefault("enable_checkpointing", False)
    kwargs.setdefault("enable_model_summary", False)
    kwargs.setdefault("num_sanity_val_steps", 0)
    kwargs.setdefault("log_every_n_steps", 10)
    if progress is not None:
        kwargs["enable_progress_bar"] = progress
    return L.Trainer(max_epochs=max_epochs, logger=logger, **kwargs)


class ClassifierModule(L.LightningModule):
    """Cross-entropy training with SGD (Nesterov momentum) and a cosine learning-rate schedule."""

    def __init__(self, net: nn.Module, epochs: int, lr: float = 0.05, momentum: float = 0.9,
                 weight_decay: float = 4e-5, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.net = net
        self.epochs = epochs
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.loss = nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self.net(x)
        loss = self.loss(logits, y)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(y))
        return loss

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self.net(x)
        # Batch-size-weighted means: the epoch value is the exact accuracy over the split.
        self.log("test/acc", (logits.argmax(1) == y).float().mean(), batch_size=len(y))
        self.log("test/loss", nn.functional.cross_entropy(logits, y), batch_size=len(y))

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.net.parameters(), lr=self.lr, momentum=self.momentum,
                                    weight_decay=self.weight_decay, nesterov=self.momentum > 0)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(self.epochs, 1))
        return {"optimizer": optimizer, "lr_scheduler": schedule}


def train_classifier(net: nn.Module, datamodule: L.LightningDataModule, epochs: int,
                     optim: Mapping[str, Any] | None = None, trainer: Mapping[str, Any] | None = None,
                     log_dir: str | Path | None = None, name: str = "retrain",
                     quiet: bool = False) -> dict[str, float]:
    """Train a network from its current weights and evaluate it on the data module's test loader.

    Parameters
    ----------
    net : torch.nn.Module
        The network (trained in place).
    datamodule : lightning.LightningDataModule
        With ``train_dataloader`` and ``test_dataloader``.
    epochs : int
        Training epochs.
    optim : mapping, optional
        `ClassifierModule` keyword arguments (``lr``, ``momentum``, ``weight_decay``...).
    trainer : mapping, optional
        Trainer settings (`make_trainer`).
    log_dir, name
        Logger destination.
    quiet : bool
        No progress bar nor banner (inner loops of the baselines).

    Returns
    -------
    dict
        ``accuracy`` and ``loss`` on the evaluation split, ``seconds`` of training.
    """
    module = ClassifierModule(net, epochs, **dict(optim or {}))
    started = time.perf_counter()
    with quiet_lightning(quiet):
        fit = make_trainer(trainer, epochs, log_dir, name, progress=False if quiet else None)
        fit.fit(module, train_dataloaders=datamodule.train_dataloader())
        seconds = time.perf_counter() - started
        metrics = fit.test(module, dataloaders=datamodule.test_dataloader(), verbose=not quiet)[0]
    return {"accuracy": float(metrics["test/acc"]), "loss": float(metrics["test/loss"]), "seconds": seconds}
