"""The sampling-ranges schema: what a `space` config may say, checked before any work.

A space config (``conf/space/*.yaml``) gives, for every layer and accelerator field, the
values a sampler may draw. Each field takes one of these forms::

    word_bits: 16                         # fixed value
    w_bits: [4, 8, 16]                    # a layer's weight bits (0: the word width; optional)
    dataflow: [ws, os, rs]                # a choice list (drawn uniformly)
    dataflow: {choices: [ws, os, rs]}     # the same, spelled out
    pe_rows: {min: 8, max: 24}            # integers drawn uniformly in [min, max]
    in_c: {min: 3, max: 2048, log: true}  # log-uniform: sizes that span orders of magnitude
    ifmap_kb: {min: 8, max: 512, pow2: true}  # powers of two in [min, max], uniform exponent
    in_w: {same_as: in_h}                 # tie a field to its partner (square inputs, kernels)

``pad`` may also list ``same``: ``(kernel - 1) // 2``, as real networks pad. The layer part
also has ``kinds``, the weights of the layer kinds a random shape is drawn from (``conv``,
``depthwise``, ``grouped`` with ``groups`` drawn from its range, ``fc``: a 1x1 conv on a 1x1
input). Integer fields take integers; every bound must lie inside the hard limits of
`dataset_gen.space` (a value outside them is no design at all).

`parse_space` turns such a mapping into a `Space`; its `to_dict` is the canonical form that
`dataset_gen.space.space_hash` hashes, so two configs that mean the same space (a list and a
``choices`` mapping, a reordered key) get the same hash.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from dataset_gen.space import (
    ACCELERATOR_FIELDS,
    ACCELERATOR_LIMITS,
    DATAFLOWS,
    LAYER_FIELDS,
    LAYER_LIMITS,
    PE_KINDS,
    PRECISION_BITS,
    WORD_BITS,
    SpaceError,
    space_hash,
)

__all__ = ["Range", "Space", "parse_space", "LAYER_KINDS", "PAD_SAME"]

LAYER_KINDS: tuple[str, ...] = ("conv", "depthwise", "grouped", "fc")
PAD_SAME = -1  # how a drawn ``pad: same`` travels in integer arrays until the kernel is known

_INT_ACCELERATOR_FIELDS = ("pe_rows", "pe_cols", "rf_bytes", "word_bits")
_CATEGORICAL = {"dataflow": DATAFLOWS, "word_bits": WORD_BITS, "pe_kind": PE_KINDS, "w_bits": PRECISION_BITS,
                "a_bits": PRECISION_BITS}
_INT_CATEGORICAL = ("word_bits", "w_bits", "a_bits")
_TIES = {"in_w": "in_h", "k_w": "k_h", "a_bits": "w_bits"}  # field -> the partner it may follow with same_as
# Fields a space may leave out (spaces written before they existed): their value then.
_OPTIONAL_FIELDS = {"pe_kind": "fixed", "w_bits": 0, "a_bits": 0}
_RANGE_KEYS = ("min", "max", "log", "pow2")
_SPACE_KEYS = ("name", "description", "accelerator", "layer")


@dataclass(frozen=True)
class Range:
    """The values one field may take: a choice list, a numeric range, or a tie to a partner.

    Exactly one of ``choices``, (``low``, ``high``) or ``same_as`` is set. ``integer`` says
    whether drawn values are integers; ``log`` draws log-uniformly; ``pow2`` draws powers of
    two with a uniform exponent.
    """

    key: str
    integer: bool
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    pow2: bool = False
    same_as: str | None = None

    @property
    def is_fixed(self) -> bool:
        """True when the field can take one value only (it needs no sampling dimension)."""
        if self.same_as is not None:
            return True
        if self.choices is not None:
            return len(self.choices) == 1
        if self.pow2:
            return len(self._exponents()) == 1
        return self.low == self.high

    def _exponents(self) -> np.ndarray:
        return np.arange(math.ceil(math.log2(self.low) - 1e-12), math.floor(math.log2(self.high) + 1e-12) + 1)

    def from_unit(self, unit: np.ndarray) -> np.ndarray:
        """Map points of [0, 1) to values of this range (the inverse CDF of its distribution).

        Parameters
        ----------
        unit : numpy.ndarray
            Shape ``(n,)``, values in [0, 1).

        Returns
        -------
        numpy.ndarray
            Shape ``(n,)``: int64 for integer fields (``pad: same`` as `PAD_SAME`), float64
            for real ones, object (str) for the dataflow.
        """
        unit = np.clip(np.asarray(unit, dtype=np.float64), 0.0, np.nextafter(1.0, 0.0))
        if self.same_as is not None:
            raise SpaceError(f"{self.key}: a same_as field takes its partner's values")
        if self.choices is not None:
            index = np.minimum((unit * len(self.choices)).astype(np.int64), len(self.choices) - 1)
            if any(isinstance(choice, str) and choice != "same" for choice in self.choices):
                return np.asarray(self.choices, dtype=object)[index]  # the dataflow
            values = np.asarray([PAD_SAME if choice == "same" else choice for choice in self.choices])
            return values.astype(np.int64 if self.integer else np.float64)[index]
        if self.pow2:
            exponents = self._exponents()
            index = np.minimum((unit * len(exponents)).astype(np.int64), len(exponents) - 1)
            values = np.exp2(exponents[index].astype(np.float64))
        elif self.log:
            # integers: log-uniform over [low, high + 1) then floored, so each end keeps its share
            top = self.high + 1 if self.integer else self.high
            values = np.exp(math.log(self.low) + unit * (math.log(top) - math.log(self.low)))
        else:
            top = self.high + 1 if self.integer else self.high
            values = self.low + unit * (top - self.low)
        if self.integer:
            return np.clip(np.floor(values), self.low, self.high).astype(np.int64)
        return np.clip(values, self.low, self.high)

    def to_dict(self) -> Any:
        """The canonical form: ``{"choices": [...]}``, ``{"same_as": f}`` or a full range."""
        if self.same_as is not None:
            return {"same_as": self.same_as}
        if self.choices is not None:
            return {"choices": list(self.choices)}
        low, high = (int(self.low), int(self.high)) if self.integer else (float(self.low), float(self.high))
        return {"min": low, "max": high, "log": self.log, "pow2": self.pow2}

    def values_bound(self) -> tuple[float, float]:
        """Smallest and largest value this range can produce (``same`` pads count as 0)."""
        if self.choices is not None:
            numbers = [0 if choice == "same" else choice for choice in self.choices]
            if all(isinstance(number, (int, float)) for number in numbers):
                return min(numbers), max(numbers)
            raise SpaceError(f"{self.key}: a categorical field has no numeric bounds")
        if self.pow2:
            exponents = self._exponents()
            return 2.0 ** exponents[0], 2.0 ** exponents[-1]
        return self.low, self.high


@dataclass(frozen=True)
class Space:
    """A parsed, validated design space: a `Range` per field plus the layer-kind weights."""

    name: str
    accelerator: dict[str, Range]
    layer: dict[str, Range]
    kinds: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """The canonical description (what `hash` hashes and what datasets record)."""
        return {
            "accelerator": {field: self.accelerator[field].to_dict() for field in ACCELERATOR_FIELDS},
            "layer": {
                "kinds": {kind: self.kinds[kind] for kind in LAYER_KINDS},
                **{field: self.layer[field].to_dict() for field in LAYER_FIELDS},
            },
        }

    @property
    def hash(self) -> str:
        """`dataset_gen.space.space_hash` of the canonical description (names don't count)."""
        return space_hash(self.to_dict())

    @property
    def accelerator_dims(self) -> tuple[str, ...]:
        """The accelerator fields that vary, in schema order: one sampler dimension each."""
        return tuple(field for field in ACCELERATOR_FIELDS if not self.accelerator[field].is_fixed)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _number(key: str, value: Any, integer: bool, limits: tuple[float, float]) -> float | int:
    low, high = limits
    kind = "an integer" if integer else "a number"
    if not _is_number(value) or (integer and float(value) != int(value)) or math.isnan(float(value)):
        raise SpaceError(f"{key} = {value!r}: expected {kind} in [{low:g}, {high:g}]")
    if not low <= value <= high:
        raise SpaceError(f"{key} = {value!r}: outside the allowed range [{low:g}, {high:g}]")
    return int(value) if integer else float(value)


def _parse_choices(key: str, field: str, choices: Any, integer: bool, limits: tuple[float, float] | None) -> tuple:
    if isinstance(choices, (str, bytes)) or not hasattr(choices, "__iter__"):
        raise SpaceError(f"{key} = {choices!r}: expected a list of choices")
    choices = list(choices)
    if not choices:
        raise SpaceError(f"{key}: the choice list is empty; give at least one value")
    parsed = []
    for index, choice in enumerate(choices):
        where = f"{key}[{index}]"
        if field in _CATEGORICAL:
            allowed = _CATEGORICAL[field]
            if isinstance(choice, bool) or choice not in allowed:
                raise SpaceError(f"{where} = {choice!r}: unknown {field}; expected one of {list(allowed)}")
            parsed.append(int(choice) if field in _INT_CATEGORICAL else str(choice))
        elif field == "pad" and choice == "same":
            parsed.append("same")
        else:
            parsed.append(_number(where, choice, integer, limits))
    if len(set(parsed)) != len(parsed):
        raise SpaceError(f"{key} = {choices!r}: a choice is listed twice")
    return tuple(parsed)


def _parse_range(key: str, field: str, spec: Any, integer: bool, limits: tuple[float, float] | None) -> Range:
    if isinstance(spec, Mapping):
        spec = dict(spec)
        if "same_as" in spec:
            if set(spec) != {"same_as"}:
                raise SpaceError(f"{key}: same_as takes no other keys (got {sorted(spec)})")
            if _TIES.get(field) != spec["same_as"]:
                allowed = f"only same_as: {_TIES[field]}" if field in _TIES else "no same_as"
                raise SpaceError(f"{key}.same_as = {spec['same_as']!r}: {field} allows {allowed}")
            return Range(key, integer, same_as=spec["same_as"])
        if "choices" in spec:
            if set(spec) != {"choices"}:
                raise SpaceError(f"{key}: give either choices or min/max, not both (got {sorted(spec)})")
            return Range(key, integer, choices=_parse_choices(f"{key}.choices", field, spec["choices"], integer, limits))
        unknown = sorted(set(spec) - set(_RANGE_KEYS))
        if unknown:
            raise SpaceError(f"{key}.{unknown[0]}: unknown key; a range takes {list(_RANGE_KEYS)}, "
                             "or choices, or same_as")
        if field in _CATEGORICAL:
            raise SpaceError(f"{key}: {field} is categorical; give a choice list from {list(_CATEGORICAL[field])}")
        for bound in ("min", "max"):
            if spec.get(bound) is None:
                raise SpaceError(f"{key}.{bound}: missing; a range needs both min and max")
        low = _number(f"{key}.min", spec["min"], integer, limits)
        high = _number(f"{key}.max", spec["max"], integer, limits)
        if low > high:
            raise SpaceError(f"{key}: min = {low} > max = {high}: the range is empty")
        flags = {}
        for flag in ("log", "pow2"):
            value = spec.get(flag, False)
            if not isinstance(value, bool):
                raise SpaceError(f"{key}.{flag} = {value!r}: expected true or false")
            flags[flag] = value
        if (flags["log"] or flags["pow2"]) and low <= 0:
            raise SpaceError(f"{key}.min = {low}: a log or pow2 range needs min > 0")
        result = Range(key, integer, low=low, high=high, **flags)
        if flags["pow2"] and len(result._exponents()) == 0:
            raise SpaceError(f"{key}: pow2 range [{low}, {high}] holds no power of two")
        return result
    if isinstance(spec, (list, tuple)) or (hasattr(spec, "__iter__") and not isinstance(spec, (str, bytes))):
        return Range(key, integer, choices=_parse_choices(key, field, spec, integer, limits))
    if spec is None:
        raise SpaceError(f"{key}: no value; give a value, a choice list or a {{min, max}} range")
    return Range(key, integer, choices=_parse_choices(key, field, [spec], integer, limits))


def _parse_kinds(key: str, spec: Any) -> dict[str, float]:
    if not isinstance(spec, Mapping):
        raise SpaceError(f"{key} = {spec!r}: expected weights per layer kind, e.g. {{conv: 1, fc: 0.1}}")
    weights = {}
    for kind, weight in dict(spec).items():
        if kind not in LAYER_KINDS:
            raise SpaceError(f"{key}.{kind}: unknown layer kind; expected some of {list(LAYER_KINDS)}")
        if not _is_number(weight) or weight < 0 or math.isnan(weight):
            raise SpaceError(f"{key}.{kind} = {weight!r}: expected a weight >= 0")
        weights[kind] = float(weight)
    total = sum(weights.values())
    if total <= 0:
        raise SpaceError(f"{key}: the weights sum to 0; give at least one kind a positive weight")
    return {kind: round(weights.get(kind, 0.0) / total, 12) for kind in LAYER_KINDS}


def _check_fields(key: str, given: Mapping, expected: tuple[str, ...], extra: tuple[str, ...] = ()) -> None:
    unknown = sorted(set(given) - set(expected) - set(extra))
    if unknown:
        raise SpaceError(f"{key}.{unknown[0]}: unknown field; expected {list(extra) + list(expected)}")
    missing = [field for field in expected if field not in given]
    if missing:
        raise SpaceError(f"{key}: missing field(s) {missing}; every field needs a value, choices or a range")


def parse_space(config: Mapping[str, Any], key: str = "space") -> Space:
    """Validate a space description and build the `Space`.

    Parameters
    ----------
    config : mapping
        ``{name, accelerator: {field: spec}, layer: {kinds: {...}, field: spec}}`` with a spec
        for every field of `ACCELERATOR_FIELDS` and `LAYER_FIELDS` (see the module docstring).
    key : str
        The config path of ``config``, used in error messages (``space`` for ``dance-gen``).

    Returns
    -------
    Space

    Raises
    ------
    SpaceError
        Naming the first offending key (``space.accelerator.pe_rows: min = 32 > max = 16``).
    """
    if not isinstance(config, Mapping):
        raise SpaceError(f"{key} = {config!r}: expected a mapping with accelerator and layer")
    config = dict(config)
    unknown = sorted(set(config) - set(_SPACE_KEYS))
    if unknown:
        raise SpaceError(f"{key}.{unknown[0]}: unknown key; expected {list(_SPACE_KEYS)}")
    for part in ("accelerator", "layer"):
        if not isinstance(config.get(part), Mapping):
            raise SpaceError(f"{key}.{part}: missing or not a mapping of field ranges")

    accelerator_config = {**{f: v for f, v in _OPTIONAL_FIELDS.items() if f in ACCELERATOR_FIELDS},
                          **dict(config["accelerator"])}
    _check_fields(f"{key}.accelerator", accelerator_config, ACCELERATOR_FIELDS)
    accelerator = {}
    for field in ACCELERATOR_FIELDS:
        limits = ACCELERATOR_LIMITS.get(field)
        integer = field in _INT_ACCELERATOR_FIELDS
        parsed = _parse_range(f"{key}.accelerator.{field}", field, accelerator_config[field], integer, limits)
        if parsed.same_as is not None:
            raise SpaceError(f"{key}.accelerator.{field}: same_as is for layer fields only")
        accelerator[field] = parsed

    layer_config = {**{f: v for f, v in _OPTIONAL_FIELDS.items() if f in LAYER_FIELDS}, **dict(config["layer"])}
    _check_fields(f"{key}.layer", layer_config, LAYER_FIELDS, extra=("kinds",))
    if "kinds" not in layer_config:
        raise SpaceError(f"{key}.layer.kinds: missing; give the weights of the layer kinds, e.g. {{conv: 1}}")
    kinds = _parse_kinds(f"{key}.layer.kinds", layer_config["kinds"])
    layer = {
        field: _parse_range(f"{key}.layer.{field}", field, layer_config[field], True, LAYER_LIMITS[field])
        for field in LAYER_FIELDS
    }
    if kinds["grouped"] > 0 and layer["groups"].values_bound()[1] < 2:
        raise SpaceError(f"{key}.layer.groups: grouped layers have weight {kinds['grouped']:g} "
                         "but every groups value is 1; give values >= 2 or set kinds.grouped: 0")
    return Space(str(config.get("name", "")), accelerator, layer, kinds)
