"""The co-search as a LightningModule: weights on the training part, architecture and
accelerator parameters on the validation part, alternating step by step (first-order DARTS /
ProxylessNAS), with Lightning's manual optimisation and two optimizers.

Per training step (one weight batch, one architecture batch):

1. architecture step (after ``warmup_epochs``): on the validation batch,
   ``loss = cross_entropy + lambda_cost * cost + penalties`` where ``cost`` and the penalties
   come from `search.cost.HardwareCost` (the frozen evaluator) for the architecture
   probabilities and Gumbel-softmax accelerator samples at the current temperature; the
   architecture optimizer updates the architecture logits and the accelerator logits (or, in
   generator mode, the generator when ``finetune_generator``);
2. weight step: on the training batch, cross entropy of one candidate per block sampled
   from the architecture probabilities (ProxylessNAS single path; or the whole mixture), the
   architecture detached; the weight optimizer (SGD, cosine schedule) updates the supernet.

Path sampling keeps a step's compute to one or two candidates per block (ProxylessNAS's
motivation; on a CPU it is a 3-6x saving over the DARTS mixture).

Precision (``network.precision`` with several values): each block's precision logits
(``Supernet.bits_logits``) are sampled or mixed exactly like its candidates (``two_path``: two
precisions drawn, renormalised; ``softmax``: the probabilities; ``gumbel``: Gumbel-softmax;
the weight step: one precision drawn, or the mixture), the forward quantising each computed
layer at that precision mixture (`search.quant`); they get the task loss's gradient through
those forwards and, in every mode, the cost's through the expected cost, which weighs every
layer-table row by ``p(candidate) * p(precision)``.

The temperature follows ``temperature.initial -> temperature.final`` over the epochs
(``exponential``, ``linear`` or ``constant``), set at each epoch start.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import lightning as L
import torch
from torch import nn

from search.cost import HardwareCost
from search.hardware import AcceleratorLogits, HardwareGenerator, sample_choices
from search.supernet import Supernet

__all__ = ["CoSearchModule", "temperature_at", "SCHEDULES", "ARCH_SAMPLING", "WEIGHT_SAMPLING"]

SCHEDULES: tuple[str, ...] = ("exponential", "linear", "cosine", "constant")
ARCH_SAMPLING: tuple[str, ...] = ("two_path", "softmax", "gumbel")
WEIGHT_SAMPLING: tuple[str, ...] = ("single_path", "mixture")


def temperature_at(epoch: int, epochs: int, initial: float, final: float, schedule: str = "exponential") -> float:
    """The Gumbel-softmax temperature of an epoch (``initial`` at 0, ``final`` at the last)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"search.temperature.schedule = {schedule!r}: expected one of {list(SCHEDULES)}")
    if not (initial > 0 and final > 0):
        raise ValueError(f"search.temperature: initial = {initial!r}, final = {final!r}: expected positive numbers")
    if schedule == "constant" or epochs <= 1:
        return float(initial)
    t = min(max(epoch / (epochs - 1), 0.0), 1.0)
    if schedule == "exponential":
        return float(initial * (final / initial) ** t)
    if schedule == "linear":
        return float(initial + (final - initial) * t)
    return float(final + (initial - final) * 0.5 * (1 + math.cos(math.pi * t)))


def _settings(name: str, node: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """A config node with every key the module reads (a missing one is an error, not a default)."""
    missing = [key for key in keys if key not in node]
    if missing:
        raise ValueError(f"{name}: missing key(s) {missing}; expected {list(keys)}")
    return dict(node)


class CoSearchModule(L.LightningModule):
    """Supernet weights, architecture logits and accelerator parameters, searched together.

    Every hyperparameter is a required keyword: their defaults live in
    ``conf/search/default.yaml`` only (`search.cosearch.run_cosearch` passes them).

    Parameters
    ----------
    supernet : Supernet
    hardware : AcceleratorLogits or HardwareGenerator, optional
        None for a hardware-unaware search (the sequential baseline's NAS).
    cost : HardwareCost, optional
        Needed when ``lambda_cost > 0`` or limits are set.
    lambda_cost : float
        Weight of the normalised hardware cost in the architecture loss.
    epochs : int
        Search epochs (for the schedules).
    warmup_epochs : int
        Epochs of weight training only, before the architecture steps start.
    weight_optim : mapping
        ``lr``, ``momentum``, ``weight_decay`` of the weights' SGD.
    arch_optim : mapping
        ``lr``, ``weight_decay`` of the architecture Adam; ``hw_lr`` for the accelerator
        parameters.
    temperature : mapping
        ``initial``, ``final``, ``schedule``.
    gumbel_samples : int
        Accelerator samples per architecture step (their costs are averaged).
    hard : bool
        Straight-through one-hot accelerator samples.
    arch_sampling : {"two_path", "softmax", "gumbel"}
        Architecture weights of the supernet's forward in the architecture step: two sampled
        candidates per block renormalised (ProxylessNAS; two candidates computed), the
        probabilities (DARTS; every candidate computed) or Gumbel-softmax samples at the
        current temperature (FBNet). The cost always uses the probabilities (the expected
        cost), so every architecture logit gets the cost's gradient.
    weight_sampling : {"single_path", "mixture"}
        The weight step trains one candidate per block sampled from the architecture
        probabilities (ProxylessNAS / single-path; one candidate computed) or the
        probability-weighted mixture of all of them (DARTS).
    finetune_generator : bool
        In generator mode, also update the generator in the architecture step.
    """

    def __init__(self, supernet: Supernet, hardware: AcceleratorLogits | HardwareGenerator | None = None,
                 cost: HardwareCost | None = None, *, lambda_cost: float, epochs: int, warmup_epochs: int,
                 weight_optim: Mapping[str, Any], arch_optim: Mapping[str, Any], temperature: Mapping[str, Any],
                 gumbel_samples: int, hard: bool, arch_sampling: str, weight_sampling: str,
                 finetune_generator: bool) -> None:
        super().__init__()
        if lambda_cost < 0:
            raise ValueError(f"search.lambda_cost = {lambda_cost!r}: expected a number >= 0")
        if arch_sampling not in ARCH_SAMPLING:
            raise ValueError(f"search.arch_sampling = {arch_sampling!r}: expected one of {list(ARCH_SAMPLING)}")
        if weight_sampling not in WEIGHT_SAMPLING:
            raise ValueError(f"search.weight_sampling = {weight_sampling!r}: expected one of {list(WEIGHT_SAMPLING)}")
        if gumbel_samples < 1:
            raise ValueError(f"search.gumbel_samples = {gumbel_samples!r}: expected a positive integer")
        self.automatic_optimization = False
        self.supernet = supernet
        self.hardware = hardware
        self.cost = cost
        self.lambda_cost = float(lambda_cost)
        self.epochs = epochs
        self.warmup_epochs = warmup_epochs
        self.weight_optim = _settings("search.weight_optim", weight_optim, ("lr", "momentum", "weight_decay"))
        self.arch_optim = _settings("search.arch_optim", arch_optim, ("lr", "hw_lr", "weight_decay"))
        self.temperature = _settings("search.temperature", temperature, ("initial", "final", "schedule"))
        temperature_at(0, epochs, self.temperature["initial"], self.temperature["final"], self.temperature["schedule"])
        self.gumbel_samples = gumbel_samples
        self.hard = hard
        self.arch_sampling = arch_sampling
        self.weight_sampling = weight_sampling
        self.finetune_generator = finetune_generator
        self.tau = float(self.temperature["initial"])
        self.uses_cost = cost is not None and hardware is not None and (
            self.lambda_cost > 0 or bool(cost.spec.limits) or cost.spec.feasibility_weight > 0)
        if isinstance(hardware, HardwareGenerator) and not finetune_generator:
            hardware.requires_grad_(False)

    # ---------------------------------------------------------------- parameters

    def hardware_parameters(self) -> list[nn.Parameter]:
        if self.hardware is None:
            return []
        if isinstance(self.hardware, HardwareGenerator) and not self.finetune_generator:
            return []
        return [p for p in self.hardware.parameters() if p.requires_grad]

    def configure_optimizers(self) -> Any:
        w = self.weight_optim
        weight_opt = torch.optim.SGD(self.supernet.weight_parameters(), lr=w["lr"], momentum=w["momentum"],
                                     weight_decay=w["weight_decay"], nesterov=w["momentum"] > 0)
        a = self.arch_optim
        groups = [{"params": self.supernet.architecture_parameters(), "lr": a["lr"]}]
        hw_params = self.hardware_parameters()
        if hw_params:
            groups.append({"params": hw_params, "lr": a["hw_lr"]})
        arch_opt = torch.optim.Adam(groups, betas=(0.5, 0.999), weight_decay=a["weight_decay"])
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(weight_opt, T_max=max(self.epochs, 1))
        return [weight_opt, arch_opt], [schedule]

    # ---------------------------------------------------------------- the soft design

    def accelerator_logits(self, arch_probs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-field logits ``(1, n_values)`` for the current architecture distribution."""
        return self.hardware(arch_probs.unsqueeze(0))

    def hardware_cost(self, arch_probs: torch.Tensor, gumbel: bool = True,
                      bits_probs: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The cost terms for architecture (and precision: None gives the supernet's current
        probabilities) probabilities and accelerator samples (or the plain softmax at the
        current temperature with ``gumbel=False``)."""
        logits = self.accelerator_logits(arch_probs)
        samples = self.gumbel_samples if gumbel else 1
        acc_probs = sample_choices(logits, self.tau, samples, hard=self.hard and gumbel, gumbel=gumbel)
        bits_probs = self.supernet.bits_probs() if bits_probs is None else bits_probs
        return self.cost(arch_probs, acc_probs, bits_probs)

    def architecture_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The architecture step's candidate and precision weights (``arch_sampling``)."""
        if self.arch_sampling == "gumbel":
            return self.supernet.sample_weights(self.tau), self.supernet.sample_bits_weights(self.tau)
        if self.arch_sampling == "two_path":
            return self.supernet.sample_paths(2), self.supernet.sample_bits_paths(2)
        return self.supernet.arch_probs(), self.supernet.bits_probs()

    def architecture_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Cross entropy of the supernet plus the weighted hardware cost and penalties."""
        weights, bits_weights = self.architecture_weights()
        task = nn.functional.cross_entropy(self.supernet(x, weights, bits_weights), y)
        parts = {"task_loss": task}
        loss = task
        if self.uses_cost:
            cost = self.hardware_cost(self.supernet.arch_probs(), bits_probs=self.supernet.bits_probs())
            loss = loss + self.lambda_cost * cost["cost"] + cost["penalty"]
            parts.update({k: v for k, v in cost.items() if v.dim() == 0})
        return loss, parts

    # ---------------------------------------------------------------- Lightning hooks

    def on_train_epoch_start(self) -> None:
        t = self.temperature
        self.tau = temperature_at(self.current_epoch, self.epochs, t["initial"], t["final"], t["schedule"])
        self.log("search/temperature", self.tau)

    def training_step(self, batch: dict[str, tuple[torch.Tensor, torch.Tensor]], batch_idx: int) -> None:
        weight_opt, arch_opt = self.optimizers()
        train_x, train_y = batch["train"]
        val_x, val_y = batch["val"]
        if self.current_epoch >= self.warmup_epochs:
            arch_opt.zero_grad()
            arch_loss, parts = self.architecture_loss(val_x, val_y)
            self.manual_backward(arch_loss)
            arch_opt.step()
            self.log("arch/loss", arch_loss, prog_bar=True, batch_size=len(val_y))
            for name, value in parts.items():
                self.log(f"arch/{name}", value, batch_size=len(val_y))
        weight_opt.zero_grad()
        if self.weight_sampling == "single_path":
            weights = self.supernet.sample_paths(1).detach()
            bits_weights = self.supernet.sample_bits_paths(1).detach()
        else:
            weights = self.supernet.arch_probs().detach()
            bits_weights = self.supernet.bits_probs().detach()
        logits = self.supernet(train_x, weights, bits_weights)
        loss = nn.functional.cross_entropy(logits, train_y)
        self.manual_backward(loss)
        weight_opt.step()
        self.log("train/loss", loss, prog_bar=True, batch_size=len(train_y))
        self.log("train/acc", (logits.argmax(1) == train_y).float().mean(), batch_size=len(train_y))

    def on_train_epoch_end(self) -> None:
        schedule = self.lr_schedulers()
        if schedule is not None:
            schedule.step()
        if self.uses_cost:
            with torch.no_grad():
                cost = self.hardware_cost(self.supernet.arch_probs(), gumbel=False)
            self.log("search/expected_latency_s", cost["latency_s"])
            self.log("search/expected_energy_pj", cost["energy_pj"])
            self.log("search/expected_area_mm2", cost["area_mm2"])
            self.log("search/expected_cost", cost["cost"], prog_bar=True)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        # the derived network (candidates and precisions), shared weights
        logits = self.supernet(x, self.supernet.derived_weights(), self.supernet.derived_bits_weights())
        self.log("val/acc", (logits.argmax(1) == y).float().mean(), prog_bar=True, batch_size=len(y))
        self.log("val/loss", nn.functional.cross_entropy(logits, y), batch_size=len(y))

    # ---------------------------------------------------------------- results

    def derive_architecture(self) -> tuple[int, ...]:
        return self.supernet.derive()

    def derive_precision(self) -> tuple[int, ...]:
        """The most probable precision of every block (indices into ``network.precision``)."""
        return self.supernet.derive_bits()

    def accelerator_probabilities(self, arch_probs: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Per-field probabilities ``(n_values,)`` of the learned accelerator (softmax of logits)."""
        if self.hardware is None:
            return {}
        with torch.no_grad():
            arch_probs = self.supernet.arch_probs() if arch_probs is None else arch_probs
            logits = self.accelerator_logits(arch_probs)
            return {field: torch.softmax(value[0], dim=-1) for field, value in logits.items()}
