"""The fast engine: the reference model, vectorised over pairs and candidate mappings.

Exactly the reference's numbers (tests/dataset_gen/test_simulator_fast.py proves it on
random cases), computed without stepping the nest:

- **Tile shapes.** Each tiled loop has full tiles and one edge tile, so a nest has at most
  8 tile shapes; compute cycles and SRAM counts are sums over shapes times their counts.
  Tile words are looked up in small per-pair tables (every tile choice of a loop, full and
  edge), and the fold model runs once per *distinct* tile shape of a pair: the candidates of
  a pair share most of their shapes.
- **The pipeline recurrence collapses.** In the double-buffered recurrence the load of tile
  ``i`` starts exactly when compute ``i-1`` starts, because both wait for the same two
  events (``max(load_end[i-1], compute_end[i-2])``). Hence, with ``C[-1] = 0``::

      compute_end[i] = compute_end[i-1] + max(0, L[i] - C[i-1]) + C[i]

  (proof: ``compute_end[i-1] - max(load_end[i-1], compute_end[i-2]) = C[i-1]`` by the
  recurrence itself). The stall of a step depends only on the step and its predecessor,
  and the exact total is ``sum C + sum max(0, L[i] - C[i-1]) + final write-back``.
- **Transition classes.** A step's DRAM words and its predecessor's shape depend only on
  which loop level advanced at it (``lam``) and on whether each outer tiled loop sits at its
  first, a middle or its last index. There are 29 such classes; each is evaluated once per
  candidate and weighted by how many steps it covers. In terms of loop *levels* the classes
  are the same for all six loop orders, so candidates of every order are evaluated together.
- **Pruning by bounds.** Every objective grows with total cycles and with every access
  count, so lower bounds on them prune candidates against the exact value of a probe
  candidate of the same pair:

  1. *before any fold cost*: the DRAM channel is serial, so total cycles >= DRAM words
     moved / bandwidth + final write-back, and total cycles >= first load + compute +
     final write-back, compute being at least every tile's fill and drain plus, on systolic
     arrays, exactly the folds' streaming cycles (a product of per-loop sums; rs: MACs /
     PEs; `_least_compute`); energy >= the energy of the accesses known without the fold
     model (MACs, RF, DRAM, buffer fills and partial-sum read-backs), of the buffer reads
     and writes and array hops every tile makes at least (`_least_fold_words`), plus
     leakage over that many cycles. The candidate with the best such bound is the first
     probe; tile combinations that cannot beat it under any loop order are dropped;
  2. *with fold costs*: total cycles >= ``max(sum C + L[0], traffic + C[last])`` + final
     write-back, and the energy bound gains the fold model's SRAM counts. The candidate
     with the best such bound is the second probe (usually the winner); then every
     candidate whose bound does not exceed the best probe value is evaluated exactly and
     ranked.

  Float bounds (energy, EDP) carry a relative margin of `BOUND_MARGIN`, far above the
  rounding error of a dozen float operations, so no candidate that could win or tie is
  ever dropped.

The best candidate per pair is picked with the reference's keys: (primary, secondary,
candidate index). Pairs are processed in chunks of `CHUNK_PAIRS` (bounded memory; arrays
small enough to stay in cache). Arrays put pairs and candidates on their last axis: NumPy
is slow along short inner axes.
"""

from __future__ import annotations

from itertools import product
from typing import Any, NamedTuple

import numpy as np

from functools import lru_cache

from ..space import LOOP_ORDERS, Mapping, SpaceError
from . import energy, mapper, precision, reference
from .dataflows import DATAFLOW_CODES, RF_ACCESSES_PER_MAC, RS, rf_words_required, tile_costs

CHUNK_PAIRS = 1024
LADDER_SLOTS = mapper.SLOTS
BOUND_MARGIN = 1e-9  # relative; float bounds are scaled by (1 - BOUND_MARGIN)
_RELEVANT = {"ifmap": "gnpc", "filter": "gck", "ofmap": "gnpk"}
FULL, EDGE = 0, 1
_DIMS = ("p", "c", "k")
# Loop orders in which c lies outside p: a p step keeps the c tile, so the next row tile finds
# its halo rows on chip (when c has one tile, every order does).
_C_OUTSIDE_P = np.array([order.index("c") < order.index("p") for order in LOOP_ORDERS])
# Buffer residency: the tiled loop irrelevant to the ifmap (k), the filter (p) and the ofmap (c),
# the relevant tiled loops each order puts inside it (by order code), and its level in the nest.
_IRRELEVANT_LOOP = {"ifmap": "k", "filter": "p", "ofmap": "c"}
_RESIDENT_INNER = {operand: ["".join(sorted(d for d in order[order.index(loop) + 1:] if d in _RELEVANT[operand]))
                             for order in LOOP_ORDERS] for operand, loop in _IRRELEVANT_LOOP.items()}
_RESIDENT_KEYS = tuple(sorted({(operand, inner) for operand, inners in _RESIDENT_INNER.items()
                               for inner in inners if inner}))
_RESIDENT_BIT = {key: bit for bit, key in enumerate(_RESIDENT_KEYS)}
_IRRELEVANT_LEVEL = {operand: np.array([2 + order.index(loop) for order in LOOP_ORDERS])
                     for operand, loop in _IRRELEVANT_LOOP.items()}


# The per-pair columns `simulate_columns` adds from `precision.resolve`, in `precision.Widths` order.
_WIDTH_COLUMNS = ("fits", "lanes", "packed_cg", "ifmap_bits", "filter_bits", "ofmap_bits", "rf_word_bits",
                  "rf_access_bits", "mac_pj")


def _ceil_div(a, b):
    return -(-a // b)


class _Pairs:
    """Per-pair arrays of one chunk: the columns plus derived layer sizes."""

    def __init__(self, columns: dict[str, np.ndarray]):
        self.__dict__.update(columns)
        self.count = len(self.in_h)
        self.out_h = (self.in_h + 2 * self.pad - self.k_h) // self.stride + 1
        self.out_w = (self.in_w + 2 * self.pad - self.k_w) // self.stride + 1
        self.cg = self.in_c // self.groups
        self.kg = self.out_c // self.groups
        self.images = self.groups * self.batch
        self.ofmap_total = self.images * self.out_h * self.out_w * self.kg
        # The columns are of the lane-packed layers (`simulate_columns`): these are packed MACs.
        packed_macs = self.batch * self.out_h * self.out_w * self.out_c * self.cg * self.k_h * self.k_w
        self.packed_macs = packed_macs
        self.rf_accesses = packed_macs * RF_ACCESSES_PER_MAC[self.dataflow]
        # Lower bounds on any mapping's compute: a PE does at most one (packed) MAC a cycle,
        # and every tile pays at least one fold's fill and drain (`dataflows`: rs ``hs - 1``,
        # os ``rows + cols - 2``, ws and is ``2 rows + cols - 2``).
        self.min_compute_cycles = _ceil_div(packed_macs, self.pe_rows * self.pe_cols)
        os_overhead = self.pe_rows + self.pe_cols - 2
        self.min_tile_overhead = np.where(self.dataflow == RS, np.minimum(self.k_h, self.pe_rows) - 1,
                                          np.where(self.dataflow == DATAFLOW_CODES["os"], os_overhead,
                                                   os_overhead + self.pe_rows))
        self.widths = precision.Widths(*(columns[name] for name in _WIDTH_COLUMNS))
        self.area = energy.area_mm2(self.pe_rows, self.pe_cols, self.rf_bytes, self.ifmap_kb,
                                    self.filter_kb, self.ofmap_kb, self.word_bits, self.pe_kind)
        self.rf_words = mapper.rf_words(self.rf_bytes, self.rf_word_bits)
        self.rf_ok = (self.rf_words >= rf_words_required(self.dataflow, self.k_w)) & self.fits
        self.half_ifmap = mapper.half_buffer_words(self.ifmap_kb, self.ifmap_bits)
        self.half_filter = mapper.half_buffer_words(self.filter_kb, self.filter_bits)
        self.half_ofmap = mapper.half_buffer_words(self.ofmap_kb, self.ofmap_bits)
        self.full_ifmap = mapper.buffer_words(self.ifmap_kb, self.ifmap_bits)
        self.full_filter = mapper.buffer_words(self.filter_kb, self.filter_bits)
        self.full_ofmap = mapper.buffer_words(self.ofmap_kb, self.ofmap_bits)
        # DRAM cycles per bit, shrunk so that bits * it never exceeds the exact figure.
        self.dram_cycles_per_bit = 1.0 / 8.0 / self.dram_bw * (1.0 - 1e-12)

    def widths_of(self, pair: np.ndarray) -> precision.Widths:
        """The operand widths of pairs ``pair``."""
        return precision.Widths(*(values[pair] for values in self.widths))

    def energy_coefficients(self) -> dict[str, np.ndarray]:
        """Per-access energies for the bounds (pJ; bounds only, never reported)."""
        e_mac, e_rf, _, _ = energy.dynamic_energy_pj(self.macs, self.rf_accesses, 0, 0, 0, 0, 0, 0, self.rf_bytes,
                                                     self.ifmap_kb, self.filter_kb, self.ofmap_kb,
                                                     self.word_bits, self.widths)
        dram = lambda bits: energy.DRAM_PJ_PER_BIT * bits.astype(np.float64)  # noqa: E731
        return {"fixed": e_mac + e_rf, "hop": energy.array_hop_energy_pj(self.rf_access_bits),
                "ifmap": energy.sram_energy_per_word_pj(self.ifmap_kb, self.ifmap_bits),
                "filter": energy.sram_energy_per_word_pj(self.filter_kb, self.filter_bits),
                "ofmap": energy.sram_energy_per_word_pj(self.ofmap_kb, self.ofmap_bits),
                "dram_ifmap": dram(self.ifmap_bits), "dram_filter": dram(self.filter_bits),
                "dram_ofmap": dram(self.ofmap_bits),
                "leak": self.area * (energy.LEAK_W_PER_MM2 * 1e12) / (self.freq_mhz * 1e6)}


def _ladder_values(dim: np.ndarray, steps: int, factor: int) -> np.ndarray:
    """(SLOTS, B) ``ceil(dim / factor**j)`` for ``j < steps``, then 1s (duplicates kept)."""
    powers = factor ** np.arange(steps, dtype=np.int64)
    values = np.ones((LADDER_SLOTS, len(dim)), dtype=np.int64)
    values[:steps] = _ceil_div(dim[None, :], powers[:, None])
    return values


def _first_of_equal(keys: np.ndarray) -> np.ndarray:
    """(SLOTS, B) mask: the slots whose key differs from every earlier slot's."""
    valid = np.ones(keys.shape, dtype=bool)
    for slot in range(1, len(keys)):
        valid[slot] = (keys[slot][None, :] != keys[:slot]).all(axis=0)
    return valid


def _channel_ladders(dim: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(SLOTS, B) channel ladder values (largest first) and a mask of the slots that exist."""
    values = _ladder_values(dim, mapper.CHANNEL_STEPS, mapper.CHANNEL_FACTOR)
    return values, _first_of_equal(values)


@lru_cache(maxsize=4096)
def _width_tiles(out_w: int) -> tuple[int, ...]:
    return tuple(mapper.largest_divisor_at_most(out_w, out_w // 2 ** j) for j in mapper.WIDTH_STEPS)


def _spatial_ladders(out_h: np.ndarray, out_w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(SLOTS, B) row and column sizes of the output tiles (`mapper.spatial_tiles`) and a mask."""
    rows = np.ones((LADDER_SLOTS, len(out_h)), dtype=np.int64)
    cols = np.broadcast_to(out_w, rows.shape).copy()
    row_slots = mapper.ROW_STEPS + 1
    rows[:row_slots] = _ladder_values(out_h, mapper.ROW_STEPS, mapper.ROW_FACTOR)[:row_slots]
    distinct, position = np.unique(out_w, return_inverse=True)
    table = np.array([_width_tiles(int(q)) for q in distinct], dtype=np.int64).reshape(len(distinct), -1)
    cols[row_slots:row_slots + table.shape[1]] = table[position].T
    valid = _first_of_equal(rows * (np.int64(1) << 32) + cols)
    valid[row_slots:] &= cols[row_slots:] < out_w
    valid[row_slots + len(mapper.WIDTH_STEPS):] = False
    return rows, cols, valid


class _Tiling:
    """Per-pair tables over the ``S`` tile choices of each loop (ladder slots, or one tile).

    Pairs run along the last axis (B) throughout: NumPy is fast along long inner axes. For
    a loop ``d``: ``tile_d`` and ``count_d`` (S, B): tile size and tiles per loop;
    ``size_d`` and ``mult_d`` (2S, B): slot ``s < S`` is the full tile of choice ``s``, slot
    ``S + s`` its edge tile, and how many of each the loop runs (``count - 1`` and 1). The
    ``p`` loop's tiles also have columns, ``tile_q`` (S, B) and ``size_q`` (2S, B): whole
    rows (``out_w``), or a width tile (one row of ``tile_q < out_w`` columns; then the loop
    runs ``out_h * out_w / tile_q`` tiles, the edge tile like the others). Word tables
    (2S, 2S, B) hold the tile words of every (p, c) / (c, k) / (p, k) slot pair, and
    ``ifmap_halo`` the ifmap words a tile shares with the previous one (width tiles: 0
    without a line buffer), ``ifmap_fill`` those a line buffer loads when a sweep starts;
    ``ifmap_total`` (S, S, B) by (p, c) and ``filter_total`` by (c, k) the words of one
    sweep of the operand, ``halo_total`` and ``fill_total`` by (p, c) what halo reuse saves
    of a sweep and what a line buffer's fills add to it.
    ``blocking``: register-file blocking in the fold model (off for SCALE-Sim's mapping).
    """

    def __init__(self, pairs: _Pairs, tiles: dict[str, np.ndarray], blocking: bool = True):
        self.slots = slots = len(tiles["p"])
        self.width = 2 * slots
        self.pair_count = pairs.count
        self.blocking = blocking
        self._canonical: dict[str, np.ndarray] = {}
        totals = {"p": pairs.out_h, "c": pairs.cg, "k": pairs.kg}
        self.tile_q = tiles["q"]
        width_tiles = self.tile_q < pairs.out_w
        for dim in _DIMS:
            tile, total = tiles[dim], totals[dim]
            count = _ceil_div(total, tile)
            edge = total - (count - 1) * tile
            if dim == "p":
                count = np.where(width_tiles, pairs.out_h * (pairs.out_w // self.tile_q), count)
                edge = np.where(width_tiles, tile, edge)
            setattr(self, "tile_" + dim, tile)
            setattr(self, "count_" + dim, count)
            setattr(self, "size_" + dim, np.concatenate([tile, edge]))
            setattr(self, "mult_" + dim, np.concatenate([count - 1, np.ones_like(count)]))
        self.size_q = np.concatenate([self.tile_q, self.tile_q])
        span_q = mapper.input_span(self.size_q, pairs.k_w, pairs.stride, pairs.in_w)  # (2S, B)
        span_p = mapper.input_span(self.size_p, pairs.k_h, pairs.stride, pairs.in_h)
        self.ifmap_words = (span_p * span_q)[:, None] * self.size_c[None, :]
        # Halo reuse: row tiles always; width tiles with a line buffer (`mapper.line_buffer_fits`
        # on the full c tile, by (p, c) slot), which loads the halo rows across the rest of the
        # width at the start of each sweep (``ifmap_fill``).
        line = (width_tiles[:, None, :] & blocking) & mapper.line_buffer_fits(
            self.tile_q[:, None, :], self.tile_c[None, :, :], pairs.out_w, pairs.in_h, pairs.in_w, pairs.stride,
            pairs.k_h, pairs.k_w, pairs.full_ifmap)  # (S, S, B) by (p, c)
        halo_on = np.tile(line | ~width_tiles[:, None, :], (2, 2, 1))  # (2S, 2S, B)
        halo_rows = mapper.halo(pairs.k_h, pairs.stride, pairs.in_h)
        self.ifmap_halo = np.where(halo_on, (halo_rows * span_q)[:, None] * self.size_c[None, :], 0)
        span_w = mapper.input_span(pairs.out_w, pairs.k_w, pairs.stride, pairs.in_w)
        self.ifmap_fill = np.where(np.tile(line, (2, 2, 1)),
                                   (halo_rows * (span_w - span_q))[:, None] * self.size_c[None, :], 0)
        self.filter_words = mapper.filter_tile_words(self.size_c[:, None], self.size_k[None, :], pairs.k_h, pairs.k_w)
        self.ofmap_words = mapper.ofmap_tile_words(self.size_p[:, None], self.size_q[:, None], self.size_k[None, :])

        def total(words, mult_a, mult_b, times):
            swept = (mult_a[:, None] * mult_b[None, :] * words).reshape(2, slots, 2, slots, pairs.count)
            return times * swept.sum(axis=(0, 2))

        self.ifmap_total = total(self.ifmap_words, self.mult_p, self.mult_c, pairs.images)
        self.filter_total = total(self.filter_words, self.mult_c, self.mult_k, pairs.groups)
        # Each sweep's p steps (count_p - 1 per c tile and image) reuse a halo of the full tile;
        # a line buffer's fill comes once per c tile and image.
        saved = pairs.images * (self.count_p - 1) * (halo_rows * span_q[:slots]) * pairs.cg  # (S, B)
        self.halo_total = np.where(halo_on[:slots, :slots], saved[:, None, :], 0)
        fill = pairs.images * halo_rows * (span_w - span_q[:slots]) * pairs.cg  # (S, B)
        self.fill_total = np.where(line, fill[:, None, :], 0)
        # Buffer residency (`mapper.ifmap_resident` by (p, c), `mapper.filter_resident` by (c, k),
        # `mapper.ofmap_resident` by (p, k)) for each set of relevant loops an order puts inside
        # the operand's irrelevant loop, packed per operand: bit `_RESIDENT_BIT` of each (S, S, B)
        # entry, one lookup per combination and operand (`_Combos`); none without register-file
        # blocking (SCALE-Sim's single tile).
        self.resident_bits = {operand: np.zeros((slots, slots, pairs.count), dtype=np.uint16)
                              for operand in _IRRELEVANT_LOOP}
        p_tiles, q_tiles, c_tiles, k_tiles = self.tile_p[:, None, :], self.tile_q[:, None, :], self.tile_c, \
            self.tile_k[None, :, :]
        for operand, inner in _RESIDENT_KEYS:
            if operand == "ifmap":
                resident = mapper.ifmap_resident(
                    "p" in inner, "c" in inner, p_tiles, q_tiles, c_tiles[None, :, :], pairs.in_h, pairs.in_w,
                    pairs.out_h, pairs.out_w, pairs.cg, pairs.stride, pairs.k_h, pairs.k_w, pairs.full_ifmap)
            elif operand == "filter":
                resident = mapper.filter_resident("c" in inner, "k" in inner, c_tiles[:, None, :], k_tiles, pairs.cg,
                                                  pairs.kg, pairs.k_h, pairs.k_w, pairs.full_filter)
            else:
                resident = mapper.ofmap_resident("p" in inner, "k" in inner, p_tiles, q_tiles, k_tiles, pairs.out_h,
                                                 pairs.out_w, pairs.kg, pairs.full_ofmap)
            self.resident_bits[operand] |= (resident & blocking).astype(np.uint16) << _RESIDENT_BIT[operand, inner]
        # Per loop, over its tiles, the sum of the systolic fold factor that loop sets
        # (`_least_compute`): (S, B) each, by tile choice.
        rows, cols, dataflow = pairs.pe_rows, pairs.pe_cols, pairs.dataflow
        is_os, is_is = dataflow == DATAFLOW_CODES["os"], dataflow == DATAFLOW_CODES["is"]
        pixels, window = self.size_p * self.size_q, pairs.k_h * pairs.k_w * self.size_c  # (2S, B)
        factors = {"p": np.where(is_os, _ceil_div(pixels, rows), np.where(is_is, _ceil_div(pixels, cols), pixels)),
                   "c": np.where(is_os, window, _ceil_div(window, rows)),
                   "k": np.where(is_is, self.size_k, _ceil_div(self.size_k, cols))}
        self.fold_sums = {dim: getattr(self, "mult_" + dim)[:slots] * factor[:slots]
                          + getattr(self, "mult_" + dim)[slots:] * factor[slots:] for dim, factor in factors.items()}

    @classmethod
    def search(cls, pairs: _Pairs) -> tuple["_Tiling", np.ndarray]:
        """The ladders, and the (S, S, S, B) mask of capacity-feasible combinations."""
        rows, cols, valid_p = _spatial_ladders(pairs.out_h, pairs.out_w)
        c_values, valid_c = _channel_ladders(pairs.cg)
        k_values, valid_k = _channel_ladders(pairs.kg)
        tiling = cls(pairs, {"p": rows, "q": cols, "c": c_values, "k": k_values})
        valid = (valid_p[:, None, None] & valid_c[None, :, None]) & valid_k[None, None, :]
        return tiling, tiling.fits(pairs) & valid

    def canonical(self, dim: str) -> np.ndarray:
        """(2S, B): for each slot of loop ``dim``, the first slot with the same tile shape."""
        if dim not in self._canonical:
            size = getattr(self, "size_" + dim)
            if dim == "p":
                size = size * (np.int64(1) << 32) + self.size_q
            canonical = np.broadcast_to(np.arange(self.width)[:, None], size.shape).copy()
            for slot in range(self.width - 2, -1, -1):  # last writer wins: the first equal slot
                np.copyto(canonical[slot + 1:], slot, where=size[slot + 1:] == size[slot])
            self._canonical[dim] = canonical
        return self._canonical[dim]

    def fits(self, pairs: _Pairs) -> np.ndarray:
        """(S, S, S, B): full tiles fit their buffers (`mapper.fits_buffer`: half of it, or
        all of it for an operand with a single tile) and the RF holds what it must."""
        s = self.slots
        one_p, one_c, one_k = self.count_p == 1, self.count_c == 1, self.count_k == 1  # (S, B)
        one_image, one_group = pairs.images == 1, pairs.groups == 1

        def fit(words, half, full, single):
            return np.where(single, words <= full, words <= half)

        ifmap = fit(self.ifmap_words[:s, :s], pairs.half_ifmap, pairs.full_ifmap,
                    (one_p & one_image)[:, None] & one_c[None, :])  # (p, c, B)
        filt = fit(self.filter_words[:s, :s], pairs.half_filter, pairs.full_filter,
                   (one_c & one_group)[:, None] & one_k[None, :])  # (c, k, B)
        ofmap = fit(self.ofmap_words[:s, :s], pairs.half_ofmap, pairs.full_ofmap,
                    (one_p & one_image)[:, None] & one_k[None, :])  # (p, k, B)
        return (ifmap[:, :, None] & filt[None, :, :]) & (ofmap[:, None, :] & pairs.rf_ok)


class _Combos:
    """Tile combinations (M of them, sorted by pair): slots, counts and order-free totals."""

    _PER_COMBO = ("pair", "slot_p", "slot_c", "slot_k", "count_p", "count_c", "count_k", "groups", "batch",
                  "ifmap_total", "halo_total", "fill_total", "filter_total", "ofmap_total", "last_writeback_words",
                  "last_writeback", "dram_cycles_per_bit", "ifmap_bits", "filter_bits", "ofmap_bits",
                  "resident_bits")

    def __init__(self, pairs: _Pairs | None, tiling: _Tiling | None, feasible: np.ndarray | None):
        if pairs is None:  # an empty shell for `restrict`
            return
        s, width, count = tiling.slots, tiling.width, pairs.count
        # Sorted by pair, then slots (flatnonzero and arithmetic beat nonzero on a transposed view).
        index = np.flatnonzero(feasible.transpose(3, 0, 1, 2))
        pair = index // s ** 3
        slot_p = index // (s * s) - pair * s
        slot_c = index // s - (pair * s + slot_p) * s
        slot_k = index - (index // s) * s
        self.pair, self.slot_p, self.slot_c, self.slot_k = pair, slot_p, slot_c, slot_k
        for dim, slot in zip(_DIMS, (slot_p, slot_c, slot_k)):
            setattr(self, "count_" + dim, getattr(tiling, "count_" + dim).ravel()[slot * count + pair])
        self.groups, self.batch = pairs.groups[pair], pairs.batch[pair]
        self.ifmap_total = tiling.ifmap_total.ravel()[(slot_p * s + slot_c) * count + pair]
        self.halo_total = tiling.halo_total.ravel()[(slot_p * s + slot_c) * count + pair]
        self.fill_total = tiling.fill_total.ravel()[(slot_p * s + slot_c) * count + pair]
        self.filter_total = tiling.filter_total.ravel()[(slot_c * s + slot_k) * count + pair]
        self.ofmap_total = pairs.ofmap_total[pair]
        # The last step's ofmap tile is the edge tile in p and k.
        self.last_writeback_words = tiling.ofmap_words.ravel()[((s + slot_p) * width + s + slot_k) * count + pair]
        self.ifmap_bits, self.filter_bits = pairs.ifmap_bits[pair], pairs.filter_bits[pair]
        self.ofmap_bits = pairs.ofmap_bits[pair]
        self.last_writeback = reference.dram_cycles(self.last_writeback_words, self.ofmap_bits, pairs.dram_bw[pair])
        self.dram_cycles_per_bit = pairs.dram_cycles_per_bit[pair]
        # buffer residency flags (`_Tiling.resident_bits`); partial sums are resident only with
        # several c tiles (with one, nothing leaves early: the plain rule)
        bits = tiling.resident_bits
        self.resident_bits = (bits["ifmap"].ravel()[(slot_p * s + slot_c) * count + pair]
                              | bits["filter"].ravel()[(slot_c * s + slot_k) * count + pair]
                              | bits["ofmap"].ravel()[(slot_p * s + slot_k) * count + pair]
                              * (self.count_c > 1).astype(np.uint16))

    def resident(self, operand: str, code: int) -> np.ndarray | bool:
        """Whether ``operand`` stays on chip across its irrelevant loop under order ``code``
        (False when no relevant loop lies inside that loop: nothing to keep)."""
        inner = _RESIDENT_INNER[operand][code]
        return (self.resident_bits & (1 << _RESIDENT_BIT[operand, inner])) != 0 if inner else False

    def __len__(self) -> int:
        return len(self.pair)

    def restrict(self, index: np.ndarray) -> "_Combos":
        """The combinations ``index`` only."""
        part = _Combos(None, None, None)
        for name in self._PER_COMBO:
            setattr(part, name, getattr(self, name)[index])
        return part


def _sweeps(cmb: _Combos, orders: tuple[int, ...]) -> dict[str, np.ndarray]:
    """How many times each operand is swept from DRAM: (orders, M) arrays per operand.

    An operand's tile is reloaded at every iteration of the innermost loop relevant to it
    that has more than one iteration (and once at the start), so the operand is swept once
    per iteration of the loops irrelevant to it that lie outside that loop, except a tiled
    loop across which it stays on chip (buffer residency, `_Combos.resident`). Also
    ``ifmap_words``: the ifmap words those sweeps read, less the halo rows that row tiles
    (and width tiles with a line buffer, plus its fills) find on chip when a p step keeps
    the c tile (c outside p, or a single c tile).
    """
    count = {"g": cmb.groups, "n": cmb.batch, "p": cmb.count_p, "c": cmb.count_c, "k": cmb.count_k}
    advances = {dim: values > 1 for dim, values in count.items()}
    any_advances: dict[frozenset, np.ndarray] = {}
    factors: dict[tuple[str, frozenset, str | None], np.ndarray] = {}
    out = {operand: np.empty((len(orders), len(cmb)), dtype=np.int64) for operand in _RELEVANT}
    for row, code in enumerate(orders):
        levels = ("g", "n", *LOOP_ORDERS[code])
        for operand, relevant in _RELEVANT.items():
            sweeps = None
            for level, dim in enumerate(levels):
                inner = frozenset(d for d in levels[level + 1:] if d in relevant)
                if dim in relevant or not inner:
                    continue
                if inner not in any_advances:
                    any_advances[inner] = np.logical_or.reduce([advances[d] for d in sorted(inner)])
                # kept on chip across it (buffer residency)?
                resident = operand if level >= 2 and dim == _IRRELEVANT_LOOP.get(operand) else None
                if (dim, inner, resident) not in factors:
                    advances_inside = any_advances[inner]
                    if resident is not None:
                        advances_inside = advances_inside & ~cmb.resident(operand, code)
                    factors[(dim, inner, resident)] = np.where(advances_inside, count[dim], 1)
                factor = factors[(dim, inner, resident)]
                sweeps = factor if sweeps is None else sweeps * factor
            out[operand][row] = 1 if sweeps is None else sweeps
    halo = np.where(_C_OUTSIDE_P[list(orders)][:, None] | (cmb.count_c == 1)[None, :],
                    cmb.halo_total - cmb.fill_total, 0)
    out["ifmap_words"] = out["ifmap"] * (cmb.ifmap_total - halo)
    return out


def _dram_counts(cmb: _Combos, sweeps: dict[str, np.ndarray], combo, row) -> dict[str, np.ndarray]:
    """DRAM words of candidates (``combo``, order ``row``): reads and write-backs."""
    ofmap = sweeps["ofmap"][row, combo] * cmb.ofmap_total[combo]
    return {"dram_ifmap_reads": sweeps["ifmap_words"][row, combo],
            "dram_filter_reads": sweeps["filter"][row, combo] * cmb.filter_total[combo],
            # Partial sums come back for every residency but the first of each ofmap tile.
            "dram_ofmap_reads": ofmap - cmb.ofmap_total[combo],
            "dram_ofmap_writes": ofmap}


def _traffic_cycles(cmb: _Combos, sweeps: dict[str, np.ndarray]) -> np.ndarray:
    """(orders, M) lower bound on the DRAM cycles of all loads and write-backs but the last.

    The channel is serial and sum(ceil(x_i)) >= sum(x_i); `_Pairs.dram_cycles_per_bit`
    carries the rounding margin.
    """
    bits = (sweeps["ifmap_words"] * cmb.ifmap_bits + sweeps["filter"] * (cmb.filter_total * cmb.filter_bits)
            + ((2 * sweeps["ofmap"] - 1) * cmb.ofmap_total - cmb.last_writeback_words) * cmb.ofmap_bits)
    return np.floor(bits * cmb.dram_cycles_per_bit).astype(np.int64)


class _Folds:
    """Fold costs of combinations: per-combination sums, and per-shape cycles for stalls.

    The fold model runs once per distinct tile shape of each pair: shapes are keyed by
    (pair, p slot, c slot, k slot) with each slot replaced by the first slot of the same
    size, marked in a dense table and evaluated once. ``shape`` (8, M) gives the row in
    ``costs`` (4, U) of each combination's 8 shapes, by (p, c, k) class in C order.
    """

    def __init__(self, pairs: _Pairs, tiling: _Tiling, cmb: _Combos, table: "_KeyTable"):
        s, width, count = tiling.slots, tiling.width, pairs.count
        pair = cmb.pair
        canonical, mult = {}, {}
        for dim in _DIMS:
            full = getattr(cmb, "slot_" + dim) * count + pair
            index = np.stack([full, full + s * count])  # (2, M): full and edge slot
            canonical[dim] = tiling.canonical(dim).ravel()[index]
            mult[dim] = getattr(tiling, "mult_" + dim).ravel()[index]
        key = ((pair * width ** 3 + canonical["k"][None, None, :])
               + (canonical["p"][:, None, None, :] * width ** 2 + canonical["c"][None, :, None, :] * width))
        weight = (mult["p"][:, None, None, :] * mult["c"][None, :, None, :]) * mult["k"][None, None, :, :]
        self.weight = weight.reshape(8, len(pair)) * pairs.images[pair]  # tiles of each shape in the layer
        shapes, self.shape = table.distinct(key.reshape(8, len(pair)), count * width ** 3)
        self.costs = _shape_costs(pairs, tiling, shapes)
        self.compute_cycles = self.sums(0)
        self.last_cycles = self.costs[0][self.shape[7]]  # the (edge, edge, edge) tile
        # Partial sums read back: within tiles (the fold model's), and at every tile with c
        # index > 0 ((n_c - 1) sweeps of the ofmap).
        self.sram_ofmap_reads = (cmb.count_c - 1) * cmb.ofmap_total + self.sums(4)
        self.first_load = _first_load(pairs, tiling, cmb)

    def sums(self, cost: int) -> np.ndarray:
        """One fold cost summed over the layer's tiles, per combination.

        ``cost``: 0 cycles, 1 SRAM ifmap reads, 2 SRAM filter reads, 3 SRAM ofmap writes,
        4 SRAM ofmap reads within tiles, 5 array hops.
        """
        return (self.weight * self.costs[cost][self.shape]).sum(axis=0)

    def bound_counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per combination: SRAM ifmap reads, filter reads, ofmap accesses (writes and
        read-backs within tiles) of the fold model, and array hops (for the energy bound)."""
        return self.sums(1), self.sums(2), self.sums(3) + self.sums(4), self.sums(5)

    def counts(self, combo: np.ndarray) -> dict[str, np.ndarray]:
        weight, shape = self.weight[:, combo], self.shape[:, combo]
        ifmap, filt, ofmap, _, hops = ((weight * cost[shape]).sum(axis=0) for cost in self.costs[1:])
        return {"compute_cycles": self.compute_cycles[combo], "sram_ifmap_reads": ifmap,
                "sram_filter_reads": filt, "sram_ofmap_reads": self.sram_ofmap_reads[combo],
                "sram_ofmap_writes": ofmap, "array_hops": hops}


def _least_compute(pairs: _Pairs, tiling: _Tiling, cmb: _Combos) -> np.ndarray:
    """A lower bound on each combination's compute cycles, without the fold model.

    Every tile pays at least one fold's fill and drain (`_Pairs.min_tile_overhead`). On a
    systolic array a tile's other cycles are exactly ``ceil(spatial rows / rows) x
    ceil(spatial columns / cols) x streamed length`` (`dataflows.systolic_costs`), and each
    factor depends on one tiled loop only (ws: rows <- window (c), columns <- filters (k),
    stream <- pixels (p); os: pixels, filters, window; is: window, pixels, filters), so their
    sum over the tiles is the product of per-loop sums (`_Tiling.fold_sums`). rs: MACs / PEs.
    """
    pair, count = cmb.pair, pairs.count
    images = cmb.groups * cmb.batch
    steps = images * cmb.count_p * cmb.count_c * cmb.count_k
    sums = tiling.fold_sums
    folds = (sums["p"].ravel()[cmb.slot_p * count + pair] * sums["c"].ravel()[cmb.slot_c * count + pair]
             * sums["k"].ravel()[cmb.slot_k * count + pair])
    busy = np.where(pairs.dataflow[pair] == RS, pairs.min_compute_cycles[pair], images * folds)
    return busy + steps * pairs.min_tile_overhead[pair]


def _first_load(pairs: _Pairs, tiling: _Tiling, cmb: _Combos) -> np.ndarray:
    """DRAM cycles of each combination's first step: its first ifmap and filter tiles (full
    ones), loaded before any compute."""
    width, count, pair = tiling.width, pairs.count, cmb.pair
    return reference.dram_cycles_bits(
        tiling.ifmap_words.ravel()[(cmb.slot_p * width + cmb.slot_c) * count + pair] * cmb.ifmap_bits
        + tiling.filter_words.ravel()[(cmb.slot_c * width + cmb.slot_k) * count + pair] * cmb.filter_bits,
        pairs.dram_bw[pair])


class _KeyTable:
    """Dense tables over a key space, kept between chunks (fresh ones cost page faults)."""

    def __init__(self):
        self.marked = np.zeros(0, dtype=bool)
        self.position = np.zeros(0, dtype=np.int64)

    def distinct(self, keys: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        """The distinct ``keys`` (all in ``[0, size)``), sorted, and each key's index among them."""
        if len(self.marked) < size:
            self.marked = np.zeros(size, dtype=bool)
            self.position = np.zeros(size, dtype=np.int64)
        self.marked[keys] = True
        values = np.flatnonzero(self.marked[:size])
        self.marked[values] = False
        self.position[values] = np.arange(len(values))
        return values, self.position[keys]


def _shape_costs(pairs: _Pairs, tiling: _Tiling, shapes: np.ndarray) -> np.ndarray:
    """(6, U) fold costs (`dataflows.tile_costs`: cycles, ifmap reads, filter reads, ofmap
    writes, ofmap reads within the tile, array hops) of shape keys.

    rs and systolic shapes are computed apart, so each fold model runs only on its own.
    """
    width, count = tiling.width, pairs.count
    pair = shapes // width ** 3  # (floor division and a product are faster than divmod)
    slot_p = shapes // (width * width) - pair * width
    slot_c = shapes // width - (pair * width + slot_p) * width
    slot_k = shapes - (shapes // width) * width
    dataflow = pairs.dataflow[pair]
    costs = np.empty((6, len(shapes)), dtype=np.int64)
    for part in (np.flatnonzero(dataflow == RS), np.flatnonzero(dataflow != RS)):
        if not len(part):
            continue
        on = pair[part]
        at_p = slot_p[part] * count + on
        costs[:, part] = tile_costs(
            dataflow[part], tiling.size_p.ravel()[at_p], tiling.size_q.ravel()[at_p],
            tiling.size_c.ravel()[slot_c[part] * count + on], tiling.size_k.ravel()[slot_k[part] * count + on],
            pairs.k_h[on], pairs.k_w[on], pairs.stride[on], pairs.pe_rows[on], pairs.pe_cols[on],
            pairs.rf_words[on], tiling.blocking)
    return costs


def _transition_classes(order: str):
    """The 29 step classes of a loop order.

    Yields ``(lam, mult, current, previous, c_positive)``: ``lam`` the level that advanced
    (-1 for the first step); ``mult`` a list of (level, factor) whose product counts the
    steps; ``current``/``previous`` the shape class (FULL/EDGE) of p, c, k at the step and
    at its predecessor; ``c_positive`` whether the step's c index is > 0.
    """
    dims = ("g", "n", *order)
    yield -1, [], dict.fromkeys("pck", FULL), None, False
    for lam in (0, 1):
        mult = [(level, "all") for level in range(lam)] + [(lam, "minus1")]
        yield lam, mult, dict.fromkeys("pck", FULL), dict.fromkeys("pck", EDGE), False
    for lam in (2, 3, 4):
        outer = list(range(2, lam))
        for classes in product(("zero", "mid", "last"), repeat=len(outer)):
            for own in ("mid", "last"):
                mult = [(0, "all"), (1, "all")] + list(zip(outer, classes)) + [(lam, own)]
                current, previous = {}, {}
                c_positive = False
                for level, cls in zip(outer, classes):
                    dim = dims[level]
                    current[dim] = previous[dim] = EDGE if cls == "last" else FULL
                    if dim == "c":
                        c_positive = cls != "zero"
                current[dims[lam]] = EDGE if own == "last" else FULL
                previous[dims[lam]] = FULL
                c_positive = c_positive or dims[lam] == "c"
                for level in range(lam + 1, 5):
                    current[dims[level]], previous[dims[level]] = FULL, EDGE
                yield lam, mult, current, previous, c_positive


def _level_classes() -> list[tuple]:
    """The step classes in terms of loop levels, shared by all loop orders.

    A class's levels, step counts and shape classes per *level* are the same under every
    order (only which loop sits at a level differs), so one pass evaluates candidates of
    all orders. Returns ``(lam, mult, current, previous, c_positive)`` tuples: ``mult`` as
    in `_transition_classes`; ``current`` and ``previous`` the cell (0..7) of the tile's
    shape classes at levels 2, 3, 4 in C order (``previous`` None for the first step);
    ``c_positive`` True or False when the same under every order, else a (6,) bool array
    by order code.
    """
    per_order = [list(_transition_classes(order)) for order in LOOP_ORDERS]
    cell = lambda classes, order: sum(classes[d] << (2 - level) for level, d in enumerate(order))  # noqa: E731
    classes = []
    for variants in zip(*per_order):
        shared = {(lam, tuple(mult), cell(current, order), None if previous is None else cell(previous, order))
                  for order, (lam, mult, current, previous, _) in zip(LOOP_ORDERS, variants)}
        assert len(shared) == 1
        c_positive = np.array([variant[4] for variant in variants])
        if c_positive.all() or not c_positive.any():
            c_positive = bool(c_positive[0])
        classes.append((*shared.pop(), c_positive))
    return classes


_LEVEL_CLASSES = _level_classes()
# _DIM_CELL[o, j]: for order code o and the cell j = (class at level 2, 3, 4) in C order of a
# (2, 2, 2) table, the cell of the same tile in a table indexed by (p, c, k) classes.
_DIM_CLASS = np.array([[[cell[order.index(d)] for d in "pck"] for cell in product((FULL, EDGE), repeat=3)]
                       for order in LOOP_ORDERS])  # (6, 8, 3)
_DIM_CELL = _DIM_CLASS @ np.array([4, 2, 1])  # (6, 8)
_P_LEVEL = np.array([2 + order.index("p") for order in LOOP_ORDERS])  # (6,) the p loop's level
_LEVEL_DIM = np.array([[_DIMS.index(d) for d in order] for order in LOOP_ORDERS])  # (6, 3)
_LEVEL_RELEVANT = {operand: np.array([[d in relevant for d in ("g", "n", *order)] for order in LOOP_ORDERS])
                   for operand, relevant in _RELEVANT.items()}  # (6, 5) each


def _factor(count: np.ndarray, kind: str) -> np.ndarray:
    if kind == "all":
        return count
    if kind == "minus1":
        return count - 1
    if kind == "zero":
        return np.ones_like(count)
    if kind == "mid":
        return np.maximum(count - 2, 0)
    return (count > 1).astype(np.int64)  # "last" (exists only when count > 1)


class _StallView:
    """What `_stall` reads for some candidates, indexed by loop level rather than loop.

    ``ifmap_words``, ``filter_words``, ``ofmap_words`` and ``shape_cycles``: (8, S), by the
    shape classes (FULL or EDGE) of the loops at levels 2, 3, 4 in C order; ``count``
    (5, S) the iterations of each level; ``changes[operand]`` (5, S) whether the operand's
    tile changes at a step where that level advanced; ``code`` the order codes.
    """

    def __init__(self, pairs: _Pairs, tiling: _Tiling, cmb: _Combos, folds: _Folds, combo: np.ndarray,
                 code: np.ndarray):
        s, width, count = tiling.slots, tiling.width, tiling.pair_count
        pair = cmb.pair[combo]
        slot = {dim: getattr(cmb, "slot_" + dim)[combo] for dim in _DIMS}

        def lookup(words, a, b):  # the (a, b) tile words of every level cell
            ia, ib = _DIMS.index(a), _DIMS.index(b)
            cells = (_DIM_CLASS[:, :, ia] * width + _DIM_CLASS[:, :, ib]).T * (s * count)  # (8, 6)
            return words.ravel()[np.take(cells, code, axis=1) + ((slot[a] * width + slot[b]) * count + pair)]

        self.code = code
        self.ifmap_words = lookup(tiling.ifmap_words, "p", "c")
        self.ifmap_halo = lookup(tiling.ifmap_halo, "p", "c")
        self.ifmap_fill = lookup(tiling.ifmap_fill, "p", "c")
        self.filter_words = lookup(tiling.filter_words, "c", "k")
        self.ofmap_words = lookup(tiling.ofmap_words, "p", "k")
        self.shape_cycles = folds.costs[0][folds.shape.ravel()[np.take(_DIM_CELL.T, code, axis=1) * len(cmb) + combo]]
        self.ifmap_bits, self.filter_bits, self.ofmap_bits = (
            cmb.ifmap_bits[combo], cmb.filter_bits[combo], cmb.ofmap_bits[combo])
        self.dram_bw = pairs.dram_bw[pair]
        by_dim = np.stack([cmb.count_p[combo], cmb.count_c[combo], cmb.count_k[combo]])
        self.count = np.concatenate([cmb.groups[combo][None], cmb.batch[combo][None],
                                     np.take_along_axis(by_dim, np.take(_LEVEL_DIM.T, code, axis=1), axis=0)])
        advances = self.count > 1
        self.changes = {}
        for operand, relevant in _LEVEL_RELEVANT.items():
            relevant = np.take(relevant.T, code, axis=1)
            # Whether a relevant level inside each level advances: a reversed running OR.
            inner = np.zeros_like(advances)
            inner[:-1] = np.logical_or.accumulate((relevant & advances)[:0:-1], axis=0)[::-1]
            self.changes[operand] = relevant | inner
        # (5, S): whether a step where that level advanced is a p step that keeps its c tile
        # (the next row tile's halo rows are on chip).
        keeps_c = _C_OUTSIDE_P[code] | (cmb.count_c[combo] == 1)
        self.halo_at = (np.arange(5)[:, None] == _P_LEVEL[code][None, :]) & keeps_c[None, :]
        # (5, S): whether a step where that level advanced starts a sweep of p (p restarts
        # inside it) that keeps its c tile: a line buffer loads its fill (0 words without one).
        self.fill_at = (np.arange(5)[:, None] < _P_LEVEL[code][None, :]) & keeps_c[None, :]
        self.keeps_c = keeps_c
        # Buffer residency: whether the operand stays on chip across its irrelevant loop, and
        # that loop's level (a step loads such an operand only while the loop's index is 0).
        # ``resident_at[operand]`` (5, S): resident, and its irrelevant loop at that level.
        self.resident_at = {}
        for operand in _IRRELEVANT_LOOP:
            resident = np.zeros(len(code), dtype=bool)
            for order_code in np.unique(code).tolist():
                flags = cmb.resident(operand, order_code)
                if flags is not False:
                    at = np.flatnonzero(code == order_code)
                    resident[at] = flags[combo[at]]
            self.resident_at[operand] = (np.arange(5)[:, None] == _IRRELEVANT_LEVEL[operand][code][None, :]) & resident
        self.resident_ofmap = self.resident_at["ofmap"].any(axis=0)


def _stall(view: _StallView) -> np.ndarray:
    """Exact stall cycles before the final write-back: sum of max(0, L[i] - C[i-1])."""
    steps: dict[tuple, np.ndarray] = {}  # step counts of class prefixes, shared by classes
    advancing = (view.count > 1).any(axis=1).tolist()
    stall = np.zeros(len(view.code), dtype=np.int64)
    for lam, mult_spec, now, before, c_positive in _LEVEL_CLASSES:
        if before is None:  # the first step loads everything, nothing before it
            bits = ((view.ifmap_words[now] + view.ifmap_fill[now] * view.keeps_c) * view.ifmap_bits
                    + view.filter_words[now] * view.filter_bits)
            stall = stall + reference.dram_cycles_bits(bits, view.dram_bw)
            continue
        if not advancing[lam]:  # no candidate has such a step
            continue
        for end in range(1, len(mult_spec) + 1):
            if mult_spec[:end] not in steps:
                factor = _factor(view.count[mult_spec[end - 1][0]], mult_spec[end - 1][1])
                steps[mult_spec[:end]] = factor if end == 1 else steps[mult_spec[:end - 1]] * factor
        ofmap_change = view.changes["ofmap"][lam]
        # Resident partial sums: the previous tile leaves only if complete (its c index the
        # last: c restarted inside the advanced level), and none come back.
        not_last = [level for level, kind in mult_spec if level >= 2 and (level == lam or kind != "last")]
        writeback = ofmap_change
        if not_last:
            writeback = writeback & ~np.logical_or.reduce(view.resident_at["ofmap"][not_last], axis=0)
        ofmap_words = view.ofmap_words[before] * writeback
        if c_positive is not False:  # the step reads partial sums back
            if c_positive is not True:
                ofmap_change = ofmap_change & c_positive[view.code]
            ofmap_words = ofmap_words + view.ofmap_words[now] * (ofmap_change & ~view.resident_ofmap)
        # Tiled levels whose index is > 0 at this step: the one that advanced and the outer
        # ones of a class other than "zero" (the inner ones restart at 0).
        nonzero = [level for level, kind in mult_spec if level >= 2 and kind != "zero"]
        loads = {operand: view.changes[operand][lam] for operand in ("ifmap", "filter")}
        if nonzero:
            for operand in loads:  # a resident input is on chip past its loop's first index
                loads[operand] = loads[operand] & ~np.logical_or.reduce(view.resident_at[operand][nonzero], axis=0)
        bits = ((view.ifmap_words[now] - view.ifmap_halo[now] * view.halo_at[lam]
                 + view.ifmap_fill[now] * view.fill_at[lam]) * loads["ifmap"]
                * view.ifmap_bits + view.filter_words[now] * loads["filter"] * view.filter_bits
                + ofmap_words * view.ofmap_bits)
        load_cycles = reference.dram_cycles_bits(bits, view.dram_bw)
        stall = stall + steps[mult_spec] * np.maximum(load_cycles - view.shape_cycles[before], 0)
    return stall


class _Evaluated(NamedTuple):
    """Exactly evaluated candidates: combination, order row, cycles, counts and floats."""

    combo: np.ndarray
    row: np.ndarray
    total_cycles: np.ndarray
    counts: dict[str, np.ndarray]
    floats: dict[str, np.ndarray]

    def primary(self, objective: str) -> np.ndarray:
        return mapper.objective_keys(objective, self.total_cycles, self.floats["energy_pj"])[0]

    def join(self, other: "_Evaluated") -> "_Evaluated":
        """These candidates followed by ``other``'s."""
        fields = lambda a, b: {name: np.concatenate([a[name], b[name]]) for name in a}  # noqa: E731
        return _Evaluated(np.concatenate([self.combo, other.combo]), np.concatenate([self.row, other.row]),
                          np.concatenate([self.total_cycles, other.total_cycles]),
                          fields(self.counts, other.counts), fields(self.floats, other.floats))


class _Evaluator:
    """Exact cycles and result fields of candidates (combination index, order row)."""

    def __init__(self, pairs: _Pairs, tiling: _Tiling, cmb: _Combos, folds: _Folds, sweeps: dict[str, np.ndarray],
                 orders: tuple[int, ...]):
        self.pairs, self.tiling, self.cmb, self.folds, self.sweeps, self.orders = (
            pairs, tiling, cmb, folds, sweeps, orders)

    def cycles(self, combo: np.ndarray, row: np.ndarray) -> np.ndarray:
        view = _StallView(self.pairs, self.tiling, self.cmb, self.folds, combo, np.asarray(self.orders)[row])
        return self.folds.compute_cycles[combo] + _stall(view) + self.cmb.last_writeback[combo]

    def results(self, combo: np.ndarray, row: np.ndarray) -> _Evaluated:
        total = self.cycles(combo, row)
        counts = {**self.folds.counts(combo), **_dram_counts(self.cmb, self.sweeps, combo, row)}
        p, pair = self.pairs, self.cmb.pair[combo]
        floats = reference.derived_fields(
            p.macs[pair], p.rf_accesses[pair], counts, total, p.pe_rows[pair], p.pe_cols[pair], p.rf_bytes[pair],
            p.ifmap_kb[pair], p.filter_kb[pair], p.ofmap_kb[pair], p.word_bits[pair], p.freq_mhz[pair],
            p.area[pair], p.widths_of(pair))
        return _Evaluated(combo, row, total, counts, floats)

    def primary(self, objective: str, combo: np.ndarray, row: np.ndarray) -> np.ndarray:
        """The objective's primary key of candidates, exactly."""
        if objective == "latency":
            return self.cycles(combo, row)
        return self.results(combo, row).primary(objective)


def _least_fold_words(pairs: _Pairs, cmb: _Combos) -> tuple[np.ndarray, ...]:
    """Lower bounds on `_Folds.bound_counts` without the fold model, per combination.

    Every tile's fold model (`dataflows.tile_costs`; GEMM m = tp*tq, w = k_h*k_w*tc, f = tk)
    reads each of its filter words at least once (w*f) and writes each output at least once
    (m*f); the systolic ones read each (input, window) pair at least once (m*w; rs: 0, its
    diagonal multicast shares rows). Summed over the tiles: each sum counts a whole operand
    once per tile of the loop it does not depend on. Array hops: a systolic MAC takes at least
    one of its two moving operands from a neighbour (register-file blocking merges folds of one
    array dimension only), so the layer's MACs; rs: 0.
    """
    pair = cmb.pair
    images = cmb.groups * cmb.batch
    pixels = pairs.out_h[pair] * pairs.out_w[pair]
    window = pairs.k_h[pair] * pairs.k_w[pair]
    ifmap = np.where(pairs.dataflow[pair] == RS, 0, images * cmb.count_k * pixels * window * pairs.cg[pair])
    filt = images * cmb.count_p * window * pairs.cg[pair] * pairs.kg[pair]
    ofmap = images * cmb.count_c * pixels * pairs.kg[pair]
    hops = np.where(pairs.dataflow[pair] == RS, 0, pairs.packed_macs[pair])
    return ifmap, filt, ofmap, hops


def _energy_bound(coef: dict[str, np.ndarray], cmb: _Combos, sweeps: dict[str, np.ndarray], fold_words,
                  cycles: np.ndarray) -> np.ndarray:
    """(orders, M) lower bound on energy_pj, given lower bounds on cycles.

    ``fold_words``: the fold model's SRAM ifmap reads, filter reads, ofmap accesses and array
    hops per combination (`_Folds.bound_counts`), lower bounds on them (`_least_fold_words`),
    or None (then they count as zero).
    """
    pair = cmb.pair
    ofmap = coef["ofmap"][pair]
    base = coef["fixed"][pair] + ofmap * ((cmb.count_c - 1) * cmb.ofmap_total)
    if fold_words is not None:
        base = base + (coef["ifmap"][pair] * fold_words[0] + coef["filter"][pair] * fold_words[1]
                       + ofmap * fold_words[2] + coef["hop"][pair] * fold_words[3])
    per_filter = (coef["filter"][pair] + coef["dram_filter"][pair]) * cmb.filter_total
    per_ofmap = (ofmap + coef["dram_ofmap"][pair]) * cmb.ofmap_total
    value = (base + (coef["ifmap"][pair] + coef["dram_ifmap"][pair]) * sweeps["ifmap_words"]
             + per_filter * sweeps["filter"]
             + per_ofmap * (2 * sweeps["ofmap"] - 1) + coef["leak"][pair] * cycles)
    return value * (1.0 - BOUND_MARGIN)


def _bound_key(objective: str, coef, cmb: _Combos, sweeps, fold_words, cycles: np.ndarray) -> np.ndarray:
    """(orders, M) lower bound on the objective's primary key, given lower bounds on cycles."""
    if objective == "latency":
        return cycles
    bound = _energy_bound(coef, cmb, sweeps, fold_words, cycles)
    if objective == "energy":
        return bound
    return bound * cycles * (1.0 - BOUND_MARGIN)


def _per_pair_min(values: np.ndarray, pair: np.ndarray, count: int) -> np.ndarray:
    """Minimum of ``values`` over each pair's entries (``pair`` sorted); inf where none."""
    out = np.full(count, np.inf)
    if len(pair):
        starts = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]])
        out[pair[starts]] = np.minimum.reduceat(values, starts)
    return out


def _probe(key: np.ndarray, by_combo: np.ndarray, pair: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pair, one candidate (combination, order row) with the smallest ``key`` (orders, M).

    ``by_combo``: ``key.min(axis=0)``.
    """
    best = _per_pair_min(by_combo.astype(np.float64), pair, count)
    at_best = np.flatnonzero(by_combo == best[pair])
    first = np.ones(len(at_best), dtype=bool)
    first[1:] = pair[at_best][1:] != pair[at_best][:-1]
    combo = at_best[first]
    return combo, key[:, combo].argmin(axis=0)


def _search(pairs: _Pairs, tiling: _Tiling, cmb: _Combos, objective: str,
            table: _KeyTable) -> tuple[_Evaluator, _Evaluated]:
    """Prune the search's candidates by bounds and evaluate exactly those that can win."""
    orders = tuple(range(len(LOOP_ORDERS)))
    sweeps = _sweeps(cmb, orders)
    traffic = _traffic_cycles(cmb, sweeps) + cmb.last_writeback
    coef = pairs.energy_coefficients() if objective != "latency" else None
    # 1. Before any fold cost: probe the best bound (traffic, or first load + the least
    # compute + final write-back), drop what cannot beat it.
    least = _first_load(pairs, tiling, cmb) + _least_compute(pairs, tiling, cmb) + cmb.last_writeback
    key = _bound_key(objective, coef, cmb, sweeps, _least_fold_words(pairs, cmb) if coef is not None else None,
                     np.maximum(traffic, least))
    by_combo = key.min(axis=0)
    probe_combo, probe_row = _probe(key, by_combo, cmb.pair, pairs.count)
    probe_cmb = cmb.restrict(probe_combo)
    probe_sweeps = {name: values[:, probe_combo] for name, values in sweeps.items()}
    probe = _Evaluator(pairs, tiling, probe_cmb, _Folds(pairs, tiling, probe_cmb, table), probe_sweeps, orders)
    threshold = np.full(pairs.count, np.inf)
    threshold[probe_cmb.pair] = probe.primary(objective, np.arange(len(probe_combo)), probe_row)
    keep = np.flatnonzero(by_combo <= threshold[cmb.pair])
    cmb = cmb.restrict(keep)
    sweeps = {name: values[:, keep] for name, values in sweeps.items()}
    # 2. With fold costs: the full bound; probe the best one (usually the winner), then
    # evaluate exactly every candidate whose bound does not exceed the best value known.
    folds = _Folds(pairs, tiling, cmb, table)
    cycles = np.maximum(folds.compute_cycles + folds.first_load + cmb.last_writeback,
                        traffic[:, keep] + folds.last_cycles)
    key = _bound_key(objective, coef, cmb, sweeps, folds.bound_counts() if coef is not None else None, cycles)
    evaluator = _Evaluator(pairs, tiling, cmb, folds, sweeps, orders)
    probe = evaluator.results(*_probe(key, key.min(axis=0), cmb.pair, pairs.count))
    probe_pair = cmb.pair[probe.combo]
    threshold[probe_pair] = np.minimum(threshold[probe_pair], probe.primary(objective))
    survive = key <= threshold[cmb.pair]
    survive[probe.row, probe.combo] = False  # evaluated already
    row, combo = np.nonzero(survive)
    return evaluator, probe.join(evaluator.results(combo, row))


def _empty_result(count: int) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, dtype in reference.RESULT_DTYPES.items():
        if dtype == "bool":
            out[name] = np.zeros(count, dtype=bool)
        elif dtype == "int64":
            out[name] = np.full(count, -1, dtype=np.int64)
        elif dtype == "float64":
            out[name] = np.full(count, np.nan)
        else:
            out[name] = np.full(count, "", dtype=object)
    return out


def _simulate_chunk(columns: dict[str, np.ndarray], mapping: str | Mapping, objective: str,
                    table: _KeyTable) -> dict[str, np.ndarray]:
    pairs = _Pairs(columns)
    if mapping == "search":
        tiling, feasible = _Tiling.search(pairs)
        evaluator, done = _search(pairs, tiling, _Combos(pairs, tiling, feasible), objective, table)
    else:
        totals = {"p": pairs.out_h, "q": pairs.out_w, "c": pairs.cg, "k": pairs.kg}
        if mapping == "scalesim":  # the whole layer, capacities not enforced, no RF blocking
            tiling = _Tiling(pairs, {dim: total[None, :] for dim, total in totals.items()}, blocking=False)
            feasible = pairs.fits.reshape(1, 1, 1, pairs.count).copy()
            orders = (LOOP_ORDERS.index("pck"),)
        else:  # a tile larger than its dimension is the whole dimension
            widths: dict[int, int] = {}  # out_w -> tile columns; raises the reference's SpaceError, row order
            for out_w in pairs.out_w.tolist():
                if out_w not in widths:
                    widths[out_w] = mapping.width_tile(out_w)
            tiles = {"p": mapping.tile_p, "q": np.array([widths[w] for w in pairs.out_w.tolist()], dtype=np.int64),
                     "c": mapping.tile_c, "k": mapping.tile_k}
            tiles = {dim: np.minimum(tile, totals[dim]) for dim, tile in tiles.items()}
            tiling = _Tiling(pairs, {dim: np.broadcast_to(tile, (pairs.count,))[None, :].astype(np.int64)
                                     for dim, tile in tiles.items()})
            feasible = tiling.fits(pairs)
            orders = (LOOP_ORDERS.index(mapping.order),)
        cmb = _Combos(pairs, tiling, feasible)
        evaluator = _Evaluator(pairs, tiling, cmb, _Folds(pairs, tiling, cmb, table), _sweeps(cmb, orders), orders)
        done = evaluator.results(np.arange(len(cmb)), np.zeros(len(cmb), dtype=np.int64))
    cmb, combo, row = evaluator.cmb, done.combo, done.row
    pair = cmb.pair[combo]
    # The reference's choice: smallest (primary, secondary, candidate index) per pair.
    primary, secondary = mapper.objective_keys(objective, done.total_cycles, done.floats["energy_pj"])
    position = (cmb.slot_p[combo] * LADDER_SLOTS + cmb.slot_c[combo]) * LADDER_SLOTS + cmb.slot_k[combo]
    ranking = np.lexsort((row * LADDER_SLOTS ** 3 + position, secondary, primary, pair))
    first = np.ones(len(ranking), dtype=bool)
    first[1:] = pair[ranking][1:] != pair[ranking][:-1]
    best = ranking[first]  # index into the evaluated candidates
    chosen = pair[best]

    out = _empty_result(pairs.count)
    out["area_mm2"] = pairs.area.astype(np.float64)
    out["feasible"][chosen] = True
    out["total_cycles"][chosen] = done.total_cycles[best]
    for name in ("compute_cycles", *reference.COUNT_FIELDS):
        out[name][chosen] = done.counts[name][best]
    out["stall_cycles"][chosen] = done.total_cycles[best] - done.counts["compute_cycles"][best]
    for name, values in done.floats.items():
        out[name][chosen] = values[best]
    out["macs"][chosen] = pairs.macs[chosen]
    out["rf_accesses"][chosen] = pairs.rf_accesses[chosen]
    if mapping == "search" or mapping == "scalesim":
        out["map_kind"][chosen] = mapping
        out["map_order"][chosen] = np.array([LOOP_ORDERS[code] for code in evaluator.orders],
                                            dtype=object)[row[best]]
        for dim in _DIMS:
            slot = getattr(cmb, "slot_" + dim)[combo[best]]
            tiles = getattr(evaluator.tiling, "tile_" + dim)  # (S, B)
            out["map_tile_" + dim][chosen] = tiles.ravel()[slot * pairs.count + chosen]
        slot = cmb.slot_p[combo[best]]
        out["map_tile_q"][chosen] = evaluator.tiling.tile_q.ravel()[slot * pairs.count + chosen]
    else:
        for name, value in mapping.to_dict().items():
            out[name][chosen] = value
        out["map_tile_q"][chosen] = evaluator.tiling.tile_q[0, chosen]
    return out


def _packed_columns(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The columns of the lane-packed layers (`precision.pack`), plus their widths
    (`_WIDTH_COLUMNS`) and ``macs``, the real layers' MACs."""
    columns = dict(columns)
    cg = columns["in_c"] // columns["groups"]
    widths = precision.resolve(columns["w_bits"], columns["a_bits"], columns["word_bits"], columns["pe_kind"], cg)
    columns["macs"] = (columns["batch"] * _out_size(columns, "h") * _out_size(columns, "w") * columns["out_c"] * cg
                       * columns["k_h"] * columns["k_w"])
    columns["in_c"] = columns["groups"] * widths.packed_cg
    for name, values in zip(_WIDTH_COLUMNS, widths):
        columns[name] = np.broadcast_to(values, (len(cg),))
    return columns


def _out_size(columns: dict[str, np.ndarray], axis: str) -> np.ndarray:
    return (columns["in_" + axis] + 2 * columns["pad"] - columns["k_" + axis]) // columns["stride"] + 1


def simulate_columns(columns: dict[str, np.ndarray], mapping: str | Mapping, objective: str) -> dict[str, Any]:
    """Simulate validated pair columns (see `simulate_batch`); returns RESULT_FIELDS arrays.

    Parameters
    ----------
    columns : dict of numpy arrays
        The LAYER_FIELDS and ACCELERATOR_FIELDS columns (ints as int64, ``dataflow`` as its
        code), already validated.
    mapping : {"search", "scalesim"} or Mapping
    objective : {"latency", "energy", "edp"}

    Returns
    -------
    dict of numpy arrays
        One array per RESULT_FIELDS name.
    """
    count = len(columns["in_h"])
    if mapping == "scalesim":  # SCALE-Sim's output grid, as the reference does
        columns = dict(columns)
        for size, kernel in (("in_h", "k_h"), ("in_w", "k_w")):
            columns[size] = columns[size] + reference.scalesim_overhang(
                columns[size], columns[kernel], columns["stride"], columns["pad"])
    columns = _packed_columns(columns)
    out = _empty_result(count)
    table = _KeyTable()
    for start in range(0, count, CHUNK_PAIRS):
        stop = min(start + CHUNK_PAIRS, count)
        chunk = _simulate_chunk({name: values[start:stop] for name, values in columns.items()}, mapping, objective,
                                table)
        for name in out:
            out[name][start:stop] = chunk[name]
    return out
