"""Deriving the discrete design from the learned distributions.

The architecture is the most probable candidate of every block, at its most probable
precision (``network.precision``; the block's layers carry it as ``w_bits``/``a_bits``). The accelerator is the
most probable choice of every field (in generator mode: the generator's output for the
derived architecture), DANCE's rule (``search.derive_accelerator: probable``); with
``predicted``, the accelerator of the space (or of its `PREDICTED_LIMIT` most probable
members) with the least *predicted* cost for the derived network (`predicted_ranking`): the
accelerator distribution was learned against a mixture of architectures and precisions, the
derived network is one of them. Because the evaluator's feasibility is a prediction, the derived
accelerator is checked with the simulator: if it cannot map every layer, the next most
probable accelerators (by joint probability, fields independent) are tried in order, up to
``max_tries``; the report says how many were tried.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from dataset_gen.space import Accelerator, Layer
from search.hardware import AcceleratorSpace
from search.simulated import SimulatorCache

__all__ = ["DerivedDesign", "ranked_accelerators", "predicted_ranking", "first_feasible", "one_hot_architecture",
           "DERIVE_ACCELERATOR", "PREDICTED_LIMIT"]

DERIVE_ACCELERATOR: tuple[str, ...] = ("probable", "predicted")
PREDICTED_LIMIT = 20_000  # accelerators whose cost `predicted_ranking` predicts, at most


@dataclass(frozen=True)
class DerivedDesign:
    """A discrete network and accelerator, with how the accelerator was chosen."""

    choice: tuple[int, ...]
    candidates: tuple[str, ...]
    layers: tuple[Layer, ...]
    accelerator: Accelerator
    accelerator_index: tuple[int, ...]
    accelerator_rank: int  # 0 = the most probable accelerator; >0 after feasibility repair
    feasible: bool
    precision: tuple[int, ...] = ()  # per block: index into network.precision (() = the first everywhere)
    bits: tuple[int, ...] = ()  # per block: the bits of that precision (w_bits = a_bits of its layers)


def one_hot_architecture(choice: Sequence[int], n_candidates: int) -> torch.Tensor:
    """``(n_blocks, n_candidates)`` one-hot probabilities of a discrete architecture."""
    return torch.nn.functional.one_hot(torch.as_tensor(list(choice)), n_candidates).float()


def ranked_accelerators(space: AcceleratorSpace, probs: Mapping[str, torch.Tensor | np.ndarray],
                        limit: int = 64) -> list[tuple[int, ...]]:
    """The ``limit`` most probable accelerators of a space under independent per-field
    probabilities, most probable first (ties broken by index order, so deterministic).

    A best-first search over the product space: it never enumerates the whole space.
    """
    logp = [np.log(np.clip(np.asarray(torch.as_tensor(probs[field]).detach().reshape(-1), dtype=np.float64),
                           1e-300, None)) for field in space.fields]
    orders = [np.argsort(-lp, kind="stable") for lp in logp]  # per field: choice indices, best first
    def score(ranks: tuple[int, ...]) -> float:
        return float(sum(logp[f][orders[f][r]] for f, r in enumerate(ranks)))

    start = tuple(0 for _ in logp)
    heap = [(-score(start), start)]
    seen = {start}
    result: list[tuple[int, ...]] = []
    while heap and len(result) < limit:
        _, ranks = heapq.heappop(heap)
        result.append(tuple(int(orders[f][r]) for f, r in enumerate(ranks)))
        for f in range(len(ranks)):
            if ranks[f] + 1 < len(orders[f]):
                nxt = ranks[:f] + (ranks[f] + 1,) + ranks[f + 1:]
                if nxt not in seen:
                    seen.add(nxt)
                    heapq.heappush(heap, (-score(nxt), nxt))
    return result


def predicted_ranking(layers: Sequence[Layer], space: AcceleratorSpace, evaluator, spec,
                      probs: Mapping[str, torch.Tensor | np.ndarray] | None = None,
                      limit: int = PREDICTED_LIMIT) -> list[tuple[int, ...]]:
    """Accelerators of ``space`` ranked by the evaluator's predicted cost of ``layers``, least first.

    Every accelerator of the space is scored (its ``limit`` most probable under ``probs`` when
    the space is larger): the network's predicted latency and energy summed over its layers,
    the area, combined by ``spec.metric`` (`search.cost.combine`). Accelerators on which the
    evaluator predicts a layer infeasible (``p_feasible < 0.5``) or that break a hard limit of
    ``spec`` go last (in cost order), so that `first_feasible` can still fall back on them.
    """
    from search.cost import combine

    if space.size <= limit or probs is None:
        indices = [tuple(index) for index in itertools.islice(np.ndindex(*space.sizes), limit)]
    else:
        indices = ranked_accelerators(space, probs, limit=limit)
    accelerators = pd.DataFrame([space.accelerator(index).to_dict() for index in indices])
    frame = pd.DataFrame([layer.to_dict() for layer in layers])
    pairs = frame.merge(accelerators.reset_index().rename(columns={"index": "accelerator"}), how="cross")
    predicted = evaluator.predict(pairs.drop(columns=["accelerator"]))
    predicted.index = pairs.index
    per = pd.DataFrame({"accelerator": pairs["accelerator"], "latency_s": predicted["latency_s"],
                        "energy_pj": predicted["energy_pj"], "area_mm2": predicted["area_mm2"],
                        "p_feasible": predicted["p_feasible"]})
    totals = per.groupby("accelerator").agg(latency_s=("latency_s", "sum"), energy_pj=("energy_pj", "sum"),
                                            area_mm2=("area_mm2", "first"), p_feasible=("p_feasible", "min"))
    values = combine(totals["latency_s"].to_numpy(), totals["energy_pj"].to_numpy(), totals["area_mm2"].to_numpy(),
                     spec.metric)
    limited = spec.limit_values(totals["latency_s"].to_numpy(), totals["energy_pj"].to_numpy(),
                                totals["area_mm2"].to_numpy())
    ok = totals["p_feasible"].to_numpy() >= 0.5
    for key, bound in spec.limits.items():
        ok &= limited[key] <= bound
    order = np.lexsort((values, ~ok))  # acceptable first, then by cost (stable: index order on ties)
    return [indices[int(totals.index[i])] for i in order]


def first_feasible(layers: Sequence[Layer], space: AcceleratorSpace, ranked: Sequence[tuple[int, ...]],
                   simulator: SimulatorCache) -> tuple[tuple[int, ...], int, bool]:
    """The first accelerator of ``ranked`` on which the simulator maps every layer.

    Returns
    -------
    (index, rank, feasible)
        The chosen index, its rank in ``ranked`` and whether it is feasible (if none is,
        the first of ``ranked`` with ``feasible = False``).
    """
    for rank, index in enumerate(ranked):
        table = simulator.table(list(layers), [space.accelerator(index)])
        if bool(table.feasible.all()):
            return index, rank, True
    return ranked[0], 0, False
