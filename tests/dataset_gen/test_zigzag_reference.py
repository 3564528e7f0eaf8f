"""The builtin simulator's memory model against ZigZag, on the committed fixture.

``tests/fixtures/zigzag_reference.csv`` holds ZigZag 3.9.1's figures on real-network pairs
(made by ``tools/zigzag_reference.py``); our figures are simulated now, through
``benchmarks/memory_vs_zigzag.py``'s `compare` (loaded by path), so these tests follow the
simulator as it changes. ZigZag itself is not needed.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dataset_gen.space import ACCELERATOR_FIELDS, LAYER_FIELDS

ROOT = Path(__file__).resolve().parent.parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "zigzag_reference.csv"
BENCHMARK = ROOT / "benchmarks" / "memory_vs_zigzag.py"
TOOL = ROOT / "tools" / "zigzag_reference.py"

# Regression guards: today's figures (the builtin simulator of 2026-11-30 against the committed
# fixture, grid pairs feasible in both: benchmarks/memory_vs_zigzag.py), with a small margin.
# They are to be tightened as the simulator's memory model gets closer to ZigZag's (issue
# "memory side vs ZigZag"): lower the maxima, raise the minima to the new figures.
#: share of grid pairs where our DRAM words exceed ZigZag's by more than 5% (today 6/144 = 0.042,
#: the issue's goal 0.10; simulator 2.1.0: 23/144; 1.0.0: 36/144 over 20%)
MAX_DRAM_OVER_105_SHARE = 0.06
#: share of grid pairs where our DRAM words exceed ZigZag's by more than 20% (today 3/144 = 0.021;
#: simulator 2.2.0, before line buffers: 4/144)
MAX_DRAM_OVER_120_SHARE = 0.03
#: median over grid pairs of our DRAM words / ZigZag's (today 1.000)
MAX_DRAM_MEDIAN_RATIO = 1.02
#: median over the 12 grid layers of Kendall's tau-b, our energy vs ZigZag's (today 0.439; simulator
#: 2.2.0: 0.424; 0.394 with the fixture of ZigZag adapter revision 2, whose register files stalled
#: ZigZag's latency and so its leakage energy)
MIN_ENERGY_TAU_MEDIAN = 0.38
#: the same with ZigZag's DRAM energy in ours: the rest of the model, the mappers' traffic taken
#: out (today 0.727)
MIN_ENERGY_TAU_SAME_DRAM = 0.65
#: the same for latency, total_cycles (today 0.576)
MIN_LATENCY_TAU_MEDIAN = 0.49
#: median over grid pairs of our energy / ZigZag's stays within this band around 1 (today 1.149:
#: ours includes array transfers, which ZigZag does not model)
ENERGY_MEDIAN_RANGE = (0.87, 1.2)
#: rf_sweep series (of 8) where our energy at 64 B is below our energy at 4 B (today 7)
MIN_RF_SERIES_CHEAPER = 6
# precision sweep (measured: relative energies within 0.02 of ZigZag's, tau 1.000)
MAX_PRECISION_SAVING_GAP = 0.05  # |ours - ZigZag| of the median energy relative to 16/16 bits
MIN_PRECISION_TAU = 0.9


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _load("memory_vs_zigzag", BENCHMARK)


@pytest.fixture(scope="module")
def fixture(bench) -> pd.DataFrame:
    return bench.load_fixture(FIXTURE)


@pytest.fixture(scope="module")
def summary(bench, fixture) -> dict:
    return bench.compare(fixture)


def test_fixture_shape(fixture, bench):
    grid = fixture[fixture["set"] == "grid"]
    assert len(grid) >= 144
    assert set(grid["dataflow"]) >= {"ws", "os"}
    assert grid["case"].is_unique and fixture["case"].is_unique
    assert (fixture["error"] == "").all(), fixture.loc[fixture["error"] != "", ["case", "error"]]
    assert set(LAYER_FIELDS + ACCELERATOR_FIELDS) - {"pe_kind"} <= set(fixture.columns)
    # 12 layers x 12 accelerators, every pair once
    assert grid.groupby(["network", "layer_name"]).size().eq(12).all()
    assert grid["network"].nunique() >= 4
    ours = bench.simulate_ours(fixture)
    both = fixture["feasible"].to_numpy(bool) & ours["feasible"].to_numpy(bool)
    assert both.sum() >= 100
    sweep = fixture[fixture["set"] == "rf_sweep"]
    assert sorted(sweep["rf_bytes"].unique()) == [4, 8, 16, 32, 64]
    assert len(sweep) == 40
    precision = fixture[fixture["set"] == "precision"]
    assert len(precision) == 40 and set(zip(precision["w_bits"], precision["a_bits"])) == {
        (16, 16), (8, 8), (4, 8), (8, 4), (4, 4)}
    assert (fixture.loc[fixture["set"] != "precision", ["w_bits", "a_bits"]] == 0).all().all()


def test_fixture_matches_the_tool():
    """The fixture holds exactly the tool's pairs (regenerate it after changing the tool)."""
    tool = _load("zigzag_reference", TOOL)
    cases = pd.DataFrame(tool.expand_cases())
    fixture = pd.read_csv(FIXTURE)
    assert list(fixture["case"]) == list(cases["case"])
    for field in tool.PAIR_FIELDS:
        assert list(fixture[field]) == list(cases[field]), field


def test_kendall_tau_b(bench):
    assert bench.kendall_tau_b([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert bench.kendall_tau_b([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # with ties: pandas' tau-b as the reference
    x, y = [1, 2, 2, 3, 5, 4], [2, 1, 3, 3, 6, 5]
    assert bench.kendall_tau_b(x, y) == pytest.approx(pd.Series(x).corr(pd.Series(y), method="kendall"))
    assert math.isnan(bench.kendall_tau_b([1, 1, 1], [1, 2, 3]))


def _finite_numbers(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _finite_numbers(item)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield value


def test_comparison_runs_on_the_live_simulator(summary, bench):
    for group in ("all", "ws", "os"):
        stats = summary["grid"][group]
        assert stats["n"] > 0
        numbers = list(_finite_numbers({key: stats[key] for key in ("dram_words", "energy", "rf_accesses",
                                                                     "latency")}))
        assert numbers and all(np.isfinite(numbers)), group
    assert np.isfinite(summary["tau"]["energy"]["median"]) and np.isfinite(summary["tau"]["latency"]["median"])
    assert summary["rf_sweep"]["series_count"] == 8
    assert bench.report(summary)  # the printed report renders


def test_json_is_strict(summary, bench, tmp_path):
    import json

    path = tmp_path / "summary.json"
    bench.write_json(path, summary)
    assert json.loads(path.read_text())["fixture"]["pairs"] == summary["fixture"]["pairs"]


def test_regression_guards(summary):
    dram = summary["grid"]["all"]["dram_words"]["total"]
    assert dram["over_1.05_share"] <= MAX_DRAM_OVER_105_SHARE
    assert dram["over_1.20_share"] <= MAX_DRAM_OVER_120_SHARE
    assert dram["median"] <= MAX_DRAM_MEDIAN_RATIO
    assert summary["tau"]["energy"]["median"] >= MIN_ENERGY_TAU_MEDIAN
    assert summary["tau"]["energy_with_zigzag_dram"]["median"] >= MIN_ENERGY_TAU_SAME_DRAM
    assert summary["tau"]["latency"]["median"] >= MIN_LATENCY_TAU_MEDIAN
    low, high = ENERGY_MEDIAN_RANGE
    assert low <= summary["grid"]["all"]["energy"]["total"]["median"] <= high
    # a larger register file buys reuse (issue "memory side": it used to only cost energy)
    assert summary["rf_sweep"]["ours_falls_count"] >= MIN_RF_SERIES_CHEAPER
    for label, medians in summary["precision"]["median"].items():
        assert abs(medians["ours"] - medians["zigzag"]) <= MAX_PRECISION_SAVING_GAP, label
    assert summary["precision"]["median"]["4/4"]["ours"] < 0.5  # lower precision saves energy in both
    assert summary["precision"]["energy_tau_median"] >= MIN_PRECISION_TAU


def test_zigzag_agrees_with_itself_at_two_search_efforts_only_so_far(bench, fixture):
    """The ranking ceiling: ZigZag at LOMA lpf_limit 6 against ZigZag at 8 (1,000 sampled
    orderings) on the same grid. Its per-layer energy tau (0.697) is the agreement a mapper that
    searches differently can expect, which is why ours (0.42 / 0.65 against the two) is judged
    against it (docs/simulator.md)."""
    same = bench.reference_agreement(fixture, fixture)
    assert same["tau"]["energy"]["median"] == 1.0 and same["first_dram_over_105"] == same["second_dram_over_105"] == 0
    stronger = bench.load_fixture(ROOT / "tests" / "fixtures" / "zigzag_reference_lpf8.csv")
    agreement = bench.reference_agreement(fixture, stronger)
    assert agreement["pairs"] == 144
    assert agreement["tau"]["energy"]["median"] == pytest.approx(0.697, abs=0.001)
    assert agreement["tau"]["latency"]["median"] == pytest.approx(1.0)
    # the default effort leaves DRAM traffic on 53 of the 144 pairs that the stronger search saves
    assert (agreement["first_dram_over_105"], agreement["second_dram_over_105"]) == (53, 3)
