"""A loop-nest cost model in ZigZag 3.9.1's rules: the energy an evaluator of ZigZag data starts from.

The analytic estimates (`evaluator.analytic`) follow the builtin simulator's tiling and
counting. ZigZag (the ``zigzag`` simulator adapter, `dataset_gen.adapters.zigzag`) maps and
counts otherwise, and no fitted scale of the builtin parts bridges that on layers unlike the
training pool's (an evaluator trained on 1,500 ZigZag rows held 36-41% of AlexNet's
convolution energies within 10%). This module re-derives ZigZag's numbers from its rules,
in plain Python, without ZigZag:

- spatial unrolling: our dataflow's (the adapter's `DATAFLOW_UNROLLING`), a factor that does
  not divide its dimension spread evenly over the temporal loops left (ZigZag's uneven
  mapping: ``size / ceil(size / factor)`` PEs);
- LOMA's temporal orderings: the loop prime factors of what is left, merged two smallest
  first down to ``lpf_limit`` (at least one per loop), every distinct permutation in LOMA's
  order (Williams' prefix-shift algorithm), and the same seeded sample of ``max_orderings``
  of them as the adapter's (all of them when none of the sample fits);
- allocation: bottom-up, each memory taking the innermost loops that fit (double-buffered
  buffers counting twice while loops remain above), a shared register file the combination
  with the fewest accesses to the level above;
- counting: irrelevant loops at the bottom of a level kept stationary below it, the input's
  halo (``stride * (ox - 1) + fx`` rows, clamped to the map), each level's transfers per
  period of the loops below it, a register-file access per word whatever the operand's
  width (ZigZag rounds each period's transfer up to whole words, then truncates the total
  to whole port widths: a buffer's few words a layer may cost nothing).

The ordering taken is the one with the least energy (ZigZag's default objective with this
adapter is energy x delay; the loop nests of a layer differ mostly in energy). ZigZag's
dynamic energy (`benchmarks/loopnest.py --data D`): within 1% on all 224 pairs of
`tests/fixtures/zigzag_reference.csv` (LOMA unsampled), on 99.2% of the 1,458 feasible
pairs of ``dance-gen simulator=zigzag n_samples=1500`` (within 10%: all), and within 10% on
289 of 290 unseen AlexNet pairs (the same ordering as ZigZag's on 90.3% of them). About
20 ms per pair on one core (up to a hundred orderings each); `LoopNestCache` keeps results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch

from dataset_gen.adapters.zigzag import (_ZZ_DRAM_PJ_PER_BIT, _ZZ_MAC_PJ_8BIT, _ZZ_RF_PJ_PER_BIT, _ZZ_SRAM_PJ_PER_BIT,
                                         _SAMPLE_SEED, DATAFLOW_UNROLLING, RF_OPERANDS, _unrolling)
from dataset_gen.simulator import energy as ours

__all__ = ["LoopNestSettings", "LoopNest", "loop_nest_energy", "LoopNestCache", "multiset_permutations",
           "pair_dicts"]

# Which layer dimensions each operand's data depends on (ZigZag's relevant loops); the input's
# OX/FX and OY/FY are partly relevant (its rows and columns), the rest irrelevant.
_RELEVANT = {"W": frozenset({"G", "K", "C", "FY", "FX"}), "I": frozenset({"B", "G", "C", "OX", "FX", "OY", "FY"}),
             "O": frozenset({"B", "G", "K", "OY", "OX"})}
_IRRELEVANT = {"W": frozenset({"B", "OY", "OX"}), "I": frozenset({"K"}), "O": frozenset({"C", "FY", "FX"})}
_BUFFER = {"I": "ifmap_kb", "W": "filter_kb", "O": "ofmap_kb"}
_HUGE_BITS = 1 << 50  # DRAM holds any layer


@dataclass(frozen=True)
class LoopNestSettings:
    """The ZigZag adapter's settings the loop-nest model follows (its `ZigZagAdapter` keys)."""

    lpf_limit: int = 6
    max_orderings: int | None = 100
    energies: str = "ours"

    @classmethod
    def from_simulator(cls, settings: Mapping[str, Any]) -> "LoopNestSettings":
        limit = settings.get("max_orderings", 100)
        return cls(int(settings.get("lpf_limit", 6)), None if limit is None else int(limit),
                   str(settings.get("energies", "ours")))


@dataclass(frozen=True)
class _Level:
    name: str  # "rf", a buffer's field name, or "dram"
    capacity_bits: float
    double_buffered: bool
    pj_per_word: float
    min_port_bits: int  # ZigZag rounds a period's transfer up to whole accesses of this width,
    max_port_bits: int  # then truncates the total to whole accesses of this one (a port's width)


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
    def _spatial_levels(self, op: str) -> list[list[tuple[str, float]]]:
        levels: list[list[tuple[str, float]]] = [[] for _ in range(len(self.levels[op]) + 1)]
        levels[1 if op in self.rf_operands else 0] = list(self.spatial)
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
        nodes = ([("rf", [op for op in "IWO" if op in self.rf_operands])] if self.rf_operands else [])
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

    def energy(self, mapping: Mapping[str, list[list[tuple[str, float]]]]) -> dict[str, float]:
        """ZigZag's energy parts (pJ: ``mac``, ``rf``, ``buffer``, ``dram``) of an allocation."""
        parts = {"mac": self.macs * self.mac_pj, "rf": 0.0, "buffer": 0.0, "dram": 0.0}
        for op in "IWO":
            loops, at_mac = self._stationary(op, mapping[op])
            spatial = self._spatial_levels(op)
            count = len(loops)
            cycles_below, product = [], 1.0
            for level_loops in loops:
                product *= math.prod(size for _, size in level_loops)
                cycles_below.append(product)
            total = cycles_below[-1]
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
            if op == "O":  # levels that still see partial sums (irrelevant loops at or above them)
                flags = [any(d in _IRRELEVANT["O"] and s > 1 for d, s in (loops[k - 1] if k else []) + spatial[k])
                         for k in range(count + 1)]
                partial = [any(flags[k:]) for k in range(1, count + 1)] + [False]
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

    def best(self) -> tuple[dict[str, float], list[tuple[str, int]]] | None:
        """The least-energy ordering's parts among LOMA's sample (all orderings when none of it
        fits), or None when no ordering fits the memories."""
        sample, everything = self.orderings()
        for pool in (sample, everything):
            found = None
            for ordering in pool:
                mapping = self.allocate(ordering)
                if mapping is None:
                    continue
                parts = self.energy(mapping)
                total = sum(parts.values())
                if found is None or total < found[0]:
                    found = (total, parts, ordering)
            if found is not None:
                return found[1], found[2]
            if len(sample) == len(everything):
                break
        return None


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
    found = LoopNest(pair, settings).best()
    return math.nan if found is None else float(sum(found[0].values()))


_KEY_FIELDS = ("B", "G", "K", "C", "OY", "OX", "FY", "FX", "stride", "in_h", "in_w", "w_bits", "a_bits", "pe_rows",
               "pe_cols", "dataflow", "rf_bytes", "ifmap_kb", "filter_kb", "ofmap_kb", "dram_bw", "word_bits")


class LoopNestCache:
    """`loop_nest_energy` of many pairs, each distinct pair computed once (at most ``size`` kept)."""

    def __init__(self, settings: LoopNestSettings = LoopNestSettings(), size: int = 500_000) -> None:
        self.settings, self.size = settings, size
        self._values: dict[tuple, float] = {}

    def __call__(self, pairs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        out = np.empty(len(pairs))
        for index, pair in enumerate(pairs):
            key = tuple(pair[field] for field in _KEY_FIELDS)
            value = self._values.get(key)
            if value is None:
                value = loop_nest_energy(pair, self.settings)
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
