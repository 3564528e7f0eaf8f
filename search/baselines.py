"""Baselines run side by side with the co-search, on the same data, spaces, metric and lambda.

- ``sequential`` (DANCE's "naive" baseline): hardware-unaware NAS (the same supernet and
  Lightning search with no cost term), then the best accelerator for the found network by
  exhaustive simulation over the accelerator space (``baselines.max_accelerators`` drawn
  uniformly when the space is larger). Search time = NAS + simulation.
- ``evolution`` (regularised evolution, Real et al., AAAI 2019) and ``random`` (random
  search) with the simulator in the loop: each (network, accelerator) pair is scored by the
  simulator (cost) and a short training (``short_epochs`` on the weight part of the
  training split, loss on the architecture part), with the co-search's own objective
  ``val_loss + lambda * cost / reference + limit penalties``; they run until a wall-clock
  budget (``baselines.budget_s``; in ``mode=compare``: the co-search's search time).

Both search the precision too when ``network.precision`` has several values: the sequential
baseline's NAS learns the precision logits with the candidates' (from the task loss alone,
being hardware-unaware), and a pair of the simulator-in-the-loop search is (network,
precision per block, accelerator), a mutation changing one block's candidate, one block's
precision or one accelerator field.

Every method ends like the co-search (`search.cosearch.finish`): re-simulation, retraining from
scratch (quantisation-aware at the design's bits), ``result.json``.
"""

from __future__ import annotations

import collections
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np

from dataset_gen.space import SpaceError
from search.context import SearchContext
from search.cosearch import design_of, finish, run_cosearch
from search.cost import combine
from search.data import ClassifierDataModule, split_indices
from search.simulated import best_accelerators, network_totals
from search.supernet import ChildNet
from search.training import train_classifier

__all__ = ["BASELINES", "run_sequential", "run_evolution", "run_baseline", "Candidate"]

BASELINES: tuple[str, ...] = ("sequential", "evolution", "random")


def run_sequential(context: SearchContext, out_dir: Path | None = None) -> dict[str, Any]:
    """Hardware-unaware NAS, then exhaustive accelerator search by simulation."""
    out_dir = context.out_dir if out_dir is None else Path(out_dir)
    outcome = run_cosearch(context, hardware_aware=False, name="sequential_nas", log_dir=out_dir)
    choice = outcome.module.derive_architecture()
    precision = outcome.module.derive_precision()
    started = time.perf_counter()
    # max_accelerators: null means the whole space, a meaningful value
    limit = context.settings["baselines"]["max_accelerators"]
    indices = context.hw_space.enumerate(limit, seed=context.seed)
    layers = context.network_layers(choice, precision)
    table = context.simulator.table(layers, [context.hw_space.accelerator(i) for i in indices])
    best, values = best_accelerators(np.ones((1, len(layers))), table, context.spec)
    if not np.isfinite(values[0, best[0]]):
        raise SpaceError("sequential baseline: no accelerator of the space can run the NAS network "
                         f"({'/'.join(context.space.describe(choice))}); widen hw.choices")
    exhaustive_seconds = time.perf_counter() - started
    design = design_of(context, choice, indices[int(best[0])], precision=precision)
    extra = {"exhaustive": {"accelerators": len(indices), "space_size": context.hw_space.size,
                            "seconds": exhaustive_seconds, "nas_seconds": outcome.seconds}}
    return finish(context, design, "sequential", outcome.seconds + exhaustive_seconds, out_dir, extra)


@dataclass
class Candidate:
    """One scored (network, accelerator) pair of the simulator-in-the-loop search."""

    choice: tuple[int, ...]
    accelerator: tuple[int, ...]
    score: float
    val_loss: float
    val_accuracy: float
    cost: float  # normalised metric (inf when infeasible)
    feasible: bool
    precision: tuple[int, ...] = ()  # per block: index into network.precision (() = the first)


class _PairSearch:
    """Sampling, mutation and scoring of (architecture, accelerator) pairs."""

    def __init__(self, context: SearchContext, rng: np.random.Generator, lambda_cost: float) -> None:
        self.context = context
        self.rng = rng
        self.lambda_cost = lambda_cost
        self.config = context.settings["baselines"]
        task = context.settings["task"]
        seed = context.seed
        train_index, val_index = split_indices(context.data.y_train, float(task["val_fraction"]), seed)
        self.datamodule = ClassifierDataModule(context.data, batch_size=int(task["batch_size"]),
                                               train_index=train_index, eval_index=val_index, seed=seed)
        self.allowed = [np.flatnonzero(block.allowed) for block in context.space.blocks]
        self.seed = seed

    @property
    def n_precisions(self) -> int:
        return self.context.space.num_precisions

    def random_pair(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """A random (architecture, accelerator, precision) triple. With a single precision no
        random number is drawn for it (the draws are those of a search without precisions)."""
        choice = tuple(int(self.rng.choice(allowed)) for allowed in self.allowed)
        accelerator = tuple(int(self.rng.integers(n)) for n in self.context.hw_space.sizes)
        if self.n_precisions > 1:
            precision = tuple(int(self.rng.integers(self.n_precisions)) for _ in self.allowed)
        else:
            precision = (0,) * len(self.allowed)
        return choice, accelerator, precision

    def mutate(self, parent: Candidate) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """Change one block's candidate or precision, or one accelerator field's value (never a
        no-op when the space allows a change)."""
        choice, accelerator = list(parent.choice), list(parent.accelerator)
        precision = list(parent.precision or (0,) * len(choice))
        blocks = [b for b, allowed in enumerate(self.allowed) if len(allowed) > 1]
        fields = [f for f, n in enumerate(self.context.hw_space.sizes) if n > 1]
        options = [("block", b) for b in blocks] + [("field", f) for f in fields]
        if self.n_precisions > 1:  # a block's precision is part of the network
            options += [("bits", b) for b in range(len(choice))]
        if not options:
            return tuple(choice), tuple(accelerator), tuple(precision)
        # Half of the mutations touch the network, half the accelerator (when both exist).
        network = self.rng.random() < 0.5
        pool = [o for o in options if (o[0] != "field") == network] or options
        kind, where = pool[int(self.rng.integers(len(pool)))]
        if kind == "block":
            others = [c for c in self.allowed[where] if c != choice[where]]
            choice[where] = int(self.rng.choice(others))
        elif kind == "bits":
            precision[where] = int((precision[where] + 1 + self.rng.integers(self.n_precisions - 1)) % self.n_precisions)
        else:
            n = self.context.hw_space.sizes[where]
            accelerator[where] = int((accelerator[where] + 1 + self.rng.integers(n - 1)) % n)
        return tuple(choice), tuple(accelerator), tuple(precision)

    def score(self, choice: tuple[int, ...], accelerator: tuple[int, ...],
              precision: tuple[int, ...] | None = None) -> Candidate:
        context, spec = self.context, self.context.spec
        precision = context.space.check_precision(precision)
        layers = context.network_layers(choice, precision)
        table = context.simulator.table(layers, [context.hw_space.accelerator(accelerator)])
        totals = network_totals(table, np.ones((1, len(layers))))
        latency, energy = float(totals["latency_s"][0, 0]), float(totals["energy_pj"][0, 0])
        area = float(totals["area_mm2"][0])
        if not math.isfinite(latency):
            return Candidate(choice, accelerator, math.inf, math.nan, math.nan, math.inf, False, precision)
        cost = float(spec.normalised(combine(latency, energy, area, spec.metric)))
        values = spec.limit_values(latency, energy, area)
        penalty = spec.limit_weight * sum(max(values[k] / limit - 1.0, 0.0) for k, limit in spec.limits.items())
        L.seed_everything(self.seed, workers=True, verbose=False)
        trained = train_classifier(ChildNet(context.space, choice, precision), self.datamodule,
                                   int(self.config["short_epochs"]), None, context.settings["trainer"],
                                   log_dir=None, quiet=True)
        score = trained["loss"] + self.lambda_cost * cost + penalty
        return Candidate(choice, accelerator, score, trained["loss"], trained["accuracy"], cost, True, precision)


def run_evolution(context: SearchContext, out_dir: Path | None = None, kind: str = "evolution",
                  budget_s: float | None = None) -> dict[str, Any]:
    """Regularised evolution (``kind="evolution"``) or random search (``"random"``) over
    (network, accelerator) pairs, scored by the simulator and a short training, until the
    wall-clock budget is spent (at least one pair is always scored)."""
    if kind not in ("evolution", "random"):
        raise SpaceError(f"baseline kind = {kind!r}: expected evolution or random")
    out_dir = context.out_dir if out_dir is None else Path(out_dir)
    config = context.settings["baselines"]
    budget = float(budget_s if budget_s is not None else config["budget_s"])
    if not budget > 0:
        raise SpaceError(f"baselines.budget_s = {budget!r}: expected a positive number of seconds")
    population_size = int(config["population"])
    sample_size = int(config["sample"])
    if population_size < 2 or not 1 <= sample_size <= population_size:
        raise SpaceError(f"baselines: population = {population_size}, sample = {sample_size}: expected "
                         "population >= 2 and 1 <= sample <= population")
    lambda_cost = float(context.settings["search"]["lambda_cost"])
    rng = np.random.default_rng(context.seed)
    pairs = _PairSearch(context, rng, lambda_cost)
    population: collections.deque[Candidate] = collections.deque(maxlen=population_size)
    history: list[Candidate] = []
    started = time.perf_counter()
    while not history or time.perf_counter() - started < budget:
        if kind == "random" or len(history) < population_size:
            choice, accelerator, precision = pairs.random_pair()
        else:
            contenders = [population[int(i)] for i in rng.choice(len(population), sample_size, replace=False)]
            choice, accelerator, precision = pairs.mutate(min(contenders, key=lambda c: c.score))
        candidate = pairs.score(choice, accelerator, precision)
        history.append(candidate)
        population.append(candidate)  # the deque drops the oldest: "regularised" (aging) evolution
    seconds = time.perf_counter() - started
    best = min(history, key=lambda c: c.score)
    if not best.feasible:
        raise SpaceError(f"{kind} baseline: none of the {len(history)} pairs scored within the budget was feasible; "
                         "raise baselines.budget_s")
    design = design_of(context, best.choice, best.accelerator, precision=best.precision)
    extra = {"evaluations": len(history), "budget_s": budget,
             "feasible_evaluations": sum(c.feasible for c in history),
             "best_score": best.score, "best_val_accuracy": best.val_accuracy,
             "history": [{"choice": list(c.choice), "accelerator": list(c.accelerator),
                          "bits": context.space.bits_of(c.precision or None), "score": c.score,
                          "val_accuracy": c.val_accuracy, "cost": c.cost} for c in history]}
    return finish(context, design, kind, seconds, out_dir, extra)


def run_baseline(context: SearchContext, mode: str, out_dir: Path | None = None,
                 budget_s: float | None = None) -> dict[str, Any]:
    """Run one baseline by its ``mode`` name."""
    if mode == "sequential":
        return run_sequential(context, out_dir)
    if mode in ("evolution", "random"):
        return run_evolution(context, out_dir, mode, budget_s)
    raise SpaceError(f"baseline = {mode!r}: expected one of {list(BASELINES)}")
