"""Pre-training DANCE's hardware-generation network on the simulator's best accelerators.

Targets come from the ground truth: the supernet's layer table (every layer any
architecture can contain, at the deployment resolution) is simulated once on a set of
accelerators (the whole accelerator space, or ``accelerators`` of it drawn uniformly when
larger). Any architecture's cost on any of those accelerators is then a weighted sum of
table entries (`search.simulated.network_totals`), so the best accelerator of thousands of
architectures costs one matrix product. Half of the training architectures are discrete
(one-hot), half are soft (Dirichlet-distributed probabilities per block, their target being
the best accelerator for the *expected* cost), because the search feeds the generator soft
architecture probabilities.

The generator is fitted with Lightning (per-field cross entropy against the best
accelerator's choices) and reported on held-out architectures: per-field accuracy and the
regret, i.e. the simulated cost of the generated accelerator over the best one's, minus 1.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from search.cost import CostSpec, combine
from search.hardware import AcceleratorSpace, HardwareGenerator
from search.network_space import NetworkSpace
from search.simulated import SimulatorCache, best_accelerators, network_totals
from search.training import make_trainer, quiet_lightning

__all__ = ["sample_architectures", "row_weights", "pretrain_generator"]


def sample_architectures(space: NetworkSpace, count: int, soft_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Architecture probabilities ``(count, n_blocks, n_candidates)``: one-hot draws (uniform
    over each block's allowed candidates) and, for ``soft_fraction`` of them, Dirichlet(0.5)
    mixtures over the allowed candidates."""
    mask = np.array([block.allowed for block in space.blocks], dtype=bool)  # (blocks, cands)
    probs = np.zeros((count, *mask.shape))
    n_soft = int(round(count * soft_fraction))
    for i in range(count):
        for b in range(mask.shape[0]):
            allowed = np.flatnonzero(mask[b])
            if i < n_soft:
                probs[i, b, allowed] = rng.dirichlet(np.full(len(allowed), 0.5))
            else:
                probs[i, b, rng.choice(allowed)] = 1.0
    return probs


def row_weights(layer_table: pd.DataFrame, arch_probs: np.ndarray, bits_probs: np.ndarray | None = None) -> np.ndarray:
    """Layer-table row weights ``(B, rows)`` of architecture probabilities ``(B, blocks, cands)``
    and precision probabilities ``(B, blocks, precisions)`` (None: uniform over the table's
    precisions, i.e. 1 with a single precision): ``p(candidate) * p(precision)`` per row."""
    block = layer_table["block"].to_numpy()
    candidate = layer_table["candidate"].to_numpy()
    precision = layer_table["precision"].to_numpy() if "precision" in layer_table else np.where(block < 0, -1, 0)
    weights = np.ones((arch_probs.shape[0], len(layer_table)))
    chosen = block >= 0
    weights[:, chosen] = arch_probs[:, block[chosen], candidate[chosen]]
    n_precisions = int(precision.max()) + 1 if chosen.any() else 1
    if bits_probs is None:
        weights[:, chosen] /= n_precisions
    else:
        weights[:, chosen] *= np.asarray(bits_probs)[:, block[chosen], precision[chosen]]
    return weights


class _GeneratorFit(L.LightningModule):
    def __init__(self, generator: HardwareGenerator, lr: float, weight_decay: float) -> None:
        super().__init__()
        self.generator = generator
        self.lr, self.weight_decay = lr, weight_decay

    def _loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        x, target = batch  # (batch, blocks, cands), (batch, fields)
        logits = self.generator(x)
        losses, hits = [], []
        for j, field in enumerate(self.generator.space.fields):
            losses.append(nn.functional.cross_entropy(logits[field], target[:, j]))
            hits.append((logits[field].argmax(1) == target[:, j]).float())
        return torch.stack(losses).sum(), torch.stack(hits, 1).mean()

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss, accuracy = self._loss(batch)
        self.log("generator/loss", loss, prog_bar=True, batch_size=len(batch[0]))
        self.log("generator/field_accuracy", accuracy, batch_size=len(batch[0]))
        return loss

    def configure_optimizers(self) -> Any:
        return torch.optim.AdamW(self.generator.parameters(), lr=self.lr, weight_decay=self.weight_decay)


def pretrain_generator(generator: HardwareGenerator, space: NetworkSpace, hw_space: AcceleratorSpace,
                       layer_table: pd.DataFrame, simulator: SimulatorCache, spec: CostSpec,
                       archs: int = 512, epochs: int = 40, accelerators: int | None = 512, lr: float = 3e-3,
                       weight_decay: float = 1e-4, batch_size: int = 64, soft_fraction: float = 0.5,
                       holdout: float = 0.2, seed: int = 0, trainer: Mapping[str, Any] | None = None,
                       log_dir: Any = None) -> dict[str, Any]:
    """Fit the generator to the simulator's best accelerator of sampled architectures.

    Parameters
    ----------
    generator : HardwareGenerator
        Trained in place.
    space, hw_space : NetworkSpace, AcceleratorSpace
    layer_table : pandas.DataFrame
        `NetworkSpace.layer_table` at the deployment resolution.
    simulator : SimulatorCache
    spec : CostSpec
        The metric and limits that define "best".
    archs : int
        Architectures sampled (``holdout`` of them kept for the report).
    epochs, lr, weight_decay, batch_size
        Training settings.
    accelerators : int, optional
        Accelerators simulated (all of the space when it is smaller, or None).
    soft_fraction : float
        Share of soft (mixed) architectures.
    seed : int
    trainer : mapping, optional
        Lightning trainer settings.

    Returns
    -------
    dict
        ``archs``, ``accelerators``, ``simulated_pairs``, ``field_accuracy`` and
        ``mean_regret`` / ``median_regret`` on held-out architectures, ``seconds``.
    """
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    indices = hw_space.enumerate(accelerators, seed=seed)
    table = simulator.table(layer_table, [hw_space.accelerator(i) for i in indices])
    probs = sample_architectures(space, archs, soft_fraction, rng)
    weights = row_weights(layer_table, probs)
    best, values = best_accelerators(weights, table, spec)
    targets = np.asarray([indices[b] for b in best], dtype=np.int64)  # (archs, fields)
    order = rng.permutation(archs)
    n_hold = int(round(archs * holdout)) if archs > 4 else 0
    hold, fit = order[:n_hold], order[n_hold:]
    x = torch.as_tensor(probs, dtype=torch.float32)
    y = torch.as_tensor(targets)
    loader = DataLoader(TensorDataset(x[fit], y[fit]), batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    module = _GeneratorFit(generator, lr, weight_decay)
    with quiet_lightning():
        fitter = make_trainer(trainer, epochs, log_dir, name="generator", progress=False)
        fitter.fit(module, train_dataloaders=loader)
    generator.eval()
    report: dict[str, Any] = {"archs": archs, "accelerators": len(indices), "simulated_pairs": simulator.simulated_pairs}
    evaluate = hold if len(hold) else fit
    with torch.no_grad():
        logits = generator(x[evaluate])
    predicted = np.stack([logits[f].argmax(1).numpy() for f in hw_space.fields], axis=1)  # (n, fields)
    report["field_accuracy"] = float((predicted == targets[evaluate]).mean())
    # Regret on the simulated accelerators: the generated accelerator may lie outside the
    # sampled set when the space was subsampled; then it is simulated too.
    gen_accels = [hw_space.accelerator(p) for p in predicted]
    gen_table = simulator.table(layer_table, gen_accels)
    gen_totals = network_totals(gen_table, weights[evaluate])
    diag = np.arange(len(evaluate))
    generated = combine(gen_totals["latency_s"][diag, diag], gen_totals["energy_pj"][diag, diag],
                        gen_totals["area_mm2"][diag], spec.metric)
    optimum = values[evaluate, best[evaluate]]
    regret = generated / optimum - 1.0
    finite = np.isfinite(regret)
    report["mean_regret"] = float(np.mean(regret[finite])) if finite.any() else float("nan")
    report["median_regret"] = float(np.median(regret[finite])) if finite.any() else float("nan")
    report["infeasible_generated"] = int(np.sum(~finite))
    report["evaluated_on"] = "held-out architectures" if len(hold) else "training architectures"
    report["seconds"] = time.perf_counter() - started
    return report
