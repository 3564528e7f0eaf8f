"""The design space: layer and accelerator schemas, mappings, and their validation.

`Layer`, `Accelerator` and `Mapping` hold data and check it; they have no behaviour beyond
derived sizes. Names and units are used unchanged as Parquet columns (docs/simulator.md).

Loop-dimension vocabulary (used everywhere in the simulator): a conv layer is, per group,
a GEMM over ``out_h * out_w`` output pixels (per image), a window of ``k_h * k_w * in_c /
groups`` inputs and ``out_c / groups`` filters. The mapper tiles three of its loops:
``p`` (output rows), ``c`` (input channels of one group) and ``k`` (output channels of one
group); ``g`` (groups) and ``n`` (batch) are always the two outermost loops.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping as MappingType

from dataset_gen.common.errors import UserError

DATAFLOWS: tuple[str, ...] = ("ws", "os", "is", "rs")
WORD_BITS: tuple[int, ...] = (8, 16, 32)
# A layer's operand precision (bits of its weights, of its activations): a power of two up to
# the widest word; 0 means "the accelerator's word_bits" (what every layer ran at before
# layers carried their precision, and what a file without these fields gets).
PRECISION_BITS: tuple[int, ...] = (0, 2, 4, 8, 16, 32)
# What the PEs' MACs support: "fixed" runs any precision up to word_bits at word_bits' cost
# and speed; "scalable" is a Bit Fusion-style array (Sharma et al., ISCA 2018) whose
# multipliers split into (word_bits / w_bits) * (word_bits / a_bits) narrower lanes.
PE_KINDS: tuple[str, ...] = ("fixed", "scalable")
LOOP_ORDERS: tuple[str, ...] = ("pck", "pkc", "cpk", "ckp", "kpc", "kcp")
MAPPING_KINDS: tuple[str, ...] = ("search", "scalesim")

LAYER_FIELDS: tuple[str, ...] = (
    "in_h", "in_w", "in_c", "out_c", "k_h", "k_w", "stride", "pad", "groups", "batch", "w_bits", "a_bits",
)
PRECISION_FIELDS: tuple[str, ...] = ("w_bits", "a_bits")
ACCELERATOR_FIELDS: tuple[str, ...] = (
    "pe_rows", "pe_cols", "dataflow", "rf_bytes", "ifmap_kb", "filter_kb", "ofmap_kb",
    "dram_bw", "word_bits", "freq_mhz", "pe_kind",
)
MAPPING_FIELDS: tuple[str, ...] = ("map_kind", "map_order", "map_tile_p", "map_tile_q", "map_tile_c", "map_tile_k")

# Hard validity limits (not sampling ranges: those live in conf/space/). A value outside
# these is not a design at all; a value inside may still be unmappable (feasible = False).
LAYER_LIMITS: dict[str, tuple[int, int]] = {
    "in_h": (1, 8192), "in_w": (1, 8192), "in_c": (1, 65536), "out_c": (1, 65536),
    "k_h": (1, 64), "k_w": (1, 64), "stride": (1, 64), "pad": (0, 64),
    "groups": (1, 65536), "batch": (1, 4096), "w_bits": (0, 32), "a_bits": (0, 32),
}
ACCELERATOR_LIMITS: dict[str, tuple[float, float]] = {
    "pe_rows": (1, 4096), "pe_cols": (1, 4096), "rf_bytes": (1, 1 << 20),
    "ifmap_kb": (0.0625, 1 << 20), "filter_kb": (0.0625, 1 << 20), "ofmap_kb": (0.0625, 1 << 20),
    "dram_bw": (0.001, 1 << 20), "freq_mhz": (1, 1e5),
}
_ACCELERATOR_INT_FIELDS = ("pe_rows", "pe_cols", "rf_bytes", "word_bits")
# The one table of the optional layer fields' values when a source leaves them out (a
# network JSON, a --layer spec, a CSV of layer fields); the first four fields are required.
LAYER_DEFAULTS: dict[str, int] = {"k_h": 1, "k_w": 1, "stride": 1, "pad": 0, "groups": 1, "batch": 1,
                                  "w_bits": 0, "a_bits": 0}


class SpaceError(UserError):
    """A layer, accelerator, mapping or range that lies outside the design space."""


def _check_int(owner: str, field: str, value: Any, low: int, high: int, where: str = "") -> int:
    # numbers.Integral covers numpy integers; whole floats (e.g. from YAML or pandas) pass too
    whole_float = isinstance(value, float) and value.is_integer()
    if isinstance(value, bool) or not (isinstance(value, numbers.Integral) or whole_float):
        raise SpaceError(f"{owner}.{field} = {value!r}{where}: expected an integer in [{low}, {high}]")
    value = int(value)
    if not low <= value <= high:
        raise SpaceError(f"{owner}.{field} = {value}{where}: expected an integer in [{low}, {high}]")
    return value


def _check_float(owner: str, field: str, value: Any, low: float, high: float, where: str = "") -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SpaceError(f"{owner}.{field} = {value!r}{where}: expected a number in [{low}, {high}]") from None
    if not (low <= number <= high) or math.isnan(number):
        raise SpaceError(f"{owner}.{field} = {value!r}{where}: expected a number in [{low}, {high}]")
    return number


@dataclass(frozen=True)
class Layer:
    """A conv2d layer (a fully connected layer is a 1x1 conv on a 1x1 input).

    Sizes are in elements; ``groups = in_c = out_c`` is depthwise. ``w_bits`` and
    ``a_bits`` are the precision of the weights and of the activations (inputs, outputs and
    partial sums), one of `PRECISION_BITS`; 0 runs the layer at the accelerator's
    ``word_bits`` (`Layer.bits_on`).
    """

    in_h: int
    in_w: int
    in_c: int
    out_c: int
    k_h: int = LAYER_DEFAULTS["k_h"]
    k_w: int = LAYER_DEFAULTS["k_w"]
    stride: int = LAYER_DEFAULTS["stride"]
    pad: int = LAYER_DEFAULTS["pad"]
    groups: int = LAYER_DEFAULTS["groups"]
    batch: int = LAYER_DEFAULTS["batch"]
    w_bits: int = LAYER_DEFAULTS["w_bits"]
    a_bits: int = LAYER_DEFAULTS["a_bits"]
    name: str = dataclasses.field(default="", compare=False)

    def __post_init__(self) -> None:
        where = f" (layer {self.name!r})" if self.name else ""
        for field in LAYER_FIELDS:
            low, high = LAYER_LIMITS[field]
            object.__setattr__(self, field, _check_int("layer", field, getattr(self, field), low, high, where))
        for field in PRECISION_FIELDS:
            if getattr(self, field) not in PRECISION_BITS:
                raise SpaceError(f"layer.{field} = {getattr(self, field)}{where}: expected one of "
                                 f"{list(PRECISION_BITS)} (0: the accelerator's word_bits)")
        if self.in_c % self.groups or self.out_c % self.groups:
            raise SpaceError(
                f"layer.groups = {self.groups}{where}: must divide in_c = {self.in_c} and out_c = {self.out_c}"
            )
        if self.k_h > self.in_h + 2 * self.pad:
            raise SpaceError(
                f"layer.k_h = {self.k_h}{where}: must be at most in_h + 2*pad = {self.in_h + 2 * self.pad}"
            )
        if self.k_w > self.in_w + 2 * self.pad:
            raise SpaceError(
                f"layer.k_w = {self.k_w}{where}: must be at most in_w + 2*pad = {self.in_w + 2 * self.pad}"
            )

    @classmethod
    def fully_connected(cls, in_features: int, out_features: int, batch: int = 1, name: str = "") -> "Layer":
        return cls(1, 1, in_features, out_features, batch=batch, name=name)

    @property
    def out_h(self) -> int:
        return (self.in_h + 2 * self.pad - self.k_h) // self.stride + 1

    @property
    def out_w(self) -> int:
        return (self.in_w + 2 * self.pad - self.k_w) // self.stride + 1

    @property
    def in_c_per_group(self) -> int:
        return self.in_c // self.groups

    @property
    def out_c_per_group(self) -> int:
        return self.out_c // self.groups

    @property
    def macs(self) -> int:
        return (self.batch * self.out_h * self.out_w * self.out_c
                * self.in_c_per_group * self.k_h * self.k_w)

    def bits_on(self, word_bits: int) -> tuple[int, int]:
        """``(w_bits, a_bits)`` on an accelerator of ``word_bits`` (0 resolved to it)."""
        return (self.w_bits or int(word_bits), self.a_bits or int(word_bits))

    def to_dict(self) -> dict[str, int]:
        return {field: getattr(self, field) for field in LAYER_FIELDS}


@dataclass(frozen=True)
class Accelerator:
    """A spatial PE array with a per-PE register file and three double-buffered SRAMs.

    ``rf_bytes`` is per PE; buffers are in KiB (the whole buffer, both halves of the double
    buffer); ``dram_bw`` is in bytes per cycle; ``freq_mhz`` converts cycles to seconds.
    ``word_bits`` is the widest precision the MACs take; ``pe_kind`` (`PE_KINDS`) says whether
    a narrower layer runs faster and cheaper on them ("scalable") or not ("fixed").
    """

    pe_rows: int = 16
    pe_cols: int = 16
    dataflow: str = "ws"
    rf_bytes: int = 64
    ifmap_kb: float = 64.0
    filter_kb: float = 64.0
    ofmap_kb: float = 64.0
    dram_bw: float = 16.0
    word_bits: int = 16
    freq_mhz: float = 500.0
    pe_kind: str = "fixed"

    def __post_init__(self) -> None:
        if self.dataflow not in DATAFLOWS:
            raise SpaceError(f"accelerator.dataflow = {self.dataflow!r}: expected one of {list(DATAFLOWS)}")
        if self.pe_kind not in PE_KINDS:
            raise SpaceError(f"accelerator.pe_kind = {self.pe_kind!r}: expected one of {list(PE_KINDS)}")
        if self.word_bits not in WORD_BITS and not (
            isinstance(self.word_bits, (int, float)) and int(self.word_bits) in WORD_BITS
        ):
            raise SpaceError(f"accelerator.word_bits = {self.word_bits!r}: expected one of {list(WORD_BITS)}")
        object.__setattr__(self, "word_bits", int(self.word_bits))
        for field, (low, high) in ACCELERATOR_LIMITS.items():
            if field in _ACCELERATOR_INT_FIELDS:
                value = _check_int("accelerator", field, getattr(self, field), int(low), int(high))
            else:
                value = _check_float("accelerator", field, getattr(self, field), low, high)
            object.__setattr__(self, field, value)

    @property
    def num_pes(self) -> int:
        return self.pe_rows * self.pe_cols

    @property
    def word_bytes(self) -> float:
        return self.word_bits / 8

    def to_dict(self) -> dict[str, Any]:
        return {field: getattr(self, field) for field in ACCELERATOR_FIELDS}


@dataclass(frozen=True)
class Mapping:
    """How one layer runs on one accelerator: DRAM-level tile sizes and loop order.

    ``order`` names the three tiled loops outer to inner (e.g. ``"pkc"``: output tiles
    outermost, input-channel tiles innermost); ``g`` and ``n`` always lie outside them.
    ``tile_p`` is in output rows, ``tile_c`` and ``tile_k`` in channels of one group.
    ``tile_q`` is in output columns: ``0`` (the default) or ``>= out_w`` means whole rows;
    a *width tile* (``tile_q < out_w``) needs ``tile_p = 1`` and a ``tile_q`` that divides
    ``out_w`` (checked when a layer is simulated), and the ``p`` loop then steps through
    ``out_h * out_w / tile_q`` row segments.
    ``kind = "scalesim"`` is SCALE-Sim's fixed mapping (the whole layer as one tile per image
    and group, buffer capacities not enforced).
    """

    order: str
    tile_p: int
    tile_c: int
    tile_k: int
    kind: str = "search"
    tile_q: int = 0

    def __post_init__(self) -> None:
        if self.order not in LOOP_ORDERS:
            raise SpaceError(f"mapping.order = {self.order!r}: expected one of {list(LOOP_ORDERS)}")
        if self.kind not in MAPPING_KINDS:
            raise SpaceError(f"mapping.kind = {self.kind!r}: expected one of {list(MAPPING_KINDS)}")
        for field in ("tile_p", "tile_c", "tile_k"):
            object.__setattr__(self, field, _check_int("mapping", field, getattr(self, field), 1, 1 << 20))
        object.__setattr__(self, "tile_q", _check_int("mapping", "tile_q", self.tile_q, 0, 1 << 20))

    def width_tile(self, out_w: int) -> int:
        """Output columns of one tile for a layer ``out_w`` wide (``out_w`` for whole rows).

        Raises SpaceError when a width tile breaks its rules (see the class docstring).
        """
        if self.tile_q == 0 or self.tile_q >= out_w:
            return out_w
        if self.tile_p != 1 or out_w % self.tile_q:
            raise SpaceError(f"mapping.tile_q = {self.tile_q}: a width tile (tile_q < out_w = {out_w}) needs "
                             f"tile_p = 1 (got {self.tile_p}) and must divide out_w")
        return self.tile_q

    def to_dict(self) -> dict[str, Any]:
        return {"map_kind": self.kind, "map_order": self.order, "map_tile_p": self.tile_p,
                "map_tile_q": self.tile_q, "map_tile_c": self.tile_c, "map_tile_k": self.tile_k}


def layer_from_mapping(values: MappingType[str, Any], where: str = "") -> Layer:
    """Build a `Layer` from any mapping with the layer fields (extra keys are ignored)."""
    missing = [field for field in LAYER_FIELDS if field not in values and field not in LAYER_DEFAULTS]
    if missing:
        raise SpaceError(f"layer{where}: missing field(s) {missing}; required: {list(LAYER_FIELDS[:4])}")
    kwargs = {field: values[field] for field in LAYER_FIELDS if field in values}
    try:
        return Layer(**kwargs, name=str(values.get("name", values.get("layer", ""))) or "")
    except SpaceError as error:
        raise SpaceError(f"{error}{where}") from None


def accelerator_from_mapping(values: MappingType[str, Any], where: str = "") -> Accelerator:
    """Build an `Accelerator` from any mapping with accelerator fields (defaults fill gaps)."""
    kwargs = {field: values[field] for field in ACCELERATOR_FIELDS if field in values}
    try:
        return Accelerator(**kwargs)
    except SpaceError as error:
        raise SpaceError(f"{error}{where}") from None


def space_hash(space: MappingType[str, Any]) -> str:
    """A stable 16-hex-digit hash of a design-space description (ranges and choices)."""
    canonical = json.dumps(space, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
