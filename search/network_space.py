"""The network search space: stages of searchable blocks and the layers each choice implies.

A ProxylessNAS / FBNet-style macro skeleton: a fixed stem (3x3 conv), stages of searchable
blocks, a fixed head (1x1 conv, global average pool, fully connected classifier). Every
block chooses one candidate operation:

- ``k{K}_e{E}``: an inverted-residual MBConv (MobileNet-v2): 1x1 expansion to ``E * in_c``
  channels, ``K x K`` depthwise conv (carrying the block's stride), 1x1 projection; each
  conv is followed by batch norm, and the first two by ReLU6. A residual connection is
  added when the block keeps its shape.
- ``skip``: the identity. Allowed only in blocks that keep their shape (stride 1, same
  width), as in ProxylessNAS; such blocks are removed from the derived network.

This module is pure Python (no torch): it is the geometry that both the supernet
(`search.supernet`) and the hardware cost (`search.cost`) read, so the layer shapes the
evaluator and the simulator see are the shapes the torch modules compute. Layer names are
the torch module names of the derived network (`search.supernet.ChildNet`), so that
`dataset_gen.torch_layers.layers_from_module` on a derived network returns the same list.

Precision (bitwidth co-search): every searchable block also chooses one precision of
``network.precision`` (bits, e.g. ``[4, 8, 16]``), which sets both ``w_bits`` and ``a_bits``
of every layer of the block (one choice per block: the block's three convs share a
precision, as in EDD; separate weight and activation choices would square the choices for
little gain on accelerators whose cost follows the wider operand). The fixed stem, head conv
and classifier run at ``network.fixed_bits`` (first and last layers are usually kept at high
precision). A precision is *a number of bits*, never 0: on an accelerator whose
``word_bits`` equals it, it costs what 0 ("the accelerator's word") costs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import pandas as pd

from dataset_gen.space import LAYER_FIELDS, PRECISION_BITS, Layer, SpaceError

__all__ = ["Candidate", "BlockSpec", "NetworkSpace", "parse_candidate", "SKIP", "SEARCH_BITS"]

SKIP = "skip"
# The precisions a network may use: `PRECISION_BITS` without 0 ("the accelerator's word"),
# which is a property of the accelerator, not a precision a layer can be trained at.
SEARCH_BITS: tuple[int, ...] = tuple(b for b in PRECISION_BITS if b > 0)
_MBCONV = re.compile(r"^k(\d+)_e(\d+)$")


@dataclass(frozen=True)
class Candidate:
    """One candidate operation of a searchable block (``kernel = 0`` for skip)."""

    name: str
    kernel: int = 0
    expansion: int = 0

    @property
    def is_skip(self) -> bool:
        return self.name == SKIP


def parse_candidate(name: str) -> Candidate:
    """Parse ``"k3_e6"`` (MBConv, kernel 3, expansion 6) or ``"skip"``.

    Raises
    ------
    SpaceError
        For any other spelling, or an even kernel (its "same" padding would be asymmetric).
    """
    if name == SKIP:
        return Candidate(SKIP)
    match = _MBCONV.match(str(name))
    if not match:
        raise SpaceError(f"network.candidates: {name!r} is not a candidate; expected 'k<K>_e<E>' "
                         "(e.g. 'k3_e6') or 'skip'")
    kernel, expansion = int(match.group(1)), int(match.group(2))
    if kernel % 2 == 0 or not 1 <= kernel <= 15:
        raise SpaceError(f"network.candidates: {name!r}: kernel must be odd, in [1, 15]")
    if not 1 <= expansion <= 16:
        raise SpaceError(f"network.candidates: {name!r}: expansion must be in [1, 16]")
    return Candidate(str(name), kernel, expansion)


@dataclass(frozen=True)
class BlockSpec:
    """A searchable block: its place, shape and the candidates it may choose."""

    index: int
    stage: int
    in_c: int
    out_c: int
    stride: int
    allowed: tuple[bool, ...]  # per NetworkSpace.candidates: False where skip cannot fit

    @property
    def name(self) -> str:
        return f"blocks.{self.index}"


def _positive_int(field: str, value: Any, high: int = 65536) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise SpaceError(f"network.{field} = {value!r}: expected an integer in [1, {high}]")
    return value


def _bits_list(value: Any) -> Any:
    """``network.precision`` as a tuple (a bare number is refused by `NetworkSpace`, naming it)."""
    if isinstance(value, (list, tuple)) or (hasattr(value, "__iter__") and not isinstance(value, (str, bytes))):
        return tuple(value)
    return value


@dataclass(frozen=True)
class NetworkSpace:
    """The supernet's skeleton and candidate list.

    Parameters
    ----------
    in_channels, num_classes : int
        Set by the data (1 and 10 for digits, 3 and 10 for CIFAR-10).
    stem_channels, stem_stride : int
        The fixed 3x3 stem conv.
    stages : tuple of (channels, blocks, stride)
        Searchable stages; the stride applies to each stage's first block.
    head_channels : int
        The fixed 1x1 conv before pooling.
    candidates : tuple of str
        Candidate names (`parse_candidate`), shared by every block.
    precision : tuple of int
        The precisions (bits) every block chooses from (`SEARCH_BITS`); one value fixes it.
        A block's choice sets ``w_bits`` and ``a_bits`` of all its layers.
    fixed_bits : int
        The precision of the fixed stem, head conv and classifier (`SEARCH_BITS`).
    """

    in_channels: int
    num_classes: int
    stem_channels: int
    stages: tuple[tuple[int, int, int], ...]
    head_channels: int
    candidates: tuple[str, ...]
    stem_stride: int = 1
    precision: tuple[int, ...] = (16,)
    fixed_bits: int = 16

    def __post_init__(self) -> None:
        _positive_int("in_channels", self.in_channels)
        _positive_int("num_classes", self.num_classes)
        _positive_int("stem_channels", self.stem_channels)
        _positive_int("head_channels", self.head_channels)
        _positive_int("stem_stride", self.stem_stride, 8)
        if not self.stages:
            raise SpaceError("network.stages: expected at least one stage {channels, blocks, stride}")
        for i, (channels, blocks, stride) in enumerate(self.stages):
            _positive_int(f"stages[{i}].channels", channels)
            _positive_int(f"stages[{i}].blocks", blocks, 64)
            _positive_int(f"stages[{i}].stride", stride, 8)
        if not self.candidates:
            raise SpaceError("network.candidates: expected at least one candidate")
        if len(set(self.candidates)) != len(self.candidates):
            raise SpaceError(f"network.candidates = {list(self.candidates)}: duplicates")
        parsed = [parse_candidate(name) for name in self.candidates]
        if all(c.is_skip for c in parsed):
            raise SpaceError("network.candidates: at least one MBConv candidate is needed besides skip")
        if isinstance(self.precision, (str, bytes, int)) or not self.precision:
            raise SpaceError(f"network.precision = {self.precision!r}: expected a non-empty list of bits, "
                             f"each one of {list(SEARCH_BITS)}")
        for bits in self.precision:
            if isinstance(bits, bool) or bits not in SEARCH_BITS:
                raise SpaceError(f"network.precision = {list(self.precision)}: {bits!r} is not a precision; "
                                 f"expected bits among {list(SEARCH_BITS)}")
        if len(set(self.precision)) != len(self.precision):
            raise SpaceError(f"network.precision = {list(self.precision)}: duplicates")
        object.__setattr__(self, "precision", tuple(int(b) for b in self.precision))
        if isinstance(self.fixed_bits, bool) or self.fixed_bits not in SEARCH_BITS:
            raise SpaceError(f"network.fixed_bits = {self.fixed_bits!r}: expected one of {list(SEARCH_BITS)}")
        object.__setattr__(self, "fixed_bits", int(self.fixed_bits))

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_config(cls, space: Mapping[str, Any], in_channels: int, num_classes: int) -> "NetworkSpace":
        """Build from a ``network`` config node plus the data's channels and classes."""
        required = ("stem_channels", "stem_stride", "stages", "head_channels", "candidates", "precision",
                    "fixed_bits")
        missing = [key for key in required if key not in space]
        if missing:
            raise SpaceError(f"network: missing key(s) {missing}; required: {list(required)}")
        stages = []
        for i, stage in enumerate(space["stages"]):
            try:
                stages.append((stage["channels"], stage["blocks"], stage["stride"]))
            except (KeyError, TypeError, AttributeError):
                raise SpaceError(f"network.stages[{i}] = {stage!r}: expected "
                                 "{channels: int, blocks: int, stride: int}") from None
        return cls(
            in_channels=in_channels, num_classes=num_classes,
            stem_channels=space["stem_channels"], stem_stride=space["stem_stride"],
            stages=tuple(stages), head_channels=space["head_channels"],
            candidates=tuple(str(c) for c in space["candidates"]),
            precision=_bits_list(space["precision"]), fixed_bits=space["fixed_bits"],
        )

    # ------------------------------------------------------------------ derived structure

    @property
    def parsed_candidates(self) -> tuple[Candidate, ...]:
        return tuple(parse_candidate(name) for name in self.candidates)

    @property
    def blocks(self) -> tuple[BlockSpec, ...]:
        blocks = []
        channels = self.stem_channels
        for stage, (out_c, count, stride) in enumerate(self.stages):
            for j in range(count):
                block_stride = stride if j == 0 else 1
                keeps_shape = block_stride == 1 and channels == out_c
                allowed = tuple(keeps_shape or not c.is_skip for c in self.parsed_candidates)
                blocks.append(BlockSpec(len(blocks), stage, channels, out_c, block_stride, allowed))
                channels = out_c
        return tuple(blocks)

    @property
    def num_blocks(self) -> int:
        return sum(count for _, count, _ in self.stages)

    @property
    def num_candidates(self) -> int:
        return len(self.candidates)

    @property
    def num_precisions(self) -> int:
        return len(self.precision)

    @property
    def last_channels(self) -> int:
        return self.stages[-1][0]

    def check_choice(self, choice: Sequence[int]) -> tuple[int, ...]:
        """Validate one candidate index per block; returns it as a tuple."""
        choice = tuple(int(c) for c in choice)
        if len(choice) != self.num_blocks:
            raise SpaceError(f"architecture: {len(choice)} choices for {self.num_blocks} blocks")
        for block, index in zip(self.blocks, choice):
            if not 0 <= index < self.num_candidates:
                raise SpaceError(f"architecture: block {block.index} choice {index}: expected 0..{self.num_candidates - 1}")
            if not block.allowed[index]:
                raise SpaceError(f"architecture: block {block.index} cannot be {self.candidates[index]!r} "
                                 "(its stride or width changes)")
        return choice

    def describe(self, choice: Sequence[int]) -> list[str]:
        """Candidate names of an architecture, block by block."""
        return [self.candidates[i] for i in self.check_choice(choice)]

    def check_precision(self, precision: Sequence[int] | None) -> tuple[int, ...]:
        """Validate one precision index (into ``precision``) per block; None means the first
        precision everywhere (the only one when the precision is fixed)."""
        if precision is None:
            return (0,) * self.num_blocks
        precision = tuple(int(p) for p in precision)
        if len(precision) != self.num_blocks:
            raise SpaceError(f"precision choice: {len(precision)} entries for {self.num_blocks} blocks")
        for block, index in enumerate(precision):
            if not 0 <= index < self.num_precisions:
                raise SpaceError(f"precision choice: block {block} index {index}: expected 0..{self.num_precisions - 1} "
                                 f"(network.precision = {list(self.precision)})")
        return precision

    def bits_of(self, precision: Sequence[int] | None) -> list[int]:
        """The bits of a precision choice (indices into ``precision``), block by block."""
        return [self.precision[i] for i in self.check_precision(precision)]

    # ------------------------------------------------------------------ layer geometry

    def _check_resolution(self, resolution: int, batch: int) -> None:
        _positive_int("deploy.resolution", resolution, 8192)
        _positive_int("deploy.batch", batch, 4096)

    def stem_layers(self, resolution: int, batch: int = 1) -> tuple[list[Layer], int]:
        """The stem conv at an input resolution; returns its layers and output size."""
        self._check_resolution(resolution, batch)
        stem = Layer(resolution, resolution, self.in_channels, self.stem_channels, 3, 3,
                     self.stem_stride, 1, 1, batch, self.fixed_bits, self.fixed_bits, name="stem.conv")
        return [stem], stem.out_h

    def block_sizes(self, resolution: int) -> list[int]:
        """The input spatial size of each block at an input resolution."""
        size = (resolution + 2 - 3) // self.stem_stride + 1
        sizes = []
        for block in self.blocks:
            sizes.append(size)
            size = (size - 1) // block.stride + 1  # "same" padding: ceil(size / stride)
        return sizes

    def candidate_layers(self, block: BlockSpec, candidate: int, size: int, batch: int = 1,
                         precision: int = 0) -> list[Layer]:
        """The conv layers of one candidate in one block, at input size ``size``, at the
        precision of index ``precision`` (into ``self.precision``; both ``w_bits`` and ``a_bits``)."""
        cand = self.parsed_candidates[candidate]
        if cand.is_skip:
            return []
        b = self.precision[precision]
        hidden = block.in_c * cand.expansion
        prefix = block.name
        dw_out = (size + 2 * (cand.kernel // 2) - cand.kernel) // block.stride + 1
        layers = []
        if cand.expansion != 1:
            layers.append(Layer(size, size, block.in_c, hidden, 1, 1, 1, 0, 1, batch, b, b, name=f"{prefix}.expand.conv"))
        layers.append(Layer(size, size, hidden, hidden, cand.kernel, cand.kernel, block.stride, cand.kernel // 2,
                            hidden, batch, b, b, name=f"{prefix}.depthwise.conv"))
        layers.append(Layer(dw_out, dw_out, hidden, block.out_c, 1, 1, 1, 0, 1, batch, b, b,
                            name=f"{prefix}.project.conv"))
        return layers

    def head_layers(self, size: int, batch: int = 1) -> list[Layer]:
        """The fixed head: a 1x1 conv, then (after global pooling) the classifier."""
        bits = self.fixed_bits
        return [
            Layer(size, size, self.last_channels, self.head_channels, 1, 1, 1, 0, 1, batch, bits, bits, name="head.conv"),
            Layer(1, 1, self.head_channels, self.num_classes, batch=batch, w_bits=bits, a_bits=bits, name="classifier"),
        ]

    def layer_table(self, resolution: int, batch: int = 1) -> pd.DataFrame:
        """Every layer any architecture of the space can contain, at one input resolution.

        Returns
        -------
        pandas.DataFrame
            One row per (block, candidate, precision, conv) plus the fixed stem and head
            layers: columns ``block`` (-1 for fixed layers), ``candidate`` (-1 for fixed),
            ``precision`` (index into ``self.precision``; -1 for fixed), ``name`` and the
            `LAYER_FIELDS` (``w_bits`` = ``a_bits`` = the row's bits). A network's layers are
            the fixed rows plus the rows of its chosen (candidate, precision) per block, in row
            order (which is execution order). Its expected cost weighs a row by
            ``p(candidate) * p(precision)`` of its block (exact: blocks are independent).
        """
        stem, _ = self.stem_layers(resolution, batch)
        sizes = self.block_sizes(resolution)
        rows: list[tuple[int, int, int, Layer]] = [(-1, -1, -1, layer) for layer in stem]
        for block, size in zip(self.blocks, sizes):
            for candidate in range(self.num_candidates):
                if block.allowed[candidate]:
                    for precision in range(self.num_precisions):
                        rows.extend((block.index, candidate, precision, layer)
                                    for layer in self.candidate_layers(block, candidate, size, batch, precision))
        final = (sizes[-1] - 1) // self.blocks[-1].stride + 1
        rows.extend((-1, -1, -1, layer) for layer in self.head_layers(final, batch))
        table = pd.DataFrame([{"block": b, "candidate": c, "precision": p, "name": layer.name, **layer.to_dict()}
                              for b, c, p, layer in rows])
        return table.astype({field: "int64" for field in ("block", "candidate", "precision", *LAYER_FIELDS)})

    def network_layers(self, choice: Sequence[int], resolution: int, batch: int = 1,
                       precision: Sequence[int] | None = None) -> list[Layer]:
        """The layers of one discrete architecture, in execution order, named as in ChildNet,
        at a precision choice (one index into ``self.precision`` per block; None: the first)."""
        choice = self.check_choice(choice)
        precision = self.check_precision(precision)
        stem, _ = self.stem_layers(resolution, batch)
        sizes = self.block_sizes(resolution)
        layers = list(stem)
        for block, size in zip(self.blocks, sizes):
            layers.extend(self.candidate_layers(block, choice[block.index], size, batch, precision[block.index]))
        final = (sizes[-1] - 1) // self.blocks[-1].stride + 1
        layers.extend(self.head_layers(final, batch))
        return layers

    def to_dict(self) -> dict[str, Any]:
        return {
            "in_channels": self.in_channels, "num_classes": self.num_classes,
            "stem_channels": self.stem_channels, "stem_stride": self.stem_stride,
            "stages": [{"channels": c, "blocks": n, "stride": s} for c, n, s in self.stages],
            "head_channels": self.head_channels, "candidates": list(self.candidates),
            "precision": list(self.precision), "fixed_bits": self.fixed_bits,
        }
