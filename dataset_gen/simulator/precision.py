"""A layer's precision on an accelerator: operand widths, MAC lanes and cost per MAC.

Every layer carries ``w_bits`` (weights) and ``a_bits`` (activations: inputs, outputs and
partial sums); 0 stands for the accelerator's ``word_bits`` (`Layer.bits_on`). The model
(docs/simulator.md, "Precision"):

- **Storage and traffic** hold operands at their own width: a buffer of ``kb`` KiB holds
  ``kb * 8192 / bits`` elements, DRAM moves ``elements * bits / 8`` bytes, and an SRAM or DRAM
  access costs energy per bit. Partial sums stay at ``a_bits`` (as they stayed at the word
  width before layers carried a precision: accumulator guard bits are not modelled).
- **A fixed-precision PE** (``pe_kind = "fixed"``) runs any layer up to ``word_bits`` with its
  ``word_bits`` MAC: one MAC per cycle, a full-width MAC's energy (data gating of the unused
  bits is not modelled).
- **A precision-scalable PE** (``pe_kind = "scalable"``, Bit Fusion: Sharma et al., ISCA 2018)
  splits its multiplier into ``(word_bits / w_bits) * (word_bits / a_bits)`` lanes that
  multiply pairs of narrow operands in the same cycle and sum them into one partial sum (a
  fused dot product along the input channels, as Bit Fusion's fused PEs do). The simulator
  runs such a layer as a *lane-packed layer*: ``lanes`` input channels of a group form one
  packed channel (``ceil(C / packed)`` packed channels of ``lanes`` channels each, the lanes
  spread evenly), whose elements are ``lanes * a_bits`` (inputs) and ``lanes * w_bits``
  (weights) wide; outputs keep ``a_bits``. A depthwise layer (one channel per group) gains
  no lanes. The energy per MAC scales with the bit product (Bit Fusion's BitBricks: a
  ``w x a`` product uses ``(w/2) * (a/2)`` 2-bit bricks), times `energy.FUSION_ENERGY_OVERHEAD`.
- **A layer wider than** ``word_bits`` does not run (infeasible, as an unmappable pair).
- **Register file and array**: a PE register holds the widest packed operand (capacity:
  ``rf_bytes * 8 // rf_word_bits``); one register access or array hop moves ``rf_access_bits``
  = the mean width of the three packed operands, and costs that fraction of a full-width
  access (``word_bits``).

At native precision (``w_bits = a_bits = word_bits``, or 0) every width is ``word_bits``, one
lane, and every count and energy is the one the simulator gave before layers carried a
precision.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from ..space import Accelerator, Layer
from . import energy

PE_KIND_CODES: dict[str, int] = {"fixed": 0, "scalable": 1}


class Widths(NamedTuple):
    """Per pair (arrays, or scalars for one pair): what the layer's precision implies."""

    fits: np.ndarray  # bool: both widths <= word_bits
    lanes: np.ndarray  # channels packed per element (1 unless scalable)
    packed_cg: np.ndarray  # packed input channels per group: ceil(cg / lanes)
    ifmap_bits: np.ndarray  # bits of one packed input element
    filter_bits: np.ndarray  # bits of one packed weight element
    ofmap_bits: np.ndarray  # bits of one output / partial sum
    rf_word_bits: np.ndarray  # the widest packed operand: sets the register file's capacity
    rf_access_bits: np.ndarray  # float: bits of one register access or array hop
    mac_pj: np.ndarray  # float: energy of one (real) MAC


def resolve(w_bits, a_bits, word_bits, pe_kind, cg) -> Widths:
    """The widths of layers (``w_bits``, ``a_bits``; 0 = ``word_bits``) on accelerators.

    Parameters
    ----------
    w_bits, a_bits, word_bits : int arrays (or ints)
    pe_kind : int array of `PE_KIND_CODES` values (or one int)
    cg : int array (or int)
        Input channels per group of each layer.
    """
    word_bits = np.asarray(word_bits, dtype=np.int64)
    w = np.where(np.asarray(w_bits) == 0, word_bits, np.asarray(w_bits, dtype=np.int64))
    a = np.where(np.asarray(a_bits) == 0, word_bits, np.asarray(a_bits, dtype=np.int64))
    fits = (w <= word_bits) & (a <= word_bits)
    scalable = np.asarray(pe_kind) == PE_KIND_CODES["scalable"]
    w_ok, a_ok = np.minimum(w, word_bits), np.minimum(a, word_bits)  # safe values where not fits
    lanes = np.where(scalable, (word_bits // w_ok) * (word_bits // a_ok), 1)
    cg = np.asarray(cg, dtype=np.int64)
    packed_cg = -(-cg // lanes)
    lanes = -(-cg // packed_cg)  # the lanes spread evenly over the packed channels
    ifmap_bits, filter_bits, ofmap_bits = lanes * a, lanes * w, a
    rf_word_bits = np.maximum(np.maximum(ifmap_bits, filter_bits), ofmap_bits)
    rf_access_bits = (ifmap_bits + filter_bits + ofmap_bits) / 3.0
    mac_full = energy.mac_pj_table(word_bits)
    mac_pj = np.where(scalable, mac_full * energy.FUSION_ENERGY_OVERHEAD * ((w_ok * a_ok) / (word_bits * word_bits)),
                      mac_full)
    return Widths(fits, lanes, packed_cg, ifmap_bits, filter_bits, ofmap_bits, rf_word_bits, rf_access_bits, mac_pj)


def pack(layer: Layer, accelerator: Accelerator) -> tuple[Layer, Widths]:
    """The lane-packed layer the engines simulate, and its widths (0-d arrays).

    At one lane (a fixed-precision PE, or a depthwise layer) the packed layer is ``layer``.
    """
    widths = resolve(layer.w_bits, layer.a_bits, accelerator.word_bits, PE_KIND_CODES[accelerator.pe_kind],
                     layer.in_c_per_group)
    packed_cg = int(widths.packed_cg)
    if packed_cg == layer.in_c_per_group:
        return layer, widths
    return dataclasses.replace(layer, in_c=layer.groups * packed_cg), widths
