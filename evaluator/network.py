"""The evaluator network: normalisation, a pair trunk and an accelerator-only area head.

Inputs are raw encodings from `evaluator.features`; the module normalises them with
statistics computed on the training split and stored as buffers (so they travel with the
weights). Targets are natural logs (``ln total_cycles``, ``ln energy_pj``, ``ln area_mm2``),
normalised the same way; a logit says whether the pair is feasible.

Area depends only on the accelerator, so it has its own subnetwork that never sees the
layer: an area prediction cannot vary with the workload, by construction.

A deep ensemble (``ensemble = K``): K independently initialised (trunk, area) member pairs
share the normalisation, the analytic features and the analytic base; the prediction is the
members' mean in log space, their spread (standard deviation of the members' natural logs)
the raw uncertainty that `evaluator.predictor.Evaluator` calibrates. ``K = 1`` is the single
network of artifacts written before ensembles (no spread: NaN).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
from torch import nn

from dataset_gen.common.errors import UserError
from dataset_gen.simulator.energy import DRAM_PJ_PER_BIT
from evaluator.analytic import analytic_area
from evaluator.features import (
    ACCEL_FEATURES,
    D_ACC,
    D_LAYER,
    D_PAIR,
    FREQ_FEATURE_INDEX,
    PAIR_FEATURES,
    decode_accelerators,
    decode_layers,
    pair_features,
)
from evaluator.loopnest import OBJECTIVES as LOOPNEST_OBJECTIVES, LoopNestCache, LoopNestSettings, pair_dicts

TARGETS: tuple[str, ...] = ("latency", "energy", "area")
# The simulator column each target imitates (natural log of it is what the network fits).
TARGET_COLUMNS: dict[str, str] = {"latency": "total_cycles", "energy": "energy_pj", "area": "area_mm2"}
# With ``decompose=True`` the trunk predicts the simulator's own components and the totals
# are their sums: total_cycles = compute + stall, energy_pj = the six energy terms. Each
# component is a simpler function than the total (MAC and RF energy are nearly linear in the
# log features), and the sums keep the totals consistent. Stalls and array transfers can be 0
# (rs with one-row filters; tools that do not model transfers): fitted as ln(1+x).
COMPONENT_COLUMNS: tuple[str, ...] = (
    "compute_cycles", "stall_cycles", "energy_mac_pj", "energy_rf_pj", "energy_array_pj", "energy_sram_pj",
    "energy_dram_pj", "energy_leak_pj",
)
LOG1P_COLUMNS: tuple[str, ...] = ("stall_cycles", "energy_array_pj")
_ARRAY = COMPONENT_COLUMNS.index("energy_array_pj")  # its position among the components
# Columns of the training target matrix (natural logs), in order.
TARGET_MATRIX_COLUMNS: tuple[str, ...] = (*TARGET_COLUMNS.values(), *COMPONENT_COLUMNS)

# The most members an ensemble may have (each costs one trunk's time, in training and prediction).
MAX_ENSEMBLE = 64
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "elu": nn.ELU, "tanh": nn.Tanh, "mish": nn.Mish}
NORMS = ("none", "layer", "batch")
STATISTICS: tuple[str, ...] = ("layer_mean", "layer_std", "layer_min", "layer_max", "acc_mean", "acc_std",
                               "acc_min", "acc_max", "pair_mean", "pair_std", "pair_min", "pair_max",
                               "target_mean", "target_std", "residual_mean", "residual_std")
# The analytic energy parts, in `COMPONENT_COLUMNS` order (the base's energy is their sum).
ENERGY_PARTS: tuple[str, ...] = ("mac", "rf", "array", "sram", "dram", "leak")
# Statistics that fit the analytic base to the simulator (`fit_base`); optional.
BASE_FIT: tuple[str, ...] = ("base_roofline", "base_energy_scales", "base_objective", "base_loopnest")
# The mapping objectives the builtin estimate can follow (`analytic_base`'s ``objective``).
BASE_OBJECTIVES: tuple[str, ...] = ("latency", "energy", "edp")
# The ``base_loopnest`` buffer's entries (`loopnest_log_costs`): whether the energy follows the
# loop-nest model, its settings (max_orderings 0: all; energies 0 ours, 1 zigzag; objective an
# index into `evaluator.loopnest.OBJECTIVES`), whether the cycles follow it, and whether its
# fit decides the feasibility (`LOOPNEST_FEASIBLE_LOGIT`). Artifacts written before the last
# three read them as 0: the least-energy nest, nothing else followed.
LOOPNEST_SETTINGS: tuple[str, ...] = ("energy", "lpf_limit", "max_orderings", "energies_zigzag", "objective",
                                      "cycles", "feasible")
# With the ``feasible`` entry, the feasibility logit is the network's plus this where a loop
# nest fits the memories and minus it where none does (p = 0.9975 / 0.0025 before the
# network's correction): ZigZag's feasibility is exactly whether LOMA finds a fitting nest.
LOOPNEST_FEASIBLE_LOGIT = 6.0
# The simulators whose rules the loop-nest model follows, and the settings it needs there.
LOOPNEST_SIMULATORS: dict[str, dict[str, Any]] = {"zigzag": {"mapping": "search"}}
# The most training rows the loop-nest model is tried on by `fit_base` (60-130 ms each).
LOOPNEST_FIT_ROWS = 2_000


def _norm(kind: str, width: int) -> nn.Module:
    if kind == "layer":
        return nn.LayerNorm(width)
    if kind == "batch":
        return nn.BatchNorm1d(width)
    return nn.Identity()


class MLP(nn.Module):
    """``depth`` hidden blocks of ``Linear -> norm -> activation -> dropout``, then a linear head.

    With ``residual=True`` every block after the first adds its input back (same width), which
    lets deeper nets train as easily as shallow ones. With ``linear_skip=True`` a linear map of
    the input is added to the output ("wide and deep"): the parts of a log-space target that
    are linear in the log features (MAC energy is MACs times a per-width constant) are learnt
    at once, and the hidden layers fit only what is left.
    """

    def __init__(self, d_in: int, d_out: int, depth: int, width: int, activation: str = "silu",
                 norm: str = "none", dropout: float = 0.0, residual: bool = False,
                 linear_skip: bool = False, zero_output: bool = False) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation = {activation!r}: expected one of {sorted(ACTIVATIONS)}")
        if norm not in NORMS:
            raise ValueError(f"norm = {norm!r}: expected one of {list(NORMS)}")
        if not isinstance(depth, int) or not 1 <= depth <= 64:
            raise ValueError(f"depth = {depth!r}: expected an integer in [1, 64]")
        if not isinstance(width, int) or not 1 <= width <= 65536:
            raise ValueError(f"width = {width!r}: expected an integer in [1, 65536]")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout = {dropout!r}: expected a number in [0, 1)")
        self.residual = residual
        self.blocks = nn.ModuleList()
        for i in range(depth):
            self.blocks.append(nn.Sequential(
                nn.Linear(d_in if i == 0 else width, width),
                _norm(norm, width),
                ACTIVATIONS[activation](),
                nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            ))
        self.head = nn.Linear(width, d_out)
        self.skip = nn.Linear(d_in, d_out, bias=False) if linear_skip else None
        if zero_output:
            # Start at exactly zero output: a correction network then begins as "no
            # correction" (the analytic estimate itself) instead of random offsets.
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
            if self.skip is not None:
                nn.init.zeros_(self.skip.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = x
        for i, block in enumerate(self.blocks):
            hidden = hidden + block(hidden) if self.residual and i > 0 else block(hidden)  # (batch, width)
        out = self.head(hidden)  # (batch, d_out)
        return out + self.skip(x) if self.skip is not None else out


class EvaluatorNetwork(nn.Module):
    """Predicts ln cycles, ln energy, ln area and a feasibility logit from raw encodings.

    Parameters
    ----------
    depth, width, activation, norm, dropout, residual
        The pair trunk (layer, accelerator and pair features -> cycles, energy, feasibility).
    area_depth, area_width
        The area subnetwork (accelerator features only).
    decompose : bool
        Predict the simulator's components and sum them (see `COMPONENT_COLUMNS`).
    linear_skip : bool
        Add a linear map of the inputs to each MLP's output.
    analytic_base : bool
        Predict corrections to the analytic model's estimates (`evaluator.analytic`) rather
        than the targets themselves: each output is ``estimate + MLP``, in log space.
    layer_inputs : bool
        Feed the raw layer features to the trunk too. Off by default: the pair features
        (folds, the analytic estimates) carry the layer's effect, and raw sizes let the MLP
        key corrections to shapes it saw (real networks' first layers, say) that then misfire
        on unseen layers: on AlexNet's 11x11 stride-4 conv1 the corrections cost 24% of
        energy with raw sizes and none without, at equal test accuracy.
    ensemble : int
        Members of the deep ensemble, in [1, `MAX_ENSEMBLE`]: K (trunk, area) pairs, each
        initialised from the global torch generator in turn (seed it for reproducible
        members). 1, the default, is the single network of artifacts older than ensembles.
    """

    def __init__(self, depth: int = 4, width: int = 256, activation: str = "silu", norm: str = "none",
                 dropout: float = 0.0, residual: bool = True, area_depth: int = 2, area_width: int = 64,
                 decompose: bool = False, linear_skip: bool = True, analytic_base: bool = True,
                 layer_inputs: bool = False, d_layer: int = D_LAYER, d_acc: int = D_ACC, d_pair: int = D_PAIR,
                 ensemble: int = 1) -> None:
        super().__init__()
        check_ensemble(ensemble, "ensemble")
        self.config: dict[str, Any] = dict(
            depth=depth, width=width, activation=activation, norm=norm, dropout=dropout,
            residual=residual, area_depth=area_depth, area_width=area_width, decompose=decompose,
            linear_skip=linear_skip, analytic_base=analytic_base, layer_inputs=layer_inputs, d_layer=d_layer, d_acc=d_acc, d_pair=d_pair,
            ensemble=ensemble,
        )
        self.ensemble = int(ensemble)
        self.decompose = bool(decompose)
        self.analytic_base = bool(analytic_base)
        # Trunk outputs (normalised natural logs), then the feasibility logit: the seven
        # components when decomposing, else ln total_cycles and ln energy_pj.
        self.n_outputs = len(TARGET_MATRIX_COLUMNS) if self.decompose else len(TARGETS)
        trunk_outputs = (len(COMPONENT_COLUMNS) if self.decompose else 2) + 1
        self.layer_inputs = bool(layer_inputs)
        d_in = d_acc + d_pair + (d_layer if self.layer_inputs else 0)
        # One (trunk, area) pair per member, created in turn: each draws its own initial weights.
        self.trunks = nn.ModuleList()
        self.areas = nn.ModuleList()
        for _ in range(self.ensemble):
            self.trunks.append(MLP(d_in, trunk_outputs, depth, width, activation, norm, dropout, residual,
                                   linear_skip, zero_output=self.analytic_base))
            self.areas.append(MLP(d_acc, 1, area_depth, area_width, activation, "none", 0.0, residual, linear_skip,
                                  zero_output=self.analytic_base))
        # Identity statistics until `set_statistics` is called with the training split's.
        for name, width in (("layer", d_layer), ("acc", d_acc), ("pair", d_pair)):
            self.register_buffer(f"{name}_mean", torch.zeros(width))
            self.register_buffer(f"{name}_std", torch.ones(width))
            # The training range of each feature: inputs are clamped to it, so that a value
            # never seen (an 11x11 kernel when training saw up to 7x7) reads as the nearest
            # one seen instead of sending the MLP where it was never fitted.
            self.register_buffer(f"{name}_min", torch.full((width,), -torch.finfo(torch.float32).max))
            self.register_buffer(f"{name}_max", torch.full((width,), torch.finfo(torch.float32).max))
        self.register_buffer("target_mean", torch.zeros(len(TARGET_MATRIX_COLUMNS)))
        self.register_buffer("target_std", torch.ones(len(TARGET_MATRIX_COLUMNS)))
        # Natural-log residuals of the targets against the analytic estimates (train split).
        self.register_buffer("residual_mean", torch.zeros(len(TARGET_MATRIX_COLUMNS)))
        self.register_buffer("residual_std", torch.ones(len(TARGET_MATRIX_COLUMNS)))
        # The analytic base's fit to the imitated simulator (`fit_base`, on the train split):
        # 1 where latency is the unrolled roofline instead of the builtin estimate, and a scale
        # per analytic energy part (`ENERGY_PARTS`; all 1: the builtin estimate as it is).
        self.register_buffer("base_roofline", torch.zeros(()))
        self.register_buffer("base_energy_scales", torch.ones(len(ENERGY_PARTS)))
        # Which mapping the builtin estimate follows (an index into `BASE_OBJECTIVES`): the
        # fastest (0), or the least-energy or least energy x delay one, a mapper's objective.
        self.register_buffer("base_objective", torch.zeros(()))
        # The loop-nest model's settings when the energy, the cycles or the feasibility follow it
        # (`evaluator.loopnest`, ZigZag's rules; `LOOPNEST_SETTINGS`; all 0: none).
        self.register_buffer("base_loopnest", torch.zeros(len(LOOPNEST_SETTINGS)))

    def set_statistics(self, stats: dict[str, torch.Tensor]) -> None:
        """Store normalisation statistics (means and standard deviations of the train split).

        Constant features (std ~ 0, e.g. one clock in the whole space) get std 1 so that they
        stay finite rather than exploding on other values.
        """
        for name in BASE_FIT:  # absent from statistics computed without a base fit: the builtin estimate
            if name in stats:
                getattr(self, name).copy_(torch.as_tensor(stats[name], dtype=torch.float32).reshape(getattr(self, name).shape))
        for name in STATISTICS:
            value = torch.as_tensor(stats[name], dtype=torch.float32).reshape(getattr(self, name).shape)
            if name == "residual_std":
                value = torch.clamp(value, min=1e-3)  # an exact estimate still gets a little room
            elif name.endswith("_std"):
                value = torch.where(value > 1e-6, value, torch.ones_like(value))
            getattr(self, name).copy_(value)

    def base(self, pair_x: torch.Tensor, acc_x: torch.Tensor, layer_x: torch.Tensor | None = None,
             costs: torch.Tensor | None = None) -> torch.Tensor:
        """The analytic estimate of every target column as fitted to the simulator (`analytic_base`;
        with the loop-nest model's energy or cycles when the fit chose them, which needs ``layer_x``)."""
        costs = self.loopnest_costs(layer_x, acc_x) if costs is None else costs
        loopnest = None if costs is None else loopnest_base_input(costs, self.base_loopnest)
        return analytic_base(pair_x, acc_x, self.base_roofline, self.base_energy_scales, self.base_objective,
                             loopnest)

    def loopnest_costs(self, layer_x: torch.Tensor | None, acc_x: torch.Tensor) -> torch.Tensor | None:
        """`loopnest_log_costs` of the pairs when the base follows the loop-nest model, else None."""
        if not loopnest_used(self.base_loopnest):
            return None
        if layer_x is None:
            raise ValueError("EvaluatorNetwork.base: this evaluator's base follows the loop-nest model, "
                             "which needs the layer encoding (layer_x)")
        return loopnest_log_costs(layer_x, acc_x, self.base_loopnest)

    def feasible_prior(self, layer_x: torch.Tensor | None, acc_x: torch.Tensor,
                       costs: torch.Tensor | None = None) -> torch.Tensor | None:
        """The loop nest's term of the feasibility logit (`LOOPNEST_FEASIBLE_LOGIT`), or None
        (``costs``: `loopnest_costs` when the caller has them)."""
        values = self.base_loopnest.tolist()
        if len(values) < 7 or values[6] < 0.5:
            return None
        costs = self.loopnest_costs(layer_x, acc_x) if costs is None else costs
        fits = torch.isfinite(costs[:, 0])
        return torch.where(fits, LOOPNEST_FEASIBLE_LOGIT, -LOOPNEST_FEASIBLE_LOGIT).to(acc_x.dtype)

    def _normalise(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """Clamp to the training range, then standardise."""
        x = torch.maximum(torch.minimum(x, getattr(self, f"{name}_max")), getattr(self, f"{name}_min"))
        return (x - getattr(self, f"{name}_mean")) / getattr(self, f"{name}_std")

    def forward_members(self, layer_x: torch.Tensor, acc_x: torch.Tensor, pair_x: torch.Tensor | None = None,
                        costs: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Every member's normalised log predictions and feasibility logit.

        ``pair_x`` is ``pair_features(layer_x, acc_x)`` when the caller has it already (training
        precomputes it once per dataset, since it involves no parameter); ``costs`` likewise is
        `loopnest_costs` (computed here when None). The inputs, their
        normalisation and the analytic base are computed once and shared by the members.

        Returns
        -------
        (torch.Tensor, torch.Tensor)
            ``(K, n, k)`` normalised natural logs of `TARGET_MATRIX_COLUMNS`' first ``k``
            columns (3 totals, plus the 7 components when decomposing) and the ``(K, n)``
            logits, K = ``ensemble``.
        """
        if pair_x is None:
            pair_x = pair_features(layer_x, acc_x)
        layer_n = self._normalise(layer_x, "layer")  # (n, d_layer)
        acc_n = self._normalise(acc_x, "acc")  # (n, d_acc)
        pair_n = self._normalise(pair_x, "pair")  # (n, d_pair)
        inputs = torch.cat([layer_n, acc_n, pair_n] if self.layer_inputs else [acc_n, pair_n], dim=1)
        # the analytic estimate of every target column, natural logs (n, 10)
        if costs is None and self.analytic_base:
            costs = self.loopnest_costs(layer_x, acc_x)
        base = self.base(pair_x, acc_x, layer_x, costs) if self.analytic_base else None
        outputs, logits = zip(*(self._member(trunk, area, inputs, acc_n, base)
                                for trunk, area in zip(self.trunks, self.areas)))
        logits = torch.stack(logits)
        prior = self.feasible_prior(layer_x, acc_x, costs) if self.analytic_base else None
        return torch.stack(outputs), logits if prior is None else logits + prior

    def _member(self, trunk_mlp: MLP, area_mlp: MLP, inputs: torch.Tensor, acc_n: torch.Tensor,
                base: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """One member's ``(n, k)`` normalised logs and ``(n,)`` logit (see `forward_members`)."""
        trunk = trunk_mlp(inputs)  # (n, outputs + 1)
        logit = trunk[:, -1]
        mean, std = self.target_mean, self.target_std
        area = area_mlp(acc_n)[:, 0]  # (n,) normalised ln area (a correction, with a base)
        if base is not None:
            # log target = analytic estimate + residual mean + residual std * MLP output: the
            # MLP works at the scale of the residuals (a few percent), so a training step
            # moves a prediction by a few percent of that, not of the target's spread.
            shift, scale = self.residual_mean / std, self.residual_std / std  # in normalised units

            def corrected(mlp: torch.Tensor, columns: slice) -> torch.Tensor:
                return (base[:, columns] - mean[columns]) / std[columns] + shift[columns] + scale[columns] * mlp

            area = corrected(area[:, None], slice(2, 3))[:, 0]
        if not self.decompose:
            totals = corrected(trunk[:, :2], slice(0, 2)) if base is not None else trunk[:, :2]
            return torch.cat([totals, area[:, None]], dim=1), logit  # (n, 3)
        components_n = trunk[:, :-1]  # (n, 8)
        if base is not None:
            components_n = corrected(components_n, slice(3, None))
        components = components_n * std[3:] + mean[3:]  # natural logs
        compute = torch.exp(components[:, 0])
        stall = torch.clamp(torch.expm1(components[:, 1]), min=0.0)
        log_cycles = torch.log(compute + stall)
        plain = [i for i in range(2, len(COMPONENT_COLUMNS)) if i != _ARRAY]
        energy = torch.exp(components[:, plain]).sum(dim=1) + torch.clamp(torch.expm1(components[:, _ARRAY]), min=0.0)
        log_energy = torch.log(energy)
        totals_n = (torch.stack([log_cycles, log_energy], dim=1) - mean[:2]) / std[:2]  # (n, 2)
        return torch.cat([totals_n, area[:, None], components_n], dim=1), logit  # (n, 11)

    def forward_normalised(self, layer_x: torch.Tensor, acc_x: torch.Tensor,
                           pair_x: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The ensemble's normalised log predictions and feasibility logit: the members' means.

        Returns
        -------
        (torch.Tensor, torch.Tensor)
            ``(n, k)`` (see `forward_members`) and ``(n,)``.
        """
        members, logits = self.forward_members(layer_x, acc_x, pair_x)
        return member_mean(members), member_mean(logits)

    def forward(self, layer_x: torch.Tensor, acc_x: torch.Tensor,
                return_spread: bool = False) -> dict[str, torch.Tensor]:
        """Physical predictions, differentiable w.r.t. both encodings.

        Parameters
        ----------
        layer_x : torch.Tensor
            ``(n, d_layer)`` raw layer encoding (`encode_layers`).
        acc_x : torch.Tensor
            ``(n, d_acc)`` raw accelerator encoding (`encode_accelerators` or the soft one);
            a single row broadcasts against ``n`` layers.
        return_spread : bool
            Add the ensemble's raw (uncalibrated) spread: ``spread_log_cycles``,
            ``spread_log_energy_pj``, ``spread_log_area_mm2``, the standard deviation of the
            members' natural logs (NaN with one member); and ``departure_log_cycles``,
            ``departure_log_energy_pj``, ``departure_log_area_mm2``: the absolute difference
            between the prediction's natural log and the analytic estimate's (0 without the
            analytic base), the second term of the calibrated std (`evaluator.predictor`); and
            ``tie_log_energy_pj``, the analytic estimate's energy tie (``est_energy_tie``: how
            far the energies of the mappings near-tied in time lie from it; 0 without the
            analytic base), the third term.

        Returns
        -------
        dict of torch.Tensor, each ``(n,)``
            ``cycles``, ``latency_s`` (cycles / clock, the clock read from the encoding's
            ``log2_freq_mhz`` slot: ``2**acc_x[:, FREQ_FEATURE_INDEX]`` MHz), ``energy_pj``,
            ``area_mm2``, ``feasible_logit``, and the natural logs ``log_cycles``,
            ``log_latency_s``, ``log_energy_pj``, ``log_area_mm2`` (better-conditioned costs):
            with several members, the mean of the members' logs (and of their logits).
        """
        if acc_x.dim() == 1:
            acc_x = acc_x.unsqueeze(0)
        if layer_x.dim() == 1:
            layer_x = layer_x.unsqueeze(0)
        if acc_x.shape[0] == 1 and layer_x.shape[0] != 1:
            acc_x = acc_x.expand(layer_x.shape[0], -1)
        elif layer_x.shape[0] == 1 and acc_x.shape[0] != 1:
            layer_x = layer_x.expand(acc_x.shape[0], -1)
        pair_x = pair_features(layer_x, acc_x) if return_spread and self.analytic_base else None
        # the loop nest's figures once, for the members and the departure term
        costs = self.loopnest_costs(layer_x, acc_x) if self.analytic_base else None
        members, logits = self.forward_members(layer_x, acc_x, pair_x, costs)  # (K, n, k), (K, n)
        member_logs = members[:, :, :3] * self.target_std[:3] + self.target_mean[:3]  # (K, n, 3) natural logs
        log_cycles, log_energy, log_area = member_mean(member_logs).unbind(dim=1)
        # ln(seconds) = ln(cycles) - ln(MHz * 1e6); the encoding holds log2(MHz).
        log_latency = log_cycles - acc_x[:, FREQ_FEATURE_INDEX] * torch.log(torch.tensor(2.0)) - torch.log(torch.tensor(1e6))
        out = {
            "cycles": torch.exp(log_cycles),
            "latency_s": torch.exp(log_latency),
            "energy_pj": torch.exp(log_energy),
            "area_mm2": torch.exp(log_area),
            "feasible_logit": member_mean(logits),
            "log_cycles": log_cycles,
            "log_latency_s": log_latency,
            "log_energy_pj": log_energy,
            "log_area_mm2": log_area,
        }
        if return_spread:
            spread = member_spread(member_logs)  # (n, 3)
            # How far the learned correction moves the analytic estimate (0 without one): large
            # where the network departs from the physics, which on unseen layers is mostly error.
            departure = ((torch.stack([log_cycles, log_energy, log_area], dim=1) - self.base(pair_x, acc_x, layer_x, costs)[:, :3])
                         .abs() if pair_x is not None else torch.zeros_like(spread))
            for i, name in enumerate(("log_cycles", "log_energy_pj", "log_area_mm2")):
                out[f"spread_{name}"] = spread[:, i]
                out[f"departure_{name}"] = departure[:, i]
            out["tie_log_energy_pj"] = (pair_x[:, _ENERGY_TIE] if pair_x is not None
                                        else torch.zeros_like(spread[:, 1]))
        return out


def check_ensemble(value: Any, name: str = "model.ensemble") -> int:
    """``value`` if it is a valid ensemble size, else a `UserError` (a ValueError) naming ``name``
    and the allowed range."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ENSEMBLE:
        raise UserError(f"{name} = {value!r}: expected an integer in [1, {MAX_ENSEMBLE}] (members of the "
                         "deep ensemble; 1: a single network, no uncertainty)")
    return value


def single_network_names(state: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Weights of a network saved before ensembles, under their names in an ensemble of one.

    Such a network held one trunk and one area subnetwork: ``{prefix}trunk.*`` and
    ``{prefix}area.*`` become ``{prefix}trunks.0.*`` and ``{prefix}areas.0.*``; other names
    (the normalisation buffers) are kept.
    """
    renamed = {}
    for name, value in state.items():
        for old, new in (("trunk.", "trunks.0."), ("area.", "areas.0.")):
            if name.startswith(prefix + old):
                name = prefix + new + name[len(prefix + old):]
                break
        renamed[name] = value
    return renamed


def member_mean(members: torch.Tensor) -> torch.Tensor:
    """The mean over members (dimension 0), row by row alike.

    Summed member by member: torch's ``mean(dim=0)`` rounds rows differently depending on
    where they sit in the batch (by one float32 ulp), so a pair's prediction would depend on
    the other pairs in its batch.
    """
    return functools.reduce(torch.add, members.unbind(dim=0)) / members.shape[0]


def member_spread(member_logs: torch.Tensor) -> torch.Tensor:
    """The ensemble's spread: the standard deviation over members (dimension 0) of their logs.

    The sample standard deviation (divisor K - 1), kept differentiable where the members agree
    exactly (a tiny floor under the variance); NaN with a single member.
    """
    if member_logs.shape[0] < 2:
        return torch.full_like(member_logs[0], math.nan)
    return torch.sqrt(member_logs.var(dim=0, correction=1) + 1e-12)


_LN2 = math.log(2.0)
_ENERGY_TIE = PAIR_FEATURES.index("est_energy_tie")


def analytic_base(pair_x: torch.Tensor, acc_x: torch.Tensor, roofline: torch.Tensor | float = 0.0,
                  energy_scales: torch.Tensor | None = None, objective: torch.Tensor | float = 0.0,
                  loopnest: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """The analytic model's estimate of every target column, as natural logs ``(n, 11)``
    (``ln(1 + x)`` for the `LOG1P_COLUMNS`).

    With the defaults, the builtin simulator's estimates (`evaluator.analytic`). ``roofline``
    (1) takes latency as the larger of the layer's compute with whole loop dimensions unrolled
    (``log2_unrolled_cycles``: a loop-nest tool's compute, no fill or drain) and the DRAM
    time of the least-traffic mapping, takes the DRAM energy of that traffic and scales the
    leakage with the time (`base_parts`); ``energy_scales`` weigh the energy parts
    (`ENERGY_PARTS`) in the energy's sum; ``objective`` (an index into `BASE_OBJECTIVES`, the
    builtin latency only) takes the cycles and energy of the least-energy (1) or least energy
    x delay (2) mapping instead of the fastest one's, as the builtin mapper picks them under
    that objective (the components stay the fastest mapping's). ``loopnest`` (natural logs of
    the loop-nest model's figures, `loopnest_base_input`; NaN where it has none): its
    ``cycles`` and ``compute`` become the cycles' and compute cycles' values (the leakage
    scaled to them), its ``energy`` (dynamic) plus the base's leakage the energy's value,
    each with the gradient of the estimate it replaces (the loop nest is a search over
    discrete orderings: its value is a step function of the sizes; a co-search needs the
    slope of the smooth estimate).
    All as `fit_base` fits them to a simulator whose rules or mapping objective differ from
    the builtin default's.
    """
    scaled = energy_scales is not None and bool((energy_scales != 1.0).any())
    rooflined = bool(torch.as_tensor(roofline) > 0.5)
    cycles, compute, parts = base_parts(pair_x, acc_x, rooflined)
    energy = None  # the sum of the parts
    if scaled or rooflined:
        weights = energy_scales if energy_scales is not None else torch.ones(len(ENERGY_PARTS))
        parts = [part + torch.log(torch.clamp(w, min=1e-30)) for part, w in zip(parts, weights)]
    else:  # the builtin estimate exactly as the analytic model sums it
        energy = pair_x[:, PAIR_FEATURES.index("log2_est_energy_pj")] * _LN2
    chosen = int(round(float(objective)))
    if chosen and not rooflined:
        cycles, energy = objective_estimates(pair_x, BASE_OBJECTIVES[chosen])
    if loopnest is not None and "cycles" in loopnest:
        value = loopnest["cycles"].to(cycles.dtype)
        known = torch.isfinite(value)
        shift = torch.where(known, value - cycles, torch.zeros_like(value)).detach()
        cycles = cycles + shift
        parts = [*parts[:-1], parts[-1] + shift]  # leakage: power x time (a builtin sum keeps its own)
        value = loopnest["compute"].to(compute.dtype)
        compute = compute + torch.where(known, value - compute, torch.zeros_like(value)).detach()
    if energy is None:
        energy = torch.logsumexp(torch.stack(parts, dim=1), dim=1)
    if loopnest is not None and "energy" in loopnest:
        value = torch.logaddexp(loopnest["energy"].to(energy.dtype), parts[-1])  # dynamic + leakage
        value = torch.where(torch.isfinite(value), value, energy)
        energy = energy + (value - energy).detach()
    stall = torch.log1p(torch.clamp(torch.exp(cycles) - torch.exp(compute), min=0.0))
    mac, rf, array, *rest = parts
    columns = [cycles, energy, analytic_area(decode_accelerators(acc_x)) * _LN2, compute, stall,
               mac, rf, torch.log1p(torch.exp(array)), *rest]
    return torch.stack(columns, dim=1)


def objective_estimates(pair_x: torch.Tensor, objective: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Natural logs of the builtin estimate's cycles and energy under a mapping ``objective``
    (`BASE_OBJECTIVES`): the fastest mapping's, or the least-energy or least-EDP one's."""
    if objective == "latency":
        names = ("log2_est_cycles", "log2_est_energy_pj")
    else:
        names = (f"log2_est_{objective}_objective_cycles", f"log2_est_{objective}_objective_energy_pj")
    return tuple(pair_x[:, PAIR_FEATURES.index(name)] * _LN2 for name in names)


def base_parts(pair_x: torch.Tensor, acc_x: torch.Tensor,
               roofline: bool) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Natural logs of the base's cycles, compute cycles and energy parts (`ENERGY_PARTS`,
    unscaled), builtin or roofline (`analytic_base`).

    The roofline owes nothing to the builtin mapper's choices: compute with whole loop
    dimensions unrolled, the DRAM traffic of the least-traffic mapping in the builtin tiling
    space (``log2_est_least_dram_cycles``: what a mapper minimising energy moves; its time at
    the DRAM bandwidth, its energy at the DRAM's cost per bit), the leakage over the larger of
    the two times. The builtin mapper's choice is what another tool's mapper departs from most
    (a 1x1 convolution on an rs array: five times the compulsory traffic in the builtin
    estimate, to save the builtin row-stationary passes' fill and drain; ZigZag's mapper moves
    it once). Before analytic version 9 the roofline moved every operand once (the compulsory
    traffic): on 1,458 ZigZag pairs (objective edp) the fitted base held 74.9% of energies and
    79.8% of cycles within 10%, with the least traffic 81.6% and 81.3%; on AlexNet's 290
    unseen pairs 41.7% / 44.8% of energies, cycles 94.1% both (`benchmarks/base_fit.py`).
    """
    def estimate(name: str) -> torch.Tensor:
        return pair_x[:, PAIR_FEATURES.index(name)] * _LN2

    cycles, compute = estimate("log2_est_cycles"), estimate("log2_est_compute_cycles")
    parts = [estimate(f"log2_est_{part}_pj") for part in ENERGY_PARTS]
    if roofline:
        unrolled, least = estimate("log2_unrolled_cycles"), estimate("log2_est_least_dram_cycles")
        roof = torch.maximum(unrolled, least)
        dram_bytes = least + acc_x[:, ACCEL_FEATURES.index("log2_dram_bw")] * _LN2  # cycles x bytes per cycle
        parts[ENERGY_PARTS.index("dram")] = dram_bytes + math.log(8 * DRAM_PJ_PER_BIT)
        parts[-1] = parts[-1] + roof - cycles  # leakage: power x time
        cycles, compute = roof, unrolled
    return cycles, compute, parts


def loopnest_settings(simulator: dict[str, Any] | None) -> torch.Tensor | None:
    """The ``base_loopnest`` buffer for a simulator identity (`dataset_gen.reader.simulator_identity`)
    whose rules the loop-nest model follows (`LOOPNEST_SIMULATORS`), energy, cycles and
    feasibility all following it, or None."""
    if not isinstance(simulator, dict) or simulator.get("name") not in LOOPNEST_SIMULATORS:
        return None
    settings = dict(simulator.get("settings") or {})
    if any(settings.get(key, value) != value for key, value in LOOPNEST_SIMULATORS[simulator["name"]].items()):
        return None
    parsed = LoopNestSettings.from_simulator(settings)
    return torch.tensor([1.0, parsed.lpf_limit, parsed.max_orderings or 0, float(parsed.energies == "zigzag"),
                         float(LOOPNEST_OBJECTIVES.index(parsed.objective)), 1.0, 1.0])


def loopnest_used(settings: torch.Tensor) -> bool:
    """Whether a ``base_loopnest`` buffer has the energy, the cycles or the feasibility follow the
    loop nest."""
    values = settings.tolist()
    return values[0] > 0.5 or any(value > 0.5 for value in values[5:7])


_LOOPNEST_CACHES: dict[LoopNestSettings, LoopNestCache] = {}


def loopnest_log_costs(layer_x: torch.Tensor, acc_x: torch.Tensor, settings: torch.Tensor) -> torch.Tensor:
    """Natural logs of the loop-nest model's dynamic energy, cycles and ideal temporal cycles
    (`evaluator.loopnest`) of encoded pairs, ``(n, 3)`` (NaN where no loop nest fits), with the
    settings of a ``base_loopnest`` buffer; no gradient. Results are kept per settings (a
    process-wide `LoopNestCache`)."""
    values = [float(v) for v in settings.tolist()] + [0.0] * (len(LOOPNEST_SETTINGS) - len(settings))
    key = LoopNestSettings(int(values[1]), int(values[2]) or None, "zigzag" if values[3] > 0.5 else "ours",
                           LOOPNEST_OBJECTIVES[int(round(values[4]))])
    cache = _LOOPNEST_CACHES.setdefault(key, LoopNestCache(key))
    with torch.no_grad():
        pairs = pair_dicts(decode_layers(layer_x), decode_accelerators(acc_x))
    return torch.log(torch.as_tensor(cache(pairs), dtype=acc_x.dtype))


def loopnest_base_input(costs: torch.Tensor, settings: torch.Tensor) -> dict[str, torch.Tensor]:
    """`analytic_base`'s ``loopnest`` argument: the columns of `loopnest_log_costs` the
    ``base_loopnest`` buffer has the base follow (``energy``; ``cycles`` and ``compute``)."""
    values = settings.tolist()
    out = {}
    if values[0] > 0.5:
        out["energy"] = costs[:, 0]
    if len(values) > 5 and values[5] > 0.5:
        out["cycles"], out["compute"] = costs[:, 1], costs[:, 2]
    return out


def fit_base(chunks: Any, simulator: dict[str, Any] | None = None) -> dict[str, torch.Tensor]:
    """Fit the analytic base to the simulator of encoded training chunks (`BASE_FIT` statistics).

    The analytic estimates follow the builtin simulator's rules. Another simulator (ZigZag's
    loop nests, an in-house model) times and charges the same hardware otherwise, and a
    network learning corrections on top of the builtin estimates from a few thousand rows
    then spends them on differences a closed form captures:

    - latency: the roofline (`analytic_base`) replaces the builtin estimate when its log
      residuals against the simulator's cycles vary less over the chunks' feasible rows;
    - mapping objective, with the builtin latency: the cycles and energy of the least-energy
      or least-EDP mapping replace the fastest one's when that cuts the sum of the cycles' and
      the energy's losses (below) by at least `ENERGY_FIT_GAIN` (the builtin simulator under
      ``objective=energy`` or ``edp``, whose mapper trades time for traffic); the energy's
      parts then stay as they are;
    - energy: positive scales of the analytic parts whose sum fits the simulator's energy in
      log space (the pseudo-Huber loss of the log residual, `ENERGY_FIT_DELTA`: a few wild
      rows do not pull the scales), kept only when they cut that loss by at least
      `ENERGY_FIT_GAIN` against the parts as they are (so the builtin simulator, which its
      estimates match, keeps them), fitted on at most `ENERGY_FIT_ROWS` rows.

    - loop nest: for a simulator whose rules the loop-nest model follows (``simulator``, its
      identity; `LOOPNEST_SIMULATORS`), on the first `LOOPNEST_FIT_ROWS` rows: that model's
      cycles (and ideal temporal cycles) replace the base's when their loss (above) is below
      the base's; then its dynamic energy plus the base's leakage replaces the energy when its
      loss is below the other choices' (the energy scales then stay 1); and whether a nest
      fits the memories becomes a term of the feasibility logit (`LOOPNEST_FEASIBLE_LOGIT`)
      when one fits all but 1% of those (feasible) rows.

    Returns
    -------
    dict of torch.Tensor
        ``base_roofline`` (0 or 1), ``base_energy_scales`` ``(len(ENERGY_PARTS),)``,
        ``base_objective`` (an index into `BASE_OBJECTIVES`) and ``base_loopnest``
        (`LOOPNEST_SETTINGS`; all 0: off).
    """
    moments = {kind: torch.zeros(3, dtype=torch.float64) for kind in ("builtin", "roofline")}
    kept: dict[str, list[torch.Tensor]] = {kind: [] for kind in moments}  # (rows, parts + 1): parts, ln energy
    # (rows, 2 * objectives + 2): each objective's ln cycles and ln energy, then the targets'
    objectives: list[torch.Tensor] = []
    nests: list[tuple[torch.Tensor, ...]] = []  # (layer_x, acc_x, pair_x, ln cycles, ln energy): loop-nest trials
    nest_settings = loopnest_settings(simulator)
    rows = nest_rows = 0
    for chunk in chunks:
        pair_x, acc_x, targets = chunk["pair_x"], chunk["acc_x"], chunk["targets"].double()
        log_cycles, log_energy = targets[:, 0], targets[:, 1]
        usable = torch.isfinite(log_cycles) & torch.isfinite(log_energy)
        if not bool(usable.any()):
            continue
        room = ENERGY_FIT_ROWS - rows
        for kind in moments:
            cycles, _, parts = base_parts(pair_x[usable].double(), acc_x[usable].double(), kind == "roofline")
            residual = log_cycles[usable] - cycles
            moments[kind] += torch.stack([torch.ones_like(residual).sum(), residual.sum(), (residual ** 2).sum()])
            if room > 0:
                kept[kind].append(torch.stack([*parts, log_energy[usable]], dim=1)[:room])
        if room > 0:
            estimates = [value for name in BASE_OBJECTIVES for value in objective_estimates(pair_x[usable].double(), name)]
            objectives.append(torch.stack([*estimates, log_cycles[usable], log_energy[usable]], dim=1)[:room])
        rows += min(max(room, 0), int(usable.sum()))
        if nest_settings is not None and nest_rows < LOOPNEST_FIT_ROWS:
            take = LOOPNEST_FIT_ROWS - nest_rows
            nests.append(tuple(x[usable][:take] for x in (chunk["layer_x"], acc_x, pair_x, log_cycles, log_energy)))
            nest_rows += len(nests[-1][0])

    def variance(m: torch.Tensor) -> float:
        return float(m[2] / m[0] - (m[1] / m[0]) ** 2) if m[0] > 1 else math.inf

    kind = "roofline" if variance(moments["roofline"]) < variance(moments["builtin"]) else "builtin"
    scales = torch.ones(len(ENERGY_PARTS), dtype=torch.float64)
    objective = 0
    if rows > 1 and kind == "builtin":
        table = torch.cat(objectives)
        losses = [float(_huber(table[:, 2 * i] - table[:, -2]).mean() + _huber(table[:, 2 * i + 1] - table[:, -1]).mean())
                  for i in range(len(BASE_OBJECTIVES))]
        best = min(range(len(losses)), key=losses.__getitem__)
        objective = best if losses[best] < (1.0 - ENERGY_FIT_GAIN) * losses[0] else 0
    if rows > 1 and objective == 0:
        table = torch.cat(kept[kind])
        fitted, fitted_loss, plain_loss = _fit_energy_scales(table[:, :-1], table[:, -1])
        if fitted_loss < (1.0 - ENERGY_FIT_GAIN) * plain_loss:
            scales = fitted
    fit = {"base_roofline": torch.tensor(1.0 if kind == "roofline" else 0.0),
           "base_energy_scales": scales.float(), "base_objective": torch.tensor(float(objective)),
           "base_loopnest": torch.zeros(len(LOOPNEST_SETTINGS))}
    if nest_rows > 1:
        layer_x, acc_x, pair_x, log_cycles, log_energy = (torch.cat(parts) for parts in zip(*nests))
        costs = loopnest_log_costs(layer_x, acc_x, nest_settings).double()

        def base(settings: torch.Tensor | None, scales: torch.Tensor | None, objective: float) -> torch.Tensor:
            loopnest = None if settings is None else loopnest_base_input(costs, settings)
            return analytic_base(pair_x.double(), acc_x.double(), fit["base_roofline"], scales, objective, loopnest)

        def loss(estimate: torch.Tensor, target: torch.Tensor) -> float:
            return float(_huber(estimate - target).mean())

        plain = base(None, fit["base_energy_scales"].double(), fit["base_objective"])
        cycles_only = nest_settings.clone()
        cycles_only[0] = 0.0
        timed = base(cycles_only, fit["base_energy_scales"].double(), fit["base_objective"])
        chosen = nest_settings.clone()
        chosen[5] = float(loss(timed[:, 0], log_cycles) < loss(plain[:, 0], log_cycles))
        # every trial row is feasible: the nest's feasibility is trusted where it fits them all but 1%
        chosen[6] = float(float(torch.isfinite(costs[:, 0]).double().mean()) >= 0.99)
        with_energy = nest_settings.clone()  # and the cycles as chosen
        with_energy[5] = chosen[5]
        nest = base(with_energy, None, 0.0)
        if loss(nest[:, 1], log_energy) < loss(plain[:, 1], log_energy):
            fit.update(base_energy_scales=torch.ones(len(ENERGY_PARTS)), base_objective=torch.tensor(0.0),
                       base_loopnest=chosen)
        else:
            chosen[0] = 0.0
            if loopnest_used(chosen):  # the cycles or the feasibility follow it
                fit.update(base_loopnest=chosen)
    return fit


# The share of the analytic energy's loss in log space that fitted scales must remove before
# `fit_base` uses them: below it, the estimate's own parts stay (scales of 1). Measured: 7-10%
# on builtin rows (scales only trade the estimate's near-tie misses between parts), 35% on
# ZigZag's (objective edp: about 2.5x its register-file energy, next to no array transfers).
ENERGY_FIT_GAIN = 0.25
# The pseudo-Huber loss's scale (natural log units: ~10%): quadratic below it, linear above.
ENERGY_FIT_DELTA = 0.1
# The most training rows the energy scales are fitted on (the first of the training stream).
ENERGY_FIT_ROWS = 200_000


def _huber(residual: torch.Tensor) -> torch.Tensor:
    """The pseudo-Huber loss of log residuals, scale `ENERGY_FIT_DELTA`."""
    return ENERGY_FIT_DELTA ** 2 * (torch.sqrt(1 + (residual / ENERGY_FIT_DELTA) ** 2) - 1)


def _fit_energy_scales(parts: torch.Tensor, log_energy: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """Positive scales ``w`` of the parts (natural logs, ``(n, k)``) minimising the mean
    `_huber` loss of ``ln sum(w * exp(parts)) - log_energy`` (L-BFGS on ``ln w`` from 0,
    float64), the loss there and at ``w = 1``."""
    def loss(log_w: torch.Tensor) -> torch.Tensor:
        return _huber(torch.logsumexp(parts + log_w, dim=1) - log_energy).mean()

    log_w = torch.zeros(parts.shape[1], dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_w], lr=1.0, max_iter=200, tolerance_grad=1e-12, tolerance_change=1e-14,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        value = loss(log_w)
        value.backward()
        return value

    optimiser.step(closure)
    with torch.no_grad():
        log_w.clamp_(-20.0, 20.0)
        return torch.exp(log_w).detach(), float(loss(log_w)), float(loss(torch.zeros_like(log_w)))
