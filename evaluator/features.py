"""Feature encoding: the one place that turns layers and accelerators into model inputs.

Training, prediction and the co-search all call these functions, so a feature means the
same thing everywhere. Encodings are *raw* (log2 sizes, one-hot categories); the evaluator
normalises them inside its module with statistics stored in the artifact.

Layer features (`LAYER_FEATURES`, shape ``(n, d_layer)``): log2 of every size field (``pad``
as ``log2(pad + 1)``), the derived output size, per-group channels, MACs, window, tensor
sizes (in words), a depthwise flag, and the precision: ``log2`` of ``w_bits`` and ``a_bits``
with a flag for 0 ("the accelerator's word width", resolved in `pair_features`). Layers from the search are discrete, so nothing here
needs to be differentiable w.r.t. them; float tensors still flow through torch ops.

Accelerator features (`ACCEL_FEATURES`, shape ``(n, d_acc)``): each feature depends on one
accelerator field only, so that `encode_accelerators_soft` can mix candidate values field by
field. Numeric fields are log2-scaled; ``dataflow`` is one-hot over `DATAFLOWS`, ``word_bits``
one-hot over `WORD_BITS` and ``pe_kind`` one-hot over `PE_KINDS` (categorical: the soft
encoding uses their probabilities as they are).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from dataset_gen.space import (
    ACCELERATOR_FIELDS,
    ACCELERATOR_LIMITS,
    DATAFLOWS,
    LAYER_DEFAULTS,
    LAYER_FIELDS,
    LAYER_LIMITS,
    PE_KINDS,
    PRECISION_BITS,
    PRECISION_FIELDS,
    WORD_BITS,
    Accelerator,
    Layer,
    SpaceError,
)
from dataset_gen.adapters.zigzag import DATAFLOW_UNROLLING  # tables only: ZigZag itself is imported when a pair runs
from evaluator.analytic import ANALYTIC_FEATURES, ANALYTIC_VERSION, analytic_estimates
from evaluator.rules import ceil_st, floor_st, fold_factors, fold_product, layer_widths


LAYER_FEATURES: tuple[str, ...] = (
    "log2_in_h", "log2_in_w", "log2_in_c", "log2_out_c", "log2_k_h", "log2_k_w",
    "log2_stride", "log2_pad_plus_1", "log2_groups", "log2_batch",
    "log2_out_h", "log2_out_w", "log2_in_c_per_group", "log2_out_c_per_group",
    "log2_window", "log2_out_pixels", "log2_macs",
    "log2_ifmap_words", "log2_filter_words", "log2_ofmap_words", "depthwise",
    "log2_w_bits", "w_bits_native", "log2_a_bits", "a_bits_native",
)

# Numeric accelerator fields and their log2 feature, in ACCEL_FEATURES order.
ACCEL_NUMERIC_FIELDS: tuple[str, ...] = (
    "pe_rows", "pe_cols", "rf_bytes", "ifmap_kb", "filter_kb", "ofmap_kb", "dram_bw", "freq_mhz",
)
ACCEL_CATEGORICAL_FIELDS: dict[str, tuple[Any, ...]] = {"dataflow": DATAFLOWS, "word_bits": WORD_BITS,
                                                         "pe_kind": PE_KINDS}
ACCEL_FEATURES: tuple[str, ...] = (
    *(f"log2_{field}" for field in ACCEL_NUMERIC_FIELDS),
    *(f"dataflow_{name}" for name in DATAFLOWS),
    *(f"word_bits_{bits}" for bits in WORD_BITS),
    *(f"pe_kind_{name}" for name in PE_KINDS),
)
# Accelerator fields a caller may leave out (frames written before they existed): their value.
ACCEL_OPTIONAL: dict[str, Any] = {"pe_kind": "fixed"}
FREQ_FEATURE_INDEX: int = ACCEL_FEATURES.index("log2_freq_mhz")

D_LAYER: int = len(LAYER_FEATURES)
D_ACC: int = len(ACCEL_FEATURES)

# Interactions of a layer with an array, computed from the two encodings (inside the model):
# how many folds a GEMM dimension needs on the array's rows and columns, the compute cycles
# of the whole (untiled) layer under each dataflow's fold model (docs/simulator.md, "Timing":
# SCALE-Sim's systolic folds for ws/os/is, the row-stationary passes for rs), and a roofline
# with the DRAM time. An MLP on log sizes finds linear combinations easily, but not these
# staircases and products; the mapper's tiling and the stalls are left for it to learn.
_FOLD_DIMS: tuple[str, ...] = (
    "window", "out_c_per_group", "out_pixels", "out_w", "out_h", "in_c_per_group", "k_h",
)
_ARRAY_SIDES: tuple[str, ...] = ("pe_rows", "pe_cols")
PAIR_FEATURES: tuple[str, ...] = (
    *(f"log2_folds_{dim}_on_{side}" for dim in _FOLD_DIMS for side in _ARRAY_SIDES),
    *(f"log2_untiled_cycles_{dataflow}" for dataflow in DATAFLOWS),
    *(f"log2_unrolled_cycles_{dataflow}" for dataflow in DATAFLOWS), "log2_unrolled_cycles",
    "log2_untiled_cycles", "log2_compute_bound_cycles", "log2_dram_bound_cycles", "log2_roofline_cycles",
    "log2_w_bits_on_acc", "log2_a_bits_on_acc", "log2_lanes",
    *ANALYTIC_FEATURES,
)
D_PAIR: int = len(PAIR_FEATURES)

# Encodings are computed in float64 and returned in float32: the soft encoding computes its
# per-value encodings the same way, so one-hot probabilities reproduce the hard encoding
# bit for bit.
_DTYPE = torch.float32


def feature_spec() -> dict[str, Any]:
    """The feature specification stored in every artifact (checked again on load)."""
    return {
        "layer_features": list(LAYER_FEATURES),
        "accel_features": list(ACCEL_FEATURES),
        "pair_features": list(PAIR_FEATURES),
        "analytic_version": ANALYTIC_VERSION,
        "dataflows": list(DATAFLOWS),
        "word_bits": list(WORD_BITS),
        "pe_kinds": list(PE_KINDS),
    }


# --------------------------------------------------------------------------------- layers


def _layer_columns(layers: Any) -> dict[str, torch.Tensor]:
    """Layer fields as float64 tensors, whatever container the caller used."""
    if isinstance(layers, Layer):
        layers = [layers]
    if isinstance(layers, pd.DataFrame):
        missing = [f for f in LAYER_FIELDS[:4] if f not in layers.columns]
        if missing:
            raise SpaceError(f"layers: missing column(s) {missing}; required: {list(LAYER_FIELDS[:4])}")
        n = len(layers)
        columns = {}
        for field in LAYER_FIELDS:
            if field in layers.columns:
                values = pd.to_numeric(layers[field], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            else:
                values = np.full(n, float(LAYER_DEFAULTS[field]))
            columns[field] = torch.tensor(values)
        return columns
    if isinstance(layers, Mapping):
        missing = [f for f in LAYER_FIELDS[:4] if f not in layers]
        if missing:
            raise SpaceError(f"layers: missing field(s) {missing}; required: {list(LAYER_FIELDS[:4])}")
        first = torch.as_tensor(layers["in_h"])
        n = first.reshape(-1).shape[0]
        columns = {}
        for field in LAYER_FIELDS:
            if field in layers:
                value = torch.as_tensor(layers[field])
                value = value.to(torch.float64) if not value.is_floating_point() else value.double()
                columns[field] = value.reshape(-1).expand(n) if value.numel() == 1 else value.reshape(-1)
            else:
                columns[field] = torch.full((n,), float(LAYER_DEFAULTS[field]), dtype=torch.float64)
        return columns
    if isinstance(layers, Iterable) and not isinstance(layers, (str, bytes)):
        layers = list(layers)
        if not all(isinstance(layer, Layer) for layer in layers):
            raise SpaceError("layers: expected a DataFrame, a dict of tensors or a list of Layer")
        return {
            field: torch.tensor([getattr(layer, field) for layer in layers], dtype=torch.float64)
            for field in LAYER_FIELDS
        }
    raise SpaceError(f"layers: expected a DataFrame, a dict of tensors or a list of Layer, got {type(layers).__name__}")


def _check_layer_ranges(columns: Mapping[str, torch.Tensor]) -> None:
    for field in LAYER_FIELDS:
        values = columns[field].detach()
        if values.numel() == 0:
            continue
        low, high = LAYER_LIMITS[field]
        bad = torch.isnan(values) | (values < low) | (values > high)
        if field in PRECISION_FIELDS:
            bad = bad | ~torch.isin(values, torch.tensor(PRECISION_BITS, dtype=values.dtype))
            if bool(bad.any()):
                row = int(torch.nonzero(bad)[0, 0])
                raise SpaceError(f"layer.{field} = {values[row].item()!r} (row {row}): expected one of "
                                 f"{list(PRECISION_BITS)} (0: the accelerator's word_bits)")
        if bool(bad.any()):
            row = int(torch.nonzero(bad)[0, 0])
            raise SpaceError(
                f"layer.{field} = {values[row].item()!r} (row {row}): expected an integer in [{low}, {high}]"
            )
    groups = columns["groups"].detach()
    for field in ("in_c", "out_c"):
        bad = torch.remainder(columns[field].detach(), groups) != 0
        if bool(bad.any()):
            row = int(torch.nonzero(bad)[0, 0])
            raise SpaceError(f"layer.groups = {groups[row].item():g} (row {row}): must divide {field}")


def encode_layers(layers: Any) -> torch.Tensor:
    """Encode conv layers as model inputs.

    Parameters
    ----------
    layers : pandas.DataFrame, list of Layer, Layer, or dict of tensors
        The `LAYER_FIELDS` (``in_h, in_w, in_c, out_c`` required; the others default as in
        `Layer`). Tensors may be integer or float, shape ``(n,)`` or scalars (broadcast).

    Returns
    -------
    torch.Tensor
        ``(n, len(LAYER_FEATURES))`` float32, raw (not normalised) features.

    Raises
    ------
    SpaceError
        A missing field or a value outside `LAYER_LIMITS`, naming the field and the row.
    """
    c = _layer_columns(layers)
    _check_layer_ranges(c)
    out_h = torch.floor((c["in_h"] + 2 * c["pad"] - c["k_h"]) / c["stride"]) + 1
    out_w = torch.floor((c["in_w"] + 2 * c["pad"] - c["k_w"]) / c["stride"]) + 1
    if bool((out_h < 1).any()) or bool((out_w < 1).any()):
        row = int(torch.nonzero((out_h < 1) | (out_w < 1))[0, 0])
        raise SpaceError(f"layer (row {row}): kernel larger than the padded input (k_h/k_w > in + 2*pad)")
    in_cg = c["in_c"] / c["groups"]
    out_cg = c["out_c"] / c["groups"]
    window = c["k_h"] * c["k_w"] * in_cg
    pixels = out_h * out_w
    macs = c["batch"] * pixels * c["out_c"] * window
    ifmap_words = c["batch"] * c["in_h"] * c["in_w"] * c["in_c"]
    filter_words = c["k_h"] * c["k_w"] * in_cg * c["out_c"]
    ofmap_words = c["batch"] * pixels * c["out_c"]
    depthwise = ((c["groups"] == c["in_c"]) & (c["groups"] == c["out_c"]) & (c["groups"] > 1)).to(torch.float64)
    log2 = torch.log2
    native = {field: (c[field] == 0).to(torch.float64) for field in PRECISION_FIELDS}
    features = torch.stack(
        [
            log2(c["in_h"]), log2(c["in_w"]), log2(c["in_c"]), log2(c["out_c"]),
            log2(c["k_h"]), log2(c["k_w"]), log2(c["stride"]), log2(c["pad"] + 1),
            log2(c["groups"]), log2(c["batch"]),
            log2(out_h), log2(out_w), log2(in_cg), log2(out_cg),
            log2(window), log2(pixels), log2(macs),
            log2(ifmap_words), log2(filter_words), log2(ofmap_words), depthwise,
            log2(torch.clamp(c["w_bits"], min=1.0)), native["w_bits"],
            log2(torch.clamp(c["a_bits"], min=1.0)), native["a_bits"],
        ],
        dim=1,
    )  # (n, d_layer)
    return features.to(_DTYPE)


# ---------------------------------------------------------------------------- accelerators


def _numeric_encoding(field: str, values: torch.Tensor) -> torch.Tensor:
    """log2 of a numeric accelerator field, checked against its hard limits."""
    values = values.to(torch.float64)
    low, high = ACCELERATOR_LIMITS[field]
    bad = torch.isnan(values) | (values < low) | (values > high)
    if bool(bad.any()):
        row = int(torch.nonzero(bad.reshape(-1))[0, 0])
        raise SpaceError(
            f"accelerator.{field} = {values.reshape(-1)[row].item()!r} (row {row}): expected a number in [{low}, {high}]"
        )
    return torch.log2(values)


def _category_index(field: str, values: Any) -> torch.Tensor:
    """Indices of categorical values (strings or numbers) in their choice list."""
    choices = ACCEL_CATEGORICAL_FIELDS[field]
    if isinstance(values, torch.Tensor) and field == "dataflow":
        # Integer dataflow tensors are already indices into DATAFLOWS.
        index = values.to(torch.int64).reshape(-1)
        if bool(((index < 0) | (index >= len(choices))).any()):
            raise SpaceError(f"accelerator.dataflow index out of range: expected 0..{len(choices) - 1} for {list(choices)}")
        return index
    array = np.asarray(values.cpu() if isinstance(values, torch.Tensor) else values).reshape(-1)
    lookup = {str(choice): i for i, choice in enumerate(choices)}
    if field == "word_bits":
        lookup.update({str(float(choice)): i for i, choice in enumerate(choices)})
    index = np.empty(len(array), dtype=np.int64)
    for i, value in enumerate(array):
        key = str(value.item() if isinstance(value, np.generic) else value)
        if key not in lookup:
            raise SpaceError(f"accelerator.{field} = {value!r} (row {i}): expected one of {list(choices)}")
        index[i] = lookup[key]
    return torch.from_numpy(index)


def _accelerator_columns(accels: Any) -> dict[str, Any]:
    """Accelerator fields as column arrays (numeric as float64 tensors)."""
    if isinstance(accels, (Accelerator, Mapping)) and not (
        isinstance(accels, Mapping) and any(_is_array(v) for v in accels.values())
    ):
        accels = [accels]
    if isinstance(accels, pd.DataFrame):
        absent = {f: v for f, v in ACCEL_OPTIONAL.items() if f not in accels.columns}
        if absent:
            accels = accels.assign(**absent)
        missing = [f for f in ACCELERATOR_FIELDS if f not in accels.columns]
        if missing:
            raise SpaceError(f"accelerators: missing column(s) {missing}; required: {list(ACCELERATOR_FIELDS)}")
        columns: dict[str, Any] = {}
        for field in ACCELERATOR_FIELDS:
            if field in ACCEL_CATEGORICAL_FIELDS:
                columns[field] = accels[field].to_numpy()
            else:
                numbers = pd.to_numeric(accels[field], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
                columns[field] = torch.tensor(numbers)
        return columns
    if isinstance(accels, Mapping):
        accels = {**ACCEL_OPTIONAL, **accels}
        missing = [f for f in ACCELERATOR_FIELDS if f not in accels]
        if missing:
            raise SpaceError(f"accelerators: missing field(s) {missing}; required: {list(ACCELERATOR_FIELDS)}")
        n = max(np.size(accels[f]) if not isinstance(accels[f], torch.Tensor) else accels[f].numel() for f in ACCELERATOR_FIELDS)
        columns = {}
        for field in ACCELERATOR_FIELDS:
            value = accels[field]
            if field in ACCEL_CATEGORICAL_FIELDS:
                if not isinstance(value, torch.Tensor):
                    value = np.asarray(value).reshape(-1)
                    value = np.repeat(value, n) if value.size == 1 else value
                else:
                    value = value.reshape(-1).expand(n) if value.numel() == 1 else value.reshape(-1)
                columns[field] = value
            else:
                tensor = torch.as_tensor(value).to(torch.float64).reshape(-1)
                columns[field] = tensor.expand(n) if tensor.numel() == 1 else tensor
        return columns
    if isinstance(accels, Iterable) and not isinstance(accels, (str, bytes)):
        rows = [a.to_dict() if isinstance(a, Accelerator) else {**ACCEL_OPTIONAL, **dict(a)} for a in accels]
        for i, row in enumerate(rows):
            missing = [f for f in ACCELERATOR_FIELDS if f not in row]
            if missing:
                raise SpaceError(f"accelerator (row {i}): missing field(s) {missing}")
        return _accelerator_columns(pd.DataFrame(rows, columns=list(ACCELERATOR_FIELDS)))
    raise SpaceError(
        f"accelerators: expected an Accelerator, a dict, a list or a DataFrame, got {type(accels).__name__}"
    )


def _is_array(value: Any) -> bool:
    return isinstance(value, (torch.Tensor, np.ndarray, list, tuple, pd.Series))


def encode_accelerators(accels: Any) -> torch.Tensor:
    """Encode accelerators as model inputs.

    Parameters
    ----------
    accels : Accelerator, dict, list of Accelerator/dict, pandas.DataFrame, or dict of arrays
        All `ACCELERATOR_FIELDS`. ``dataflow`` as names (or, in a dict of tensors, integer
        indices into `DATAFLOWS`); ``word_bits`` one of `WORD_BITS`.

    Returns
    -------
    torch.Tensor
        ``(n, len(ACCEL_FEATURES))`` float32: log2 of the numeric fields, then the dataflow
        one-hot (4 slots, `DATAFLOWS` order), then the word_bits one-hot (`WORD_BITS` order).

    Raises
    ------
    SpaceError
        A missing field, an unknown category or a value outside `ACCELERATOR_LIMITS`.
    """
    c = _accelerator_columns(accels)
    numeric = [_numeric_encoding(field, c[field]) for field in ACCEL_NUMERIC_FIELDS]  # each (n,)
    parts = [torch.stack(numeric, dim=1)]
    for field, choices in ACCEL_CATEGORICAL_FIELDS.items():
        index = _category_index(field, c[field])
        parts.append(torch.nn.functional.one_hot(index, len(choices)).to(torch.float64))
    return torch.cat(parts, dim=1).to(_DTYPE)  # (n, d_acc)


def encode_accelerators_soft(choices: Mapping[str, tuple[Sequence[Any], torch.Tensor]]) -> torch.Tensor:
    """Differentiable accelerator encoding from per-field probability distributions.

    Numeric fields contribute the expected encoded value ``sum_i p_i * log2(v_i)``;
    categorical fields (``dataflow``, ``word_bits``) contribute probabilities, placed in the
    slots of their one-hot encoding (values not listed get probability 0). With one-hot
    probabilities the result equals `encode_accelerators` of the chosen accelerator exactly.

    Parameters
    ----------
    choices : dict[str, tuple[values, probs]]
        One entry per `ACCELERATOR_FIELDS` name: ``values`` the candidate values (length
        ``n_values``) and ``probs`` a tensor ``(batch, n_values)`` or ``(n_values,)`` whose
        rows sum to 1. Batches of 1 broadcast against the others.

    Returns
    -------
    torch.Tensor
        ``(batch, len(ACCEL_FEATURES))`` float32, differentiable w.r.t. every ``probs``.
    """
    choices = {**{f: ([v], torch.ones(1)) for f, v in ACCEL_OPTIONAL.items()}, **choices}
    missing = [f for f in ACCELERATOR_FIELDS if f not in choices]
    unknown = [f for f in choices if f not in ACCELERATOR_FIELDS]
    if missing or unknown:
        raise SpaceError(
            f"encode_accelerators_soft: missing field(s) {missing}, unknown field(s) {unknown}; "
            f"expected exactly {list(ACCELERATOR_FIELDS)}"
        )
    per_field: dict[str, torch.Tensor] = {}
    for field in ACCELERATOR_FIELDS:
        entry = choices[field]
        if not isinstance(entry, (tuple, list)) or len(entry) != 2:
            raise SpaceError(f"encode_accelerators_soft: choices[{field!r}] must be a (values, probs) pair")
        values, probs = entry
        values = list(values.tolist() if isinstance(values, (torch.Tensor, np.ndarray)) else values)
        probs = torch.as_tensor(probs)
        if not probs.is_floating_point():
            probs = probs.to(_DTYPE)
        if probs.dim() == 1:
            probs = probs.unsqueeze(0)
        if probs.dim() != 2 or probs.shape[1] != len(values) or len(values) == 0:
            raise SpaceError(
                f"encode_accelerators_soft: choices[{field!r}] probs have shape {tuple(probs.shape)}, "
                f"expected (batch, {len(values)})"
            )
        sums = probs.detach().sum(dim=1)
        if bool(((sums - 1).abs() > 1e-3).any()) or bool((probs.detach() < 0).any()):
            raise SpaceError(f"encode_accelerators_soft: choices[{field!r}] probs must be non-negative and sum to 1 per row")
        if field in ACCEL_CATEGORICAL_FIELDS:
            index = _category_index(field, values)  # (n_values,)
            slots = torch.nn.functional.one_hot(index, len(ACCEL_CATEGORICAL_FIELDS[field])).to(probs.dtype)
            per_field[field] = probs @ slots  # (batch, n_slots)
        else:
            encoded = _numeric_encoding(field, torch.tensor(values, dtype=torch.float64))
            encoded = encoded.to(_DTYPE).to(probs.dtype)  # same rounding as the hard path
            per_field[field] = (probs * encoded).sum(dim=1, keepdim=True)  # (batch, 1)
    batch = max(t.shape[0] for t in per_field.values())
    for field, tensor in per_field.items():
        if tensor.shape[0] not in (1, batch):
            raise SpaceError(
                f"encode_accelerators_soft: choices[{field!r}] has batch {tensor.shape[0]}, others {batch}"
            )
    ordered = [per_field[f] for f in ACCEL_NUMERIC_FIELDS] + [per_field[f] for f in ACCEL_CATEGORICAL_FIELDS]
    return torch.cat([t.expand(batch, -1) for t in ordered], dim=1).to(_DTYPE)  # (batch, d_acc)


def _untiled_cycles(layer: dict[str, torch.Tensor], acc: dict[str, torch.Tensor]) -> torch.Tensor:
    """``(n, 4)`` fold-model demand rows of the whole layer as one tile, per dataflow (ws, os, is, rs).

    SCALE-Sim's fold model (no register-file blocking: the ``scalesim`` mapping's), on
    decoded sizes (`decode_layers`, `decode_accelerators`).
    """
    per_dataflow = [fold_product(fold_factors(name, layer, acc["pe_rows"], acc["pe_cols"], layer["out_h"],
                                              layer["out_w"], layer["in_c_per_group"], layer["out_c_per_group"]))
                    for name in DATAFLOWS]
    return torch.stack(per_dataflow, dim=1) * (layer["groups"] * layer["batch"]).unsqueeze(1)  # (n, 4)


# The layer's loop dimensions (ZigZag's names) as `decode_layers` gives them.
_LOOP_DIMS: dict[str, str] = {"K": "out_c_per_group", "C": "in_c_per_group", "OY": "out_h", "OX": "out_w",
                              "FY": "k_h", "FX": "k_w"}


def _unrolled_cycles(layer: dict[str, torch.Tensor], acc: dict[str, torch.Tensor]) -> torch.Tensor:
    """``(n, 4)`` cycles of the layer's MACs with whole loop dimensions unrolled on the array,
    per dataflow (ws, os, is, rs): ``groups * batch * prod_d ceil(D / unroll_d)``.

    The unrolling is the ``zigzag`` adapter's (`DATAFLOW_UNROLLING`: each array side takes
    its dimensions in turn, each ``min(D, PEs left)``), a loop-nest tool's view of our
    dataflows: no fill or drain, and a dimension that does not divide the side wastes the rest
    of it, where SCALE-Sim's fold model (`_untiled_cycles`) flattens the window or the output
    pixels onto the side. It is ZigZag's compute time (``ideal_temporal_cycle``) exactly.
    Decoded sizes, as `_untiled_cycles`.
    """
    per_dataflow = []
    for name in DATAFLOWS:
        unroll = {dim: torch.ones_like(acc["pe_rows"]) for dim in _LOOP_DIMS}
        for dims, side in zip(DATAFLOW_UNROLLING[name], (acc["pe_rows"], acc["pe_cols"])):
            left = side
            for dim in dims:
                factor = torch.minimum(layer[_LOOP_DIMS[dim]], left)
                unroll[dim] = unroll[dim] * factor
                left = floor_st(left / factor)
        cycles = layer["groups"] * layer["batch"]
        for dim, column in _LOOP_DIMS.items():
            cycles = cycles * ceil_st(layer[column] / unroll[dim])
        per_dataflow.append(cycles)
    return torch.stack(per_dataflow, dim=1)


def pair_features(layer_x: torch.Tensor, acc_x: torch.Tensor) -> torch.Tensor:
    """Layer-array interactions (`PAIR_FEATURES`) from raw encodings; differentiable.

    Parameters
    ----------
    layer_x : torch.Tensor
        ``(n, d_layer)`` from `encode_layers`.
    acc_x : torch.Tensor
        ``(n, d_acc)`` from `encode_accelerators` or `encode_accelerators_soft`.

    Returns
    -------
    torch.Tensor
        ``(n, len(PAIR_FEATURES))``, all log2: fold counts ``ceil(D / array side)``; the
        untiled layer's compute cycles under each dataflow and under the encoding's own
        (dataflow-probability weighted); MACs per PE; all tensor bytes per DRAM bandwidth;
        the larger of the last two. Ceil and floor pass gradients straight through.
    """
    def layer(name: str) -> torch.Tensor:
        return layer_x[:, LAYER_FEATURES.index(name)]

    def acc(name: str) -> torch.Tensor:
        return acc_x[:, ACCEL_FEATURES.index(name)]

    columns = []
    for dim in _FOLD_DIMS:
        for side in _ARRAY_SIDES:
            ratio = torch.exp2(layer(f"log2_{dim}") - acc(f"log2_{side}"))
            columns.append(torch.log2(ceil_st(ratio)))
    decoded_layer, decoded_acc = decode_layers(layer_x), decode_accelerators(acc_x)
    untiled = torch.log2(torch.clamp(_untiled_cycles(decoded_layer, decoded_acc), min=1.0))  # (n, 4)
    dataflow = acc_x[:, [ACCEL_FEATURES.index(f"dataflow_{name}") for name in DATAFLOWS]]  # (n, 4)
    chosen = (untiled * dataflow).sum(dim=1)
    unrolled = torch.log2(torch.clamp(_unrolled_cycles(decoded_layer, decoded_acc), min=1.0))  # (n, 4)
    unrolled_chosen = (unrolled * dataflow).sum(dim=1, keepdim=True)
    compute = layer("log2_macs") - acc("log2_pe_rows") - acc("log2_pe_cols")
    widths = layer_widths(decoded_layer, decoded_acc)  # expected over the PE kinds when soft
    bits = (torch.exp2(layer("log2_ifmap_words")) * widths["a_bits"] + torch.exp2(layer("log2_filter_words"))
            * widths["w_bits"] + torch.exp2(layer("log2_ofmap_words")) * widths["a_bits"])
    dram = torch.log2(bits / 8) - acc("log2_dram_bw")
    roofline = torch.maximum(chosen, dram)
    precision = torch.stack([torch.log2(widths["w_bits"]), torch.log2(widths["a_bits"]), torch.log2(widths["lanes"])],
                            dim=1)
    estimates = analytic_estimates(decoded_layer, decoded_acc)  # (n, len(ANALYTIC_FEATURES))
    return torch.cat([torch.stack(columns, dim=1), untiled, unrolled, unrolled_chosen,
                      torch.stack([chosen, compute, dram, roofline], dim=1), precision, estimates], dim=1)  # (n, d_pair)


def decode_layers(layer_x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Exact layer sizes back from the log2 encoding (layers are discrete: rounded)."""
    names = ("in_h", "in_w", "out_h", "out_w", "in_c_per_group", "out_c_per_group", "k_h", "k_w",
             "stride", "groups", "batch", "macs")
    decoded = {name: torch.round(torch.exp2(layer_x[:, LAYER_FEATURES.index(f"log2_{name}")])) for name in names}
    for field in PRECISION_FIELDS:  # 0 where the layer runs at the accelerator's word width
        bits = torch.round(torch.exp2(layer_x[:, LAYER_FEATURES.index(f"log2_{field}")]))
        decoded[field] = torch.where(layer_x[:, LAYER_FEATURES.index(f"{field}_native")] > 0.5,
                                     torch.zeros_like(bits), bits)
    return decoded


def decode_accelerators(acc_x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Accelerator values back from an encoding (soft ones give geometric means)."""
    decoded = {field: torch.exp2(acc_x[:, ACCEL_FEATURES.index(f"log2_{field}")]) for field in ACCEL_NUMERIC_FIELDS}
    bits = acc_x[:, [ACCEL_FEATURES.index(f"word_bits_{b}") for b in WORD_BITS]]
    decoded["word_bits_onehot"] = bits
    decoded["word_bits"] = bits @ torch.tensor([float(b) for b in WORD_BITS], dtype=acc_x.dtype)
    decoded["dataflow"] = acc_x[:, [ACCEL_FEATURES.index(f"dataflow_{d}") for d in DATAFLOWS]]
    decoded["pe_kind"] = acc_x[:, [ACCEL_FEATURES.index(f"pe_kind_{k}") for k in PE_KINDS]]
    return decoded


def freq_mhz_from_encoding(acc_x: torch.Tensor) -> torch.Tensor:
    """The clock (MHz) implied by an accelerator encoding (raw, not normalised): ``2**x``."""
    return torch.exp2(acc_x[..., FREQ_FEATURE_INDEX])


__all__ = [
    "LAYER_FEATURES", "ACCEL_FEATURES", "ACCEL_NUMERIC_FIELDS", "ACCEL_CATEGORICAL_FIELDS",
    "D_LAYER", "D_ACC", "FREQ_FEATURE_INDEX", "encode_layers", "encode_accelerators",
    "encode_accelerators_soft", "freq_mhz_from_encoding", "feature_spec", "PAIR_FEATURES", "D_PAIR",
    "pair_features",
]
