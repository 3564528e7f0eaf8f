"""Golden check: the evaluator's torch re-writing of the simulator's rules against the LIVE simulator.

`evaluator.rules` must stay differentiable, so it cannot call the NumPy simulator; these
tests run both on a fixed set of (layer, accelerator) pairs and one mapping per pair, and
must be exact (counts) or agree to float64 rounding (energies, area). A failure means the
simulator changed under the evaluator.
"""

import numpy as np
import pandas as pd
import pytest
import torch

from dataset_gen.simulator import mapper, simulate, simulate_batch
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

# Every dataflow and word width; strides, groups, depthwise, batches, a fully connected layer,
# kernels taller than the array, arrays that are not powers of two, edge tiles everywhere.
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
]
IDS = [f"{acc.dataflow}-{layer.in_h}x{layer.in_w}x{layer.in_c}-g{layer.groups}" for layer, acc in PAIRS]


def tensors(layer: Layer, acc: Accelerator) -> tuple[dict, dict]:
    """One pair as the rules take it: decoded float64 values, shape (1,)."""
    def one(value):
        return torch.tensor([float(value)], dtype=torch.float64)

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


def mappings(layer: Layer, acc: Accelerator, winner) -> list[Mapping]:
    """The mapper's winner and a mid-list candidate (another order and tiling)."""
    candidates = mapper.candidate_mappings(layer, acc)
    assert candidates, "every golden pair must be mappable"
    chosen = Mapping(winner.map_order, winner.map_tile_p, winner.map_tile_c, winner.map_tile_k)
    return [chosen, candidates[len(candidates) // 2]]


@pytest.mark.parametrize(("layer", "acc"), PAIRS, ids=IDS)
def test_the_tile_ladders_and_capacity_checks_are_the_mappers(layer, acc):
    t_layer, t_acc = tensors(layer, acc)
    for dim in ("out_h", "in_c_per_group", "out_c_per_group"):
        ours = sorted(set(rules.ladder(t_layer[dim])[0].tolist()), reverse=True)
        agree(f"ladder of {dim}", ours, mapper.ladder(getattr(layer, dim)))
    bits = t_acc["word_bits"]
    rf_ok = rules.rf_words(t_acc["rf_bytes"], bits) >= rules.rf_words_required(t_acc["dataflow"], t_layer["k_w"])
    for tp in mapper.ladder(layer.out_h):
        for tc in mapper.ladder(layer.in_c_per_group):
            for tk in mapper.ladder(layer.out_c_per_group):
                words = rules.tile_words(t_layer, *(torch.tensor([float(t)], dtype=torch.float64) for t in (tp, tc, tk)))
                fits = rf_ok & torch.stack([words[b] <= rules.half_buffer_words(t_acc[f"{b}_kb"], bits)
                                            for b in ("ifmap", "filter", "ofmap")]).all(dim=0)
                agree(f"capacity of tile {(tp, tc, tk)}", bool(fits), mapper.fits(layer, acc, tp, tc, tk))


@pytest.mark.parametrize(("layer", "acc"), PAIRS, ids=IDS)
def test_the_per_tile_fold_models_are_the_simulators(layer, acc, searched):
    t_layer, t_acc = tensors(layer, acc)
    for mapping in mappings(layer, acc, searched[layer, acc]):
        for tp in {mapping.tile_p, layer.out_h % mapping.tile_p or mapping.tile_p}:
            for tc in {mapping.tile_c, layer.in_c_per_group % mapping.tile_c or mapping.tile_c}:
                for tk in {mapping.tile_k, layer.out_c_per_group % mapping.tile_k or mapping.tile_k}:
                    sizes = [torch.tensor([float(t)], dtype=torch.float64) for t in (tp, tc, tk)]
                    expected = tile_costs(DATAFLOW_CODES[acc.dataflow], tp, tc, tk, layer.out_w, layer.k_h, layer.k_w,
                                          layer.stride, acc.pe_rows, acc.pe_cols)
                    cycles = rules.tile_cycles(acc.dataflow, t_layer, t_acc["pe_rows"], t_acc["pe_cols"], *sizes)
                    agree(f"cycles of tile {(tp, tc, tk)}", cycles, expected[0])
                    sram = rules.tile_sram_words(acc.dataflow, t_layer, t_acc["pe_rows"], t_acc["pe_cols"], *sizes)
                    agree(f"SRAM accesses of tile {(tp, tc, tk)}", torch.cat(sram), expected[1:])


@pytest.mark.parametrize(("layer", "acc"), PAIRS, ids=IDS)
def test_compute_dram_reuse_and_buffer_counts_of_a_mapping_are_the_simulators(layer, acc, searched):
    t_layer, t_acc = tensors(layer, acc)
    for mapping in mappings(layer, acc, searched[layer, acc]):
        result = simulate(layer, acc, mapping)
        chosen = [rules.tile_split(t_layer[dim], torch.tensor([float(min(tile, getattr(layer, dim)))],
                                                              dtype=torch.float64))
                  for dim, tile in (("out_h", mapping.tile_p), ("in_c_per_group", mapping.tile_c),
                                    ("out_c_per_group", mapping.tile_k))]
        blocks = t_layer["batch"] * t_layer["groups"]
        compute = rules.over_tiles(chosen, lambda p, c, k: rules.tile_cycles(
            acc.dataflow, t_layer, t_acc["pe_rows"], t_acc["pe_cols"], p, c, k)) * blocks
        agree(f"compute cycles of {mapping}", compute, result.compute_cycles)
        trips = {loop: full + 1 for loop, (full, _, _) in zip("pck", chosen)}
        changes = {loop: trip > 1 for loop, trip in trips.items()}
        words = rules.dram_words(mapping.order, trips, changes, rules.sweep_words(t_layer, chosen[0]),
                                 t_layer["batch"], t_layer["groups"])
        agree(f"DRAM words of {mapping}", words, result.dram_ifmap_reads + result.dram_filter_reads
              + result.dram_ofmap_reads + result.dram_ofmap_writes)
        buffers = rules.buffer_words(t_layer, t_acc, chosen, torch.tensor([LOOP_ORDERS.index(mapping.order)]))
        agree(f"buffer accesses of {mapping}", buffers[0], [
            result.sram_ifmap_reads + result.dram_ifmap_reads, result.sram_filter_reads + result.dram_filter_reads,
            result.sram_ofmap_reads + result.sram_ofmap_writes + result.dram_ofmap_reads + result.dram_ofmap_writes])


@pytest.mark.parametrize(("layer", "acc"), PAIRS, ids=IDS)
def test_area_and_every_energy_component_including_leakage_are_the_simulators(layer, acc, searched):
    t_layer, t_acc = tensors(layer, acc)
    result = searched[layer, acc]
    agree("area_mm2", rules.area_mm2(t_acc), result.area_mm2, rel=1e-12)
    sram_words = torch.tensor([[result.sram_ifmap_reads + result.dram_ifmap_reads,
                                result.sram_filter_reads + result.dram_filter_reads,
                                result.sram_ofmap_reads + result.sram_ofmap_writes + result.dram_ofmap_reads
                                + result.dram_ofmap_writes]], dtype=torch.float64)
    dram_words = torch.tensor([float(result.dram_ifmap_reads + result.dram_filter_reads + result.dram_ofmap_reads
                                     + result.dram_ofmap_writes)], dtype=torch.float64)
    cycles = torch.tensor([float(result.total_cycles)], dtype=torch.float64)
    ours = rules.energy_components(t_acc, t_layer["macs"], sram_words, dram_words, cycles)
    for name, value in zip(("mac", "rf", "sram", "dram", "leak"), ours):
        agree(f"energy_{name}_pj", value, getattr(result, f"energy_{name}_pj"), rel=1e-12)


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
            cycles = tile_costs(DATAFLOW_CODES[name], layer.out_h, layer.in_c_per_group, layer.out_c_per_group,
                                layer.out_w, layer.k_h, layer.k_w, layer.stride, acc.pe_rows, acc.pe_cols)[0]
            demand_rows = cycles if name == "rs" else cycles + 1  # SCALE-Sim reports rows minus one
            value = 2.0 ** float(features[row, PAIR_FEATURES.index(f"log2_untiled_cycles_{name}")])
            agree(f"untiled {name} cycles of {layer}", value, demand_rows * layer.groups * layer.batch, rel=1e-5)
