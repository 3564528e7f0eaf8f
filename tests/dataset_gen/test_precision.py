"""Layer precision and precision-scalable PEs: what the simulator's model promises (docs/simulator.md)."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from dataset_gen.adapters.base import native_precision_refusal
from dataset_gen.simulator import energy, simulate, simulate_batch
from dataset_gen.simulator.precision import pack
from dataset_gen.space import Accelerator, Layer, Mapping, SpaceError

CONV = Layer(28, 28, 64, 128, 3, 3, 1, 1, name="conv")
BIG = dict(ifmap_kb=4096.0, filter_kb=4096.0, ofmap_kb=4096.0)  # every tile fits: counts depend on the mapping only
ONE_TILE = Mapping("pck", 28, 64, 128)


def bits(layer: Layer, w: int, a: int) -> Layer:
    return dataclasses.replace(layer, w_bits=w, a_bits=a)


def test_native_precision_is_the_word_width_exactly():
    for accelerator in (Accelerator(), Accelerator(word_bits=8, dataflow="os"), Accelerator(word_bits=32)):
        native = simulate(CONV, accelerator)
        spelled = simulate(bits(CONV, accelerator.word_bits, accelerator.word_bits), accelerator)
        assert spelled == native
    # a scalable array at full precision has one lane: the same schedule, a dearer MAC and area
    fixed, scalable = simulate(CONV, Accelerator()), simulate(CONV, Accelerator(pe_kind="scalable"))
    assert scalable.total_cycles == fixed.total_cycles
    assert scalable.energy_mac_pj == pytest.approx(fixed.energy_mac_pj * energy.FUSION_ENERGY_OVERHEAD)
    assert scalable.area_mm2 > fixed.area_mm2


def test_a_layer_wider_than_the_word_does_not_run_in_either_engine():
    layer, accelerator = bits(CONV, 16, 8), Accelerator(word_bits=8)
    for engine in ("fast", "reference"):
        result = simulate(layer, accelerator, engine=engine)
        assert not result.feasible and result.total_cycles == -1
        assert result.area_mm2 == pytest.approx(simulate(CONV, accelerator).area_mm2)  # area is still defined


def test_fixed_pes_gain_only_in_traffic_and_storage():
    accelerator = Accelerator(**BIG)
    full = simulate(CONV, accelerator, ONE_TILE)
    half = simulate(bits(CONV, 8, 8), accelerator, ONE_TILE)
    assert half.compute_cycles == full.compute_cycles  # one MAC per PE per cycle, at any precision
    assert half.energy_mac_pj == full.energy_mac_pj  # a full-width MAC
    assert half.dram_ifmap_reads == full.dram_ifmap_reads  # same mapping, same elements...
    assert half.energy_dram_pj == pytest.approx(full.energy_dram_pj / 2)  # ...of half the bits
    assert half.energy_sram_pj == pytest.approx(full.energy_sram_pj / 2)
    # weights alone: only the filter's traffic shrinks
    w4 = simulate(bits(CONV, 4, 16), accelerator, ONE_TILE)
    expected = (full.dram_ifmap_reads * 16 + full.dram_filter_reads * 4
                + (full.dram_ofmap_reads + full.dram_ofmap_writes) * 16) * energy.DRAM_PJ_PER_BIT
    assert w4.energy_dram_pj == pytest.approx(expected)


def test_narrow_operands_fit_bigger_tiles_in_the_same_buffers():
    small = Accelerator(ifmap_kb=8.0, filter_kb=8.0, ofmap_kb=8.0)
    full, narrow = simulate(CONV, small, objective="energy"), simulate(bits(CONV, 4, 4), small, objective="energy")
    assert narrow.dram_ifmap_reads + narrow.dram_filter_reads <= full.dram_ifmap_reads + full.dram_filter_reads
    assert narrow.energy_dram_pj < full.energy_dram_pj / 3


def test_scalable_pes_split_into_lanes_along_the_input_channels():
    accelerator = Accelerator(pe_kind="scalable", **BIG)
    layer = bits(CONV, 4, 4)  # (16/4) * (16/4) = 16 lanes: 64 channels pack into 4
    packed, widths = pack(layer, accelerator)
    assert (packed.in_c, int(widths.lanes), int(widths.ifmap_bits), int(widths.filter_bits)) == (4, 16, 64, 64)
    full = simulate(CONV, accelerator)
    fast = simulate(layer, accelerator)
    assert fast.macs == full.macs == CONV.macs  # real MACs are reported
    assert fast.compute_cycles <= full.compute_cycles / 8
    assert fast.utilization > 1.0  # MACs per PE per cycle: lanes work in parallel
    assert fast.energy_mac_pj == pytest.approx(
        CONV.macs * energy.mac_energy_pj(16) * energy.FUSION_ENERGY_OVERHEAD * (4 * 4) / (16 * 16))
    # against a fixed array at the same precision: faster and cheaper per MAC
    fixed = simulate(layer, Accelerator(**BIG))
    assert fast.total_cycles < fixed.total_cycles / 4 and fast.energy_mac_pj < fixed.energy_mac_pj / 8


def test_uneven_channels_spread_over_the_lanes_and_depthwise_gains_none():
    accelerator = Accelerator(pe_kind="scalable")
    packed, widths = pack(Layer(8, 8, 20, 8, w_bits=4, a_bits=4), accelerator)  # 16 lanes, 20 channels
    assert (packed.in_c, int(widths.lanes)) == (2, 10)  # two packed channels of 10, not 16 + 4
    depthwise = Layer(28, 28, 64, 64, 3, 3, 1, 1, groups=64, w_bits=4, a_bits=4)
    assert pack(depthwise, accelerator)[0] == depthwise
    assert (simulate(depthwise, accelerator).compute_cycles
            == simulate(depthwise, dataclasses.replace(accelerator, pe_kind="fixed")).compute_cycles)


def test_precision_and_pe_kind_are_validated_naming_the_field():
    with pytest.raises(SpaceError, match=r"layer.w_bits = 3 .*expected one of \[0, 2, 4, 8, 16, 32\]"):
        Layer(8, 8, 4, 4, w_bits=3, name="x")
    with pytest.raises(SpaceError, match=r"accelerator.pe_kind = 'bitfusion': expected one of \['fixed', 'scalable'\]"):
        Accelerator(pe_kind="bitfusion")
    frame = pd.DataFrame([{**CONV.to_dict(), "a_bits": 12}])
    with pytest.raises(SpaceError, match=r"a_bits = 12"):
        simulate_batch(frame)


def test_batch_columns_may_leave_the_new_fields_out():
    frame = pd.DataFrame([{**CONV.to_dict(), "w_bits": 8}])
    frame = frame.drop(columns=["a_bits"])
    result = simulate_batch(frame).iloc[0]
    assert result["energy_dram_pj"] == pytest.approx(simulate(bits(CONV, 8, 0), Accelerator()).energy_dram_pj)


def test_external_tools_refuse_what_they_cannot_model():
    pair = {**CONV.to_dict(), **Accelerator().to_dict()}
    assert native_precision_refusal(pair, "SCALE-Sim") == ""
    assert native_precision_refusal({**pair, "w_bits": 16, "a_bits": 0}, "SCALE-Sim") == ""
    assert "w_bits = 8: SCALE-Sim models every operand at the word width" in native_precision_refusal(
        {**pair, "w_bits": 8}, "SCALE-Sim")
    assert "pe_kind = 'scalable'" in native_precision_refusal({**pair, "pe_kind": "scalable"}, "ZigZag")


def test_dance_sim_sets_every_layers_precision_and_the_pe_kind(capsys):
    from dataset_gen.cli_sim import main

    assert main(["--layer", "28,28,64,128,3,3,1,1", "--w-bits", "4", "--a-bits", "4", "--pe-kind", "scalable",
                 "--json"]) == 0
    import json

    record = json.loads(capsys.readouterr().out.splitlines()[0])
    expected = simulate(bits(CONV, 4, 4), Accelerator(pe_kind="scalable"))
    assert record["total_cycles"] == expected.total_cycles and record["w_bits"] == 4
    assert record["pe_kind"] == "scalable"
