"""The reference engine: steps the DRAM-level loop nest tile by tile, plainly.

It is the executable form of docs/simulator.md and the yardstick of the fast engine: every
step's loads, write-back, compute cycles and the double-buffered recurrence are computed
one at a time, in Python, with no shortcut. Result fields, their dtypes and the values of
an infeasible row are defined here too.
"""

from __future__ import annotations

import dataclasses

import itertools
import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from ..space import Accelerator, Layer, Mapping, SpaceError
from . import energy, mapper, precision
from .dataflows import DATAFLOW_CODES, RF_ACCESSES_PER_MAC, ofmap_readback_words, tile_costs

RESULT_DTYPES: dict[str, str] = {
    "feasible": "bool",
    "total_cycles": "int64", "compute_cycles": "int64", "stall_cycles": "int64",
    "latency_s": "float64",
    "energy_pj": "float64", "energy_mac_pj": "float64", "energy_rf_pj": "float64", "energy_array_pj": "float64",
    "energy_sram_pj": "float64", "energy_dram_pj": "float64", "energy_leak_pj": "float64",
    "area_mm2": "float64", "utilization": "float64",
    "macs": "int64", "rf_accesses": "int64",
    "sram_ifmap_reads": "int64", "sram_filter_reads": "int64",
    "sram_ofmap_reads": "int64", "sram_ofmap_writes": "int64",
    "dram_ifmap_reads": "int64", "dram_filter_reads": "int64",
    "dram_ofmap_reads": "int64", "dram_ofmap_writes": "int64",
    "map_kind": "str", "map_order": "str",
    "map_tile_p": "int64", "map_tile_q": "int64", "map_tile_c": "int64", "map_tile_k": "int64",
}
RESULT_FIELDS: tuple[str, ...] = tuple(RESULT_DTYPES)

# Tiled loops and the operands whose tile each loop indexes (g and n index all but filter).
OPERAND_LOOPS: dict[str, frozenset[str]] = {
    "ifmap": frozenset("gnpc"), "filter": frozenset("gck"), "ofmap": frozenset("gnpk"),
}


@dataclass(frozen=True)
class SimResult:
    """One simulated (layer, accelerator, mapping): the RESULT_FIELDS, in that order."""

    feasible: bool
    total_cycles: int
    compute_cycles: int
    stall_cycles: int
    latency_s: float
    energy_pj: float
    energy_mac_pj: float
    energy_rf_pj: float
    energy_array_pj: float
    energy_sram_pj: float
    energy_dram_pj: float
    energy_leak_pj: float
    area_mm2: float
    utilization: float
    macs: int
    rf_accesses: int
    sram_ifmap_reads: int
    sram_filter_reads: int
    sram_ofmap_reads: int
    sram_ofmap_writes: int
    dram_ifmap_reads: int
    dram_filter_reads: int
    dram_ofmap_reads: int
    dram_ofmap_writes: int
    map_kind: str
    map_order: str
    map_tile_p: int
    map_tile_q: int
    map_tile_c: int
    map_tile_k: int

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


assert tuple(f.name for f in fields(SimResult)) == RESULT_FIELDS


def infeasible_values(area: float) -> dict[str, Any]:
    """Field values of an unmappable pair: ints -1, floats NaN, strings "", area defined."""
    values: dict[str, Any] = {}
    for name, dtype in RESULT_DTYPES.items():
        values[name] = {"bool": False, "int64": -1, "float64": math.nan, "str": ""}[dtype]
    values["area_mm2"] = area
    return values


def dram_cycles(words, word_bits, dram_bw):
    """Cycles to move ``words`` words over the DRAM channel: ``ceil(bytes / dram_bw)``."""
    return dram_cycles_bits(np.asarray(words, dtype=np.int64) * np.asarray(word_bits, dtype=np.int64), dram_bw)


def dram_cycles_bits(bits, dram_bw):
    """Cycles to move ``bits`` bits (of operands of any widths) over the DRAM channel:
    ``ceil(bits / 8 / dram_bw)``."""
    return np.ceil(np.asarray(bits, dtype=np.int64) / 8.0 / np.asarray(dram_bw, dtype=np.float64)).astype(np.int64)


def utilization(macs, total_cycles, pe_rows, pe_cols):
    """MACs per PE per cycle: ``macs / (total_cycles * pe_rows * pe_cols)``."""
    return np.asarray(macs, dtype=np.float64) / (
        np.asarray(total_cycles, dtype=np.float64) * np.asarray(pe_rows, dtype=np.float64)
        * np.asarray(pe_cols, dtype=np.float64))


def accelerator_area(accelerator: Accelerator) -> float:
    a = accelerator
    return float(energy.area_mm2(a.pe_rows, a.pe_cols, a.rf_bytes, a.ifmap_kb, a.filter_kb,
                                 a.ofmap_kb, a.word_bits, precision.PE_KIND_CODES[a.pe_kind]))


def derived_fields(macs, rf_accesses, counts: dict[str, Any], total_cycles, pe_rows, pe_cols, rf_bytes,
                   ifmap_kb, filter_kb, ofmap_kb, word_bits, freq_mhz, area, widths=None) -> dict[str, np.ndarray]:
    """Energy, latency and utilization from access counts and cycles (vectorised).

    Both engines call this one function, so their floats agree bit for bit. SRAM energy
    counts every buffer access: array reads and writes, plus DRAM fills (written into a
    buffer) and write-backs (read out of the ofmap buffer). ``counts["array_hops"]``: words
    moved between neighbouring PEs. ``macs``: real MACs; ``widths``: the layers' operand
    widths (`precision.resolve`; None: all at ``word_bits``).
    """
    sram_ifmap_words = counts["sram_ifmap_reads"] + counts["dram_ifmap_reads"]
    sram_filter_words = counts["sram_filter_reads"] + counts["dram_filter_reads"]
    sram_ofmap_words = (counts["sram_ofmap_reads"] + counts["sram_ofmap_writes"]
                        + counts["dram_ofmap_reads"] + counts["dram_ofmap_writes"])
    e_mac, e_rf, e_sram, e_dram = energy.dynamic_energy_pj(
        macs, rf_accesses, sram_ifmap_words, sram_filter_words, sram_ofmap_words, counts["dram_ifmap_reads"],
        counts["dram_filter_reads"], counts["dram_ofmap_reads"] + counts["dram_ofmap_writes"],
        rf_bytes, ifmap_kb, filter_kb, ofmap_kb, word_bits, widths)
    hop_bits = word_bits if widths is None else widths.rf_access_bits
    e_array = np.asarray(counts["array_hops"], dtype=np.float64) * energy.array_hop_energy_pj(hop_bits)
    e_leak = energy.leakage_energy_pj(area, total_cycles, freq_mhz)
    return {
        "latency_s": energy.latency_seconds(total_cycles, freq_mhz),
        "energy_pj": energy.total_energy_pj(e_mac, e_rf, e_sram, e_dram, e_leak, e_array),
        "energy_mac_pj": e_mac, "energy_rf_pj": e_rf, "energy_array_pj": e_array, "energy_sram_pj": e_sram,
        "energy_dram_pj": e_dram, "energy_leak_pj": e_leak,
        "utilization": utilization(macs, total_cycles, pe_rows, pe_cols),
    }


COUNT_FIELDS: tuple[str, ...] = (
    "sram_ifmap_reads", "sram_filter_reads", "sram_ofmap_reads", "sram_ofmap_writes",
    "dram_ifmap_reads", "dram_filter_reads", "dram_ofmap_reads", "dram_ofmap_writes")


def finish(layer: Layer, accelerator: Accelerator, counts: dict[str, int], mapping: Mapping,
           widths: precision.Widths, packed: Layer) -> dict[str, Any]:
    """Turn a mapping's counts and cycles into all result fields (energy, latency, ...).

    ``layer``: the real layer (its MACs are reported); ``packed``: the lane-packed layer the
    counts are of (its MACs make the register-file accesses).
    """
    a = accelerator
    macs = layer.macs
    rf_accesses = packed.macs * int(RF_ACCESSES_PER_MAC[DATAFLOW_CODES[a.dataflow]])
    area = accelerator_area(a)
    result: dict[str, Any] = {
        "feasible": True,
        "total_cycles": counts["total_cycles"],
        "compute_cycles": counts["compute_cycles"],
        "stall_cycles": counts["total_cycles"] - counts["compute_cycles"],
        "area_mm2": area, "macs": macs, "rf_accesses": rf_accesses,
    }
    floats = derived_fields(macs, rf_accesses, counts, counts["total_cycles"], a.pe_rows, a.pe_cols,
                            a.rf_bytes, a.ifmap_kb, a.filter_kb, a.ofmap_kb, a.word_bits, a.freq_mhz, area,
                            widths)
    result.update({name: float(value) for name, value in floats.items()})
    for name in COUNT_FIELDS:
        result[name] = int(counts[name])
    result.update(mapping.to_dict())
    result["map_tile_q"] = mapping.width_tile(layer.out_w)
    return {name: result[name] for name in RESULT_FIELDS}


def spatial_loop(layer: Layer, mapping: Mapping) -> tuple[int, int, int, int]:
    """The ``p`` loop of a mapping: (rows per tile, columns per tile, tiles, rows of the edge tile).

    Whole rows: ``tile_p`` rows (at most ``out_h``), ``ceil(out_h / tile_p)`` tiles, the last
    holding the remainder. Width tiles: one row of ``tile_q`` columns, ``out_h * out_w /
    tile_q`` tiles, all alike.
    """
    tq = mapping.width_tile(layer.out_w)
    if tq < layer.out_w:
        return 1, tq, layer.out_h * (layer.out_w // tq), 1
    tp = min(mapping.tile_p, layer.out_h)
    count = -(-layer.out_h // tp)
    return tp, tq, count, layer.out_h - (count - 1) * tp


def step_schedule(layer: Layer, accelerator: Accelerator, mapping: Mapping,
                  widths: precision.Widths | None = None) -> dict[str, int]:
    """Step the loop nest of one mapping; return its cycles, access counts and array hops.

    ``layer`` is the lane-packed layer and ``widths`` its operand widths (`precision.pack`;
    None: all at the accelerator's ``word_bits``). Capacity is not checked here (see
    `mapper.fits`).
    """
    a = accelerator
    tp_full, tq, count_p, tp_edge = spatial_loop(layer, mapping)
    row_tiles = tq == layer.out_w
    dims = {"c": layer.in_c_per_group, "k": layer.out_c_per_group}
    tiles = {"c": min(mapping.tile_c, dims["c"]), "k": min(mapping.tile_k, dims["k"])}
    counts_per_loop = {"g": layer.groups, "n": layer.batch, "p": count_p}
    counts_per_loop.update({d: -(-dims[d] // tiles[d]) for d in "ck"})
    levels = ("g", "n", *mapping.order)

    def size(dim: str, index: int) -> int:
        if dim == "p":
            return tp_edge if index == count_p - 1 else tp_full
        return min(tiles[dim], dims[dim] - index * tiles[dim])

    code = DATAFLOW_CODES[a.dataflow]
    if widths is None:
        widths = precision.resolve(0, 0, a.word_bits, precision.PE_KIND_CODES["fixed"], layer.in_c_per_group)
    bits = {"ifmap": int(widths.ifmap_bits), "filter": int(widths.filter_bits), "ofmap": int(widths.ofmap_bits)}
    rf = int(mapper.rf_words(a.rf_bytes, widths.rf_word_bits))
    blocking = mapping.kind != "scalesim"
    # Buffer residency: an input operand whose data for one iteration of its irrelevant loop
    # fits (`mapper.resident_operands`) is loaded only while that loop is at its first index;
    # resident partial sums never go to DRAM and back: a tile leaves once, after its last c tile.
    ifmap_resident, filter_resident, ofmap_resident = (mapper.resident_operands(
        layer, a, mapping.order, tp_full, tq, tiles["c"], tiles["k"], widths) if blocking else (False,) * 3)
    last_c = counts_per_loop["c"] - 1
    # A line buffer (`mapper.line_buffer_fits`): width tiles whose sweeps keep the c tile (c
    # outside p, or one c tile) reuse halo rows as row tiles do, after a fill per sweep.
    keeps_c = mapping.order.index("c") < mapping.order.index("p") or counts_per_loop["c"] == 1
    line_buffer = bool(blocking and not row_tiles and keeps_c and mapper.line_buffer_fits(
        tq, tiles["c"], layer.out_w, layer.in_h, layer.in_w, layer.stride, layer.k_h, layer.k_w,
        mapper.buffer_words(a.ifmap_kb, bits["ifmap"])))
    cost_cache: dict[tuple[int, int, int], tuple[int, ...]] = {}

    def costs(tp: int, tc: int, tk: int) -> tuple[int, ...]:
        """Fold costs and tile words of one tile shape (memoised: a nest has at most 8)."""
        if (tp, tc, tk) not in cost_cache:
            cost_cache[(tp, tc, tk)] = tuple(int(x) for x in (
                *tile_costs(code, tp, tq, tc, tk, layer.k_h, layer.k_w, layer.stride, a.pe_rows, a.pe_cols, rf,
                            blocking),
                mapper.ifmap_tile_words(tp, tq, tc, layer.in_h, layer.in_w, layer.stride, layer.k_h, layer.k_w),
                mapper.filter_tile_words(tc, tk, layer.k_h, layer.k_w),
                mapper.ofmap_tile_words(tp, tq, tk),
                mapper.ifmap_halo_words(tq, tc, layer.in_h, layer.in_w, layer.stride, layer.k_h, layer.k_w),
                mapper.ifmap_fill_words(tq, tc, layer.out_w, layer.in_h, layer.in_w, layer.stride, layer.k_h,
                                        layer.k_w)))
        return cost_cache[(tp, tc, tk)]

    dram_cache: dict[int, int] = {}

    def dram(load_bits: int) -> int:
        if load_bits not in dram_cache:
            dram_cache[load_bits] = int(dram_cycles_bits(load_bits, a.dram_bw))
        return dram_cache[load_bits]

    total = dict.fromkeys(("compute_cycles", "sram_ifmap_reads", "sram_filter_reads", "sram_ofmap_reads",
                           "sram_ofmap_writes", "dram_ifmap_reads", "dram_filter_reads",
                           "dram_ofmap_reads", "dram_ofmap_writes", "array_hops"), 0)
    load_end = compute_end = compute_end_before = 0  # load_end[i-1], compute_end[i-1], [i-2]
    previous: dict[str, int] | None = None
    previous_ofmap_words = 0
    for indices in itertools.product(*(range(counts_per_loop[level]) for level in levels)):
        index = dict(zip(levels, indices))
        changed = set(levels) if previous is None else {lv for lv in levels if index[lv] != previous[lv]}
        tp, tc, tk = size("p", index["p"]), size("c", index["c"]), size("k", index["k"])
        (cycles, sram_ifmap, sram_filter, sram_ofmap_writes, sram_ofmap_reads, hops,
         ifmap_words, filter_words, ofmap_words, halo_words, fill_words) = costs(tp, tc, tk)
        load_bits = 0
        ifmap_changed = changed & OPERAND_LOOPS["ifmap"]
        if ifmap_changed and not (ifmap_resident and index["k"] > 0):
            if (row_tiles or line_buffer) and ifmap_changed == {"p"} and index["p"] == previous["p"] + 1:
                ifmap_words -= halo_words  # the rows shared with the previous row tile stay on chip
            elif line_buffer and index["p"] == 0:
                ifmap_words += fill_words  # the line buffer's halo rows across the whole width
            load_bits += ifmap_words * bits["ifmap"]
            total["dram_ifmap_reads"] += ifmap_words
        if changed & OPERAND_LOOPS["filter"] and not (filter_resident and index["p"] > 0):
            load_bits += filter_words * bits["filter"]
            total["dram_filter_reads"] += filter_words
        writeback_words = 0
        if changed & OPERAND_LOOPS["ofmap"]:
            if index["c"] > 0 and not ofmap_resident:  # partial sums of an earlier c tile come back from DRAM
                load_bits += ofmap_words * bits["ofmap"]
                total["dram_ofmap_reads"] += ofmap_words
            # the previous ofmap tile leaves before this one arrives (resident: once complete)
            if previous is not None and (not ofmap_resident or previous["c"] == last_c):
                writeback_words = previous_ofmap_words
                total["dram_ofmap_writes"] += writeback_words
        total["compute_cycles"] += cycles
        total["sram_ifmap_reads"] += sram_ifmap
        total["sram_filter_reads"] += sram_filter
        total["sram_ofmap_writes"] += sram_ofmap_writes
        total["sram_ofmap_reads"] += sram_ofmap_reads
        total["array_hops"] += hops
        if index["c"] > 0:
            total["sram_ofmap_reads"] += int(ofmap_readback_words(tp, tq, tk, True))
        dram_step = dram(load_bits + writeback_words * bits["ofmap"])
        # The double-buffered pipeline (docs/simulator.md, "Memory stalls").
        new_load_end = max(load_end, compute_end_before) + dram_step
        new_compute_end = max(compute_end, new_load_end) + cycles
        load_end, compute_end_before, compute_end = new_load_end, compute_end, new_compute_end
        previous, previous_ofmap_words = index, ofmap_words
    total["dram_ofmap_writes"] += previous_ofmap_words  # the last tile is written back at the end
    total["total_cycles"] = compute_end + dram(previous_ofmap_words * bits["ofmap"])
    return total


def simulate_mapping(layer: Layer, accelerator: Accelerator, mapping: Mapping, packed: Layer | None = None,
                     widths: precision.Widths | None = None) -> dict[str, Any]:
    """All result fields of one mapping (infeasible values when it breaks a capacity or the
    layer is wider than the accelerator's word).

    ``packed``, ``widths``: `precision.pack` of the pair, when the caller has them; the
    mapping's ``tile_c`` counts packed channels.
    """
    if packed is None or widths is None:
        packed, widths = precision.pack(layer, accelerator)
    if not widths.fits:
        return infeasible_values(accelerator_area(accelerator))
    # A tile larger than its dimension is the whole dimension (capacity checked on that).
    tp, tq, _, _ = spatial_loop(packed, mapping)
    tiles = (tp, tq, min(mapping.tile_c, packed.in_c_per_group), min(mapping.tile_k, packed.out_c_per_group))
    if mapping.kind != "scalesim" and not mapper.fits(packed, accelerator, *tiles, widths):
        return infeasible_values(accelerator_area(accelerator))
    return finish(layer, accelerator, step_schedule(packed, accelerator, mapping, widths), mapping, widths, packed)


def scalesim_overhang(in_size, kernel, stride, pad):
    """Input rows (columns) to add so that a floor-rounded conv sees SCALE-Sim's output grid.

    SCALE-Sim rounds the output size up (`systolic.scalesim_ofmap_size`): when ``stride``
    does not divide ``in + 2*pad - kernel`` its last window hangs over the input edge and is
    computed (and its missing inputs read) all the same. Extending the input by this many
    rows makes ``Layer.out_h`` equal SCALE-Sim's, so the ``scalesim`` mapping reproduces
    SCALE-Sim's work and counts. Works on ints and numpy arrays alike.
    """
    return (kernel - in_size - 2 * pad) % stride


def scalesim_layer(layer: Layer) -> Layer:
    """`layer` on SCALE-Sim's output grid (see `scalesim_overhang`)."""
    return dataclasses.replace(
        layer,
        in_h=layer.in_h + scalesim_overhang(layer.in_h, layer.k_h, layer.stride, layer.pad),
        in_w=layer.in_w + scalesim_overhang(layer.in_w, layer.k_w, layer.stride, layer.pad))


def scalesim_mapping(layer: Layer) -> Mapping:
    """SCALE-Sim's fixed mapping: the whole layer as one tile per image and group."""
    return Mapping("pck", layer.out_h, layer.in_c_per_group, layer.out_c_per_group, kind="scalesim",
                   tile_q=layer.out_w)


def simulate(layer: Layer, accelerator: Accelerator, mapping: str | Mapping = "search",
             objective: str = "latency") -> SimResult:
    """Simulate one layer on one accelerator with the reference engine.

    Parameters
    ----------
    layer : Layer
    accelerator : Accelerator
    mapping : {"search", "scalesim"} or Mapping
        ``"search"``: the mapper's best candidate by ``objective``; ``"scalesim"``:
        SCALE-Sim's fixed mapping (capacities not enforced); a `Mapping`: simulated as given.
    objective : {"latency", "energy", "edp"}
        What the mapper minimises (see `mapper`).

    Returns
    -------
    SimResult
        ``feasible=False`` (counts -1, floats NaN, strings "") when nothing maps.
    """
    if not isinstance(layer, Layer):
        raise SpaceError(f"layer = {layer!r}: expected a Layer")
    if not isinstance(accelerator, Accelerator):
        raise SpaceError(f"accelerator = {accelerator!r}: expected an Accelerator")
    mapper.check_objective(objective)
    if isinstance(mapping, Mapping):
        return SimResult(**simulate_mapping(layer, accelerator, mapping))
    if mapping == "scalesim":
        layer = scalesim_layer(layer)
        packed, widths = precision.pack(layer, accelerator)
        return SimResult(**simulate_mapping(layer, accelerator, scalesim_mapping(packed), packed, widths))
    if mapping != "search":
        raise SpaceError(f"mapping = {mapping!r}: expected 'search', 'scalesim' or a Mapping")
    best: dict[str, Any] | None = None
    best_key: tuple | None = None
    packed, widths = precision.pack(layer, accelerator)
    for index, candidate in enumerate(mapper.candidate_mappings(layer, accelerator)):
        result = simulate_mapping(layer, accelerator, candidate, packed, widths)
        primary, secondary = mapper.objective_keys(objective, result["total_cycles"], result["energy_pj"])
        key = (primary.item(), secondary.item(), index)
        if best_key is None or key < best_key:
            best, best_key = result, key
    if best is None:
        return SimResult(**infeasible_values(accelerator_area(accelerator)))
    return SimResult(**best)
