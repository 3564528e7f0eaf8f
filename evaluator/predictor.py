"""`Evaluator`: the frozen, trained network with the metadata it was trained on.

It is what `evaluator.load` returns and what the co-search consumes: a `torch.nn.Module` in
eval mode whose parameters never require gradients, while gradients still flow to its
*inputs* (the layer and accelerator encodings). Files are `evaluator.artifact`'s job
(``evaluator.save(ev, path)``, ``evaluator.load(path)``): the artifact module builds on this
one, never the other way round.

Uncertainty: an evaluator trained as a deep ensemble (``model.ensemble`` > 1) gives, with
``predict(..., return_std=True)``, the *calibrated* standard deviation of the natural log of
each prediction: ``std = sqrt((scale * spread)**2 + (departure_scale * departure)**2 +
(tie_scale * tie)**2 + floor**2)``, the spread being the members' standard deviation in log
space, the departure how far the prediction lies from the analytic estimate it corrects, the tie (energy
only) how far the energies of the mappings the analytic model finds near-tied in time lie
from its estimate (`EvaluatorNetwork.forward`; `evaluator.analytic.TIE_BAND`): the simulator
may pick any of them. ``scale`` and ``departure_scale`` are factors per target fitted after
training on the validation split, ``tie_scale`` is fixed (1 where the imitated simulator is the
builtin one at ``objective: latency``, whose mapper the analytic model replicates, else 0;
``calibration``, see
`evaluator.validate.calibrate`; calibrations without a departure or tie scale, as artifacts
written before them, leave that term out; ``floor``, `evaluator.validate.STD_FLOOR` (0.1%)
in ``bands`` calibrations since the loop nest's cycles, else 0, is the least uncertainty
claimed: an evaluator whose base is the simulator's own arithmetic, as the loop nest is
ZigZag's, errs by float32 rounding, 0.001%, and its members' spread is that rounding too, so
bands calibrated on it would be noise). A std of 0.05 reads as
about +-5% (one sigma, relative). A single network (``model.ensemble = 1``, and every artifact
written before ensembles) has no uncertainty: its std columns are NaN.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from dataset_gen.reader import simulator_identity
from dataset_gen.space import ACCELERATOR_FIELDS, Accelerator, SpaceError
from evaluator.features import encode_accelerators, encode_layers
from evaluator.loopnest import OBJECTIVES as LOOPNEST_OBJECTIVES
from evaluator.network import BASE_OBJECTIVES, ENERGY_PARTS, TARGETS, EvaluatorNetwork, loopnest_used
from evaluator.protocol import PREDICTION_COLUMNS, check_pairs

# The std columns `Evaluator.predict(..., return_std=True)` adds: the calibrated standard
# deviation of the natural log of each figure (latency's equals total_cycles': the clock is exact).
STD_COLUMNS: tuple[str, ...] = ("total_cycles_std", "latency_s_std", "energy_pj_std", "area_mm2_std")
# The target whose calibration scale each std column (and forward's std_* key) uses.
_STD_TARGET = {"total_cycles_std": "latency", "latency_s_std": "latency", "energy_pj_std": "energy",
               "area_mm2_std": "area"}
_LOG_NAME = {"latency": "log_cycles", "energy": "log_energy_pj", "area": "log_area_mm2"}


class NoUncertaintyWarning(UserWarning):
    """Uncertainty was asked of a single network (``model.ensemble = 1``): the std is NaN."""


class Evaluator(nn.Module):
    """A trained evaluator, frozen.

    Parameters
    ----------
    network : EvaluatorNetwork
        Trained weights and normalisation statistics.
    dataset_metadata : dict, optional
        The training dataset's metadata (the simulator's identity and version, space hash, ...).
    metrics : dict, optional
        The validation report (see `evaluator.report`).
    extra : dict, optional
        Anything else worth keeping with the weights (the training config, the split).
    calibration : dict, optional
        The uncertainty calibration (`evaluator.validate.calibrate`): ``scale`` maps each
        target (``latency``, ``energy``, ``area``) to the factor that turns the ensemble's
        spread into a calibrated standard deviation. Without it the std is the raw spread
        (scale 1), which is not calibrated.
    """

    def __init__(self, network: EvaluatorNetwork, dataset_metadata: dict[str, Any] | None = None,
                 metrics: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
                 calibration: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.network = network
        self.dataset_metadata: dict[str, Any] = dict(dataset_metadata or {})
        self.metrics: dict[str, Any] = dict(metrics or {})
        self.extra: dict[str, Any] = dict(extra or {})
        self.calibration: dict[str, Any] = dict(calibration or {})
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> "Evaluator":
        """Stay in eval mode: a parent module's ``.train()`` must not turn on dropout here."""
        return super().train(False)

    @property
    def simulator_version(self) -> str | None:
        """The simulator version of the training data (None if unknown)."""
        return self.dataset_metadata.get("simulator_version")

    @property
    def simulator(self) -> dict[str, Any]:
        """The identity (``name``, ``version``, ``settings``) of the simulator this evaluator
        imitates: the adapter its training data records (builtin's for data older than
        adapters; `dataset_gen.reader.simulator_identity`)."""
        return simulator_identity(self.dataset_metadata)

    @property
    def ensemble(self) -> int:
        """Members of the deep ensemble (1: a single network, no uncertainty)."""
        return self.network.ensemble

    @property
    def analytic_base(self) -> dict[str, Any]:
        """How the analytic base was fitted to the imitated simulator (`evaluator.network.fit_base`):
        ``{"latency": "builtin" | "roofline", "objective": "latency" | "energy" | "edp",
        "energy_scales": {part: scale}, "loopnest": None | {setting: value}}`` (scales of 1:
        the estimate's parts as they are; ``objective``: the mapping the builtin estimate
        follows, the fastest by default; ``loopnest``: the loop-nest model's settings when the
        energy, the cycles or the feasibility follow it, and which, `evaluator.loopnest`)."""
        network = self.network
        nest = [float(v) for v in network.base_loopnest.tolist()]
        return {"latency": "roofline" if float(network.base_roofline) > 0.5 else "builtin",
                "objective": BASE_OBJECTIVES[int(round(float(network.base_objective)))],
                "energy_scales": {part: round(float(scale), 4)
                                  for part, scale in zip(ENERGY_PARTS, network.base_energy_scales.tolist())},
                "loopnest": None if not loopnest_used(network.base_loopnest) else {
                    "lpf_limit": int(nest[1]), "max_orderings": int(nest[2]) or None,
                    "energies": "zigzag" if nest[3] > 0.5 else "ours",
                    "objective": LOOPNEST_OBJECTIVES[int(round(nest[4]))],
                    "energy": nest[0] > 0.5, "cycles": nest[5] > 0.5, "feasible": nest[6] > 0.5}}

    @property
    def std_scale(self) -> dict[str, float]:
        """The calibration factor per target (``latency``, ``energy``, ``area``): the std is
        this times the ensemble's spread. Without a calibration, 1.0 (the raw spread); a target
        the calibration could not fit (no usable rows) gets NaN."""
        scale = (self.calibration or {}).get("scale")
        if not scale:
            return {target: 1.0 for target in TARGETS}
        return {target: float(scale[target]) if scale.get(target) is not None else math.nan for target in TARGETS}

    @property
    def departure_scale(self) -> dict[str, float]:
        """The calibration factor of the departure term per target (0.0 when the calibration
        has none: the std is then the scaled spread alone)."""
        scale = (self.calibration or {}).get("departure_scale") or {}
        return {target: float(scale[target]) if scale.get(target) is not None else 0.0 for target in TARGETS}

    @property
    def tie_scale(self) -> dict[str, float]:
        """The factor of the tie term per target (0.0 when the calibration has none; only
        energy has a tie)."""
        scale = (self.calibration or {}).get("tie_scale") or {}
        return {target: float(scale[target]) if scale.get(target) is not None else 0.0 for target in TARGETS}

    def _std(self, out: dict[str, torch.Tensor], target: str) -> torch.Tensor:
        """The calibrated std of one target from a network output with its spread, departure
        and tie terms."""
        name = _LOG_NAME[target]
        std = out[f"spread_{name}"] * self.std_scale[target]
        departure_scale, tie_scale = self.departure_scale[target], self.tie_scale[target]
        has_tie = tie_scale != 0.0 and f"tie_{name}" in out
        variance = std.square() + float((self.calibration or {}).get("floor") or 0.0) ** 2
        if departure_scale != 0.0:
            variance = variance + (out[f"departure_{name}"] * departure_scale).square()
        if has_tie:
            variance = variance + (out[f"tie_{name}"] * tie_scale).square()
        return torch.sqrt(variance)

    @property
    def space_hash(self) -> str | None:
        """The design-space hash of the training data (None if unknown)."""
        return self.dataset_metadata.get("space_hash")

    def forward(self, layer_x: torch.Tensor, acc_x: torch.Tensor, return_std: bool = False) -> dict[str, torch.Tensor]:
        """Differentiable predictions from raw encodings; see `EvaluatorNetwork.forward`.

        Parameters
        ----------
        layer_x : torch.Tensor
            ``(n, d_layer)`` from `encode_layers`.
        acc_x : torch.Tensor
            ``(n, d_acc)`` or ``(1, d_acc)`` from `encode_accelerators` or
            `encode_accelerators_soft`; the clock for ``latency_s`` is read from it.
        return_std : bool
            Add ``std_log_cycles``, ``std_log_latency_s``, ``std_log_energy_pj`` and
            ``std_log_area_mm2``: the calibrated standard deviation of each natural log
            (NaN for a single network), differentiable too.

        Returns
        -------
        dict of torch.Tensor, each ``(n,)``
            ``cycles``, ``latency_s``, ``energy_pj``, ``area_mm2``, ``feasible_logit`` and the
            natural logs ``log_cycles``, ``log_latency_s``, ``log_energy_pj``, ``log_area_mm2``
            (an ensemble's: the mean of its members' logs), and the std keys if asked.
        """
        out = self.network(layer_x, acc_x, return_spread=return_std)
        if return_std:
            std = {target: self._std(out, target) for target in TARGETS}
            for name in _LOG_NAME.values():
                out.pop(f"spread_{name}")
                out.pop(f"departure_{name}")
                out.pop(f"tie_{name}", None)
            out["std_log_cycles"] = std["latency"]
            out["std_log_latency_s"] = std["latency"]
            out["std_log_energy_pj"] = std["energy"]
            out["std_log_area_mm2"] = std["area"]
        return out

    @torch.no_grad()
    def predict(self, layers: Any, accelerator: Any = None, batch_size: int = 65536,
                return_std: bool = False) -> pd.DataFrame:
        """Predict the simulator's figures for layers on accelerators.

        ``predict(pairs)`` with one frame of layer and accelerator columns is the
        `evaluator.protocol.Predictor` interface, shared with the scikit-learn baselines.

        Parameters
        ----------
        layers : pandas.DataFrame or list of Layer
            The layers (DataFrame columns: the layer fields; others are ignored), or, without
            ``accelerator``, a frame of pairs (`evaluator.protocol.REQUIRED_PAIR_COLUMNS`).
        accelerator : Accelerator, dict, list or pandas.DataFrame, optional
            One accelerator for every layer, or one per layer (aligned by position).
        batch_size : int
            Pairs per forward pass.
        return_std : bool
            Add `STD_COLUMNS`: ``total_cycles_std``, ``latency_s_std``, ``energy_pj_std``,
            ``area_mm2_std``, the calibrated standard deviation of the natural log of each
            prediction (about its relative error: 0.05 is +-5% at one sigma; the band
            ``value * exp(+-2 std)`` held about 95% of the validation split's simulated values
            at calibration). NaN for a single network (``model.ensemble = 1``), which has no
            uncertainty.

        Returns
        -------
        pandas.DataFrame
            One row per layer (the layers' index when a DataFrame) with ``total_cycles``,
            ``latency_s`` (s), ``energy_pj``, ``area_mm2`` and ``p_feasible`` (0..1), then the
            std columns if asked. An ensemble's figures are the exponentials of the mean of
            its members' natural logs (geometric means).
        """
        if accelerator is None:
            accelerator = check_pairs(layers)
        layer_x = encode_layers(layers)  # (n, d_layer)
        n = layer_x.shape[0]
        acc_x = encode_accelerators(_accelerator_rows(accelerator))  # (1 or n, d_acc)
        if acc_x.shape[0] not in (1, n):
            raise SpaceError(f"accelerator: {acc_x.shape[0]} rows for {n} layers; expected 1 or {n}")
        if acc_x.shape[0] == 1:
            acc_x = acc_x.expand(n, -1)
        if return_std and self.ensemble < 2:
            warnings.warn("this evaluator is a single network (model.ensemble = 1): it has no uncertainty, its "
                          "*_std columns are NaN; train it with model.ensemble >= 2 for calibrated ones",
                          NoUncertaintyWarning, stacklevel=3)  # past torch.no_grad's wrapper
        names = [*PREDICTION_COLUMNS, *(STD_COLUMNS if return_std else ())]
        columns: dict[str, list[np.ndarray]] = {name: [] for name in names}
        for start in range(0, n, batch_size):
            out = self.network(layer_x[start:start + batch_size], acc_x[start:start + batch_size],
                               return_spread=return_std)
            columns["total_cycles"].append(out["cycles"].double().numpy())
            columns["latency_s"].append(out["latency_s"].double().numpy())
            columns["energy_pj"].append(out["energy_pj"].double().numpy())
            columns["area_mm2"].append(out["area_mm2"].double().numpy())
            columns["p_feasible"].append(torch.sigmoid(out["feasible_logit"]).double().numpy())
            # in float64, as `evaluator.validate.calibrate` fitted the scales
            terms = {key: value.double() for key, value in out.items() if key.startswith(("spread_", "departure_", "tie_"))}
            for name in STD_COLUMNS if return_std else ():
                columns[name].append(self._std(terms, _STD_TARGET[name]).numpy())
        index = layers.index if isinstance(layers, pd.DataFrame) else pd.RangeIndex(n)
        return pd.DataFrame(
            {name: np.concatenate(parts) if parts else np.empty(0) for name, parts in columns.items()},
            index=index,
        )


def _accelerator_rows(accelerator: Any) -> Any:
    """One accelerator as a one-row list, or the caller's rows as they are."""
    if isinstance(accelerator, Accelerator):
        return [accelerator]
    if isinstance(accelerator, dict) and all(np.ndim(accelerator.get(f)) == 0 for f in ACCELERATOR_FIELDS if f in accelerator):
        return [accelerator]
    return accelerator
