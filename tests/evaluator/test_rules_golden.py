"""Golden check: the evaluator's torch re-writing of the simulator's rules against the LIVE simulator.

`evaluator.rules` must stay differentiable, so it cannot call the NumPy simulator; these
tests run both on a fixed set of (layer, accelerator) pairs and several mappings per pair
(the mapper's winner, a mid-list candidate, a width tile, row tiles with halo reuse), and
on random tiles for the fold models, and must be exact (counts) or agree to float64
rounding (energies, area). A failure means the simulator changed under the evaluator.
"""

import numpy as np
import pandas as pd
import pytest
import torch

from dataset_gen.simulator import energy, mapper, simulate, simulate_batch
from dataset_gen.simulator.dataflows import DATAFLOW_CODES, tile_costs
from dataset_gen.space import (
    DATAFLOWS,
    LOOP_ORDERS,
    WORD_BITS,
    Accelerator,
    Layer,
    Mapping,
)
from evaluator import rules
from evaluator.analytic import analytic_area
from evaluator.features import (
    PAIR_FEATURES,
    decode_accelerators,
    encode_accelerators,
    encode_layers,
    pair_features,
)

STALE = "the simulator's rules changed: update evaluator/analytic.py and bump ANALYTIC_VERSION"

# Every dataflow and word width; strides (above the kernel too), groups, depthwise, batches, a
# fully connected layer, kernels taller than the array, arrays that are not powers of two,
# edge tiles everywhere, widths with and without width tiles (prime, even), register files
# that block several folds (and rs PEs holding several filters), and a one-block layer whose
# operands fit only a whole buffer (single tiles).
PAIRS = [
    (Layer(in_h=14, in_w=14, in_c=24, out_c=40, k_h=3, k_w=3, pad=1, batch=2),
     Accelerator(pe_rows=8, pe_cols=6, dataflow="ws", word_bits=16, rf_bytes=16, ifmap_kb=8.0, filter_kb=4.0,
                 ofmap_kb=4.0, dram_bw=8.0, freq_mhz=500.0)),
    (Layer(in_h=14, in_w=14, in_c=24, out_c=40, k_h=3, k_w=3, pad=1, batch=2),
     Accelerator(pe_rows=5, pe_cols=7, dataflow="os", word_bits=8, rf_bytes=8, ifmap_kb=4.0, filter_kb=2.0,
                 ofmap_kb=2.0, dram_bw=3.0, freq_mhz=700.0)),
    (Layer(in_h=17, in_w=11, in_c=9, out_c=33, k_h=3, k_w=2, stride=2, pad=1),
     Accelerator(pe_rows=12, pe_cols=4, dataflow="is", word_bits=32, rf_bytes=32, ifmap_kb=16.0, filter_kb=8.0,
                 ofmap_kb=8.0, dram_bw=16.0, freq_mhz=1000.0)),
    (Layer(in_h=20, in_w=20, in_c=12, out_c=20, k_h=5, k_w=5, pad=2, batch=3),
     Accelerator(pe_rows=7, pe_cols=3, dataflow="rs", word_bits=16, rf_bytes=64, ifmap_kb=8.0, filter_kb=8.0,
                 ofmap_kb=4.0, dram_bw=4.0, freq_mhz=200.0)),
    (Layer(in_h=9, in_w=9, in_c=10, out_c=6, k_h=3, k_w=3, stride=2),
     Accelerator(pe_rows=2, pe_cols=5, dataflow="rs", word_bits=8, rf_bytes=16, ifmap_kb=2.0, filter_kb=1.0,
                 ofmap_kb=1.0, dram_bw=2.0, freq_mhz=300.0)),
    (Layer(in_h=16, in_w=16, in_c=16, out_c=16, k_h=3, k_w=3, stride=2, pad=1, groups=16, batch=2),
     Accelerator(pe_rows=4, pe_cols=4, dataflow="ws", word_bits=8, rf_bytes=4, ifmap_kb=1.0, filter_kb=1.0,
                 ofmap_kb=1.0, dram_bw=1.0, freq_mhz=800.0)),
    (Layer(in_h=12, in_w=10, in_c=32, out_c=48, k_h=1, k_w=1, groups=4),
     Accelerator(pe_rows=16, pe_cols=8, dataflow="os", word_bits=16, rf_bytes=8, ifmap_kb=2.0, filter_kb=2.0,
                 ofmap_kb=2.0, dram_bw=32.0, freq_mhz=400.0)),
    (Layer.fully_connected(300, 70, batch=4),
     Accelerator(pe_rows=6, pe_cols=9, dataflow="is", word_bits=16, rf_bytes=8, ifmap_kb=2.0, filter_kb=8.0,
                 ofmap_kb=1.0, dram_bw=6.0, freq_mhz=250.0)),
    (Layer(in_h=11, in_w=13, in_c=6, out_c=10, k_h=3, k_w=3, stride=1, batch=2),
     Accelerator(pe_rows=3, pe_cols=16, dataflow="rs", word_bits=32, rf_bytes=64, ifmap_kb=4.0, filter_kb=1.0,
                 ofmap_kb=2.0, dram_bw=2.5, freq_mhz=900.0)),
    (Layer(in_h=6, in_w=6, in_c=8, out_c=8, k_h=3, k_w=3, pad=1),
     Accelerator(pe_rows=4, pe_cols=3, dataflow="ws", word_bits=8, rf_bytes=32, ifmap_kb=0.375, filter_kb=0.75,
                 ofmap_kb=0.375, dram_bw=4.0, freq_mhz=600.0)),
    (Layer(in_h=26, in_w=26, in_c=8, out_c=12, k_h=2, k_w=2, stride=3, batch=2),
     Accelerator(pe_rows=6, pe_cols=10, dataflow="is", word_bits=8, rf_bytes=24, ifmap_kb=0.5, filter_kb=1.0,
                 ofmap_kb=0.25, dram_bw=2.0, freq_mhz=500.0)),
    (Layer(in_h=30, in_w=30, in_c=20, out_c=36, k_h=3, k_w=3, pad=1),
     Accelerator(pe_rows=10, pe_cols=12, dataflow="os", word_bits=32, rf_bytes=64, ifmap_kb=4.0, filter_kb=8.0,
                 ofmap_kb=2.0, dram_bw=12.0, freq_mhz=1200.0)),
    # an input row smaller than the kernel's halo (the halo capped at in_h)
    (Layer(in_h=1, in_w=3, in_c=4, out_c=6, k_h=4, k_w=3, pad=2, batch=2),
     Accelerator(pe_rows=2, pe_cols=3, dataflow="ws", word_bits=8, rf_bytes=8, ifmap_kb=0.125, filter_kb=1.0,
                 ofmap_kb=0.5, dram_bw=1.0)),
]
IDS = [f"{acc.dataflow}-{layer.in_h}x{layer.in_w}x{layer.in_c}-g{layer.groups}" for layer, acc in PAIRS]


def one(value) -> torch.Tensor:
    return torch.tensor([float(value)], dtype=torch.float64)


def tensors(layer: Layer, acc: Accelerator) -> tuple[dict, dict]:
    """One pair as the rules take it: decoded float64 values, shape (1,)."""
    layer_values = {name: one(getattr(layer, name)) for name in (
        "in_h", "in_w", "out_h", "out_w", "in_c_per_group", "out_c_per_group", "k_h", "k_w", "stride", "groups",
        "batch", "macs")}
    acc_values = {name: one(getattr(acc, name)) for name in (
        "pe_rows", "pe_cols", "rf_bytes", "ifmap_kb", "filter_kb", "ofmap_kb", "dram_bw", "freq_mhz", "word_bits")}
    acc_values["dataflow"] = torch.tensor([[float(acc.dataflow == name) for name in DATAFLOWS]], dtype=torch.float64)
    acc_values["word_bits_onehot"] = torch.tensor([[float(acc.word_bits == bits) for bits in WORD_BITS]],
                                                  dtype=torch.float64)
    return layer_values, acc_values


def agree(what: str, ours, simulator, rel: float = 0.0) -> None:
    ours, simulator = np.asarray(ours, dtype=np.float64), np.asarray(simulator, dtype=np.float64)
    assert np.allclose(ours, simulator, rtol=rel, atol=0.0), f"{STALE}: {what}: evaluator {ours}, simulator {simulator}"


@pytest.fixture(scope="module")
def searched():
    """The simulator's result for every pair, its mapper choosing (the fast engine: same bits)."""
    frame = pd.DataFrame([{**layer.to_dict(), **acc.to_dict()} for layer, acc in PAIRS])
    results = simulate_batch(frame)
    return {(layer, acc): row for (layer, acc), (_, row) in zip(PAIRS, results.iterrows())}


def counts(layer: Layer, mapping: Mapping) -> tuple[int, int, int]:
    """Tiles of the p, c and k loops of a mapping."""
    tq = mapping.width_tile(layer.out_w)
    count_p = layer.out_h * layer.out_w // tq if tq < layer.out_w else -(-layer.out_h // mapping.tile_p)
    return count_p, -(-layer.in_c_per_group // mapping.tile_c), -(-layer.out_c_per_group // mapping.tile_k)


def line_buffer(layer: Layer, acc: Accelerator, mapping: Mapping) -> bool:
    """Whether the mapping's width tiles fit a line buffer (`mapper.line_buffer_fits`)."""
    tq = mapping.width_tile(layer.out_w)
    return tq < layer.out_w and bool(mapper.line_buffer_fits(
        tq, min(mapping.tile_c, layer.in_c_per_group), layer.out_w, layer.in_h, layer.in_w, layer.stride, layer.k_h,
        layer.k_w, mapper.buffer_words(acc.ifmap_kb, acc.word_bits)))


def halo_reuse(layer: Layer, acc: Accelerator, mapping: Mapping) -> bool:
    """Whether the mapping reuses a halo (some p step keeps the c tile, k_h > stride): row
    tiles, or width tiles with a line buffer."""
    count_p, count_c, _ = counts(layer, mapping)
    keeps_c = mapping.order.index("c") < mapping.order.index("p") or count_c == 1
    return ((mapping.width_tile(layer.out_w) == layer.out_w or line_buffer(layer, acc, mapping))
            and count_p > 1 and keeps_c and layer.k_h > layer.stride)


def swept_again(layer: Layer, acc: Accelerator, mapping: Mapping, operand: str) -> bool | None:
    """For an operand the mapping would sweep again across its irrelevant tiled loop (that
    loop has several tiles and lies outside a relevant loop with several), whether buffer
    residency keeps it on chip instead; None when there is no such sweep."""
    loop, relevant = {"ifmap": ("k", "pc"), "filter": ("p", "ck"), "ofmap": ("c", "pk")}[operand]
    tiles = dict(zip("pck", counts(layer, mapping)))
    inside = [d for d in mapping.order[mapping.order.index(loop) + 1:] if d in relevant and tiles[d] > 1]
    if tiles[loop] == 1 or not inside:
        return None
    tq = mapping.width_tile(layer.out_w)
    tp = min(mapping.tile_p, layer.out_h) if tq == layer.out_w else 1
    resident = mapper.resident_operands(layer, acc, mapping.order, tp, tq, min(mapping.tile_c, layer.in_c_per_group),
                                        min(mapping.tile_k, layer.out_c_per_group))
    return resident[("ifmap", "filter", "ofmap").index(operand)]


# What each kind of picked mapping exercises; every kind must occur for some pair.
KINDS = {
    "winner": lambda layer, acc, m: True,
    "middle": lambda layer, acc, m: True,
    "width tile": lambda layer, acc, m: m.width_tile(layer.out_w) < layer.out_w,
    "halo, c outside p": lambda layer, acc, m: halo_reuse(layer, acc, m) and counts(layer, m)[1] > 1,
    "halo, one c tile": lambda layer, acc, m: (halo_reuse(layer, acc, m) and counts(layer, m)[1] == 1
                                               and m.order.index("c") > m.order.index("p")),
    "halo of width tiles (line buffer)": lambda layer, acc, m: (halo_reuse(layer, acc, m)
                                                                and m.width_tile(layer.out_w) < layer.out_w),
    "width tiles, no line buffer": lambda layer, acc, m: (m.width_tile(layer.out_w) < layer.out_w
                                                          and layer.k_h > layer.stride
                                                          and not line_buffer(layer, acc, m)),
    "no halo, c inside p": lambda layer, acc, m: (counts(layer, m)[0] > 1 and counts(layer, m)[1] > 1
                                                  and m.order.index("c") > m.order.index("p")),
    "ifmap resident across k": lambda layer, acc, m: swept_again(layer, acc, m, "ifmap") is True,
    "ifmap swept again across k": lambda layer, acc, m: swept_again(layer, acc, m, "ifmap") is False,
    "filter resident across p": lambda layer, acc, m: swept_again(layer, acc, m, "filter") is True,
    "filter swept again across p": lambda layer, acc, m: swept_again(layer, acc, m, "filter") is False,
    "partial sums resident across c": lambda layer, acc, m: swept_again(layer, acc, m, "ofmap") is True,
    "partial sums through DRAM across c": lambda layer, acc, m: swept_again(layer, acc, m, "ofmap") is False,
}


def mappings(layer: Layer, acc: Accelerator, winner) -> dict[str, Mapping]:
    """The mapper's winner, a mid-list candidate, and the first candidate of every other `KINDS`."""
    candidates = mapper.candidate_mappings(layer, acc)
    assert candidates, "every golden pair must be mappable"
    picked = {"winner": Mapping(winner.map_order, winner.map_tile_p, winner.map_tile_c, winner.map_tile_k,
                                tile_q=int(winner.map_tile_q)),
              "middle": candidates[len(candidates) // 2]}
    for kind, test in KINDS.items():
        found = next((m for m in candidates if test(layer, acc, m)), None) if kind not in picked else None
        if found is not None:
            picked[kind] = found
    return picked


def test_every_kind_of_mapping_is_checked_on_some_pair(searched):
    seen = set()
    for layer, acc in PAIRS:
        seen |= set(mappings(layer, acc, searched[layer, acc]))
    assert seen == set(KINDS)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_the_largest_divisor_search_is_the_mappers(dtype):
    # Up to the largest output widths (float32 encodings hold them exactly, not their products).
    values = torch.cat([torch.arange(1, 400), torch.arange(8100, 8200)]).to(dtype)
    for j in (0, 1, 2, 3):
        limits = torch.floor(values / 2.0**j)
        ours = rules.largest_divisor_at_most(values, limits)
        assert ours.dtype == dtype
        agree(f"largest divisors at most value // {2**j}", ours,
              [mapper.largest_divisor_at_most(int(v), int(v) // 2**j) for v in values.tolist()])


@pytest.mark.parametrize(("layer", "acc"), PAIRS, ids=IDS)
def test_the_tile_ladders_and_capacity_checks_are_the_mappers(layer, acc):
    t_layer, t_acc = tensors(layer, acc)
    for dim in ("in_c_per_group", "out_c_per_group"):
        ladder = rules.ladder(t_layer[dim])[:, 0].tolist()
        assert len(ladder) == rules.CHANNEL_SLOTS == mapper.CHANNEL_STEPS + 1
        agree(f"ladder of {dim}", list(dict.fromkeys(ladder)), mapper.ladder(getattr(layer, dim)))
    tp, tq = rules.spatial_tiles(t_layer["out_h"], t_layer["out_w"])
    assert tp.shape[0] == rules.SPATIAL_SLOTS <= mapper.SLOTS
    ours = list(dict.fromkeys(zip(tp[:, 0].tolist(), tq[:, 0].tolist())))
    agree("output tiles", ours, mapper.spatial_tiles(layer.out_h, layer.out_w))
    bits = t_acc["word_bits"]
    rf_ok = rules.rf_words(t_acc["rf_bytes"], bits) >= rules.rf_words_required(t_acc["dataflow"], t_layer["k_w"])
    singles = 0
    for p_rows, p_cols in mapper.spatial_tiles(layer.out_h, layer.out_w):
        p_full, p_size, _, p_q = rules.spatial_split(t_layer["out_h"], t_layer["out_w"], one(p_rows), one(p_cols))
        for tc in mapper.ladder(layer.in_c_per_group):
            for tk in mapper.ladder(layer.out_c_per_group):
                c_tiles = rules.tile_split(t_layer["in_c_per_group"], one(tc))
                k_tiles = rules.tile_split(t_layer["out_c_per_group"], one(tk))
                words = rules.tile_words(t_layer, p_size, p_q, one(tc), one(tk))
                single = rules.single_tiles(t_layer, p_full + 1, c_tiles[0] + 1, k_tiles[0] + 1)
                fits = rf_ok & rules.fits_buffers(words, single, t_acc)
                expected = mapper.fits(layer, acc, p_rows, p_cols, tc, tk)
                agree(f"capacity of tile {(p_rows, p_cols, tc, tk)}", bool(fits), expected)
                half = rules.fits_buffers(words, {k: torch.tensor([False]) for k in single}, t_acc)
                singles += int(expected and not bool(rf_ok & half))
    if layer.groups * layer.batch == 1 and acc.ifmap_kb < 1:
        assert singles, "the one-block pair must have tiles that fit only a whole buffer"


def random_tiles(count: int, seed: int) -> dict[str, np.ndarray]:
    """Random tile shapes, layers and arrays: several folds on both array sides, blocking or not."""
    rng = np.random.default_rng(seed)
    draw = lambda low, high: rng.integers(low, high + 1, size=count)  # noqa: E731
    return {"tp": draw(1, 12), "tq": draw(1, 40), "tc": draw(1, 70), "tk": draw(1, 70), "k_h": draw(1, 7),
            "k_w": draw(1, 7), "stride": draw(1, 4), "rows": draw(1, 24), "cols": draw(1, 24),
            "rf": rng.choice([1, 2, 3, 4, 8, 16, 31, 64, 200], size=count)}


@pytest.mark.parametrize("blocking", [True, False], ids=["blocking", "scalesim"])
@pytest.mark.parametrize("dataflow", DATAFLOWS)
def test_the_fold_models_are_the_simulators_on_random_tiles(dataflow, blocking):
    t = random_tiles(400, seed=DATAFLOWS.index(dataflow))
    expected = tile_costs(DATAFLOW_CODES[dataflow], t["tp"], t["tq"], t["tc"], t["tk"], t["k_h"], t["k_w"],
                          t["stride"], t["rows"], t["cols"], t["rf"], blocking)
    f = {name: torch.tensor(values, dtype=torch.float64) for name, values in t.items()}
    layer = {name: f[name] for name in ("k_h", "k_w", "stride")}
    rf = f["rf"] if blocking else None
    cycles = rules.tile_cycles(dataflow, layer, f["rows"], f["cols"], f["tp"], f["tq"], f["tc"], f["tk"], rf)
    agree(f"{dataflow} cycles", cycles, expected[0])
    ours = rules.tile_counts(dataflow, layer, f["rows"], f["cols"], f["tp"], f["tq"], f["tc"], f["tk"], rf)
    for name, value, simulator in zip(("ifmap reads", "filter reads", "ofmap writes", "ofmap reads within tiles",
                                       "array hops"), ours, expected[1:]):
        agree(f"{dataflow} {name}", value, simulator)
    if blocking and dataflow != "rs":
        plain = tile_costs(DATAFLOW_CODES[dataflow], t["tp"], t["tq"], t["tc"], t["tk"], t["k_h"], t["k_w"],
                           t["stride"], t["rows"], t["cols"], t["rf"], False)
        assert (expected[0] < plain[0]).any(), "the random tiles must exercise register-file blocking"


@pytest.mark.parametrize(("layer", "acc"), PAIRS, ids=IDS)
def test_the_per_tile_fold_models_are_the_simulators(layer, acc, searched):
    t_layer, t_acc = tensors(layer, acc)
    rf = int(mapper.rf_words(acc.rf_bytes, acc.word_bits))
    t_rf = rules.rf_words(t_acc["rf_bytes"], t_acc["word_bits"])
    agree("register-file words", t_rf, rf)
    for mapping in mappings(layer, acc, searched[layer, acc]).values():
        tq = mapping.width_tile(layer.out_w)
        p_rows = {1} if tq < layer.out_w else {mapping.tile_p, layer.out_h % mapping.tile_p or mapping.tile_p}
        for tp in p_rows:
            for tc in {mapping.tile_c, layer.in_c_per_group % mapping.tile_c or mapping.tile_c}:
                for tk in {mapping.tile_k, layer.out_c_per_group % mapping.tile_k or mapping.tile_k}:
                    sizes = [one(t) for t in (tp, tq, tc, tk)]
                    for blocking in (True, False):
                        expected = tile_costs(DATAFLOW_CODES[acc.dataflow], tp, tq, tc, tk, layer.k_h, layer.k_w,
                                              layer.stride, acc.pe_rows, acc.pe_cols, rf, blocking)
                        ours_rf = t_rf if blocking else None
                        cycles = rules.tile_cycles(acc.dataflow, t_layer, t_acc["pe_rows"], t_acc["pe_cols"], *sizes,
                                                   ours_rf)
                        agree(f"cycles of tile {(tp, tq, tc, tk)}", cycles, expected[0])
                        ours = rules.tile_counts(acc.dataflow, t_layer, t_acc["pe_rows"], t_acc["pe_cols"], *sizes,
                                                 ours_rf)
                        agree(f"SRAM accesses and hops of tile {(tp, tq, tc, tk)}", torch.cat(ours), expected[1:])


def chosen_tiles(t_layer: dict, layer: Layer, mapping: Mapping):
    """A mapping's loops as the rules take them: `spatial_split`, then `tile_split` for c and k."""
    p_tiles = rules.spatial_split(t_layer["out_h"], t_layer["out_w"], one(mapping.tile_p),
                                  one(mapping.width_tile(layer.out_w)))
    return [p_tiles, *(rules.tile_split(t_layer[dim], one(min(tile, getattr(layer, dim))))
                       for dim, tile in (("in_c_per_group", mapping.tile_c), ("out_c_per_group", mapping.tile_k)))]


@pytest.mark.parametrize(("layer", "acc"), PAIRS, ids=IDS)
def test_compute_dram_reuse_buffer_counts_and_array_hops_of_a_mapping_are_the_simulators(layer, acc, searched):
    t_layer, t_acc = tensors(layer, acc)
    rf = rules.rf_words(t_acc["rf_bytes"], t_acc["word_bits"])
    for kind, mapping in mappings(layer, acc, searched[layer, acc]).items():
        result = simulate(layer, acc, mapping)
        assert result.feasible
        what = f"{mapping} ({kind})"
        chosen = chosen_tiles(t_layer, layer, mapping)
        blocks = t_layer["batch"] * t_layer["groups"]
        compute = rules.over_tiles(chosen, lambda p, q, c, k: rules.tile_cycles(
            acc.dataflow, t_layer, t_acc["pe_rows"], t_acc["pe_cols"], p, q, c, k, rf)) * blocks
        agree(f"compute cycles of {what}", compute, result.compute_cycles)
        trips, changes = rules.mapping_trips(chosen)
        sweep = rules.sweep_words(t_layer, chosen[0], rules.line_buffer(t_layer, t_acc, chosen[0][3], chosen[1][1]))
        if halo_reuse(layer, acc, mapping):
            assert float(sweep["halo"]) > 0
        resident = rules.resident_operands(mapping.order, t_layer, t_acc, chosen[0][1], chosen[0][3], chosen[1][1],
                                           chosen[2][1])
        per_operand = rules.dram_operand_words(mapping.order, trips, changes, sweep, t_layer["batch"],
                                               t_layer["groups"], resident)
        agree(f"DRAM ifmap words (halo reuse) of {what}", per_operand["ifmap"], result.dram_ifmap_reads)
        agree(f"DRAM filter words of {what}", per_operand["filter"], result.dram_filter_reads)
        agree(f"DRAM ofmap words of {what}", per_operand["ofmap"], result.dram_ofmap_reads + result.dram_ofmap_writes)
        dram = rules.dram_words(mapping.order, trips, changes, sweep, t_layer["batch"], t_layer["groups"], resident)
        dram_moved = (result.dram_ifmap_reads + result.dram_filter_reads + result.dram_ofmap_reads
                      + result.dram_ofmap_writes)
        agree(f"DRAM words of {what}", dram, dram_moved)
        buffers = rules.buffer_words(t_layer, t_acc, chosen, torch.tensor([LOOP_ORDERS.index(mapping.order)]))
        agree(f"buffer accesses of {what}", buffers[0], [
            result.sram_ifmap_reads + result.dram_ifmap_reads, result.sram_filter_reads + result.dram_filter_reads,
            result.sram_ofmap_reads + result.sram_ofmap_writes + result.dram_ofmap_reads + result.dram_ofmap_writes])
        hops = rules.array_hops(t_layer, t_acc, chosen)
        agree(f"array energy of {what}", hops * energy.array_hop_energy_pj(acc.word_bits), result.energy_array_pj,
              rel=1e-12)
        cycles = one(result.total_cycles)
        parts = rules.energy_components(t_acc, t_layer["macs"], buffers, dram, cycles, hops)
        agree(f"energy of {what}", rules.total_energy(*parts), result.energy_pj, rel=1e-12)


@pytest.mark.parametrize(("layer", "acc"), PAIRS, ids=IDS)
def test_area_and_every_energy_component_including_leakage_are_the_simulators(layer, acc, searched):
    t_layer, t_acc = tensors(layer, acc)
    result = searched[layer, acc]
    agree("area_mm2", rules.area_mm2(t_acc), result.area_mm2, rel=1e-12)
    sram_words = torch.tensor([[result.sram_ifmap_reads + result.dram_ifmap_reads,
                                result.sram_filter_reads + result.dram_filter_reads,
                                result.sram_ofmap_reads + result.sram_ofmap_writes + result.dram_ofmap_reads
                                + result.dram_ofmap_writes]], dtype=torch.float64)
    dram_words = one(result.dram_ifmap_reads + result.dram_filter_reads + result.dram_ofmap_reads
                     + result.dram_ofmap_writes)
    cycles = one(result.total_cycles)
    winner = mappings(layer, acc, result)["winner"]
    hops = rules.array_hops(t_layer, t_acc, chosen_tiles(t_layer, layer, winner))
    ours = rules.energy_components(t_acc, t_layer["macs"], sram_words, dram_words, cycles, hops)
    for name, value in zip(("mac", "rf", "array", "sram", "dram", "leak"), ours):
        agree(f"energy_{name}_pj", value, getattr(result, f"energy_{name}_pj"), rel=1e-12)
    assert result.energy_array_pj > 0
    agree("energy_pj (the six components summed in the simulator's order)", rules.total_energy(*ours),
          result.energy_pj, rel=1e-15)


def test_the_area_the_network_starts_from_is_the_simulators_through_the_encoding(searched):
    accelerators = [acc for _, acc in PAIRS]
    log2_area = analytic_area(decode_accelerators(encode_accelerators(accelerators)))
    # The encoding is float32 log2 values: agreement to float32 rounding.
    agree("analytic_area of the encoding", np.exp2(log2_area.double().numpy()),
          [searched[pair].area_mm2 for pair in PAIRS], rel=1e-5)


def test_the_untiled_cycle_features_are_the_simulators_fold_model_of_the_whole_layer():
    layers = [layer for layer, _ in PAIRS]
    accelerators = [acc for _, acc in PAIRS]
    features = pair_features(encode_layers(layers), encode_accelerators(accelerators))
    for row, (layer, acc) in enumerate(PAIRS):
        for name in DATAFLOWS:
            # SCALE-Sim's fold model (no register-file blocking) of the whole layer as one tile.
            cycles = tile_costs(DATAFLOW_CODES[name], layer.out_h, layer.out_w, layer.in_c_per_group,
                                layer.out_c_per_group, layer.k_h, layer.k_w, layer.stride, acc.pe_rows, acc.pe_cols,
                                mapper.rf_words(acc.rf_bytes, acc.word_bits), blocking=False)[0]
            demand_rows = cycles if name == "rs" else cycles + 1  # SCALE-Sim reports rows minus one
            value = 2.0 ** float(features[row, PAIR_FEATURES.index(f"log2_untiled_cycles_{name}")])
            agree(f"untiled {name} cycles of {layer}", value, demand_rows * layer.groups * layer.batch, rel=1e-5)


# Layer precision on fixed and precision-scalable PEs: uneven lane packing (40 channels in 5 of 8
# lanes, 20 in 2 of 10), a depthwise layer (no lanes), mixed weight / activation widths.
PRECISION_PAIRS = [
    (Layer(in_h=14, in_w=14, in_c=24, out_c=40, k_h=3, k_w=3, pad=1, w_bits=8, a_bits=8),
     Accelerator(pe_rows=5, pe_cols=7, dataflow="os", rf_bytes=64, ifmap_kb=4.0, filter_kb=2.0, ofmap_kb=2.0,
                 dram_bw=3.0)),
    (Layer(in_h=14, in_w=14, in_c=40, out_c=24, w_bits=4, a_bits=8),
     Accelerator(pe_rows=8, pe_cols=6, dataflow="ws", rf_bytes=64, ifmap_kb=8.0, filter_kb=4.0, ofmap_kb=4.0,
                 dram_bw=4.0, pe_kind="scalable")),
    (Layer(in_h=20, in_w=20, in_c=20, out_c=16, k_h=3, k_w=3, pad=1, w_bits=4, a_bits=4),
     Accelerator(pe_rows=7, pe_cols=3, dataflow="rs", rf_bytes=64, ifmap_kb=8.0, filter_kb=8.0, ofmap_kb=4.0,
                 dram_bw=4.0, pe_kind="scalable")),
    (Layer(in_h=16, in_w=16, in_c=16, out_c=16, k_h=3, k_w=3, pad=1, groups=16, w_bits=8, a_bits=4),
     Accelerator(pe_rows=4, pe_cols=4, dataflow="ws", rf_bytes=16, ifmap_kb=1.0, filter_kb=1.0, ofmap_kb=1.0,
                 dram_bw=1.0, pe_kind="scalable")),
]


@pytest.mark.parametrize(("layer", "acc"), PRECISION_PAIRS,
                         ids=[f"{acc.pe_kind}-{acc.dataflow}-w{layer.w_bits}a{layer.a_bits}" for layer, acc in PRECISION_PAIRS])
def test_precision_widths_area_and_energy_components_are_the_simulators(layer, acc):
    from dataset_gen.simulator.precision import pack

    result = simulate(layer, acc)
    assert result.feasible
    t_layer, t_acc = tensors(layer, acc)
    t_layer.update(w_bits=one(layer.w_bits), a_bits=one(layer.a_bits))
    t_acc["pe_kind"] = torch.tensor([[float(acc.pe_kind == "fixed"), float(acc.pe_kind == "scalable")]],
                                    dtype=torch.float64)
    widths = rules.layer_widths(t_layer, t_acc)
    packed, reference = pack(layer, acc)
    agree("packed channels per group", widths["packed_cg"], packed.in_c_per_group)
    for name in ("lanes", "ifmap_bits", "filter_bits", "ofmap_bits", "rf_word_bits", "rf_access_bits", "mac_pj"):
        agree(name, widths[name], getattr(reference, name), rel=1e-12)
    p_layer, p_acc = rules.with_widths(t_layer, t_acc, widths)
    agree("packed MACs", p_layer["packed_macs"], packed.macs, rel=1e-12)
    agree("area_mm2", rules.area_mm2(p_acc), result.area_mm2, rel=1e-12)
    sram = torch.tensor([[result.sram_ifmap_reads + result.dram_ifmap_reads,
                          result.sram_filter_reads + result.dram_filter_reads,
                          result.sram_ofmap_reads + result.sram_ofmap_writes + result.dram_ofmap_reads
                          + result.dram_ofmap_writes]], dtype=torch.float64)
    dram = torch.tensor([[result.dram_ifmap_reads, result.dram_filter_reads,
                          result.dram_ofmap_reads + result.dram_ofmap_writes]], dtype=torch.float64)
    parts = rules.energy_components(p_acc, t_layer["macs"], sram, dram, one(result.total_cycles), one(0.0),
                                    p_layer["packed_macs"])
    for name, value in zip(("mac", "rf", "array", "sram", "dram", "leak"), parts):
        if name != "array":  # array hops come from the fold model (checked above at native precision)
            agree(f"energy_{name}_pj", value, getattr(result, f"energy_{name}_pj"), rel=1e-12)
