"""The mapper: candidate mappings (tile ladders x loop orders, capacity-checked) and choice.

Candidate order (it breaks ties, so it is part of the contract): loop orders in
`space.LOOP_ORDERS` order, then the output tile down `spatial_tiles` (row tiles, largest
first, then width tiles, largest first), then ``tile_c``, then ``tile_k``, each descending;
candidates that break a capacity constraint are left out (the relative order of the rest is
unchanged).

Ladders (at most `SLOTS` values each, largest first, deduplicated, ``1`` always included):

- channels (``tile_c``, ``tile_k``): ``ceil(D / 4**j)`` for ``j = 0..4``, then ``1``;
- output rows (``tile_p``, whole rows): ``ceil(P / 4**j)`` for ``j = 0..4``, then ``1``;
- width tiles (one output row cut in ``Q / tile_q`` equal segments): for ``j = 1, 2`` the
  largest divisor of ``Q`` not above ``Q / 2**j``, when it is below ``Q`` and not yet listed.

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
# Ladder steps: powers of 4, as before width tiles existed. Powers of 2 (9 values a ladder)
# moved more than 5% more DRAM words than ZigZag on 14.6% of the ZigZag fixture's pairs
# instead of 16.0%, at a third of the fast engine's speed (benchmarks/memory_vs_zigzag.py,
# benchmarks/simulator.py).
CHANNEL_FACTOR, CHANNEL_STEPS = 4, 5  # ceil(D / 4**j), j = 0..4, then 1
ROW_FACTOR, ROW_STEPS = 4, 5  # ceil(P / 4**j), j = 0..4, then 1
WIDTH_STEPS = (1, 2)  # width tiles near Q/2 and Q/4
SLOTS = max(CHANNEL_STEPS, ROW_STEPS + len(WIDTH_STEPS)) + 1  # values per ladder at most (every dimension)


def _ladder(dim: int, steps: int, factor: int) -> list[int]:
    values: list[int] = []
    for j in range(steps):
        value = -(-dim // factor ** j)
        if value not in values:
            values.append(value)
    if values[-1] != 1:
        values.append(1)
    return values


def ladder(dim: int) -> list[int]:
    """Channel tile sizes tried for a dimension of size ``dim``, largest first."""
    return _ladder(dim, CHANNEL_STEPS, CHANNEL_FACTOR)


def largest_divisor_at_most(value: int, limit: int) -> int:
    """The largest divisor of ``value`` that is ``<= limit`` (``limit >= 1``)."""
    for divisor in range(max(1, min(limit, value)), 0, -1):
        if value % divisor == 0:
            return divisor
    return 1


def spatial_tiles(out_h: int, out_w: int) -> list[tuple[int, int]]:
    """Output tiles ``(rows, columns)`` tried for a layer, in candidate order.

    Row tiles ``(tp, out_w)`` down the row ladder, then width tiles ``(1, tq)`` (see the
    module docstring); at most `SLOTS`.
    """
    tiles = [(tp, out_w) for tp in _ladder(out_h, ROW_STEPS, ROW_FACTOR)]
    for j in WIDTH_STEPS:
        tq = largest_divisor_at_most(out_w, out_w // 2 ** j)
        if tq < out_w and (1, tq) not in tiles:
            tiles.append((1, tq))
    return tiles


def half_buffer_words(size_kb, word_bits):
    """Words one half of a double-buffered buffer holds: ``floor(kb*8192/word_bits) // 2``."""
    return buffer_words(size_kb, word_bits) // 2


def rf_words(rf_bytes, word_bits):
    """Words one PE's register file holds."""
    return (np.asarray(rf_bytes, dtype=np.int64) * 8) // np.asarray(word_bits, dtype=np.int64)


def input_span(outputs, kernel, stride, size):
    """Input rows (columns) that ``outputs`` consecutive output rows (columns) read.

    Windows overlap when ``kernel >= stride``: ``(outputs - 1) * stride + kernel``; else they
    leave gaps that are never fetched: ``outputs * kernel``. Capped at the input ``size``
    (zero padding is not stored).
    """
    outputs, kernel, stride = (np.asarray(x, dtype=np.int64) for x in (outputs, kernel, stride))
    span = np.where(kernel >= stride, (outputs - 1) * stride + kernel, outputs * kernel)
    return np.minimum(span, size)


def halo(kernel, stride, size):
    """Input rows two consecutive row tiles share: ``max(0, kernel - stride)``, at most the
    input's ``size`` (a tile never holds more rows than the input has: padding is not stored,
    and a smaller cap could leave a tile a negative count of new rows)."""
    return np.minimum(np.maximum(np.asarray(kernel, dtype=np.int64) - stride, 0), size)


def ifmap_tile_words(tp, tq, tc, in_h, in_w, stride, k_h, k_w):
    """Ifmap words of a tile: the input rows x columns its outputs read, x ``tc``."""
    return input_span(tp, k_h, stride, in_h) * input_span(tq, k_w, stride, in_w) * np.asarray(tc, dtype=np.int64)


def ifmap_halo_words(tq, tc, in_h, in_w, stride, k_h, k_w):
    """Ifmap words of a row tile already on chip from the previous row tile (its halo)."""
    return halo(k_h, stride, in_h) * input_span(tq, k_w, stride, in_w) * np.asarray(tc, dtype=np.int64)


def ifmap_fill_words(tq, tc, out_w, in_h, in_w, stride, k_h, k_w):
    """Ifmap words a line buffer loads at the start of a width-tiled sweep, beyond its first
    tile: the halo rows across the rest of the input width (`line_buffer_fits`)."""
    rest = input_span(out_w, k_w, stride, in_w) - input_span(tq, k_w, stride, in_w)
    return halo(k_h, stride, in_h) * rest * np.asarray(tc, dtype=np.int64)


def line_buffer_fits(tq, tc, out_w, in_h, in_w, stride, k_h, k_w, buffer):
    """Whether width tiles of ``tq`` columns can keep a line buffer in the ifmap ``buffer``
    (words): the input rows one output row reads across the whole width, plus one tile (the
    prefetch), fit. Then a width-tiled sweep loads the halo rows once (`ifmap_fill_words`)
    and every tile only its new rows, as row tiles do (`ifmap_halo_words`)."""
    footprint = ifmap_tile_words(1, out_w, tc, in_h, in_w, stride, k_h, k_w)
    return footprint + ifmap_tile_words(1, tq, tc, in_h, in_w, stride, k_h, k_w) <= buffer


def filter_tile_words(tc, tk, k_h, k_w):
    """Filter words of a tile."""
    return np.asarray(k_h, dtype=np.int64) * k_w * tc * tk


def ofmap_tile_words(tp, tq, tk):
    """Ofmap (partial-sum) words of a tile."""
    return np.asarray(tp, dtype=np.int64) * tq * tk


def buffer_words(size_kb, word_bits):
    """Words a whole buffer holds: ``floor(kb*8192/word_bits)``."""
    return np.floor(np.asarray(size_kb, dtype=np.float64) * float(BITS_PER_KB)
                    / np.asarray(word_bits, dtype=np.float64)).astype(np.int64)


def fits_buffer(words, size_kb, word_bits, single):
    """Whether a tile of ``words`` fits its buffer: half of it (the other half prefetches the
    next tile), or all of it when the operand has a ``single`` tile in the whole nest (loaded
    once, nothing to prefetch)."""
    return np.where(single, words <= buffer_words(size_kb, word_bits), words <= half_buffer_words(size_kb, word_bits))


def ifmap_resident(inner_p, inner_c, tp, tq, tc, in_h, in_w, out_h, out_w, cg, stride, k_h, k_w, buffer):
    """Whether the ifmap stays on chip across its irrelevant loop ``k`` (buffer residency).

    One iteration of ``k`` touches the ifmap words of the ``p`` and ``c`` loops inside it
    (``inner_p``, ``inner_c``: those loops lie inside ``k`` in the order) swept whole, and
    of the others' current tile. They stay for every further iteration of ``k`` when they
    and one more tile (the prefetch of the next window) fit the whole ``buffer`` (words).
    """
    rows, cols = np.where(inner_p, out_h, tp), np.where(inner_p, out_w, tq)
    footprint = ifmap_tile_words(rows, cols, np.where(inner_c, cg, tc), in_h, in_w, stride, k_h, k_w)
    return footprint + ifmap_tile_words(tp, tq, tc, in_h, in_w, stride, k_h, k_w) <= buffer


def filter_resident(inner_c, inner_k, tc, tk, cg, kg, k_h, k_w, buffer):
    """Whether the filter stays on chip across its irrelevant loop ``p`` (see `ifmap_resident`):
    the filter words of the ``c`` and ``k`` loops inside ``p`` swept whole, plus one tile,
    fit the whole ``buffer``."""
    footprint = filter_tile_words(np.where(inner_c, cg, tc), np.where(inner_k, kg, tk), k_h, k_w)
    return footprint + filter_tile_words(tc, tk, k_h, k_w) <= buffer


def ofmap_resident(inner_p, inner_k, tp, tq, tk, out_h, out_w, kg, buffer):
    """Whether the partial sums stay on chip across the ofmap's irrelevant loop ``c`` (see
    `ifmap_resident`): the ofmap words of the ``p`` and ``k`` loops inside ``c`` swept whole,
    plus one tile, fit the whole ``buffer``. Then no partial sum goes to DRAM and back: a
    tile is written back once, after its last ``c`` tile."""
    rows, cols = np.where(inner_p, out_h, tp), np.where(inner_p, out_w, tq)
    return ofmap_tile_words(rows, cols, np.where(inner_k, kg, tk)) + ofmap_tile_words(tp, tq, tk) <= buffer


def resident_operands(layer: Layer, accelerator: Accelerator, order: str, tile_p: int, tile_q: int,
                      tile_c: int, tile_k: int, widths=None) -> tuple[bool, bool, bool]:
    """(ifmap, filter, ofmap): whether each stays on chip across its irrelevant tiled loop
    under ``order`` (`ifmap_resident`, `filter_resident`, `ofmap_resident`). ``layer`` is the
    lane-packed layer, ``widths`` its `precision.Widths` (None: the word width); tiles at most
    their dimension."""
    a = accelerator
    ifmap_bits = a.word_bits if widths is None else int(widths.ifmap_bits)
    filter_bits = a.word_bits if widths is None else int(widths.filter_bits)
    ofmap_bits = a.word_bits if widths is None else int(widths.ofmap_bits)
    inside = lambda loop, outer: order.index(loop) > order.index(outer)  # noqa: E731
    ifmap = ifmap_resident(inside("p", "k"), inside("c", "k"), tile_p, tile_q, tile_c, layer.in_h, layer.in_w,
                           layer.out_h, layer.out_w, layer.in_c_per_group, layer.stride, layer.k_h, layer.k_w,
                           buffer_words(a.ifmap_kb, ifmap_bits))
    filt = filter_resident(inside("c", "p"), inside("k", "p"), tile_c, tile_k, layer.in_c_per_group,
                           layer.out_c_per_group, layer.k_h, layer.k_w, buffer_words(a.filter_kb, filter_bits))
    ofmap = ofmap_resident(inside("p", "c"), inside("k", "c"), tile_p, tile_q, tile_k, layer.out_h, layer.out_w,
                           layer.out_c_per_group, buffer_words(a.ofmap_kb, ofmap_bits))
    return bool(ifmap), bool(filt), bool(ofmap)


def single_tiles(images, groups, count_p, count_c, count_k):
    """Per operand (ifmap, filter, ofmap): whether its tile is the same at every step."""
    one = lambda *counts: np.logical_and.reduce([np.asarray(x) == 1 for x in counts])  # noqa: E731
    return one(images, count_p, count_c), one(groups, count_c, count_k), one(images, count_p, count_k)


def fits(layer: Layer, accelerator: Accelerator, tile_p: int, tile_q: int, tile_c: int, tile_k: int,
         widths=None) -> bool:
    """Whether full-size tiles fit their buffers (`fits_buffer`) and the RF holds what the
    dataflow needs.

    ``layer`` is the lane-packed layer and ``widths`` its `precision.Widths`
    (`precision.pack`); None: every operand at the accelerator's ``word_bits``.
    """
    a = accelerator
    if widths is None:
        bits = {"ifmap": a.word_bits, "filter": a.word_bits, "ofmap": a.word_bits, "rf": a.word_bits}
    else:
        if not widths.fits:
            return False
        bits = {"ifmap": widths.ifmap_bits, "filter": widths.filter_bits, "ofmap": widths.ofmap_bits,
                "rf": widths.rf_word_bits}
    if rf_words(a.rf_bytes, bits["rf"]) < rf_words_required(DATAFLOW_CODES[a.dataflow], layer.k_w):
        return False
    spatial = layer.out_h * (layer.out_w // tile_q) if tile_q < layer.out_w else -(-layer.out_h // tile_p)
    single = single_tiles(layer.groups * layer.batch, layer.groups, spatial, -(-layer.in_c_per_group // tile_c),
                          -(-layer.out_c_per_group // tile_k))
    return bool(
        fits_buffer(ifmap_tile_words(tile_p, tile_q, tile_c, layer.in_h, layer.in_w, layer.stride, layer.k_h,
                                     layer.k_w), a.ifmap_kb, bits["ifmap"], single[0])
        and fits_buffer(filter_tile_words(tile_c, tile_k, layer.k_h, layer.k_w), a.filter_kb, bits["filter"],
                        single[1])
        and fits_buffer(ofmap_tile_words(tile_p, tile_q, tile_k), a.ofmap_kb, bits["ofmap"], single[2]))


def all_mappings(layer: Layer) -> list[Mapping]:
    """Every mapping of the pruned space in candidate order, before capacity checks.

    Whole-row tiles carry ``tile_q = out_w``.
    """
    return [Mapping(order, tile_p, tile_c, tile_k, tile_q=tile_q)
            for order in LOOP_ORDERS
            for tile_p, tile_q in spatial_tiles(layer.out_h, layer.out_w)
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
        Capacity-feasible candidates; empty when the pair is unmappable. Their ``tile_c``
        counts the lane-packed channels of a precision-scalable accelerator (`precision.pack`).
    """
    from .precision import pack

    packed, widths = pack(layer, accelerator)
    return [m for m in all_mappings(packed)
            if fits(packed, accelerator, m.tile_p, m.tile_q, m.tile_c, m.tile_k, widths)]


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
