"""The report: metrics per set from simulated and predicted frames, the table, the plots."""

import json
import math

import pandas as pd
import pytest

from dataset_gen.reader import read_dataset
from evaluator.report import evaluate_set, format_table, goal_met, parity_plot, write_report


@pytest.fixture(scope="module")
def simulated(small_dataset):
    return read_dataset(small_dataset).head(400)


def scaled(simulated, factor):
    """A 'prediction' that is the simulator's figures times ``factor`` (area exact)."""
    return pd.DataFrame({
        "total_cycles": simulated["total_cycles"] * factor, "latency_s": simulated["latency_s"] * factor,
        "energy_pj": simulated["energy_pj"] * factor, "area_mm2": simulated["area_mm2"],
        "p_feasible": simulated["feasible"].astype(float),
    }, index=simulated.index)


def test_latency_and_energy_are_measured_on_feasible_pairs_and_area_on_all(simulated):
    metrics = evaluate_set(simulated, scaled(simulated, 1.08), "test split")
    feasible = int(simulated["feasible"].sum())
    assert metrics["n_pairs"] == 400 and metrics["description"] == "test split"
    assert metrics["latency"]["n"] == metrics["energy"]["n"] == feasible < 400
    assert metrics["area"]["n"] == 400 and metrics["area"]["mape"] == 0
    assert metrics["latency"]["mape"] == pytest.approx(0.08)
    assert metrics["latency"]["within_10pct"] == 1 and metrics["latency"]["within_5pct"] == 0
    assert metrics["energy"]["kendall_tau"] == pytest.approx(1.0)
    assert metrics["feasibility"]["accuracy"] == 1


def test_the_goal_needs_ninety_five_percent_within_ten_percent_and_tau(simulated):
    assert goal_met(evaluate_set(simulated, scaled(simulated, 1.08)))
    assert not goal_met(evaluate_set(simulated, scaled(simulated, 1.2)))


def test_the_json_is_strict_and_the_table_names_every_row(simulated, tmp_path):
    metrics = evaluate_set(simulated, scaled(simulated, 1.0))
    metrics["latency"]["kendall_tau"] = math.nan  # e.g. a set of one pair
    report = {"test": metrics, "baselines": {"k_neighbors": {"test": metrics}},
              "goal": {"within_10pct": 0.95, "kendall_tau": 0.95, "met": {"test": False}}}
    paths = write_report(report, tmp_path)
    loaded = json.loads(paths["json"].read_text())  # strict JSON: NaN became null
    assert loaded["test"]["latency"]["kendall_tau"] is None
    table = paths["table"].read_text()
    assert "evaluator" in table and "k_neighbors" in table and "NOT met" in table
    assert len([line for line in table.splitlines() if " test " in line]) == 6  # 2 models x 3 targets
    assert format_table(report) == table


def test_parity_plots_are_png_files(simulated, tmp_path):
    path = parity_plot(simulated, scaled(simulated, 0.97), tmp_path / "parity.png", "title")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind
