"""The LightningModule that trains an `EvaluatorNetwork` to imitate the simulator.

Losses: a regression loss on the normalised natural logs of cycles and energy over the
feasible rows only (an infeasible pair has no cycles), on ln area over every row (the
simulator defines area even for infeasible pairs, and it depends on the accelerator alone),
and binary cross-entropy on feasibility. AdamW with a one-cycle or cosine schedule.

Checkpoints and early stopping follow ``val_loss_regression``, the weighted regression parts
of the validation loss without the feasibility term (`SELECTION_MONITOR`). Where the analytic
features decide feasibility (the builtin simulator) that term is ~0 and changes nothing; where
another simulator's infeasible rows are few and hard (ZigZag: 2.8%), the cross-entropy on them
rises as the classifier grows confident while its accuracy stays put, and at its 0.1 weight it
was 4-20x the regression parts of ``val_loss``: it alone chose the epoch. On 1,500 ZigZag rows
it chose epoch 11 of 188 (latency 62% / energy 68% of the validation pairs within 10%, against
82% / 82% by the end of the run).

A deep ensemble (``ensemble = K``) trains its K members together, on the same batches, in one
optimiser: the loss is the mean of the members' losses (so the learning rate and the
early-stopping threshold mean the same for any K), and each member's gradient comes from its
own loss only. Members differ by their initial weights and, with ``bootstrap``, by Poisson(1)
weights on every training row (online bagging: each member sees its own resampling of the
data). The logged accuracy monitors measure the ensemble's mean prediction.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torch.nn import functional as F

from dataset_gen.common.errors import UserError
from evaluator.network import TARGETS, EvaluatorNetwork, check_ensemble, single_network_names

LOSSES = ("mse", "huber", "l1")
# What checkpointing and early stopping minimise (dance-train, dance-active): see the module docstring.
SELECTION_MONITOR = "val_loss_regression"
SCHEDULERS = ("onecycle", "cosine", "none")


class EvaluatorModule(L.LightningModule):
    """Trains the evaluator network; hyperparameters are saved with every checkpoint.

    Parameters
    ----------
    depth, width, activation, norm, dropout, residual, area_depth, area_width, decompose, linear_skip,
    analytic_base, layer_inputs
        Network shape (see `EvaluatorNetwork`).
    lr : float
        Peak learning rate of AdamW.
    weight_decay : float
        AdamW's decoupled weight decay.
    scheduler : {"onecycle", "cosine", "none"}
        Learning-rate schedule over the whole run (``trainer.max_epochs``).
    warmup_fraction : float
        Share of the steps spent warming up (one-cycle only).
    loss : {"mse", "huber", "l1"}
        Regression loss on normalised log targets.
    huber_delta : float
        Huber's threshold, in normalised units.
    loss_weights : dict
        Weights of ``latency``, ``energy``, ``area``, ``components`` (the mean over the seven
        component targets, when decomposing) and ``feasible`` in the total loss.
    ensemble : int
        Members of the deep ensemble, an integer in [1, 64] (``model.ensemble``): 1 is a single
        network without uncertainty. The members are initialised in turn from the global torch
        generator: seed it before building the module (``dance-train`` does, from ``seed``).
    bootstrap : bool
        Weight each training row by an independent Poisson(1) draw per member and batch
        (online bagging), for more diverse members; the validation loss is unweighted.
    """

    def __init__(self, depth: int = 4, width: int = 256, activation: str = "silu", norm: str = "none",
                 dropout: float = 0.0, residual: bool = True, area_depth: int = 2, area_width: int = 64,
                 decompose: bool = False, linear_skip: bool = True, analytic_base: bool = True,
                 layer_inputs: bool = False, lr: float = 3e-3, weight_decay: float = 1e-5, scheduler: str = "onecycle",
                 warmup_fraction: float = 0.1, loss: str = "huber", huber_delta: float = 0.05,
                 loss_weights: dict[str, float] | None = None, ensemble: int = 5, bootstrap: bool = False) -> None:
        super().__init__()
        check_ensemble(ensemble, "model.ensemble")
        if loss not in LOSSES:
            raise ValueError(f"loss = {loss!r}: expected one of {list(LOSSES)}")
        if scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler = {scheduler!r}: expected one of {list(SCHEDULERS)}")
        if not lr > 0:
            raise ValueError(f"lr = {lr!r}: expected a positive number")
        # Plain types only (a Hydra DictConfig here would make checkpoints unloadable with
        # weights_only=True); save_hyperparameters reads the local variables as they are now.
        loss_weights = {str(k): float(v) for k, v in dict(loss_weights or {}).items()}
        weights = {"latency": 1.0, "energy": 1.0, "area": 1.0, "components": 0.5, "feasible": 0.1}
        unknown = set(loss_weights or {}) - set(weights)
        if unknown:
            raise ValueError(f"loss_weights: unknown key(s) {sorted(unknown)}; expected {sorted(weights)}")
        weights.update({k: float(v) for k, v in (loss_weights or {}).items()})
        self.save_hyperparameters()
        self.loss_weights = weights
        self.network = EvaluatorNetwork(depth, width, activation, norm, dropout, residual, area_depth, area_width,
                                        decompose, linear_skip, analytic_base, layer_inputs, ensemble=ensemble)

    def set_statistics(self, stats: dict[str, torch.Tensor]) -> None:
        """Normalisation statistics of the training split (see `PairsDataModule.statistics`)."""
        self.network.set_statistics(stats)

    def forward(self, layer_x: torch.Tensor, acc_x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.network(layer_x, acc_x)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Resume a checkpoint written before ensembles (one network: ``network.trunk.*``) as one member.

        Raises
        ------
        UserError
            This module has several members: such a checkpoint resumes only with ``model.ensemble=1``.
        """
        state = checkpoint.get("state_dict") or {}
        if not any(name.startswith("network.trunk.") for name in state):
            return
        if self.network.ensemble != 1:
            raise UserError(f"the checkpoint holds a single network (written before deep ensembles), but "
                            f"model.ensemble = {self.network.ensemble}: resume it with model.ensemble=1")
        checkpoint["state_dict"] = single_network_names(state, prefix="network.")

    def _regression(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.hparams.loss == "mse":
            return F.mse_loss(prediction, target, reduction="none")
        if self.hparams.loss == "l1":
            return F.l1_loss(prediction, target, reduction="none")
        return F.huber_loss(prediction, target, reduction="none", delta=self.hparams.huber_delta)

    def _losses(self, batch: dict[str, torch.Tensor], bootstrap: bool = False
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The total loss (the mean of the members' losses) and its parts, plus monitors.

        With ``bootstrap``, every (member, row) pair is weighted by a Poisson(1) draw.
        """
        net = self.network
        # (K, n, k) normalised logs and (K, n) logits of the K members
        members, logits = net.forward_members(batch["layer_x"], batch["acc_x"], batch.get("pair_x"))
        n_members, n, k = members.shape
        targets = (batch["targets"][:, :k] - net.target_mean[:k]) / net.target_std[:k]  # NaN where undefined
        defined = torch.isfinite(targets)  # (n, k)
        weights = (torch.poisson(torch.ones(n_members, n, 1, device=members.device)) if bootstrap
                   else torch.ones(n_members, n, 1, device=members.device))  # (K, n, 1)
        filled = torch.where(defined, targets, members.detach())  # (K, n, k): undefined targets cost nothing
        per_element = self._regression(members, filled) * defined * weights  # (K, n, k)
        per_column = (per_element.sum(dim=1) / (defined * weights).sum(dim=1).clamp(min=1)).mean(dim=0)  # (k,)
        parts: dict[str, torch.Tensor] = {name: per_column[i] for i, name in enumerate(TARGETS)}
        if k > len(TARGETS):
            parts["components"] = per_column[len(TARGETS):].mean()
        feasible = batch["feasible"].expand(n_members, n)
        parts["feasible"] = (F.binary_cross_entropy_with_logits(logits, feasible, reduction="none") * weights[:, :, 0]
                             ).sum(dim=1).div(weights[:, :, 0].sum(dim=1).clamp(min=1)).mean()
        regression = sum(self.loss_weights[name] * value for name, value in parts.items() if name != "feasible")
        total = regression + self.loss_weights["feasible"] * parts["feasible"]
        return total, {**{f"loss_{k}": v for k, v in parts.items()}, "loss_regression": regression,
                       **self._monitors(members.mean(dim=0), logits.mean(dim=0), targets, defined, batch["feasible"])}

    def _monitors(self, predicted: torch.Tensor, logit: torch.Tensor, targets: torch.Tensor, defined: torch.Tensor,
                  feasible: torch.Tensor) -> dict[str, torch.Tensor]:
        """Accuracy of the ensemble's mean prediction: the share of defined rows within 10% per target
        (in physical units) and the feasibility accuracy."""
        monitors: dict[str, torch.Tensor] = {}
        for i, name in enumerate(TARGETS):
            ratio_error = torch.expm1(((predicted[:, i] - targets[:, i]) * self.network.target_std[i]).abs())
            monitors[f"within_10pct_{name}"] = ((ratio_error <= 0.10) & defined[:, i]).sum() / defined[:, i].sum().clamp(min=1)
        monitors["feasible_accuracy"] = ((logit > 0) == (feasible > 0.5)).float().mean()
        return monitors

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, parts = self._losses(batch, bootstrap=bool(self.hparams.bootstrap))
        n = batch["layer_x"].shape[0]
        self.log("train_loss", loss, prog_bar=True, batch_size=n)
        self.log_dict({f"train_{k}": v for k, v in parts.items() if k.startswith("loss_")}, batch_size=n)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, parts = self._losses(batch)
        n = batch["layer_x"].shape[0]
        self.log("val_loss", loss, prog_bar=True, batch_size=n)
        self.log("val_within_10pct_latency", parts.pop("within_10pct_latency"), prog_bar=True, batch_size=n)
        self.log_dict({f"val_{k}": v for k, v in parts.items()}, batch_size=n)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, parts = self._losses(batch)
        n = batch["layer_x"].shape[0]
        self.log("test_loss", loss, batch_size=n)
        self.log_dict({f"test_{k}": v for k, v in parts.items()}, batch_size=n)

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        optimizer = torch.optim.AdamW(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        # The schedule is a function of the step, evaluated against the run's length when it
        # is called: resuming a run with more epochs stretches it instead of failing (as
        # torch's OneCycleLR does past its planned steps), and a checkpoint stores no closure.
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_train_start(self) -> None:
        self._planned_steps = float(self.trainer.estimated_stepping_batches)  # once per run

    def _total_steps(self) -> float:
        estimated = getattr(self, "_planned_steps", None)
        if estimated is None:  # the scheduler's first call comes before on_train_start
            trainer = getattr(self, "_trainer", None)
            estimated = float(trainer.estimated_stepping_batches) if trainer is not None else math.inf
        return estimated if math.isfinite(estimated) and estimated > 0 else math.inf

    def _lr_factor(self, step: int) -> float:
        """Learning rate over its peak at ``step``: warm-up then cosine decay (one-cycle), or
        cosine decay only, or constant; 1e-3 of the peak at the end."""
        hp = self.hparams
        total = self._total_steps()
        if hp.scheduler == "none" or not math.isfinite(total):
            return 1.0
        floor = 1e-3
        warmup = max(1.0, hp.warmup_fraction * total) if hp.scheduler == "onecycle" else 0.0
        if step < warmup:
            return 0.04 + 0.96 * step / warmup  # from lr/25, as one-cycle starts
        progress = min(1.0, (step - warmup) / max(1.0, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
