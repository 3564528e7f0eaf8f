"""Energy and area: the constants reproduce their sources, and the model behaves sensibly."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dataset_gen.simulator import energy, simulate
from dataset_gen.space import Accelerator, Layer


def test_power_laws_pass_through_horowitz_figures():
    assert energy._power_law(energy.MULT_PJ_8, energy.MULT_PJ_32, 8) == pytest.approx(0.2)
    assert energy._power_law(energy.MULT_PJ_8, energy.MULT_PJ_32, 32) == pytest.approx(3.1)
    assert energy._power_law(energy.ADD_UM2_8, energy.ADD_UM2_32, 32) == pytest.approx(137.0)
    # MAC = multiply at word width + accumulate at twice the width.
    assert energy.mac_energy_pj(16) == pytest.approx(
        energy._power_law(0.2, 3.1, 16) + energy._power_law(0.03, 0.1, 32))
    assert energy.mac_energy_pj(8) < energy.mac_energy_pj(16) < energy.mac_energy_pj(32)
    assert energy.mac_area_um2(8) == pytest.approx(282.0 + energy._power_law(36.0, 137.0, 16))


def test_sram_energy_fits_horowitz_accesses():
    # 64-bit accesses: 10 pJ at 8 KB, 20 pJ at 32 KB, ~100 pJ at 1 MB.
    assert float(energy.sram_energy_per_word_pj(8, 64)) == pytest.approx(10.0)
    assert float(energy.sram_energy_per_word_pj(32, 64)) == pytest.approx(20.0)
    assert float(energy.sram_energy_per_word_pj(1024, 64)) == pytest.approx(113.1, rel=0.01)


def test_register_file_access_costs_one_mac_at_half_a_kilobyte():
    for bits in (8, 16, 32):
        assert float(energy.rf_energy_per_access_pj(512, bits)) == pytest.approx(energy.mac_energy_pj(bits))
    assert float(energy.rf_energy_per_access_pj(128, 16)) == pytest.approx(energy.mac_energy_pj(16) / 2)


def test_area_by_hand():
    mac = energy.mac_area_um2(16)
    expected_um2 = 16 * 8 * (mac + 64 * 8 * 2.5) + (32 + 16 + 8) * 8192 * 0.6
    assert float(energy.area_mm2(16, 8, 64, 32, 16, 8, 16)) == pytest.approx(expected_um2 * 1e-6, rel=1e-12)


def test_bigger_array_buffers_or_rf_never_lower_area():
    rows = np.arange(1, 65)
    area = energy.area_mm2(rows, 16, 64, 64.0, 64.0, 64.0, 16)
    assert (np.diff(area) > 0).all()
    assert energy.area_mm2(16, 16, 128, 64, 64, 64, 16) > energy.area_mm2(16, 16, 64, 64, 64, 64, 16)
    assert energy.area_mm2(16, 16, 64, 128, 64, 64, 16) > energy.area_mm2(16, 16, 64, 64, 64, 64, 16)
    assert energy.area_mm2(16, 16, 64, 64, 64, 64, 32) > energy.area_mm2(16, 16, 64, 64, 64, 64, 16)


def test_energy_components_follow_the_counts():
    layer = Layer(in_h=16, in_w=16, in_c=8, out_c=16, k_h=3, k_w=3, pad=1)
    accelerator = Accelerator(pe_rows=8, pe_cols=8, dataflow="os", rf_bytes=128, ifmap_kb=16,
                              filter_kb=8, ofmap_kb=32, dram_bw=8, word_bits=16, freq_mhz=250)
    r = simulate(layer, accelerator)
    mac = energy.mac_energy_pj(16)
    assert r.energy_mac_pj == pytest.approx(r.macs * mac)
    assert r.energy_rf_pj == pytest.approx(r.rf_accesses * mac * math.sqrt(128 / 512))
    assert r.rf_accesses == 2 * r.macs
    per_bit = lambda kb: 10 / 64 * math.sqrt(kb / 8)  # noqa: E731
    sram = ((r.sram_ifmap_reads + r.dram_ifmap_reads) * per_bit(16)
            + (r.sram_filter_reads + r.dram_filter_reads) * per_bit(8)
            + (r.sram_ofmap_reads + r.sram_ofmap_writes + r.dram_ofmap_reads + r.dram_ofmap_writes) * per_bit(32))
    assert r.energy_sram_pj == pytest.approx(sram * 16)
    dram_words = r.dram_ifmap_reads + r.dram_filter_reads + r.dram_ofmap_reads + r.dram_ofmap_writes
    assert r.energy_dram_pj == pytest.approx(dram_words * 16 * 20)
    assert r.energy_leak_pj == pytest.approx(r.area_mm2 * 0.02 * r.total_cycles / 250e6 * 1e12)
    hops = r.energy_array_pj / energy.array_hop_energy_pj(16)
    assert r.macs <= hops <= 2 * r.macs and hops == pytest.approx(round(hops))  # ws: at most 2 hops per MAC
    parts = (r.energy_mac_pj, r.energy_rf_pj, r.energy_sram_pj, r.energy_dram_pj, r.energy_leak_pj)
    assert r.energy_pj == energy.total_energy_pj(*parts, r.energy_array_pj) == pytest.approx(
        sum(parts) + r.energy_array_pj)
    assert energy.array_hop_energy_pj(16) == pytest.approx(2 * energy.mac_energy_pj(16))


def test_leakage_grows_with_time_and_area():
    assert energy.leakage_energy_pj(2.0, 1000, 500) == pytest.approx(2 * energy.leakage_energy_pj(1.0, 1000, 500))
    assert energy.leakage_energy_pj(1.0, 2000, 500) == pytest.approx(2 * energy.leakage_energy_pj(1.0, 1000, 500))
