"""The mapper: candidate mappings (tile ladders x loop orders, capacity-checked) and choice.

Candidate order (it breaks ties, so it is part of the contract): loop orders in
`space.LOOP_ORDERS` order, then ``tile_p`` down its ladder (largest first), then ``tile_c``,
then ``tile_k``, each descending; candidates that break a capacity constraint are left out
(the relative order of the rest is unchanged).

A ladder for a dimension ``D`` is ``ceil(D / 4**j)`` for ``j = 0..4``, deduplicated, plus
``1``: at most 6 values, largest first.

Objectives (smaller is better): ``latency`` = (total_cycles, energy_pj), ``energy`` =
(energy_pj, total_cycles), ``edp`` = (energy_pj * total_cycles, total_cycles); remaining ties
go to the lowest candidate index.
"""

from __future__ import annotations

import numpy as np

from ..space import LOOP_ORDERS, Accelerator, Layer, Mapping, SpaceError
from .dataflows import DATAFLOW_CODES, rf_words_required
from .energy import BITS_PER_KB

OBJECTIVES: tuple[str, ...] = ("latency", "energy", "edp")
LADDER_STEPS = 5  # j = 0..4, plus 1: at most 6 values


def ladder(dim: int) -> list[int]:
    """Tile sizes tried for a dimension of size ``dim``, largest first."""
    values: list[int] = []
    for j in range(LADDER_STEPS):
        value = -(-dim // 4 ** j)
        if value not in values:
            values.append(value)
    if values[-1] != 1:
        values.append(1)
    return values


def half_buffer_words(size_kb, word_bits):
    """Words one half of a double-buffered buffer holds: ``floor(kb*8192/word_bits) // 2``."""
    return np.floor(np.asarray(size_kb, dtype=np.float64) * float(BITS_PER_KB)
                    / np.asarray(word_bits, dtype=np.float64)).astype(np.int64) // 2


def rf_words(rf_bytes, word_bits):
    """Words one PE's register file holds."""
    return (np.asarray(rf_bytes, dtype=np.int64) * 8) // np.asarray(word_bits, dtype=np.int64)


def ifmap_tile_words(tp, tc, in_h, in_w, stride, k_h):
    """Ifmap words of a tile: its input rows (halo included, padding not stored) x in_w x tc."""
    rows = np.minimum((np.asarray(tp, dtype=np.int64) - 1) * stride + k_h, in_h)
    return rows * in_w * np.asarray(tc, dtype=np.int64)


def filter_tile_words(tc, tk, k_h, k_w):
    """Filter words of a tile."""
    return np.asarray(k_h, dtype=np.int64) * k_w * tc * tk


def ofmap_tile_words(tp, tk, out_w):
    """Ofmap (partial-sum) words of a tile."""
    return np.asarray(tp, dtype=np.int64) * out_w * tk


def fits(layer: Layer, accelerator: Accelerator, tile_p: int, tile_c: int, tile_k: int) -> bool:
    """Whether full-size tiles fit half of each buffer and the RF holds what the dataflow needs."""
    word_bits = accelerator.word_bits
    if rf_words(accelerator.rf_bytes, word_bits) < rf_words_required(
            DATAFLOW_CODES[accelerator.dataflow], layer.k_w):
        return False
    return bool(
        ifmap_tile_words(tile_p, tile_c, layer.in_h, layer.in_w, layer.stride, layer.k_h)
        <= half_buffer_words(accelerator.ifmap_kb, word_bits)
        and filter_tile_words(tile_c, tile_k, layer.k_h, layer.k_w)
        <= half_buffer_words(accelerator.filter_kb, word_bits)
        and ofmap_tile_words(tile_p, tile_k, layer.out_w) <= half_buffer_words(accelerator.ofmap_kb, word_bits))


def all_mappings(layer: Layer) -> list[Mapping]:
    """Every mapping of the pruned space in candidate order, before capacity checks."""
    return [Mapping(order, tile_p, tile_c, tile_k)
            for order in LOOP_ORDERS
            for tile_p in ladder(layer.out_h)
            for tile_c in ladder(layer.in_c_per_group)
            for tile_k in ladder(layer.out_c_per_group)]


def candidate_mappings(layer: Layer, accelerator: Accelerator) -> list[Mapping]:
    """The mapper's candidates for a pair, in tie-breaking order (see module docstring).

    Parameters
    ----------
    layer : Layer
    accelerator : Accelerator

    Returns
    -------
    list of Mapping
        Capacity-feasible candidates; empty when the pair is unmappable.
    """
    return [m for m in all_mappings(layer) if fits(layer, accelerator, m.tile_p, m.tile_c, m.tile_k)]


def check_objective(objective: str) -> str:
    """Validate an objective name."""
    if objective not in OBJECTIVES:
        raise SpaceError(f"objective = {objective!r}: expected one of {list(OBJECTIVES)}")
    return objective


def objective_keys(objective: str, total_cycles, energy_pj):
    """(primary, secondary) keys to minimise, as arrays; the candidate index breaks ties."""
    if objective == "latency":
        return np.asarray(total_cycles), np.asarray(energy_pj)
    if objective == "energy":
        return np.asarray(energy_pj), np.asarray(total_cycles)
    return (np.asarray(energy_pj, dtype=np.float64) * np.asarray(total_cycles, dtype=np.float64),
            np.asarray(total_cycles))
