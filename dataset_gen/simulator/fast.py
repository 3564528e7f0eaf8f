"""The fast engine: the reference model, vectorised over pairs and candidate mappings.

Exactly the reference's numbers (tests/dataset_gen/test_simulator_fast.py proves it on
random cases), computed without stepping the nest:

- **Tile shapes.** Each tiled loop has full tiles and one edge tile, so a nest has at most
  8 tile shapes; compute cycles and SRAM counts are sums over shapes times their counts.
- **The pipeline recurrence collapses.** In the double-buffered recurrence the load of tile
  ``i`` starts exactly when compute ``i-1`` starts, because both wait for the same two
  events (``max(load_end[i-1], compute_end[i-2])``). Hence, with ``C[-1] = 0``::

      compute_end[i] = compute_end[i-1] + max(0, L[i] - C[i-1]) + C[i]

  (proof: ``compute_end[i-1] - max(load_end[i-1], compute_end[i-2]) = C[i-1]`` by the
  recurrence itself). The stall of a step depends only on the step and its predecessor,
  and the exact total is ``sum C + sum max(0, L[i] - C[i-1]) + final write-back``.
- **Transition classes.** A step's DRAM words and its predecessor's shape depend only on
  which loop level advanced at it (``lam``) and on whether each outer tiled loop sits at its
  first, a middle or its last index. There are 29 such classes per loop order; each is
  evaluated once per candidate and weighted by how many steps it covers.

- **Pruning by bounds.** Every objective grows with total cycles. For latency, tile
  combinations whose DRAM traffic alone (the channel is serial) exceeds the exact latency
  of the pair's least-traffic candidate are dropped before any fold cost is computed. Then
  each candidate gets a lower bound (``sum C + L[0] + final write-back`` and ``traffic +
  C[last] + final write-back``); the candidates with the best bound are evaluated exactly,
  and only those whose bound does not exceed that value are evaluated and ranked.

Candidates are evaluated in chunks of pairs (`CHUNK_COMBOS` bounds memory); all six loop
orders share a tile combination's fold costs. The best candidate per pair is picked with
the reference's keys: (primary, secondary, candidate index).
"""

from __future__ import annotations

from itertools import product
from typing import Any

import numpy as np

from ..space import LOOP_ORDERS, Mapping
from . import energy, mapper, reference
from .dataflows import RF_ACCESSES_PER_MAC, RS, rf_words_required, tile_costs

CHUNK_PAIRS = 16384
CHUNK_COMBOS = 262144
LADDER_SLOTS = mapper.LADDER_STEPS + 1
_RELEVANT = {"ifmap": "gnpc", "filter": "gck", "ofmap": "gnpk"}
FULL, EDGE = 0, 1


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
        self.macs = self.batch * self.out_h * self.out_w * self.out_c * self.cg * self.k_h * self.k_w
        self.rf_accesses = self.macs * RF_ACCESSES_PER_MAC[self.dataflow]
        self.area = energy.area_mm2(self.pe_rows, self.pe_cols, self.rf_bytes, self.ifmap_kb,
                                    self.filter_kb, self.ofmap_kb, self.word_bits)
        self.rf_ok = mapper.rf_words(self.rf_bytes, self.word_bits) >= rf_words_required(self.dataflow, self.k_w)
        self.half_ifmap = mapper.half_buffer_words(self.ifmap_kb, self.word_bits)
        self.half_filter = mapper.half_buffer_words(self.filter_kb, self.word_bits)
        self.half_ofmap = mapper.half_buffer_words(self.ofmap_kb, self.word_bits)


def _ladders(dim: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, 6) ladder values (largest first) and a mask of the slots that exist."""
    powers = 4 ** np.arange(mapper.LADDER_STEPS, dtype=np.int64)
    values = np.concatenate([_ceil_div(dim[:, None], powers[None, :]),
                             np.ones((len(dim), 1), dtype=np.int64)], axis=1)
    valid = np.ones_like(values, dtype=bool)
    valid[:, 1:] = values[:, 1:] != values[:, :-1]
    return values, valid


def _search_combos(pairs: _Pairs) -> dict[str, np.ndarray]:
    """Capacity-feasible tile combinations of every pair, in candidate order within a pair."""
    p_values, p_valid = _ladders(pairs.out_h)
    c_values, c_valid = _ladders(pairs.cg)
    k_values, k_valid = _ladders(pairs.kg)
    col = lambda x: x[:, None, None]  # noqa: E731  (B,) -> (B, 1, 1)
    ifmap = (mapper.ifmap_tile_words(p_values[:, :, None], c_values[:, None, :], col(pairs.in_h),
                                     col(pairs.in_w), col(pairs.stride), col(pairs.k_h))
             <= col(pairs.half_ifmap))  # (B, p, c)
    filt = (mapper.filter_tile_words(c_values[:, :, None], k_values[:, None, :], col(pairs.k_h), col(pairs.k_w))
            <= col(pairs.half_filter))  # (B, c, k)
    ofmap = mapper.ofmap_tile_words(p_values[:, :, None], k_values[:, None, :], col(pairs.out_w)) <= col(
        pairs.half_ofmap)  # (B, p, k)
    ok = (ifmap[:, :, :, None] & filt[:, None, :, :] & ofmap[:, :, None, :]
          & p_valid[:, :, None, None] & c_valid[:, None, :, None] & k_valid[:, None, None, :]
          & pairs.rf_ok[:, None, None, None])  # (B, p, c, k)
    pair, ip, ic, ik = np.nonzero(ok)
    return {"pair": pair, "tile_p": p_values[pair, ip], "tile_c": c_values[pair, ic],
            "tile_k": k_values[pair, ik],
            "position": (ip * LADDER_SLOTS + ic) * LADDER_SLOTS + ik}


def _fixed_combos(pairs: _Pairs, mapping: Mapping | None) -> dict[str, np.ndarray]:
    """One combination per pair: SCALE-Sim's whole-layer tile, or an explicit mapping."""
    if mapping is None:  # scalesim: capacities not enforced
        keep = np.ones(pairs.count, dtype=bool)
        tiles = (pairs.out_h, pairs.cg, pairs.kg)
    else:
        tiles = tuple(np.minimum(value, dim) for value, dim in (
            (mapping.tile_p, pairs.out_h), (mapping.tile_c, pairs.cg), (mapping.tile_k, pairs.kg)))
        keep = (pairs.rf_ok
                & (mapper.ifmap_tile_words(tiles[0], tiles[1], pairs.in_h, pairs.in_w, pairs.stride, pairs.k_h)
                   <= pairs.half_ifmap)
                & (mapper.filter_tile_words(tiles[1], tiles[2], pairs.k_h, pairs.k_w) <= pairs.half_filter)
                & (mapper.ofmap_tile_words(tiles[0], tiles[2], pairs.out_w) <= pairs.half_ofmap))
    pair = np.flatnonzero(keep)
    return {"pair": pair, "tile_p": tiles[0][pair], "tile_c": tiles[1][pair], "tile_k": tiles[2][pair],
            "position": np.zeros(len(pair), dtype=np.int64)}


def _shape_costs(pairs: _Pairs, pair: np.ndarray, size: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Fold costs of the 8 tile shapes of every combination: 4 arrays of shape (M, 2, 2, 2).

    rs and systolic combinations are computed apart, so each fold model runs only on its own.
    """
    dataflow = pairs.dataflow[pair]
    costs = [np.empty((len(pair), 2, 2, 2), dtype=np.int64) for _ in range(4)]
    for part in (np.flatnonzero(dataflow == RS), np.flatnonzero(dataflow != RS)):
        if not len(part):
            continue
        on = pair[part]
        column = lambda x: x[on][:, None, None, None]  # noqa: E731
        values = tile_costs(dataflow[part][:, None, None, None], size["p"][part][:, :, None, None],
                            size["c"][part][:, None, :, None], size["k"][part][:, None, None, :],
                            column(pairs.out_w), column(pairs.k_h), column(pairs.k_w), column(pairs.stride),
                            column(pairs.pe_rows), column(pairs.pe_cols))
        for target, value in zip(costs, values):
            target[part] = value
    return costs


class _Combos:
    """Tile combinations (M of them): sizes, tile words, counts; fold costs on demand.

    Arrays are per combination; ``(M, 2)`` / ``(M, 2, 2)`` / ``(M, 2, 2, 2)`` arrays are
    indexed by shape class (FULL or EDGE) of p, c, k.
    """

    _PER_COMBO = ("pair", "position", "tile_p", "tile_c", "tile_k", "groups", "batch", "word_bits",
                  "dram_bw", "images", "ofmap_total", "ifmap_words", "filter_words", "ofmap_words",
                  "ifmap_total", "filter_total", "first_load", "last_writeback_words", "last_writeback",
                  "size_p", "size_c", "size_k", "mult_p", "mult_c", "mult_k", "count_p", "count_c", "count_k")

    def __init__(self, pairs: _Pairs, combos: dict[str, np.ndarray] | None):
        if combos is None:  # an empty shell for `restrict`
            return
        pair = self.pair = combos["pair"]
        self.position = combos["position"]
        self.tile_p, self.tile_c, self.tile_k = combos["tile_p"], combos["tile_c"], combos["tile_k"]
        take = lambda x: x[pair]  # noqa: E731
        self.groups, self.batch = take(pairs.groups), take(pairs.batch)
        out_h, out_w, cg, kg = take(pairs.out_h), take(pairs.out_w), take(pairs.cg), take(pairs.kg)
        self.word_bits, self.dram_bw = take(pairs.word_bits), take(pairs.dram_bw)
        for dim, total, tile in (("p", out_h, self.tile_p), ("c", cg, self.tile_c), ("k", kg, self.tile_k)):
            count = _ceil_div(total, tile)
            setattr(self, "count_" + dim, count)
            # (M, 2) sizes: the full tile and the last (edge) tile; n-1 of the first, 1 edge.
            setattr(self, "size_" + dim, np.stack([tile, total - (count - 1) * tile], axis=1))
            setattr(self, "mult_" + dim, np.stack([count - 1, np.ones_like(count)], axis=1))
        self.images = self.groups * self.batch
        self.ofmap_total = self.images * out_h * out_w * kg
        column = lambda x: take(x)[:, None, None]  # noqa: E731
        self.ifmap_words = mapper.ifmap_tile_words(self.size_p[:, :, None], self.size_c[:, None, :],
                                                   column(pairs.in_h), column(pairs.in_w),
                                                   column(pairs.stride), column(pairs.k_h))
        self.filter_words = mapper.filter_tile_words(self.size_c[:, :, None], self.size_k[:, None, :],
                                                     column(pairs.k_h), column(pairs.k_w))
        self.ofmap_words = mapper.ofmap_tile_words(self.size_p[:, :, None], self.size_k[:, None, :],
                                                   out_w[:, None, None])
        weight_pc = self.mult_p[:, :, None] * self.mult_c[:, None, :]
        weight_ck = self.mult_c[:, :, None] * self.mult_k[:, None, :]
        self.ifmap_total = self.images * (weight_pc * self.ifmap_words).sum(axis=(1, 2))
        self.filter_total = self.groups * (weight_ck * self.filter_words).sum(axis=(1, 2))
        self.first_load = reference.dram_cycles(self.ifmap_words[:, FULL, FULL] + self.filter_words[:, FULL, FULL],
                                                self.word_bits, self.dram_bw)
        self.last_writeback_words = self.ofmap_words[:, EDGE, EDGE]
        self.last_writeback = reference.dram_cycles(self.last_writeback_words, self.word_bits, self.dram_bw)

    @property
    def counts(self) -> dict[str, np.ndarray]:
        return {"p": self.count_p, "c": self.count_c, "k": self.count_k}

    def __len__(self) -> int:
        return len(self.pair)

    def restrict(self, index: np.ndarray) -> "_Combos":
        """The combinations ``index`` only (fold costs not carried over)."""
        part = _Combos(None, None)
        for name in self._PER_COMBO:
            setattr(part, name, getattr(self, name)[index])
        return part

    def add_fold_costs(self, pairs: _Pairs) -> "_Combos":
        """Compute cycles and SRAM counts of every combination (sums over its tile shapes)."""
        costs = _shape_costs(pairs, self.pair, {"p": self.size_p, "c": self.size_c, "k": self.size_k})
        self.shape_cycles = costs[0]  # (M, 2, 2, 2)
        weight = self.mult_p[:, :, None, None] * self.mult_c[:, None, :, None] * self.mult_k[:, None, None, :]
        sums = [self.images * (weight * cost).sum(axis=(1, 2, 3)) for cost in costs]
        self.compute_cycles, self.sram_ifmap_reads, self.sram_filter_reads, self.sram_ofmap_writes = sums
        # Partial sums read back at every tile with c index > 0: (n_c - 1) sweeps of the ofmap.
        self.sram_ofmap_reads = (self.count_c - 1) * self.ofmap_total
        self.last_cycles = self.shape_cycles[:, EDGE, EDGE, EDGE]
        return self


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


def _loop_counts(cmb, order: str) -> list[np.ndarray]:
    """Iteration counts of the five loop levels (g, n, then the order's tiled loops)."""
    count = {"g": cmb.groups, "n": cmb.batch, **cmb.counts}
    return [count[d] for d in ("g", "n", *order)]


def _order_dram_words(cmb: "_Combos", order: str) -> dict[str, np.ndarray]:
    """DRAM words of every combination under one loop order, in closed form.

    An operand's tile is reloaded at every iteration of the innermost loop relevant to it
    that has more than one iteration (and once at the start), so the operand is swept
    once per iteration of the irrelevant loops outside that loop. Ofmap tiles are written
    back once per residency; a residency that starts at a c index > 0 first reads its
    partial sums back, which happens iff the c loop lies outside that innermost loop.
    """
    dims = ("g", "n", *order)
    counts = _loop_counts(cmb, order)
    words = {}
    for operand, total in (("ifmap", cmb.ifmap_total), ("filter", cmb.filter_total), ("ofmap", cmb.ofmap_total)):
        sweeps = np.ones(len(cmb), dtype=np.int64)
        inner_advances = np.zeros(len(cmb), dtype=bool)
        for level in range(4, -1, -1):
            if dims[level] in _RELEVANT[operand]:
                inner_advances = inner_advances | (counts[level] > 1)
            else:
                sweeps = np.where(inner_advances, sweeps * counts[level], sweeps)
        words[operand] = sweeps * total
        if operand == "ofmap":  # the only loop irrelevant to ofmap is c
            words["psum"] = (sweeps - 1) * total
    return {"dram_ifmap_reads": words["ifmap"], "dram_filter_reads": words["filter"],
            "dram_ofmap_reads": words["psum"], "dram_ofmap_writes": words["ofmap"]}


def _order_stall(cmb, order: str) -> np.ndarray:
    """Exact stall cycles before the final write-back: sum of max(0, L[i] - C[i-1])."""
    dims = ("g", "n", *order)
    counts = _loop_counts(cmb, order)
    advances = [c > 1 for c in counts]
    size = len(cmb.word_bits)
    changes_cache: dict[tuple[str, int], Any] = {}

    def changes(operand: str, lam: int):
        """Whether the operand's tile changes at a step where level ``lam`` advanced."""
        key = (operand, lam)
        if key not in changes_cache:
            if lam < 0 or dims[lam] in _RELEVANT[operand]:
                flag: Any = True
            else:
                flag = np.zeros(size, dtype=bool)
                for level in range(lam + 1, 5):
                    if dims[level] in _RELEVANT[operand]:
                        flag = flag | advances[level]
            changes_cache[key] = flag
        return changes_cache[key]

    factors: dict[tuple[int, str], np.ndarray] = {}
    stall = np.zeros(size, dtype=np.int64)
    for lam, mult_spec, cur, prev, c_positive in _TRANSITIONS[order]:
        mult = None
        for level, kind in mult_spec:
            if (level, kind) not in factors:
                factors[(level, kind)] = _factor(counts[level], kind)
            mult = factors[(level, kind)] if mult is None else mult * factors[(level, kind)]
        words = np.where(changes("ifmap", lam), cmb.ifmap_words[:, cur["p"], cur["c"]], 0)
        words = words + np.where(changes("filter", lam), cmb.filter_words[:, cur["c"], cur["k"]], 0)
        if prev is None:  # the first step: nothing before it
            stall = stall + reference.dram_cycles(words, cmb.word_bits, cmb.dram_bw)
            continue
        ofmap_change = changes("ofmap", lam)
        if c_positive:
            words = words + np.where(ofmap_change, cmb.ofmap_words[:, cur["p"], cur["k"]], 0)
        words = words + np.where(ofmap_change, cmb.ofmap_words[:, prev["p"], prev["k"]], 0)
        load_cycles = reference.dram_cycles(words, cmb.word_bits, cmb.dram_bw)
        previous_cycles = cmb.shape_cycles[:, prev["p"], prev["c"], prev["k"]]
        stall = stall + mult * np.maximum(load_cycles - previous_cycles, 0)
    return stall


_TRANSITIONS = {order: list(_transition_classes(order)) for order in LOOP_ORDERS}


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


class _StallView:
    """What `_order_stall` reads, for some combinations of a `_Combos` with fold costs."""

    def __init__(self, cmb: _Combos, index: np.ndarray):
        for name in ("ifmap_words", "filter_words", "ofmap_words", "shape_cycles", "groups", "batch",
                     "word_bits", "dram_bw"):
            setattr(self, name, getattr(cmb, name)[index])
        self.counts = {dim: values[index] for dim, values in cmb.counts.items()}


class _Candidates:
    """(order, combination) candidates of a chunk with closed-form counts and cycle bounds."""

    def __init__(self, pairs: _Pairs, cmb: _Combos, orders: tuple[str, ...]):
        size = len(cmb)
        self.orders = orders
        self.combo = np.tile(np.arange(size), len(orders))
        self.order = np.repeat(np.arange(len(orders)), size)
        self.rank = self.order * LADDER_SLOTS ** 3 + cmb.position[self.combo]
        self.pair = cmb.pair[self.combo]
        per_order = [_order_dram_words(cmb, order) for order in orders]
        self.counts = {name: np.concatenate([words[name] for words in per_order]) for name in per_order[0]}
        for name in ("compute_cycles", "sram_ifmap_reads", "sram_filter_reads", "sram_ofmap_reads",
                     "sram_ofmap_writes"):
            self.counts[name] = getattr(cmb, name)[self.combo]
        # Lower bound on total cycles. Compute cannot start before the first load and the
        # last write-back follows the last compute; the DRAM channel is serial and the last
        # load precedes the last compute. (The margin keeps the bound valid under rounding.)
        moved = (self.counts["dram_ifmap_reads"] + self.counts["dram_filter_reads"]
                 + self.counts["dram_ofmap_reads"] + self.counts["dram_ofmap_writes"]
                 - cmb.last_writeback_words[self.combo])
        dram_bound = _traffic_bound(moved, cmb.word_bits[self.combo], cmb.dram_bw[self.combo])
        self.lower_cycles = np.maximum(
            self.counts["compute_cycles"] + cmb.first_load[self.combo] + cmb.last_writeback[self.combo],
            dram_bound + cmb.last_cycles[self.combo] + cmb.last_writeback[self.combo])

    def exact_cycles(self, cmb: _Combos, chosen: np.ndarray) -> np.ndarray:
        """Exact total cycles of the candidates ``chosen`` (indices), by loop order."""
        total = np.empty(len(chosen), dtype=np.int64)
        orders = self.order[chosen]
        for code, order in enumerate(self.orders):
            where = np.flatnonzero(orders == code)
            if len(where):
                combos = self.combo[chosen[where]]
                stall = _order_stall(_StallView(cmb, combos), order)
                total[where] = (cmb.compute_cycles[combos] + stall + cmb.last_writeback[combos])
        return total


def _derived(pairs: _Pairs, cand: _Candidates, chosen: np.ndarray, total_cycles: np.ndarray):
    pair = cand.pair[chosen]
    take = lambda x: x[pair]  # noqa: E731
    counts = {name: values[chosen] for name, values in cand.counts.items()}
    return reference.derived_fields(
        take(pairs.macs), take(pairs.rf_accesses), counts, total_cycles, take(pairs.pe_rows),
        take(pairs.pe_cols), take(pairs.rf_bytes), take(pairs.ifmap_kb), take(pairs.filter_kb),
        take(pairs.ofmap_kb), take(pairs.word_bits), take(pairs.freq_mhz), take(pairs.area))


def _primary(objective: str, total_cycles, energy_pj):
    return mapper.objective_keys(objective, total_cycles, energy_pj)[0]


def _per_pair_min(values: np.ndarray, pair: np.ndarray, count: int) -> np.ndarray:
    """Minimum of ``values`` over each pair's entries (``pair`` sorted); inf where none."""
    out = np.full(count, np.inf)
    if len(pair):
        starts = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]])
        out[pair[starts]] = np.minimum.reduceat(values, starts)
    return out


def _prune_by_traffic(pairs: _Pairs, cmb: _Combos, orders: tuple[str, ...]) -> _Combos:
    """Drop combinations whose DRAM traffic alone makes them slower than a known candidate.

    Latency only, and before any fold cost is computed: the DRAM channel is serial, so
    total cycles >= (DRAM words moved) * bytes per word / dram_bw. The probe of a pair is its
    least-traffic candidate, simulated exactly.
    """
    moved = np.stack([sum(words.values()) for words in (_order_dram_words(cmb, order) for order in orders)])
    lower = _traffic_bound(moved - cmb.last_writeback_words, cmb.word_bits, cmb.dram_bw) + cmb.last_writeback
    best_order = lower.argmin(axis=0)
    lower = lower.min(axis=0)  # (M,)
    is_min = lower == _per_pair_min(lower, cmb.pair, pairs.count)[cmb.pair]
    candidates = np.flatnonzero(is_min)
    _, first = np.unique(cmb.pair[candidates], return_index=True)
    probe = candidates[first]
    probes = cmb.restrict(probe).add_fold_costs(pairs)
    threshold = np.full(pairs.count, np.inf)
    for code, order in enumerate(orders):
        where = np.flatnonzero(best_order[probe] == code)
        if len(where):
            view = _StallView(probes, where)
            threshold[probes.pair[where]] = (probes.compute_cycles[where] + _order_stall(view, order)
                                             + probes.last_writeback[where])
    return cmb.restrict(np.flatnonzero(lower <= threshold[cmb.pair]))


def _traffic_bound(words, word_bits, dram_bw):
    """A lower bound on the DRAM cycles of moving ``words`` in any number of transfers.

    sum(ceil(x_i)) >= sum(x_i); the relative margin keeps the bound valid under rounding.
    """
    return np.floor(words * word_bits / 8.0 / dram_bw * (1.0 - 1e-12)).astype(np.int64)


def _simulate_chunk(columns: dict[str, np.ndarray], mapping: str | Mapping, objective: str) -> dict[str, np.ndarray]:
    pairs = _Pairs(columns)
    if mapping == "search":
        combos, orders = _search_combos(pairs), LOOP_ORDERS
    elif mapping == "scalesim":
        combos, orders = _fixed_combos(pairs, None), ("pck",)
    else:
        combos, orders = _fixed_combos(pairs, mapping), (mapping.order,)
    cmb = _Combos(pairs, combos)
    if mapping == "search" and objective == "latency":
        cmb = _prune_by_traffic(pairs, cmb, orders)
    cmb.add_fold_costs(pairs)
    cand = _Candidates(pairs, cmb, orders)
    everyone = np.arange(len(cand.pair))
    # Prune: every objective grows with total cycles, so a candidate whose objective at its
    # lower bound exceeds the exact objective of some candidate of its pair cannot win.
    if objective == "latency":
        lower = cand.lower_cycles
    else:
        lower = _primary(objective, cand.lower_cycles,
                         _derived(pairs, cand, everyone, cand.lower_cycles)["energy_pj"])
    lower_by_combo = lower.reshape(len(orders), len(cmb)).min(axis=0)
    best_lower = _per_pair_min(lower_by_combo.astype(np.float64), cmb.pair, pairs.count)
    probes = np.flatnonzero(lower == best_lower[cand.pair])
    probe_cycles = cand.exact_cycles(cmb, probes)
    probe_value = _primary(objective, probe_cycles, _derived(pairs, cand, probes, probe_cycles)["energy_pj"])
    threshold = np.full(pairs.count, np.inf)
    np.minimum.at(threshold, cand.pair[probes], probe_value)
    survivors = np.flatnonzero(lower <= threshold[cand.pair])
    total_cycles = cand.exact_cycles(cmb, survivors)
    floats = _derived(pairs, cand, survivors, total_cycles)
    primary, secondary = mapper.objective_keys(objective, total_cycles, floats["energy_pj"])
    # The reference's choice: smallest (primary, secondary, candidate index) per pair.
    pair = cand.pair[survivors]
    ranking = np.lexsort((cand.rank[survivors], secondary, primary, pair))
    first = np.ones(len(ranking), dtype=bool)
    first[1:] = pair[ranking][1:] != pair[ranking][:-1]
    best = ranking[first]  # index into survivors
    chosen = pair[best]
    winner = survivors[best]

    out = _empty_result(pairs.count)
    out["area_mm2"] = pairs.area.astype(np.float64)
    out["feasible"][chosen] = True
    out["total_cycles"][chosen] = total_cycles[best]
    for name in ("compute_cycles", *reference.COUNT_FIELDS):
        out[name][chosen] = cand.counts[name][winner]
    out["stall_cycles"][chosen] = total_cycles[best] - cand.counts["compute_cycles"][winner]
    for name, values in floats.items():
        out[name][chosen] = values[best]
    out["macs"][chosen] = pairs.macs[chosen]
    out["rf_accesses"][chosen] = pairs.rf_accesses[chosen]
    if mapping == "search" or mapping == "scalesim":
        out["map_kind"][chosen] = mapping
        out["map_order"][chosen] = np.array(orders, dtype=object)[cand.order[winner]]
        out["map_tile_p"][chosen] = cmb.tile_p[cand.combo[winner]]
        out["map_tile_c"][chosen] = cmb.tile_c[cand.combo[winner]]
        out["map_tile_k"][chosen] = cmb.tile_k[cand.combo[winner]]
    else:
        for name, value in mapping.to_dict().items():
            out[name][chosen] = value
    return out


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
    out = _empty_result(count)
    for start, stop in _chunks(columns, mapping == "search"):
        chunk = _simulate_chunk({name: values[start:stop] for name, values in columns.items()}, mapping, objective)
        for name in out:
            out[name][start:stop] = chunk[name]
    return out


def _chunks(columns: dict[str, np.ndarray], search: bool) -> list[tuple[int, int]]:
    """Row ranges of at most CHUNK_COMBOS tile combinations (an upper bound) and CHUNK_PAIRS pairs.

    Large chunks amortise NumPy's per-call overhead; the cap bounds memory (a combination
    holds a few dozen int64 values).
    """
    count = len(columns["in_h"])
    if not search:
        return [(start, min(start + CHUNK_PAIRS, count)) for start in range(0, count, CHUNK_PAIRS)]
    out_h = (columns["in_h"] + 2 * columns["pad"] - columns["k_h"]) // columns["stride"] + 1
    combos = np.ones(count, dtype=np.int64)
    for dim in (out_h, columns["in_c"] // columns["groups"], columns["out_c"] // columns["groups"]):
        combos *= _ladders(dim)[1].sum(axis=1)
    bounds, start, total = [], 0, 0
    for position, size in enumerate(combos.tolist()):
        if position > start and (total + size > CHUNK_COMBOS or position - start >= CHUNK_PAIRS):
            bounds.append((start, position))
            start, total = position, 0
        total += size
    if start < count:
        bounds.append((start, count))
    return bounds
