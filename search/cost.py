"""The differentiable hardware cost of a soft (network, accelerator) pair, from the evaluator.

The frozen evaluator (`evaluator.load`) predicts each layer's latency, energy and
feasibility on an accelerator encoding; this module composes them into a network cost:

- the *layer table* (`NetworkSpace.layer_table`) holds every layer any architecture can
  contain, at every precision, at the deployment resolution; a row's weight is the
  probability of its candidate times the probability of its precision in its block (fixed
  stem and head rows weigh 1), so that weighted sums are the *expected* latency and energy
  over the architecture and precision distributions (exact: a block's layers do not depend on
  the other blocks' choices, and its candidate and precision are drawn independently);
- the accelerator enters as the expected encoding of its per-field choice probabilities
  (`evaluator.features.encode_accelerators_soft`); the area is predicted once;
- the metric (`latency`, `energy`, `edp` = latency x energy, `edap` = edp x area) is divided
  by a reference value (the same for every method, `search.reference`) so that
  ``search.lambda_cost`` means the same whatever the units;
- hard limits (``area_mm2 <= X``...) are hinge penalties ``limit_weight * relu(v / X - 1)``;
- the expected number of infeasible layers (``1 - sigmoid(feasible_logit)``) is penalised
  with ``feasibility_weight``.

Gradients reach the architecture and precision probabilities through the row weights and the
accelerator probabilities through the encoding; the evaluator's own weights stay frozen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from dataset_gen.space import LAYER_FIELDS, SpaceError
from evaluator.features import encode_accelerators_soft, encode_layers
from search.hardware import AcceleratorSpace, choices_for_encoding

__all__ = ["COST_METRICS", "LIMIT_KEYS", "CostSpec", "HardwareCost", "combine"]

COST_METRICS: tuple[str, ...] = ("latency", "energy", "edp", "edap")
LIMIT_KEYS: tuple[str, ...] = ("latency_s", "energy_pj", "area_mm2", "edp", "edap")
COST_SCALES: tuple[str, ...] = ("ratio", "log")


def combine(latency_s: Any, energy_pj: Any, area_mm2: Any, metric: str) -> Any:
    """One cost metric from latency (s), energy (pJ) and area (mm^2); works on floats,
    numpy arrays and tensors alike. ``edp`` is in pJ*s, ``edap`` in pJ*s*mm^2."""
    if metric == "latency":
        return latency_s
    if metric == "energy":
        return energy_pj
    if metric == "edp":
        return latency_s * energy_pj
    if metric == "edap":
        return latency_s * energy_pj * area_mm2
    raise SpaceError(f"search.cost.metric = {metric!r}: expected one of {list(COST_METRICS)}")


def figures(latency_s: float, energy_pj: float, area_mm2: float) -> dict[str, float]:
    """The figure dict written in result.json (``edp`` and ``edap`` derived)."""
    return {"latency_s": float(latency_s), "energy_pj": float(energy_pj), "area_mm2": float(area_mm2),
            "edp": float(latency_s * energy_pj), "edap": float(latency_s * energy_pj * area_mm2)}


@dataclass(frozen=True)
class CostSpec:
    """What the search minimises on the hardware side.

    Parameters
    ----------
    metric : {"latency", "energy", "edp", "edap"}
    limits : dict
        Upper bounds on any of `LIMIT_KEYS` (``None`` entries are ignored).
    limit_weight : float
        Weight of each limit's hinge penalty.
    feasibility_weight : float
        Weight of the expected number of infeasible layers.
    scale : {"ratio", "log"}
        Cost term ``value / reference`` or ``log(value / reference)``.
    reference : dict
        ``latency_s``, ``energy_pj``, ``area_mm2`` of the reference design (positive).
    """

    metric: str = "edp"
    limits: Mapping[str, float] = field(default_factory=dict)
    limit_weight: float = 10.0
    feasibility_weight: float = 1.0
    scale: str = "ratio"
    reference: Mapping[str, float] = field(default_factory=lambda: {"latency_s": 1.0, "energy_pj": 1.0, "area_mm2": 1.0})

    def __post_init__(self) -> None:
        if self.metric not in COST_METRICS:
            raise SpaceError(f"search.cost.metric = {self.metric!r}: expected one of {list(COST_METRICS)}")
        if self.scale not in COST_SCALES:
            raise SpaceError(f"search.cost.scale = {self.scale!r}: expected one of {list(COST_SCALES)}")
        limits = {}
        for key, value in dict(self.limits).items():
            if key not in LIMIT_KEYS:
                raise SpaceError(f"search.cost.limits.{key}: unknown; expected any of {list(LIMIT_KEYS)}")
            if value is None:
                continue
            if not isinstance(value, (int, float)) or not value > 0 or math.isinf(value):
                raise SpaceError(f"search.cost.limits.{key} = {value!r}: expected a positive number or null")
            limits[key] = float(value)
        object.__setattr__(self, "limits", limits)
        for name in ("limit_weight", "feasibility_weight"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise SpaceError(f"search.cost.{name} = {value!r}: expected a number >= 0")
        for key in ("latency_s", "energy_pj", "area_mm2"):
            value = dict(self.reference).get(key)
            if value is None or not np.isfinite(value) or value <= 0:
                raise SpaceError(f"search reference {key} = {value!r}: expected a positive finite number")

    @property
    def reference_value(self) -> float:
        r = self.reference
        return float(combine(r["latency_s"], r["energy_pj"], r["area_mm2"], self.metric))

    def normalised(self, value: Any) -> Any:
        """The cost term of a metric value (``value / reference`` or its log)."""
        ratio = value / self.reference_value
        if self.scale == "log":
            return torch.log(ratio) if isinstance(ratio, torch.Tensor) else np.log(ratio)
        return ratio

    def limit_values(self, latency_s: Any, energy_pj: Any, area_mm2: Any) -> dict[str, Any]:
        return {"latency_s": latency_s, "energy_pj": energy_pj, "area_mm2": area_mm2,
                "edp": latency_s * energy_pj, "edap": latency_s * energy_pj * area_mm2}

    def limits_met(self, latency_s: float, energy_pj: float, area_mm2: float) -> dict[str, dict[str, Any]]:
        """Each limit with the design's value and whether it is met."""
        values = self.limit_values(latency_s, energy_pj, area_mm2)
        return {key: {"limit": limit, "value": float(values[key]), "met": bool(values[key] <= limit)}
                for key, limit in self.limits.items()}

    def with_reference(self, reference: Mapping[str, float]) -> "CostSpec":
        return CostSpec(self.metric, self.limits, self.limit_weight, self.feasibility_weight, self.scale,
                        {k: float(reference[k]) for k in ("latency_s", "energy_pj", "area_mm2")})


class HardwareCost(nn.Module):
    """Expected network cost from the frozen evaluator, differentiable w.r.t. both choices.

    Parameters
    ----------
    evaluator : torch.nn.Module
        A frozen `evaluator.predictor.Evaluator` (from `evaluator.load`).
    layer_table : pandas.DataFrame
        `NetworkSpace.layer_table` at the deployment resolution (columns ``block``,
        ``candidate``, ``precision`` and the layer fields; a table without ``precision`` has
        one precision).
    n_blocks, n_candidates : int
        The architecture's shape (the number of precisions is the table's).
    hw_space : AcceleratorSpace
        The accelerator choices (values per field).
    spec : CostSpec
        Metric, limits, penalties and reference.
    """

    def __init__(self, evaluator: nn.Module, layer_table: pd.DataFrame, n_blocks: int, n_candidates: int,
                 hw_space: AcceleratorSpace, spec: CostSpec) -> None:
        super().__init__()
        self.evaluator = evaluator.requires_grad_(False)
        self.hw_space = hw_space
        self.spec = spec
        self.n_blocks, self.n_candidates = n_blocks, n_candidates
        # Candidates share layers (k3_e6 and k7_e6 have the same expand and project convs):
        # the evaluator sees each distinct layer once per accelerator sample.
        fields = layer_table[list(LAYER_FIELDS)].astype("int64")
        codes, distinct = pd.factorize(pd.MultiIndex.from_frame(fields))
        distinct_layers = pd.DataFrame(list(distinct), columns=list(LAYER_FIELDS))
        self.register_buffer("layer_x", encode_layers(distinct_layers), persistent=False)  # (distinct, d_layer)
        self.register_buffer("row_layer", torch.tensor(codes, dtype=torch.long), persistent=False)  # (rows,)
        block = torch.tensor(layer_table["block"].to_numpy(), dtype=torch.long)
        candidate = torch.tensor(layer_table["candidate"].to_numpy(), dtype=torch.long)
        precision = torch.tensor(layer_table["precision"].to_numpy() if "precision" in layer_table
                                 else np.where(layer_table["block"].to_numpy() < 0, -1, 0), dtype=torch.long)
        self.n_precisions = int(precision.max()) + 1 if bool((block >= 0).any()) else 1
        fixed = block < 0
        # Index into [flattened arch probs, 1.0]: fixed rows point at the trailing 1.
        index = torch.where(fixed, torch.full_like(block, n_blocks * n_candidates), block * n_candidates + candidate)
        self.register_buffer("row_index", index, persistent=False)
        # Index into [flattened precision probs, 1.0], likewise.
        bits_index = torch.where(fixed, torch.full_like(block, n_blocks * self.n_precisions),
                                 block * self.n_precisions + precision)
        self.register_buffer("row_bits_index", bits_index, persistent=False)

    @property
    def num_rows(self) -> int:
        return int(self.row_layer.shape[0])

    def train(self, mode: bool = True) -> "HardwareCost":
        super().train(mode)
        self.evaluator.eval()  # the evaluator is frozen: no dropout or batch-norm updates
        return self

    def uniform_bits(self) -> torch.Tensor:
        """Uniform precision probabilities ``(n_blocks, n_precisions)`` (ones for one precision)."""
        return torch.full((self.n_blocks, self.n_precisions), 1.0 / self.n_precisions, device=self.row_index.device)

    def row_weights(self, arch_probs: torch.Tensor, bits_probs: torch.Tensor | None = None) -> torch.Tensor:
        """Weight of every layer-table row: ``(n_rows,)`` from ``(n_blocks, n_candidates)``
        architecture probabilities times ``(n_blocks, n_precisions)`` precision probabilities
        (None: uniform, i.e. 1 with a single precision)."""
        bits_probs = self.uniform_bits().to(arch_probs) if bits_probs is None else bits_probs
        if tuple(bits_probs.shape) != (self.n_blocks, self.n_precisions):
            raise SpaceError(f"precision probabilities of shape {tuple(bits_probs.shape)}: expected "
                             f"{(self.n_blocks, self.n_precisions)} (blocks, network.precision)")
        flat = torch.cat([arch_probs.reshape(-1), arch_probs.new_ones(1)])
        flat_bits = torch.cat([bits_probs.reshape(-1), bits_probs.new_ones(1)])
        return flat[self.row_index] * flat_bits[self.row_bits_index]

    def forward(self, arch_probs: torch.Tensor, acc_probs: Mapping[str, torch.Tensor],
                bits_probs: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Expected cost of an architecture (and precision) distribution on accelerator samples.

        Parameters
        ----------
        arch_probs : torch.Tensor
            ``(n_blocks, n_candidates)``, rows summing to 1.
        acc_probs : dict[str, torch.Tensor]
            Per accelerator field ``(samples, n_values)`` probabilities (one-hot for a
            discrete accelerator).
        bits_probs : torch.Tensor, optional
            ``(n_blocks, n_precisions)`` precision probabilities, rows summing to 1 (None:
            uniform; with a single precision that is the precision itself).

        Returns
        -------
        dict of torch.Tensor
            Scalars averaged over the accelerator samples: ``latency_s``, ``energy_pj``,
            ``area_mm2``, ``value`` (the metric), ``cost`` (normalised), ``limit_penalty``,
            ``infeasible`` (expected infeasible layers), ``penalty`` (both penalties,
            weighted) and per-sample ``value_per_sample`` ``(samples,)``.
        """
        acc_x = encode_accelerators_soft(choices_for_encoding(self.hw_space, acc_probs))  # (S, d_acc)
        samples, distinct = acc_x.shape[0], self.layer_x.shape[0]
        out = self.evaluator(self.layer_x.repeat(samples, 1), acc_x.repeat_interleave(distinct, dim=0))

        def per_row(values: torch.Tensor) -> torch.Tensor:
            return values.view(samples, distinct)[:, self.row_layer]  # (S, rows)

        weights = self.row_weights(arch_probs, bits_probs)  # (rows,)
        latency = (per_row(out["latency_s"]) * weights).sum(dim=1)  # (S,)
        energy = (per_row(out["energy_pj"]) * weights).sum(dim=1)  # (S,)
        area = out["area_mm2"].view(samples, distinct)[:, 0]  # (S,) area depends on the accelerator only
        p_feasible = torch.sigmoid(per_row(out["feasible_logit"]))
        infeasible = ((1.0 - p_feasible) * weights).sum(dim=1)  # (S,)
        value = combine(latency, energy, area, self.spec.metric)  # (S,)
        cost = self.spec.normalised(value)
        limit_penalty = torch.zeros_like(value)
        limit_values = self.spec.limit_values(latency, energy, area)
        for key, limit in self.spec.limits.items():
            limit_penalty = limit_penalty + torch.relu(limit_values[key] / limit - 1.0)
        penalty = self.spec.limit_weight * limit_penalty + self.spec.feasibility_weight * infeasible
        return {
            "latency_s": latency.mean(), "energy_pj": energy.mean(), "area_mm2": area.mean(),
            "value": value.mean(), "cost": cost.mean(), "limit_penalty": limit_penalty.mean(),
            "infeasible": infeasible.mean(), "penalty": penalty.mean(), "value_per_sample": value,
        }
