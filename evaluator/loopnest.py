"""A loop-nest cost model in ZigZag 3.9.1's rules: the energy, cycles and feasibility an
evaluator of ZigZag data starts from.

The analytic estimates (`evaluator.analytic`) follow the builtin simulator's tiling and
counting. ZigZag (the ``zigzag`` simulator adapter, `dataset_gen.adapters.zigzag`) maps and
counts otherwise, and no fitted scale of the builtin parts bridges that on layers unlike the
training pool's (an evaluator trained on 1,500 ZigZag rows held 36-41% of AlexNet's
convolution energies within 10%). This module re-derives ZigZag's numbers from its rules,
in plain Python, without ZigZag:

- spatial unrolling: our dataflow's (the adapter's `DATAFLOW_UNROLLING`), a factor that does
  not divide its dimension spread evenly over the temporal loops left (ZigZag's uneven
  mapping: ``size / ceil(size / factor)`` PEs, rounded down to whole PEs for timing);
- LOMA's temporal orderings: the loop prime factors of what is left, merged two smallest
  first down to ``lpf_limit`` (at least one per loop), every distinct permutation in LOMA's
  order (Williams' prefix-shift algorithm), and the same seeded sample of ``max_orderings``
  of them as the adapter's (all of them when none of the sample fits);
- allocation: bottom-up, each memory taking the innermost loops that fit (double-buffered
  buffers counting twice while loops remain above), a shared register file the combination
  with the fewest accesses to the level above; no ordering that fits: the pair is infeasible;
- counting: irrelevant loops at the bottom of a level kept stationary below it, the input's
  halo (``stride * (ox - 1) + fx`` rows, clamped to the map), each level's transfers per
  period of the loops below it, a register-file access per word whatever the operand's
  width (ZigZag rounds each period's transfer up to whole words, then truncates the total
  to whole port widths: a buffer's few words a layer may cost nothing);
- timing (`LoopNest.latency`, ZigZag's ``latency_total2``): the temporal loops' cycles, the
  worst port's stall (each transfer against the window the receiving memory allows it;
  DRAM's one port shared by every stream), the first tiles' loading and the last outputs'
  offloading.

The ordering taken is the one ZigZag's mapper keeps under the data's ``objective`` (energy,
latency, or energy x delay, dance-gen's ZigZag default). Against ZigZag's own figures
(`benchmarks/loopnest.py --data D`, the shared 2-core machine): on the 1,458 feasible pairs of
``dance-gen simulator=zigzag n_samples=1500`` and the 290 of dance-active's unseen AlexNet set
the cycles are exact and the dynamic energy within 1% on every one; on the 224 pairs of
`tests/fixtures/zigzag_reference.csv` (LOMA unsampled, objective energy) the energy is within
1% on all, the cycles exact on 83.5% and within 1% on 95.5% (under the energy objective
orderings of equal energy tie, and ZigZag's float sums break the tie otherwise than ours; on
ZigZag's own ordering the cycles are exact). Feasibility agrees on all 1,800 of those. About
60-130 ms per pair on one core of the loaded development machine (up to a hundred orderings
each); `LoopNestCache` keeps results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, NamedTuple, Sequence

import numpy as np
import torch

from dataset_gen.adapters.zigzag import (_ZZ_DRAM_PJ_PER_BIT, _ZZ_MAC_PJ_8BIT, _ZZ_RF_PJ_PER_BIT, _ZZ_SRAM_PJ_PER_BIT,
                                         _SAMPLE_SEED, DATAFLOW_UNROLLING, RF_OPERANDS, _unrolling)
from dataset_gen.simulator import energy as ours

__all__ = ["LoopNestSettings", "LoopNest", "Nest", "loop_nest_energy", "loop_nest_costs", "LoopNestCache",
           "multiset_permutations", "pair_dicts", "OBJECTIVES"]

# Which layer dimensions each operand's data depends on (ZigZag's relevant loops); the input's
# OX/FX and OY/FY are partly relevant (its rows and columns), the rest irrelevant.
_RELEVANT = {"W": frozenset({"G", "K", "C", "FY", "FX"}), "I": frozenset({"B", "G", "C", "OX", "FX", "OY", "FY"}),
             "O": frozenset({"B", "G", "K", "OY", "OX"})}
_IRRELEVANT = {"W": frozenset({"B", "OY", "OX"}), "I": frozenset({"K"}), "O": frozenset({"C", "FY", "FX"})}
# The strictly relevant ones (ZigZag's ``r`` loops: the input's rows and columns are not).
_STRICT_RELEVANT = {"W": frozenset({"G", "K", "C", "FY", "FX"}), "I": frozenset({"B", "G", "C"}),
                    "O": frozenset({"B", "G", "K", "OY", "OX"})}
_BUFFER = {"I": "ifmap_kb", "W": "filter_kb", "O": "ofmap_kb"}
_HUGE_BITS = 1 << 50  # DRAM holds any layer
#: the mapping objectives ZigZag's mapper can minimise (the adapter's ``objective``)
OBJECTIVES = ("energy", "latency", "edp")


@dataclass(frozen=True)
class LoopNestSettings:
    """The ZigZag adapter's settings the loop-nest model follows (its `ZigZagAdapter` keys)."""

    lpf_limit: int = 6
    max_orderings: int | None = 100
    energies: str = "ours"
    objective: str = "edp"  # what the mapper minimises: energy | latency | edp (dance-gen's ZigZag default)

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"loop nest: objective = {self.objective!r}: expected one of {list(OBJECTIVES)}")

    @classmethod
    def from_simulator(cls, settings: Mapping[str, Any]) -> "LoopNestSettings":
        limit = settings.get("max_orderings", 100)
        return cls(int(settings.get("lpf_limit", 6)), None if limit is None else int(limit),
                   str(settings.get("energies", "ours")), str(settings.get("objective", "latency")))


@dataclass(frozen=True)
class _Level:
    name: str  # "rf", a buffer's field name, or "dram"
    capacity_bits: float
    double_buffered: bool
    pj_per_word: float
    min_port_bits: int  # ZigZag rounds a period's transfer up to whole accesses of this width,
    max_port_bits: int  # then truncates the total to whole accesses of this one (a port's width)


@dataclass(frozen=True)
class _OperandLevels:
    """One operand's loops under an allocation as ZigZag's `Mapping` sees them."""

    loops: list[list[tuple[str, float]]]  # per memory level, irrelevant bottom loops merged down
    total: float  # the temporal loops' cycles
    held: list[int]  # words per unit at each architecture level (0: the MACs)
    units: list[int]  # units of each architecture level
    boost: list[int]  # unique data below each memory level over that above it
    period: list[float]  # cycles per transfer period at each architecture level
    partial: list[bool]  # output levels that still see partial sums


def multiset_permutations(items: Sequence[Any]) -> Iterator[list[Any]]:
    """Every distinct permutation of ``items`` in the order LOMA visits them: Williams'
    loopless prefix-shift algorithm ("Loopless generation of multiset permutations using a
    constant number of variables by prefix shifts", 2009) on the items sorted, as a linked
    list headed by the largest."""
    values = sorted(items)
    n = len(values)
    if n <= 1:
        yield list(values)
        return
    nxt: list[int | None] = []
    head: int | None = None
    for k in range(n):  # pushed smallest first: the head is the largest
        nxt.append(head)
        head = k

    def nth(start: int, m: int) -> int:
        node = start
        for _ in range(m):
            if nxt[node] is None:
                break
            node = nxt[node]
        return node

    def visit(node: int | None) -> list[Any]:
        out = []
        while node is not None:
            out.append(values[node])
            node = nxt[node]
        return out

    h = head
    i, j = nth(h, n - 2), nth(h, n - 1)
    yield visit(h)
    while nxt[j] is not None or values[j] < values[h]:
        s = j if nxt[j] is not None and values[i] >= values[nxt[j]] else i
        t = nxt[s]
        nxt[s] = nxt[t]
        nxt[t] = h
        if values[t] < values[h]:
            i = t
        j = nxt[i]
        h = t
        yield visit(h)


def _prime_factors(n: int) -> list[int]:
    factors, p = [], 2
    while p * p <= n:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    return factors + ([n] if n > 1 else [])


class LoopNest:
    """One (layer, accelerator) pair under ZigZag's rules.

    ``pair`` holds the layer's ZigZag loop sizes (``B, G, K, C, OY, OX, FY, FX``), ``stride``,
    ``in_h``, ``in_w``, ``w_bits``, ``a_bits`` (0: the word width) and our accelerator fields.
    """

    def __init__(self, pair: Mapping[str, Any], settings: LoopNestSettings = LoopNestSettings()) -> None:
        self.settings = settings
        self.sizes = {dim: int(pair[dim]) for dim in ("B", "G", "K", "C", "OY", "OX", "FY", "FX")}
        self.stride, self.in_h, self.in_w = int(pair["stride"]), int(pair["in_h"]), int(pair["in_w"])
        self.dataflow = str(pair["dataflow"])
        bits = self.bits = int(pair["word_bits"])
        rows, cols = DATAFLOW_UNROLLING[self.dataflow]
        unrolled = []
        for names, pes in ((rows, int(pair["pe_rows"])), (cols, int(pair["pe_cols"]))):
            for entry in _unrolling(names, self.sizes, pes):
                dim, factor = entry.split(", ")
                unrolled.append((dim, int(factor)))
        # ZigZag's uneven mapping spreads a factor that does not divide its dimension evenly
        self.spatial = [(dim, f if self.sizes[dim] % f == 0 else self.sizes[dim] / math.ceil(self.sizes[dim] / f))
                        for dim, f in unrolled if f > 1]
        # ZigZag times transfers with the uneven factors rounded down (whole PEs in use)
        self.spatial_whole = [(dim, int(f)) for dim, f in self.spatial]
        self.precision = {"W": int(pair.get("w_bits", 0) or 0) or bits, "I": int(pair.get("a_bits", 0) or 0) or bits}
        self.precision["O"] = self.precision["I"]
        self.rf_operands = RF_OPERANDS[self.dataflow]
        self.macs = math.prod(self.sizes.values())
        if settings.energies == "ours":
            mac = float(ours.mac_energy_pj(bits))
            rf = float(ours.rf_energy_per_access_pj(pair["rf_bytes"], bits))
            sram = {op: float(ours.sram_energy_per_word_pj(pair[_BUFFER[op]], bits)) for op in "IWO"}
            dram = ours.DRAM_PJ_PER_BIT * bits
        else:  # ZigZag's example designs' (the adapter's ``energies: zigzag``); read and write differ
            mac = _ZZ_MAC_PJ_8BIT * (bits / 8) ** 2
            rf = _ZZ_RF_PJ_PER_BIT[0] * bits
            sram = {op: _ZZ_SRAM_PJ_PER_BIT[0] * bits for op in "IWO"}
            dram = _ZZ_DRAM_PJ_PER_BIT[0] * bits
        self._write_over_read = ({"rf": _ZZ_RF_PJ_PER_BIT[1] / _ZZ_RF_PJ_PER_BIT[0],
                                  "buffer": _ZZ_SRAM_PJ_PER_BIT[1] / _ZZ_SRAM_PJ_PER_BIT[0],
                                  "dram": _ZZ_DRAM_PJ_PER_BIT[1] / _ZZ_DRAM_PJ_PER_BIT[0]}
                                 if settings.energies != "ours" else {"rf": 1.0, "buffer": 1.0, "dram": 1.0})
        self.mac_pj = mac
        dram_port = max(1, round(float(pair["dram_bw"]) * 8))
        pes = int(pair["pe_rows"]) * int(pair["pe_cols"])  # a buffer port serves a word per PE (the adapter's)
        self.levels: dict[str, list[_Level]] = {}
        for op in "IWO":
            levels = [_Level("rf", int(pair["rf_bytes"]) * 8, False, rf, bits, bits)] if op in self.rf_operands else []
            levels.append(_Level(_BUFFER[op], float(pair[_BUFFER[op]]) * ours.BITS_PER_KB, True, sram[op], bits,
                                 pes * bits))
            levels.append(_Level("dram", _HUGE_BITS, False, dram, dram_port, dram_port))
            self.levels[op] = levels

    # -- the spatial loops of each operand per architecture level (0: between the lowest memory and the MACs)
    def _spatial_levels(self, op: str, whole: bool = False) -> list[list[tuple[str, float]]]:
        levels: list[list[tuple[str, float]]] = [[] for _ in range(len(self.levels[op]) + 1)]
        levels[1 if op in self.rf_operands else 0] = list(self.spatial_whole if whole else self.spatial)
        return levels

    def _pr(self, outputs: float, window: float, total: int) -> int:
        """The input rows (or columns) that ``outputs`` x ``window`` loop iterations touch."""
        a, b = int(outputs), int(window)
        return min(total, a * b - max(0, b - self.stride) * (a - 1))

    def _tensor(self, op: str, dims: Mapping[str, float]) -> float:
        get = dims.get
        if op == "W":
            return get("G", 1) * get("K", 1) * get("C", 1) * get("FY", 1) * get("FX", 1)
        if op == "O":
            return get("B", 1) * get("G", 1) * get("K", 1) * get("OY", 1) * get("OX", 1)
        return (get("B", 1) * get("G", 1) * get("C", 1) * self._pr(get("OX", 1), get("FX", 1), self.in_w)
                * self._pr(get("OY", 1), get("FY", 1), self.in_h))

    @staticmethod
    def _dims(op: str, loops: Sequence[tuple[str, float]], into: dict[str, float] | None = None) -> dict[str, float]:
        """The products of ``op``'s relevant loop sizes per dimension (added to ``into``)."""
        dims = {} if into is None else into
        relevant = _RELEVANT[op]
        for dim, size in loops:
            if dim in relevant:
                dims[dim] = dims.get(dim, 1) * size
        return dims

    def _size(self, op: str, loops: Sequence[tuple[str, float]]) -> float:
        return self._tensor(op, self._dims(op, loops))

    # -- LOMA
    def loop_prime_factors(self) -> list[tuple[str, int]]:
        """LOMA's loop prime factors of the temporal loops, merged down to ``lpf_limit``."""
        temporal = {}
        spatial = dict(self.spatial)
        for dim, size in self.sizes.items():
            # ZigZag divides by the uneven (float) factor: 1024 / (1024 / 49) rounds up to 50
            size = int(np.ceil(size / spatial[dim])) if dim in spatial else size
            if size > 1:
                temporal[dim] = size
        factors = {dim: _prime_factors(size) for dim, size in temporal.items()}
        limit = max(self.settings.lpf_limit, len(temporal))
        count = sum(len(f) for f in factors.values())
        while count > limit:
            dim = max(factors, key=lambda d: len(factors[d]))  # the first with the most factors
            merged = factors[dim][0] * factors[dim][1]
            factors[dim] = sorted(factors[dim][2:] + [merged])
            count -= 1
        lpfs = [(dim, f) for dim, fs in factors.items() for f in fs]
        return lpfs or [("B", 1)]

    def orderings(self) -> tuple[list[list[tuple[str, int]]], list[list[tuple[str, int]]]]:
        """The orderings LOMA evaluates first (the adapter's seeded sample) and all of them."""
        everything = list(multiset_permutations(self.loop_prime_factors()))
        limit = self.settings.max_orderings
        if limit is None or len(everything) <= limit:
            return everything, everything
        chosen = np.random.default_rng(_SAMPLE_SEED).choice(len(everything), size=limit, replace=False)
        return [everything[k] for k in sorted(chosen.tolist())], everything

    def allocate(self, ordering: Sequence[tuple[str, int]]) -> dict[str, list[list[tuple[str, float]]]] | None:
        """Each operand's temporal loops per memory level (innermost first), or None when a
        memory cannot hold what the ordering puts in it."""
        unallocated = {op: list(ordering) for op in "IWO"}
        held = {op: list(self._spatial_levels(op)[0]) for op in "IWO"}
        mapping: dict[str, list[list[tuple[str, float]]]] = {op: [] for op in "IWO"}
        level = {op: 0 for op in "IWO"}
        # the register file's operands in the adapter's order (ties between combinations go to the last)
        nodes = ([("rf", list(self.rf_operands))] if self.rf_operands else [])
        nodes += [(_BUFFER[op], [op]) for op in "IWO"] + [("dram", list("IWO"))]
        for name, operands in nodes:
            top = name == "dram"
            options: dict[str, list[tuple[int, float, float]]] = {}  # (loops taken, bits, accesses above)
            capacity = 0.0
            for op in operands:
                memory = self.levels[op][level[op]]
                capacity = memory.capacity_bits
                bits = self.precision[op]
                rest = unallocated[op]
                dims = self._dims(op, held[op])
                whole = self._tensor(op, self._dims(op, rest, dict(dims))) * bits
                above = [1.0] * (len(rest) + 1)  # the iterations of the loops left above, per split
                for i in range(len(rest) - 1, -1, -1):
                    above[i] = above[i + 1] * rest[i][1]
                fits = []
                for i in range(len(rest) + 1):
                    if i:
                        self._dims(op, rest[i - 1:i], dims)
                    size = self._tensor(op, dims) * bits
                    if memory.double_buffered and i < len(rest) and size < whole:
                        size *= 2
                    if size > capacity:
                        if i == 0:
                            return None
                        break
                    fits.append((i, size, 0.0 if top else above[i] * size))
                options[op] = fits[-1:] if top else fits
            best, best_accesses = None, math.inf
            for index, combination in enumerate(_product([options[op] for op in operands])):
                if sum(size for _, size, _ in combination) > capacity:
                    if index == 0:  # not even the loops below fit beside each other
                        return None
                    continue
                accesses = sum(a for _, _, a in combination)
                if accesses <= best_accesses:
                    best, best_accesses = combination, accesses
            if best is None:
                return None
            for (taken, _, _), op in zip(best, operands):
                loops = unallocated[op][:taken]
                del unallocated[op][:taken]
                held[op] += loops
                mapping[op].append(loops)
                level[op] += 1
                spatial = self._spatial_levels(op)
                if level[op] < len(spatial):
                    held[op] += spatial[level[op]]
        return mapping

    # -- ZigZag's counting
    @staticmethod
    def _stationary(op: str, mapping: list[list[tuple[str, float]]]) -> tuple[list[list[tuple[str, float]]], float]:
        """Irrelevant loops at the bottom of a level merged down into the level below (the data
        stays there through them), repeatedly; and the product of those under the lowest."""
        previous = [list(loops) for loops in mapping]
        while True:
            merged: list[list[tuple[str, float]]] = [[] for _ in previous]
            at_mac = 1.0
            for index, loops in enumerate(previous):
                for position, (dim, size) in enumerate(loops):
                    if dim not in _IRRELEVANT[op]:
                        merged[index].extend(loops[position:])
                        break
                    if index == 0:
                        at_mac *= size
                        merged[0].append((dim, size))
                    else:
                        merged[index - 1].append((dim, size))
            if merged == previous:
                return merged, at_mac
            previous = merged

    def _operand_levels(self, op: str, mapping: list[list[tuple[str, float]]],
                        whole: bool = False) -> "_OperandLevels":
        """ZigZag's view of one operand's loops under an allocation (its `Mapping` class), with
        the uneven spatial factors as they are (energy) or rounded down (``whole``: timing)."""
        loops, at_mac = self._stationary(op, mapping)
        spatial = self._spatial_levels(op, whole)
        count = len(loops)
        cycles_below, product = [], 1.0
        for level_loops in loops:
            product *= math.prod(size for _, size in level_loops)
            cycles_below.append(product)
        # data per unit of each architecture level: the relevant loops below it
        held, seen = [], []
        for k in range(count + 1):
            if k:
                seen += loops[k - 1] + spatial[k - 1]
            held.append(round(self._size(op, seen)))
        units = [round(round(math.prod(s for lv in spatial[k:] for _, s in lv), 3)) for k in range(count + 1)]
        unique = [self._size(op, [loop for lv in spatial[k:] for loop in lv]) for k in range(count + 1)]
        boost = [round(unique[k] / unique[k + 1]) for k in range(count)]
        period = [at_mac if op != "O" else 1.0] + cycles_below
        partial = [False] * (count + 1)
        if op == "O":  # levels that still see partial sums (irrelevant loops at or above them)
            flags = [any(d in _IRRELEVANT["O"] and s > 1 for d, s in (loops[k - 1] if k else []) + spatial[k])
                     for k in range(count + 1)]
            partial = [any(flags[k:]) for k in range(1, count + 1)] + [False]
        return _OperandLevels(loops, cycles_below[-1], held, units, boost, period, partial)

    def energy(self, mapping: Mapping[str, list[list[tuple[str, float]]]],
               levels: Mapping[str, "_OperandLevels"] | None = None) -> dict[str, float]:
        """ZigZag's energy parts (pJ: ``mac``, ``rf``, ``buffer``, ``dram``) of an allocation."""
        parts = {"mac": self.macs * self.mac_pj, "rf": 0.0, "buffer": 0.0, "dram": 0.0}
        for op in "IWO":
            view = levels[op] if levels is not None else self._operand_levels(op, mapping[op])
            count, total, held, units, boost, period, partial = (len(view.loops), view.total, view.held, view.units,
                                                                 view.boost, view.period, view.partial)
            bits = self.precision[op]
            for m, memory in enumerate(self.levels[op]):
                top = m == count - 1

                def words(amount: float, every: float) -> float:
                    """ZigZag's count of port-wide accesses (truncated), in words."""
                    if amount == 0:
                        return 0.0
                    accesses = int(math.ceil(amount * bits / memory.min_port_bits) * memory.min_port_bits
                                   / memory.max_port_bits * (total // every) * units[m + 1])
                    return accesses * memory.max_port_bits / self.bits

                kind = "rf" if memory.name == "rf" else "dram" if memory.name == "dram" else "buffer"
                write = self._write_over_read[kind]
                if op != "O":
                    reads = words(held[m] * boost[m], period[m])
                    writes = 0.0 if top else words(held[m + 1], period[m + 1])
                else:
                    writes = words(int(held[m] * boost[m]), period[m])  # partial sums in from below
                    reads = writes if partial[m] else 0.0
                    up = 0.0 if top else words(held[m + 1], period[m + 1])
                    reads += up
                    writes += up if partial[m + 1] else 0.0
                parts[kind] += memory.pj_per_word * (reads + write * writes)
        return parts

    def _transfers(self, op: str, view: "_OperandLevels") -> list[dict[str, tuple[float, int, int, int]]]:
        """Each memory level's transfers per direction (``tl`` read out to the level below,
        ``fl`` written in by it, ``th`` read out to the level above, ``fh`` written in by it):
        ``(words per period, period in cycles, periods, average bits per cycle)``, as ZigZag's
        `Mapping` sets them (none to or from outside the top memory)."""
        count, total, held, boost, period = len(view.loops), view.total, view.held, view.boost, view.period
        bits = self.precision[op]
        none = (0, 0, 0, 0)
        out = []
        for m in range(count):
            top = m == count - 1
            low = (held[m] * boost[m], int(period[m]), int(total // period[m]),
                   int(held[m] * bits / period[m] * boost[m]))
            high = none if top else (held[m + 1], int(period[m + 1]), int(total // period[m + 1]),
                                     int(held[m + 1] * bits / period[m + 1]))
            if op != "O":
                out.append({"tl": low, "fl": none, "th": none, "fh": high})
            else:
                low = (int(low[0]), *low[1:])
                out.append({"tl": low if view.partial[m] else none, "fl": low, "th": high,
                            "fh": high if view.partial[m + 1] else none})
        return out

    def latency(self, mapping: Mapping[str, list[list[tuple[str, float]]]],
                levels: Mapping[str, "_OperandLevels"] | None = None) -> tuple[float, float]:
        """ZigZag's cycles of an allocation, and its ideal temporal cycles (its
        ``latency_total2`` and ``ideal_temporal_cycle``): the temporal loops' cycles, plus the
        worst port's stall (transfers slower than the window the receiving memory allows
        them, a double-buffered one its whole period, another the period over its outermost
        irrelevant loops; DRAM's one port shares its time between every stream), plus the
        first tiles' loading and the last outputs' offloading."""
        views = {op: levels[op] if levels is not None else self._operand_levels(op, mapping[op]) for op in "IWO"}
        timed = (views if self.spatial_whole == self.spatial
                 else {op: self._operand_levels(op, mapping[op], whole=True) for op in "IWO"})
        total = views["O"].total
        moves = {op: self._transfers(op, timed[op]) for op in "IWO"}
        # double buffering per architecture level (0: the MACs), from the data each memory
        # holds per period of its outermost relevant loops, as a share of its capacity
        individual = {}
        for op in "IWO":
            view = views[op]
            top_r = [1.0] + [_top_product(loops, _STRICT_RELEVANT[op]) for loops in view.loops]
            individual[op] = [(view.held[m + 1] * self.precision[op]) // top_r[m + 1]
                              / int(self.levels[op][m].capacity_bits) for m in range(len(view.loops))]
        groups = [[(op, 0) for op in "OWI" if op in self.rf_operands]] if self.rf_operands else []
        groups.append([(op, len(views[op].loops) - 1) for op in "OWI"])
        shared = {op: list(values) for op, values in individual.items()}
        for group in groups:
            value = sum(individual[op][m] for op, m in group)
            for op, m in group:
                shared[op][m] = value
        double = {}
        for op in "OWI":  # ZigZag's order: a level given double buffering adds to its sharers' use
            double[op] = [False]
            for m in range(len(views[op].loops)):
                if shared[op][m] <= 0.5:
                    double[op].append(True)
                elif individual[op][m] <= 1 - shared[op][m]:
                    double[op].append(True)
                    for group in groups:
                        if (op, m) in group:
                            for other, level in group:
                                shared[other][level] += individual[op][m]
                else:
                    double[op].append(False)
        top_ir = {op: [1.0] + [_top_product(loops, _IRRELEVANT[op]) for loops in views[op].loops] for op in "IWO"}

        def cycles(op: str, m: int, direction: str) -> tuple[int, int]:
            """Real and allowed cycles per period of one transfer."""
            amount, period, _, _ = moves[op][m][direction]
            width = self.levels[op][m].max_port_bits
            real = math.ceil(amount * self.precision[op] / width)
            level = m if direction in ("tl", "fl") else m + 1  # the receiving side's buffering
            allowed = period if double[op][level] else int(period / int(top_ir[op][level]))
            return real, math.ceil(allowed)

        # ports: on chip one per operand and direction; DRAM one for every stream, in the
        # adapter's order
        ports: list[list[tuple[str, int, str]]] = []
        for op in "IWO":
            for m, memory in enumerate(self.levels[op]):
                if memory.name != "dram":
                    ports += [[(op, m, d)] for d in (("tl", "th", "fh", "fl") if op == "O" else ("tl", "fh"))]
        streams = (("I", "tl"), ("W", "tl"), ("O", "tl"), ("O", "th"), ("I", "fh"), ("W", "fh"), ("O", "fh"), ("O", "fl"))
        dram = [(op, len(views[op].loops) - 1, d) for op, d in streams]
        ports.append(dram)
        stall = 0.0
        for port in ports:
            duties = []
            for op, m, d in port:
                _, period, periods, _ = moves[op][m][d]
                if periods:
                    real, allowed = cycles(op, m, d)
                    duties.append((real, allowed, period, periods))
            if len(duties) == 1:
                real, allowed, _, periods = duties[0]
                stall = max(stall, (real - allowed) * (periods - 1))
            elif duties:
                over = sum((r - a) * (n - 1) for r, a, _, n in duties if r - a > 0)
                under = sum((r - a) * (n - 1) for r, a, _, n in duties if r - a <= 0)
                window = sum(a * (n - 1) for _, a, _, n in duties)
                stall = max(stall, over + max(0, under + window - _window_union(duties)))
        # the first tiles' loading and the last outputs' offloading, per port (ZigZag's
        # `calc_data_loading_latency`)
        computing = math.ceil(total) + stall
        loads: dict[tuple[str, int, str], tuple[float, bool]] = {}
        for port in ports:
            sharing = port is dram  # the one port both inputs share
            width = self.levels[port[0][0]][port[0][1]].max_port_bits
            once, often = [], []
            for op, m, d in port:
                if op == "O" and d in ("tl", "fh"):
                    continue
                periods = moves[op][m][d][2]
                if periods == 1:
                    once.append((op, m, d))
                elif periods > 1:
                    often.append((op, m, d))
            busy = sum(moves[op][m][d][3] for op, m, d in often)
            spare = max(0.0, (width - busy) / width * computing)
            needed = [float(cycles(op, m, d)[0]) for op, m, d in once]
            least = [float(math.ceil(timed[op].held[1] * self.precision[op] / width)) for op, m, d in once]
            for key, left in zip(once, _reduce_ordered(needed, least, spare)):
                loads[key] = (left, sharing)
            for key in often:
                loads[key] = (float(cycles(*key)[0]), sharing)
        parts = {}
        for op in "WI":
            individual_part = half = both = 0.0
            for m in range(len(views[op].loops) - 1):
                (a, a_shared), (b, b_shared) = loads[(op, m, "fh")], loads[(op, m + 1, "tl")]
                longest = max(a, b)
                if not a_shared and not b_shared:
                    individual_part += longest
                elif a_shared and b_shared:
                    both += longest
                else:
                    half = longest
            parts[op] = (individual_part, half, both)
        (w_ind, w_half, w_both), (i_ind, i_half, i_both) = parts["W"], parts["I"]
        onloading = min(w_both + max(i_both + i_half + i_ind, w_half + w_ind),
                        i_both + max(w_both + w_half + w_ind, i_half + i_ind))
        offloading = sum(max(loads[("O", m, "th")][0], loads[("O", m + 1, "fl")][0])
                         for m in range(len(views["O"].loops) - 1))
        return total + stall + onloading + offloading, total

    def best(self) -> "Nest | None":
        """The ordering ZigZag's mapper keeps among LOMA's sample (all orderings when none of
        it fits): the least energy, cycles or energy x cycles (``objective``), the first in
        LOMA's order on a tie; None when no ordering fits the memories, or when an operand is
        wider than the MACs (the adapter's infeasible pairs, as our simulator's).

        Under ``edp`` the cycles are computed in order of energy, and not at all for an ordering
        whose energy times the temporal loops' cycles (the same for every ordering, and no more
        than its cycles) already exceeds the best product."""
        if max(self.precision.values()) > self.bits:
            return None
        sample, everything = self.orderings()
        objective = self.settings.objective
        for pool in (sample, everything):
            fitting: list[tuple[float, int, Nest]] = []
            for index, ordering in enumerate(pool):
                mapping = self.allocate(ordering)
                if mapping is None:
                    continue
                levels = {op: self._operand_levels(op, mapping[op]) for op in "IWO"}
                parts = self.energy(mapping, levels)
                fitting.append((sum(parts.values()), index, Nest(parts, ordering, mapping, levels)))
            if fitting:
                if objective == "energy":
                    _, _, nest = min(fitting, key=lambda entry: entry[:2])
                    cycles, compute = self.latency(nest.mapping, nest.levels)
                    return nest._replace(cycles=cycles, compute=compute)
                floor = fitting[0][2].levels["O"].total
                found: tuple[float, int, Nest] | None = None
                for energy, index, nest in (sorted(fitting, key=lambda entry: entry[:2]) if objective == "edp"
                                            else fitting):
                    if objective == "edp" and found is not None and energy * floor > found[0]:
                        break
                    cycles, compute = self.latency(nest.mapping, nest.levels)
                    score = cycles * energy if objective == "edp" else cycles
                    if found is None or (score, index) < found[:2]:
                        found = (score, index, nest._replace(cycles=cycles, compute=compute))
                return found[2]
            if len(sample) == len(everything):
                break
        return None


class Nest(NamedTuple):
    """The loop nest ZigZag's mapper keeps for a pair (`LoopNest.best`)."""

    parts: dict[str, float]  # dynamic energy per part (pJ: mac, rf, buffer, dram)
    ordering: list[tuple[str, int]]  # the temporal loops, innermost first
    mapping: dict[str, list[list[tuple[str, float]]]]  # each operand's loops per memory level
    levels: dict[str, _OperandLevels]
    cycles: float | None = None  # ZigZag's latency_total2
    compute: float | None = None  # its ideal temporal cycles

    @property
    def energy(self) -> float:
        return float(sum(self.parts.values()))


def _top_product(loops: Sequence[tuple[str, float]], dims: frozenset[str]) -> float:
    """The product of a level's outermost loops over ``dims`` (down to the first loop of another
    dimension)."""
    product = 1.0
    for dim, size in reversed(loops):
        if dim not in dims:
            break
        product *= size
    return product


def _window_union(duties: Sequence[tuple[int, int, int, int]]) -> int:
    """The cycles in which at least one of a port's transfers may run, over the layer (ZigZag's
    memory-updating-window union): ``duties`` are ``(real, allowed, period, periods)``; each may
    run in the first ``allowed`` cycles of its periods, which nest (each divides the next)."""
    for _, allowed, period, periods in duties:
        if period == allowed:  # one of them may use the whole time
            return period * periods
    order = sorted(((int(p), int(a)) for _, a, p, _ in duties), key=lambda pa: pa[0])

    def uncovered(k: int, x: int) -> int:
        """Instants in ``[0, x)`` outside the windows of the ``k`` shortest periods."""
        if k == 0 or x <= 0:
            return max(x, 0)
        period, allowed = order[k - 1]
        whole, rest = divmod(x, period)
        one = uncovered(k - 1, period) - uncovered(k - 1, min(period, allowed))
        return whole * one + uncovered(k - 1, rest) - uncovered(k - 1, min(rest, allowed))

    longest = max(int(p) for _, _, p, _ in duties)
    periods = next(n for _, _, p, n in duties if int(p) == longest)
    return (longest - uncovered(len(order), longest)) * periods


def _reduce_ordered(needed: list[float], least: list[float], spare: float) -> list[float]:
    """ZigZag's `reduce_ordered`: the loading cycles left when ``spare`` cycles of computation
    take over loading, the longest loads first, each down to ``least``."""
    left = list(needed)
    for index in sorted(range(len(left)), key=lambda i: left[i], reverse=True):
        if spare <= 0:
            break
        cut = min(max(0.0, left[index] - least[index]), spare)
        left[index] -= cut
        spare -= cut
    return left


def _product(options: list[list[tuple[int, float, float]]]) -> Iterator[tuple[tuple[int, float, float], ...]]:
    """The combinations of the operands' options in ZigZag's order (the last operand fastest)."""
    if not options:
        yield ()
        return
    for first in options[0]:
        for rest in _product(options[1:]):
            yield (first, *rest)


def loop_nest_energy(pair: Mapping[str, Any], settings: LoopNestSettings = LoopNestSettings()) -> float:
    """The loop-nest model's dynamic energy (pJ) of one pair; NaN when nothing fits."""
    return float(loop_nest_costs(pair, settings)[0])


def loop_nest_costs(pair: Mapping[str, Any], settings: LoopNestSettings = LoopNestSettings()) -> tuple[float, ...]:
    """The loop-nest model's dynamic energy (pJ), cycles and ideal temporal cycles of one pair,
    ZigZag's mapper's choice under ``settings.objective``; NaNs when nothing fits."""
    found = LoopNest(pair, settings).best()
    return (math.nan,) * 3 if found is None else (found.energy, float(found.cycles), float(found.compute))


_KEY_FIELDS = ("B", "G", "K", "C", "OY", "OX", "FY", "FX", "stride", "in_h", "in_w", "w_bits", "a_bits", "pe_rows",
               "pe_cols", "dataflow", "rf_bytes", "ifmap_kb", "filter_kb", "ofmap_kb", "dram_bw", "word_bits")


class LoopNestCache:
    """`loop_nest_costs` of many pairs, each distinct pair computed once (at most ``size`` kept)."""

    def __init__(self, settings: LoopNestSettings = LoopNestSettings(), size: int = 500_000) -> None:
        self.settings, self.size = settings, size
        self._values: dict[tuple, tuple[float, ...]] = {}

    def __call__(self, pairs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """``(n, 3)``: each pair's dynamic energy (pJ), cycles and ideal temporal cycles."""
        out = np.empty((len(pairs), 3))
        for index, pair in enumerate(pairs):
            key = tuple(pair[field] for field in _KEY_FIELDS)
            value = self._values.get(key)
            if value is None:
                value = loop_nest_costs(pair, self.settings)
                if len(self._values) >= self.size:
                    self._values.clear()
                self._values[key] = value
            out[index] = value
        return out


# A size that is not a multiple of 1/64 (a soft accelerator's geometric mean of its choices,
# new at every Gumbel sample of a co-search) is snapped to this grid in log2: the nearest power
# of two, the spaces' buffer choices, so that the search's steps meet pairs the cache holds.
# Measured on the README's ZigZag co-search: searched in 652 s with sizes to 1e-3, 548 s on a
# 1/16-octave grid, 378 s on this one (331 s of it loop nests; 67% of its 22,803 pairs new).
SOFT_SIZE_GRID = 1


def _size_value(value: float) -> float:
    if abs(value * 64 - round(value * 64)) <= 1e-5 * max(1.0, value * 64):
        return round(value * 64) / 64  # a hard size (any multiple of 1/64 KB or byte per cycle)
    return float(2.0 ** (round(math.log2(value) * SOFT_SIZE_GRID) / SOFT_SIZE_GRID))


def pair_dicts(layer: Mapping[str, torch.Tensor], acc: Mapping[str, torch.Tensor]) -> list[dict[str, Any]]:
    """The loop-nest model's pairs from decoded encodings (`evaluator.features.decode_layers`
    and `decode_accelerators`): a soft accelerator reads as a nearby hard one (integers
    rounded, the most likely dataflow and word width, sizes on the `SOFT_SIZE_GRID`)."""
    from evaluator.features import DATAFLOWS, WORD_BITS

    def ints(values: torch.Tensor) -> list[int]:
        return [int(v) for v in torch.round(values.detach().double()).tolist()]

    def floats(values: torch.Tensor) -> list[float]:
        return [_size_value(float(v)) for v in values.detach().double().tolist()]

    n = len(layer["in_h"])
    columns = {
        "B": ints(layer["batch"]), "G": ints(layer["groups"]), "K": ints(layer["out_c_per_group"]),
        "C": ints(layer["in_c_per_group"]), "OY": ints(layer["out_h"]), "OX": ints(layer["out_w"]),
        "FY": ints(layer["k_h"]), "FX": ints(layer["k_w"]), "stride": ints(layer["stride"]),
        "in_h": ints(layer["in_h"]), "in_w": ints(layer["in_w"]), "w_bits": ints(layer["w_bits"]),
        "a_bits": ints(layer["a_bits"]), "pe_rows": ints(acc["pe_rows"]), "pe_cols": ints(acc["pe_cols"]),
        "rf_bytes": [int(round(v)) for v in floats(acc["rf_bytes"])],
        "ifmap_kb": floats(acc["ifmap_kb"]), "filter_kb": floats(acc["filter_kb"]),
        "ofmap_kb": floats(acc["ofmap_kb"]), "dram_bw": floats(acc["dram_bw"]),
        "dataflow": [DATAFLOWS[i] for i in acc["dataflow"].detach().argmax(dim=1).tolist()],
        "word_bits": [WORD_BITS[i] for i in acc["word_bits_onehot"].detach().argmax(dim=1).tolist()],
    }
    return [{name: values[i] for name, values in columns.items()} for i in range(n)]
