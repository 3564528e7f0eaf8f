"""Energy and area: per-access energies and per-component areas (45 nm), with their sources.

Every function here is vectorised (NumPy arrays or scalars in, float64 arrays out) and is the
one definition both engines call, so their floats agree bit for bit. Width-dependent costs
are looked up in tables computed once (never ``**`` on arrays), because only correctly
rounded operations (+, -, *, /, sqrt) are guaranteed to give the same bits whatever the
array length.
"""

from __future__ import annotations

import math

import numpy as np

# --- Arithmetic (Horowitz, "Computing's energy problem", ISSCC 2014, 45 nm, 0.9 V). ----------
MULT_PJ_8, MULT_PJ_32 = 0.2, 3.1  # integer multiply, 8 and 32 bit (pJ)
ADD_PJ_8, ADD_PJ_32 = 0.03, 0.1  # integer add, 8 and 32 bit (pJ)
MULT_UM2_8, MULT_UM2_32 = 282.0, 3495.0  # integer multiplier area, 8 and 32 bit (um^2)
ADD_UM2_8, ADD_UM2_32 = 36.0, 137.0  # integer adder area, 8 and 32 bit (um^2)

# --- Storage. --------------------------------------------------------------------------------
# Register file: Eyeriss (Chen et al., ISCA 2016, Table IV normalised energies) puts one
# access to its 0.5 KB PE scratchpad at ~1x a MAC; we scale that with sqrt(size / 512 B).
RF_REFERENCE_BYTES = 512.0
# SRAM: energy per bit per access = (10 pJ / 64) * sqrt(size_kb / 8): fitted to Horowitz's
# 64-bit accesses of 10 pJ (8 KB), 20 pJ (32 KB) and ~100 pJ (1 MB).
SRAM_PJ_PER_BIT_8KB = 10.0 / 64.0
SRAM_REFERENCE_KB = 8.0
# DRAM: Horowitz gives 1.3-2.6 nJ per 64-bit access; we take the lower end, 20 pJ/bit.
DRAM_PJ_PER_BIT = 20.0
# Array transfers: Eyeriss (Chen et al., ISCA 2016, Table IV) puts moving a word from one PE
# to its neighbour at ~2x a MAC. Their figure is normalised to a 16-bit MAC, so ours is twice
# our 16-bit MAC, per bit (a wire's energy grows with the bits it carries).
ARRAY_HOP_MAC_RATIO = 2.0
# Precision-scalable MACs (Bit Fusion, Sharma et al., ISCA 2018): a fusion unit's overhead over a
# fixed MAC of the same widest precision (shift-add tree, operand steering), for its energy per
# MAC at full precision and for its area. Assumptions: Bit Fusion reports whole-chip gains
# against Eyeriss, not per-unit costs (docs/simulator.md, "Precision").
FUSION_ENERGY_OVERHEAD = 1.2
FUSION_AREA_OVERHEAD = 1.3
# Leakage: 20 mW per mm^2 of area, a documented 45 nm assumption (no single source).
LEAK_W_PER_MM2 = 0.02
# Area: latch-based register file 2.5 um^2/bit (assumption); SRAM 0.6 um^2/bit including
# periphery (Intel 45 nm 6T cell 0.346 um^2 at ~58% array efficiency).
RF_UM2_PER_BIT = 2.5
SRAM_UM2_PER_BIT = 0.6
BITS_PER_KB = 8192


def _power_law(value_8: float, value_32: float, bits: float) -> float:
    """Interpolate between the 8- and 32-bit figures as ``value_8 * (bits/8)**alpha``."""
    alpha = math.log(value_32 / value_8) / math.log(32 / 8)
    return value_8 * (bits / 8) ** alpha


def mac_energy_pj(word_bits: int) -> float:
    """Energy of one MAC: a ``word_bits`` multiply plus a ``2*word_bits`` accumulate (pJ)."""
    return _power_law(MULT_PJ_8, MULT_PJ_32, word_bits) + _power_law(ADD_PJ_8, ADD_PJ_32, 2 * word_bits)


def mac_area_um2(word_bits: int) -> float:
    """Area of one MAC: a ``word_bits`` multiplier plus a ``2*word_bits`` accumulator (um^2)."""
    return _power_law(MULT_UM2_8, MULT_UM2_32, word_bits) + _power_law(ADD_UM2_8, ADD_UM2_32, 2 * word_bits)


# Tables indexed by word_bits (only 8, 16, 32 are valid designs; other slots stay NaN).
_MAC_PJ = np.full(33, np.nan)
_MAC_UM2 = np.full(33, np.nan)
for _bits in (8, 16, 32):
    _MAC_PJ[_bits] = mac_energy_pj(_bits)
    _MAC_UM2[_bits] = mac_area_um2(_bits)


def mac_pj_table(word_bits):
    """Energy of one full-width MAC of ``word_bits`` (pJ; looked up, vectorised)."""
    return _MAC_PJ[np.asarray(word_bits, dtype=np.int64)]


def array_hop_energy_pj(word_bits):
    """Energy of moving one word of ``word_bits`` bits (may be fractional: a mean) from a PE
    to its neighbour (pJ)."""
    return ARRAY_HOP_MAC_RATIO * (_MAC_PJ[16] / 16.0) * np.asarray(word_bits, dtype=np.float64)


def area_mm2(pe_rows, pe_cols, rf_bytes, ifmap_kb, filter_kb, ofmap_kb, word_bits, pe_kind=0):
    """Chip area: PEs (MAC + register file) plus the three buffers.

    Parameters
    ----------
    pe_rows, pe_cols, rf_bytes, word_bits : int or array of int
        Array shape, register-file bytes per PE, word width in bits.
    ifmap_kb, filter_kb, ofmap_kb : float or array of float
        Buffer sizes in KiB.
    pe_kind : int or array of int
        0 fixed-precision MACs, 1 precision-scalable (`FUSION_AREA_OVERHEAD` larger).

    Returns
    -------
    numpy.ndarray of float64
        Area in mm^2.
    """
    word_bits = np.asarray(word_bits, dtype=np.int64)
    pes = np.asarray(pe_rows, dtype=np.float64) * np.asarray(pe_cols, dtype=np.float64)
    mac_um2 = np.where(np.asarray(pe_kind) == 1, _MAC_UM2[word_bits] * FUSION_AREA_OVERHEAD, _MAC_UM2[word_bits])
    pe_um2 = mac_um2 + np.asarray(rf_bytes, dtype=np.float64) * (8.0 * RF_UM2_PER_BIT)
    buffer_kb = (np.asarray(ifmap_kb, dtype=np.float64) + np.asarray(filter_kb, dtype=np.float64)
                 + np.asarray(ofmap_kb, dtype=np.float64))
    return (pes * pe_um2 + buffer_kb * (BITS_PER_KB * SRAM_UM2_PER_BIT)) * 1e-6


def sram_energy_per_word_pj(size_kb, word_bits):
    """Energy of one word read or written in a buffer of ``size_kb`` KiB (pJ)."""
    return (SRAM_PJ_PER_BIT_8KB * np.sqrt(np.asarray(size_kb, dtype=np.float64) / SRAM_REFERENCE_KB)
            * np.asarray(word_bits, dtype=np.float64))


def rf_energy_per_access_pj(rf_bytes, word_bits, access_bits=None):
    """Energy of one register-file access (pJ): of one ``word_bits`` word, or of
    ``access_bits`` bits (that fraction of a word's energy; may be fractional: a mean)."""
    full = _MAC_PJ[np.asarray(word_bits, dtype=np.int64)] * np.sqrt(
        np.asarray(rf_bytes, dtype=np.float64) / RF_REFERENCE_BYTES)
    if access_bits is None:
        return full
    return full * (np.asarray(access_bits, dtype=np.float64) / np.asarray(word_bits, dtype=np.float64))


def latency_seconds(total_cycles, freq_mhz):
    """Cycles to seconds at ``freq_mhz``."""
    return np.asarray(total_cycles, dtype=np.float64) / (np.asarray(freq_mhz, dtype=np.float64) * 1e6)


def dynamic_energy_pj(macs, rf_accesses, sram_ifmap_words, sram_filter_words, sram_ofmap_words,
                      dram_ifmap_words, dram_filter_words, dram_ofmap_words, rf_bytes, ifmap_kb, filter_kb,
                      ofmap_kb, word_bits, widths=None):
    """The four access-driven energy components (pJ), independent of time.

    Parameters
    ----------
    macs, rf_accesses : int arrays
        MACs (real multiply-accumulates) and register-file accesses.
    sram_ifmap_words, sram_filter_words, sram_ofmap_words : int arrays
        Every element read or written in each buffer, DRAM fills and write-backs included.
    dram_ifmap_words, dram_filter_words, dram_ofmap_words : int arrays
        Elements of each operand moved between DRAM and the chip (both directions).
    rf_bytes, ifmap_kb, filter_kb, ofmap_kb, word_bits : arrays
        Accelerator parameters.
    widths : precision.Widths, optional
        The layers' operand widths (`precision.resolve`); None: every operand at
        ``word_bits``, a full-width MAC.

    Returns
    -------
    tuple of float64 arrays
        ``(energy_mac_pj, energy_rf_pj, energy_sram_pj, energy_dram_pj)``.
    """
    word_bits = np.asarray(word_bits, dtype=np.int64)
    f64 = lambda x: np.asarray(x, dtype=np.float64)  # noqa: E731
    if widths is None:
        bits = {"ifmap": word_bits, "filter": word_bits, "ofmap": word_bits}
        mac_pj, access_bits = _MAC_PJ[word_bits], None
    else:
        bits = {"ifmap": widths.ifmap_bits, "filter": widths.filter_bits, "ofmap": widths.ofmap_bits}
        mac_pj, access_bits = widths.mac_pj, widths.rf_access_bits
    energy_mac = f64(macs) * mac_pj
    energy_rf = f64(rf_accesses) * rf_energy_per_access_pj(rf_bytes, word_bits, access_bits)
    energy_sram = (f64(sram_ifmap_words) * sram_energy_per_word_pj(ifmap_kb, bits["ifmap"])
                   + f64(sram_filter_words) * sram_energy_per_word_pj(filter_kb, bits["filter"])
                   + f64(sram_ofmap_words) * sram_energy_per_word_pj(ofmap_kb, bits["ofmap"]))
    energy_dram = (f64(dram_ifmap_words) * f64(bits["ifmap"]) + f64(dram_filter_words) * f64(bits["filter"])
                   + f64(dram_ofmap_words) * f64(bits["ofmap"])) * DRAM_PJ_PER_BIT
    return energy_mac, energy_rf, energy_sram, energy_dram


def leakage_energy_pj(area, total_cycles, freq_mhz):
    """Leakage over the run: ``area * 20 mW/mm^2 * latency`` (pJ)."""
    return np.asarray(area, dtype=np.float64) * LEAK_W_PER_MM2 * latency_seconds(total_cycles, freq_mhz) * 1e12


def total_energy_pj(energy_mac, energy_rf, energy_sram, energy_dram, energy_leak, energy_array=0.0):
    """The sum of the six components, always in this order (so both engines agree).

    ``energy_array`` defaults to 0 for tools that do not model array transfers (the sum's
    bits are then those of the five others).
    """
    return ((((energy_mac + energy_rf) + energy_array) + energy_sram) + energy_dram) + energy_leak
