"""The reference engine: hand-checked schedules, the contract of results, sanity behaviour."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from dataset_gen.simulator import (ENGINES, RESULT_DTYPES, RESULT_FIELDS, SIMULATOR_VERSION, SimResult,
                                   candidate_mappings, simulate, simulate_batch)
from dataset_gen.simulator import dataflows, mapper, systolic
from dataset_gen.space import DATAFLOWS, Accelerator, Layer, Mapping, SpaceError

# A 1x1 "conv" with 2 input and 3 output channels on a 1x1 row-stationary array with
# 8-bit words and 1 byte/cycle of DRAM: one word costs one DRAM cycle, and a tile of
# tc x tk channel pairs computes in tc*tk cycles (one 1-MAC pass per pair, hs = e = v = 1).
TINY_LAYER = Layer(in_h=1, in_w=1, in_c=2, out_c=3)
TINY_ARRAY = Accelerator(pe_rows=1, pe_cols=1, dataflow="rs", rf_bytes=4, ifmap_kb=0.0625,
                         filter_kb=0.0625, ofmap_kb=0.0625, dram_bw=1.0, word_bits=8, freq_mhz=100.0)


def test_version_and_fields_are_the_documented_contract():
    assert SIMULATOR_VERSION == "2.3.0"
    assert RESULT_FIELDS[:5] == ("feasible", "total_cycles", "compute_cycles", "stall_cycles", "latency_s")
    assert RESULT_FIELDS[-6:] == ("map_kind", "map_order", "map_tile_p", "map_tile_q", "map_tile_c", "map_tile_k")
    assert "energy_array_pj" in RESULT_FIELDS
    assert len(RESULT_FIELDS) == 30 and set(RESULT_DTYPES) == set(RESULT_FIELDS)


def test_recurrence_by_hand_with_c_innermost():
    # Order pkc, tile_c = 1, tile_k = 2: steps (k0,c0) (k0,c1) (k1,c0) (k1,c1). The ifmap of
    # one k iteration (both c tiles, 2 words) and a prefetch tile fit its 64-word buffer, so
    # it stays on chip across k (buffer residency): k1 loads no ifmap.
    #   step  loads (words)                      L   C
    #   0     ifmap 1 + filter 2                 3   2
    #   1     ifmap 1 + filter 2 (c changed)     3   2
    #   2     filter 1 + writeback 2             3   1
    #   3     filter 1                           1   1
    # load_end / compute_end: 3/5, 6/8, 9/10, 10/11; final write-back of 1 word -> 12.
    result = simulate(TINY_LAYER, TINY_ARRAY, Mapping("pkc", 1, 1, 2))
    assert (result.total_cycles, result.compute_cycles, result.stall_cycles) == (12, 6, 6)
    assert (result.dram_ifmap_reads, result.dram_filter_reads) == (2, 6)
    assert (result.dram_ofmap_reads, result.dram_ofmap_writes) == (0, 3)
    # rs, one MAC per pair: each pair reads 1 ifmap and 1 filter word and writes 1 psum.
    assert (result.sram_ifmap_reads, result.sram_filter_reads, result.sram_ofmap_writes) == (6, 6, 6)
    assert result.sram_ofmap_reads == 3  # steps 1 and 3 continue an accumulation (2 + 1 words)
    assert result.macs == 6 and result.rf_accesses == 24  # rs: 4 RF accesses per MAC


def test_recurrence_by_hand_with_resident_partial_sums():
    # Order pck: steps (c0,k0) (c0,k1) (c1,k0) (c1,k1). The whole ofmap (3 words) and a tile fit
    # its 64-word buffer, so partial sums stay on chip across c (buffer residency): none come
    # back, and a tile leaves only after its last c tile.
    #   step  loads (words)                                   L   C
    #   0     ifmap 1 + filter 2                              3   2
    #   1     filter 1                                        1   1
    #   2     ifmap 1 + filter 2                              3   2
    #   3     filter 1 + writeback 2 (tile k0 complete)       3   1
    # load_end / compute_end: 3/5, 4/6, 8/10, 11/12; final write-back 1 -> 13.
    result = simulate(TINY_LAYER, TINY_ARRAY, Mapping("pck", 1, 1, 2))
    assert (result.total_cycles, result.compute_cycles, result.stall_cycles) == (13, 6, 7)
    assert (result.dram_ifmap_reads, result.dram_filter_reads) == (2, 6)
    assert (result.dram_ofmap_reads, result.dram_ofmap_writes) == (0, 3)


@pytest.mark.parametrize(("ofmap_kb", "reads", "writes"), [(0.0625, 12, 24), (0.125, 0, 12)])
def test_partial_sums_go_through_dram_unless_the_ofmap_stays_on_chip(ofmap_kb, reads, writes):
    # 12 filters in tiles of 6, 2 channels in tiles of 1, order pck: the ofmap tile changes at
    # every step. At 32 bits a 0.0625 KB buffer holds 16 words: the ofmap (12) and a tile (6) do
    # not fit, so the c0 partial sums go to DRAM (every change writes the previous tile: 3 x 6,
    # plus the last 6) and come back at c1 (2 x 6); 0.125 KB (32 words) keeps them: each tile
    # is written once, complete (12), none read.
    layer = Layer(in_h=1, in_w=1, in_c=2, out_c=12)
    accelerator = Accelerator(pe_rows=1, pe_cols=1, dataflow="rs", rf_bytes=16, ifmap_kb=0.0625, filter_kb=0.0625,
                              ofmap_kb=ofmap_kb, dram_bw=1.0, word_bits=32, freq_mhz=100.0)
    result = simulate(layer, accelerator, Mapping("pck", 1, 1, 6))
    assert result.feasible
    assert (result.dram_ofmap_reads, result.dram_ofmap_writes) == (reads, writes)
    assert result.sram_ofmap_reads == 12  # on chip, the c1 steps read the c0 partial sums back either way


def test_whole_layer_tile_has_no_overlap_and_scalesim_ignores_capacity():
    layer = Layer(in_h=6, in_w=5, in_c=4, out_c=3, k_h=3, k_w=3, pad=1, groups=1, batch=2)
    accelerator = Accelerator(pe_rows=4, pe_cols=4, dataflow="ws", rf_bytes=8, ifmap_kb=0.0625,
                              filter_kb=0.0625, ofmap_kb=0.0625, dram_bw=2.0, word_bits=32)
    assert candidate_mappings(layer, accelerator) == []  # nothing fits 8-word half buffers
    assert not simulate(layer, accelerator).feasible
    result = simulate(layer, accelerator, "scalesim")
    assert result.feasible and result.map_kind == "scalesim" and result.map_order == "pck"
    assert (result.map_tile_p, result.map_tile_c, result.map_tile_k) == (6, 4, 3)
    cycles, ifmap_reads, filter_reads, ofmap_writes = (
        int(x) for x in systolic.systolic_fold(systolic.WS, 6 * 5, 3 * 3 * 4, 3, 4, 4))
    assert result.compute_cycles == 2 * cycles  # one tile per image
    assert result.sram_ifmap_reads == 2 * ifmap_reads and result.sram_ofmap_writes == 2 * ofmap_writes
    # Image 0 loads 6*5*4 ifmap + 3*3*4*3 filter words; image 1 its ifmap plus the
    # write-back of image 0's 6*5*3 outputs (the filter stays); 4-byte words at 2 B/cycle.
    first_load, second_load, last_writeback = (120 + 108) * 2, (120 + 90) * 2, 90 * 2
    expected = first_load + cycles + max(0, second_load - cycles) + cycles + last_writeback
    assert result.total_cycles == expected


def test_infeasible_when_the_register_file_is_too_small():
    layer = Layer(in_h=8, in_w=8, in_c=4, out_c=4, k_h=3, k_w=3, pad=1)
    rs_small = Accelerator(dataflow="rs", rf_bytes=6, word_bits=8)  # 6 words < 2*3 + 1
    assert candidate_mappings(layer, rs_small) == []
    assert not simulate(layer, rs_small).feasible
    assert simulate(layer, Accelerator(dataflow="rs", rf_bytes=7, word_bits=8)).feasible
    assert not simulate(layer, Accelerator(dataflow="ws", rf_bytes=3, word_bits=16)).feasible
    assert simulate(layer, Accelerator(dataflow="ws", rf_bytes=4, word_bits=16)).feasible


def test_infeasible_result_values():
    layer = Layer(in_h=8, in_w=8, in_c=4, out_c=4)
    accelerator = Accelerator(dataflow="ws", rf_bytes=1, word_bits=16)
    result = simulate(layer, accelerator)
    values = result.to_dict()
    assert values["feasible"] is False
    assert all(values[f] == -1 for f, d in RESULT_DTYPES.items() if d == "int64")
    assert all(math.isnan(values[f]) for f, d in RESULT_DTYPES.items() if d == "float64" and f != "area_mm2")
    assert values["map_kind"] == "" and values["map_order"] == ""
    assert values["area_mm2"] > 0


def test_explicit_mapping_is_simulated_as_given_or_infeasible():
    layer = Layer(in_h=8, in_w=8, in_c=8, out_c=8, k_h=3, k_w=3, pad=1)
    accelerator = Accelerator(pe_rows=4, pe_cols=4, ifmap_kb=1, filter_kb=1, ofmap_kb=1, word_bits=16)
    given_mapping = Mapping("kcp", 2, 4, 2)
    result = simulate(layer, accelerator, given_mapping)
    assert result.feasible
    assert (result.map_order, result.map_tile_p, result.map_tile_c, result.map_tile_k) == ("kcp", 2, 4, 2)
    too_big = Mapping("pck", 8, 8, 8)  # 8*8*8 ifmap words > half of 1 KiB
    assert not simulate(layer, accelerator, too_big).feasible


def test_ladders_and_candidate_order():
    assert mapper.ladder(1) == [1]
    assert mapper.ladder(56) == [56, 14, 4, 1]
    assert mapper.ladder(512) == [512, 128, 32, 8, 2, 1]
    assert mapper.ladder(4096) == [4096, 1024, 256, 64, 16, 1]  # at most 6 values, 1 included
    assert mapper.spatial_tiles(56, 56) == [(56, 56), (14, 56), (4, 56), (1, 56), (1, 28), (1, 14)]
    assert mapper.spatial_tiles(13, 13) == [(13, 13), (4, 13), (1, 13), (1, 1)]  # 13 is prime
    assert mapper.spatial_tiles(1, 1) == [(1, 1)]
    layer = Layer(in_h=4, in_w=4, in_c=4, out_c=2)
    candidates = candidate_mappings(layer, Accelerator())
    assert len(candidates) == 6 * 4 * 2 * 2  # all fit the default 64 KiB buffers
    assert candidates[0] == Mapping("pck", 4, 4, 2, tile_q=4) and candidates[1] == Mapping("pck", 4, 4, 1, tile_q=4)
    assert candidates[2] == Mapping("pck", 4, 1, 2, tile_q=4) and candidates[16] == Mapping("pkc", 4, 4, 2, tile_q=4)
    assert candidates[2 * 2 * 2] == Mapping("pck", 1, 4, 2, tile_q=2)  # the first width tile


def test_input_spans_skip_what_strided_windows_never_read():
    # 1x1 stride 2: 4 output rows read 4 input rows, not 7; 3x3 stride 1: 4 + 2 halo rows
    assert int(mapper.input_span(4, 1, 2, 100)) == 4 and int(mapper.input_span(4, 3, 1, 100)) == 6
    assert int(mapper.input_span(4, 3, 1, 5)) == 5  # capped at the input (padding is not stored)
    assert int(mapper.halo(3, 1, 8)) == 2 and int(mapper.halo(3, 2, 8)) == 1 and int(mapper.halo(1, 2, 8)) == 0
    assert int(mapper.halo(4, 1, 1)) == 1  # a 1-row input: the halo is that row, never more


def test_halo_rows_are_fetched_once_when_c_stays():
    # 3x3, stride 1, 8x8 input padded to 8x8 output, 2 row tiles of 4: each tile reads 6 rows;
    # with c outside p the second tile finds 2 halo rows on chip (8 wide, 4 channels).
    layer = Layer(in_h=8, in_w=8, in_c=4, out_c=4, k_h=3, k_w=3, pad=1)
    accelerator = Accelerator(pe_rows=4, pe_cols=4, rf_bytes=16, ifmap_kb=64, filter_kb=64, ofmap_kb=64)
    halo_kept = simulate(layer, accelerator, Mapping("cpk", 4, 4, 4))  # one c tile: halo kept in every order
    assert halo_kept.dram_ifmap_reads == (6 + 6 - 2) * 8 * 4
    refetched = simulate(layer, accelerator, Mapping("pck", 4, 2, 4))  # c inside p: each p step changes c
    assert refetched.dram_ifmap_reads == 2 * 6 * 8 * 4
    kept_again = simulate(layer, accelerator, Mapping("cpk", 4, 2, 4))  # c outside p
    assert kept_again.dram_ifmap_reads == 2 * (6 + 4) * 8 * 2


def test_width_tiles_cut_rows_into_equal_segments():
    layer = Layer(in_h=6, in_w=8, in_c=2, out_c=2, k_h=3, k_w=3, pad=1)
    accelerator = Accelerator(pe_rows=4, pe_cols=4, ifmap_kb=64, filter_kb=64, ofmap_kb=64)
    result = simulate(layer, accelerator, Mapping("pck", 1, 2, 2, tile_q=4))
    assert result.feasible and (result.map_tile_p, result.map_tile_q) == (1, 4)
    # 6 rows x 2 segments, each 3 rows x (3*1 + 3) = 6 columns x 2 channels; the 64 KB buffer
    # keeps a line buffer, so only the first segment loads all 3 rows (and the 2 halo rows of
    # the other 8 - 6 input columns), every other segment its 1 new row
    assert result.dram_ifmap_reads == (3 * 6 * 2 + 2 * 2 * 2) + 11 * 1 * 6 * 2
    # 0.15 KB (76 words) holds a tile in each half (36 words) but no line buffer (3 rows x 8
    # columns x 2 channels + a tile = 84 words): every segment loads its 3 rows
    small = simulate(layer, Accelerator(pe_rows=4, pe_cols=4, ifmap_kb=0.15, filter_kb=64, ofmap_kb=64),
                     Mapping("pck", 1, 2, 2, tile_q=4))
    assert small.feasible and small.dram_ifmap_reads == 12 * 3 * 6 * 2
    assert result.dram_ofmap_writes == 6 * 8 * 2 and result.macs == layer.macs
    whole = simulate(layer, accelerator, Mapping("pck", 1, 2, 2))
    assert whole.map_tile_q == 8
    with pytest.raises(SpaceError, match="tile_q = 3.*divide out_w"):
        simulate(layer, accelerator, Mapping("pck", 1, 2, 2, tile_q=3))
    with pytest.raises(SpaceError, match="tile_q = 4.*tile_p = 1"):
        simulate(layer, accelerator, Mapping("pck", 2, 2, 2, tile_q=4))


@pytest.mark.parametrize(("ifmap_kb", "ifmap_words"), [(40.0, 9088 + 111 * 1920), (24.0, 112 * 5760)])
def test_line_buffer_worked_example(ifmap_kb, ifmap_words):
    # docs/simulator.md "Line buffers": ResNet-18's layer1.0.conv1 (56x56x64, 3x3) in width
    # tiles of 28 columns, order pck, all 64 channels per tile: 112 tiles of 3 input rows x 30
    # columns x 64 = 5,760 words. At 16 bits 40 KB (20,480 words) holds the line buffer (3 rows
    # x 56 columns x 64 = 10,752, plus a tile): the first tile loads its 5,760 words and the 2
    # halo rows of the other 26 input columns (3,328), the other 111 tiles their new row
    # (1 x 30 x 64 = 1,920). 24 KB (12,288 words) holds a tile per half but not the line
    # buffer: every tile loads its 3 rows.
    layer = Layer(in_h=56, in_w=56, in_c=64, out_c=64, k_h=3, k_w=3, pad=1)
    accelerator = Accelerator(pe_rows=8, pe_cols=8, dataflow="os", rf_bytes=16, ifmap_kb=ifmap_kb,
                              filter_kb=256.0, ofmap_kb=8.0, word_bits=16)
    for engine in ENGINES:
        result = simulate_batch(pd.DataFrame([{**layer.to_dict(), **accelerator.to_dict()}]),
                                Mapping("pck", 1, 64, 64, tile_q=28), engine=engine).iloc[0]
        assert result.feasible and result.dram_ifmap_reads == ifmap_words, engine


def test_an_input_smaller_than_the_kernel_never_loads_negative_words():
    # A 1x1 input, 4x1 kernel, pad 2: 2 x 5 outputs from one input row. The halo (k_h - stride
    # = 3 rows) is capped at the input's 1 row, so a tile after the first loads 0 new words
    # (before the cap: -2 for row tiles, -34 with a line buffer, and a negative energy). Every
    # mapping and the search load the input once, 1 x 1 x 2 words, in both engines.
    layer = Layer(in_h=1, in_w=1, in_c=2, out_c=1, k_h=4, k_w=1, stride=1, pad=2)
    accelerator = Accelerator(pe_rows=1, pe_cols=1, dataflow="ws", rf_bytes=2, ifmap_kb=0.0625, filter_kb=0.0625,
                              ofmap_kb=0.0625, dram_bw=0.01, word_bits=8)
    frame = pd.DataFrame([{**layer.to_dict(), **accelerator.to_dict()}])
    runs = [(mapping, "latency") for mapping in (Mapping("cpk", 1, 2, 1), Mapping("cpk", 1, 2, 1, tile_q=1))]
    runs += [("search", objective) for objective in ("latency", "energy", "edp")]
    for mapping, objective in runs:
        results = [simulate_batch(frame, mapping, objective, engine=engine).iloc[0] for engine in ENGINES]
        assert results[0].equals(results[1]), (mapping, objective)
        assert results[0].feasible and results[0].dram_ifmap_reads == 2 and results[0].energy_pj > 0, (mapping, objective)


def test_a_single_tile_may_fill_its_whole_buffer():
    # The whole ifmap (8x8x8 words of 16 bits = 1 KiB) in a 1 KiB buffer: loaded once, no
    # prefetch half needed; a second image needs the prefetch half, so it no longer fits.
    layer = Layer(in_h=8, in_w=8, in_c=8, out_c=4)
    accelerator = Accelerator(pe_rows=4, pe_cols=4, ifmap_kb=1, filter_kb=64, ofmap_kb=64, word_bits=16)
    assert simulate(layer, accelerator, Mapping("pck", 8, 8, 4)).feasible
    two_images = Layer(in_h=8, in_w=8, in_c=8, out_c=4, batch=2)
    assert not simulate(two_images, accelerator, Mapping("pck", 8, 8, 4)).feasible


def test_a_larger_register_file_buys_reuse():
    # A 3x3 conv with many filters on a 8x8 ws array: each PE can keep rf_words - 1 weights,
    # so the streamed inputs are read and moved once per group of column folds.
    layer = Layer(in_h=16, in_w=16, in_c=32, out_c=64, k_h=3, k_w=3, pad=1)
    energies, reads = [], []
    for rf_bytes in (4, 8, 16, 32, 64):
        accelerator = Accelerator(pe_rows=8, pe_cols=8, dataflow="ws", rf_bytes=rf_bytes, word_bits=16)
        energies.append(simulate(layer, accelerator, objective="energy").energy_pj)
        reads.append(simulate(layer, accelerator, Mapping("pck", 16, 32, 64)).sram_ifmap_reads)
    assert reads == sorted(reads, reverse=True) and reads[-1] == reads[0] / 8  # 8 column folds merge into 1
    assert energies[:3] == sorted(energies[:3], reverse=True) and max(energies[1:]) < 0.85 * energies[0]


def test_systolic_blocking_merges_folds():
    # ws, 8x8 array, w = 36 (5 row folds), f = 40 (5 column folds), m = 10 pixels.
    plain = dataflows.systolic_costs(0, 10, 36, 40, 8, 8, 2, True)
    scalesim = dataflows.systolic_costs(0, 10, 36, 40, 8, 8, 2, False)
    assert [int(x) for x in plain[1:4]] == [int(x) for x in scalesim[1:4]]  # b = 1: SCALE-Sim's counts
    assert int(plain[0]) == int(scalesim[0]) + 1  # SCALE-Sim reports the last cycle's index
    blocked = [int(x) for x in dataflows.systolic_costs(0, 10, 36, 40, 8, 8, 3, True)]  # b = 2
    assert blocked[1] == 10 * 36 * 3  # 3 column groups instead of 5 re-stream the inputs
    assert blocked[2] == 36 * 40 and blocked[3] == 10 * 40 * 5
    assert blocked[0] == 5 * 3 * (2 * 8 + 8 - 2) + 25 * 10  # fill and drain per merged fold
    assert blocked[5] == 10 * 36 * 40 // 2 + 10 * 36 * 40  # inputs hop half as often


SMALL_PAIRS = st.builds(
    lambda h, w, c, k, kh, stride, pad, df, rows, cols, kb, bw, bits: (
        Layer(in_h=max(h, kh), in_w=w, in_c=c, out_c=k, k_h=kh, k_w=1, stride=stride, pad=pad),
        Accelerator(pe_rows=rows, pe_cols=cols, dataflow=df, rf_bytes=16, ifmap_kb=kb, filter_kb=kb,
                    ofmap_kb=kb, dram_bw=bw, word_bits=bits)),
    st.integers(1, 6), st.integers(1, 6), st.integers(1, 6), st.integers(1, 6), st.integers(1, 3),
    st.integers(1, 2), st.integers(0, 1), st.sampled_from(DATAFLOWS), st.integers(1, 4),
    st.integers(1, 4), st.sampled_from([0.0625, 0.125, 1.0]), st.sampled_from([0.25, 1.0, 4.0]),
    st.sampled_from([8, 16]))


@settings(max_examples=25, deadline=None)
@given(SMALL_PAIRS, st.sampled_from(["latency", "energy", "edp"]))
def test_mapper_choice_is_no_worse_than_any_candidate(pair, objective):
    layer, accelerator = pair
    best = simulate(layer, accelerator, objective=objective)
    candidates = candidate_mappings(layer, accelerator)
    assert best.feasible == bool(candidates)
    for candidate in candidates:
        other = simulate(layer, accelerator, candidate)
        best_key = mapper.objective_keys(objective, best.total_cycles, best.energy_pj)
        other_key = mapper.objective_keys(objective, other.total_cycles, other.energy_pj)
        assert (best_key[0].item(), best_key[1].item()) <= (other_key[0].item(), other_key[1].item())


@settings(max_examples=25, deadline=None)
@given(SMALL_PAIRS, st.integers(0, 10**6))
def test_sanity_of_any_feasible_mapping(pair, seed):
    layer, accelerator = pair
    candidates = candidate_mappings(layer, accelerator)
    if not candidates:
        return
    mapping = candidates[seed % len(candidates)]
    result = simulate(layer, accelerator, mapping)
    assert 0 < result.utilization <= 1
    assert result.total_cycles == result.compute_cycles + result.stall_cycles and result.stall_cycles > 0
    parts = (result.energy_mac_pj, result.energy_rf_pj, result.energy_sram_pj, result.energy_dram_pj,
             result.energy_leak_pj)
    assert result.energy_pj == pytest.approx(sum(parts) + result.energy_array_pj, rel=1e-12) and min(parts) > 0
    assert result.energy_array_pj >= 0  # 0 only for rs with single-row filters or PE sets
    assert result.macs == layer.macs
    # Every filter and ofmap word crosses the chip boundary at least once.
    assert result.dram_filter_reads >= layer.k_h * layer.k_w * layer.in_c_per_group * layer.out_c
    assert result.dram_ofmap_writes >= layer.out_h * layer.out_w * layer.out_c * layer.batch
    faster = Accelerator(**{**accelerator.to_dict(), "dram_bw": accelerator.dram_bw * 3})
    assert simulate(layer, faster, mapping).total_cycles <= result.total_cycles
    assert result.latency_s == result.total_cycles / (accelerator.freq_mhz * 1e6)


def test_rs_fold_by_hand():
    # 3x3 filter on 4 output rows of width 5, 2 channels x 2 filters, stride 1, on 3x2 PEs:
    # sets of hs = 3 rows x e = 2 columns, v = 1 set; 2 row folds, 4 pair folds.
    cycles, ifmap, filt, ofmap, hops = (int(x) for x in dataflows.rs_fold(4, 5, 2, 2, 3, 3, 1, 3, 2))
    assert cycles == 1 * 2 * 4 * (5 * 3 + 3 - 1)
    row_words = (5 - 1) * 1 + 3
    assert ifmap == 4 * row_words * 2 * ((2 - 1) * 1 + 3)  # each fold covers 4 ifmap rows
    assert filt == 3 * 3 * 4 and ofmap == 4 * 4 * 5
    assert hops == ofmap * 2  # each partial sum climbs hs - 1 = 2 PEs
    # Array utilization can never exceed one MAC per PE per cycle.
    assert 4 * 5 * 2 * 2 * 9 <= cycles * 3 * 2
    # Two filters per PE: 2 pairs of (channel, filter group) share each ifmap row read.
    cycles, ifmap, filt, ofmap, hops = (int(x) for x in dataflows.rs_fold(4, 5, 2, 2, 3, 3, 1, 3, 2, 2))
    assert cycles == 1 * 2 * 2 * (5 * 3 * 2 + 3 - 1)
    assert ifmap == 2 * row_words * 2 * ((2 - 1) * 1 + 3) and filt == 3 * 3 * 4 and ofmap == 4 * 4 * 5
    assert int(dataflows.rs_filters_per_pe(16, 3, 8)) == 3 and int(dataflows.rs_filters_per_pe(7, 3, 8)) == 1


def test_simulate_batch_reference_shapes_and_errors():
    pairs = pd.DataFrame([{**TINY_LAYER.to_dict(), **TINY_ARRAY.to_dict()},
                          {**Layer(4, 4, 3, 5).to_dict(), **Accelerator(dataflow="os").to_dict()}],
                         index=["a", "b"])
    frame = simulate_batch(pairs, engine="reference")
    assert list(frame.columns) == list(RESULT_FIELDS) and list(frame.index) == ["a", "b"]
    assert {c: str(frame[c].dtype) for c in frame.columns} == RESULT_DTYPES
    assert frame.loc["a"].to_dict() == simulate(TINY_LAYER, TINY_ARRAY).to_dict()
    bad = pairs.copy()
    bad.loc["b", "k_h"] = 9  # larger than in_h + 2*pad = 4
    with pytest.raises(SpaceError, match=r"k_h.*row 'b'"):
        simulate_batch(bad, engine="reference")
    bad = pairs.copy()
    bad.loc["a", "in_c"] = -1
    with pytest.raises(SpaceError, match=r"in_c.*row 'a'"):
        simulate_batch(bad)
    bad = pairs.copy()
    bad.loc["b", "dataflow"] = "xx"
    with pytest.raises(SpaceError, match=r"dataflow.*row 'b'"):
        simulate_batch(bad)
    with pytest.raises(SpaceError, match="objective"):
        simulate_batch(pairs, objective="speed")
    with pytest.raises(SpaceError, match="engine"):
        simulate_batch(pairs, engine="magic")
    assert isinstance(simulate(TINY_LAYER, TINY_ARRAY), SimResult)


def test_simulate_batch_of_nothing_is_an_empty_frame():
    empty = pd.DataFrame({f: pd.Series([], dtype=np.int64) for f in ("in_h", "in_w", "in_c", "out_c")})
    for engine in ("fast", "reference"):
        frame = simulate_batch(empty, engine=engine)
        assert frame.empty and list(frame.columns) == list(RESULT_FIELDS)


def test_the_documented_worked_example():
    # docs/simulator.md, "Access counting": ws, 8x8 PEs, 6 RF words, 3x3 tile tc=4 tk=40 tq=10
    cycles, ifmap, filt, writes, reads, hops = (int(x) for x in dataflows.tile_costs(0, 1, 10, 4, 40, 3, 3, 1, 8, 8, 6))
    assert (cycles, ifmap, filt, writes, reads, hops) == (360, 360, 1440, 2000, 1600, 2880 + 14400)
    assert int(dataflows.tile_costs(0, 1, 10, 4, 40, 3, 3, 1, 8, 8, 6, blocking=False)[0]) == 799


@pytest.mark.parametrize(("ifmap_kb", "ifmap_words"), [(128.0, 74_304), (32.0, 16 * 74_304)])
def test_buffer_residency_worked_example(ifmap_kb, ifmap_words):
    # docs/simulator.md "Buffer residency": AlexNet conv2 with order pkc, tiles p/c/k 7/4/12.
    # One k iteration's ifmap (11 x 27 x 64 = 19,008 words) plus a tile (1,188) fits 128 KB at
    # 16 bits (65,536 words), not 32 KB (16,384): once, or once per k tile (16).
    layer = Layer(in_h=27, in_w=27, in_c=64, out_c=192, k_h=5, k_w=5, pad=2)
    accelerator = Accelerator(pe_rows=16, pe_cols=16, dataflow="os", rf_bytes=16, ifmap_kb=ifmap_kb,
                              filter_kb=8.0, ofmap_kb=64.0, dram_bw=16.0, word_bits=16)
    result = simulate(layer, accelerator, Mapping("pkc", 7, 4, 12))
    assert result.feasible and result.dram_ifmap_reads == ifmap_words
    assert result.dram_filter_reads == 4 * 5 * 5 * 64 * 192  # filter irrelevant to p: once per row tile
