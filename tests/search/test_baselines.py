"""Baselines on tiny budgets, and the side-by-side comparison table."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from search.baselines import run_evolution, run_sequential
from search.compare import compare
from search.simulated import network_totals


def test_sequential_picks_the_simulators_best_accelerator_for_its_network(context, tmp_path):
    result = run_sequential(context, tmp_path)
    layers = context.network_layers(result["architecture"]["choice"])
    indices = context.hw_space.enumerate()
    totals = network_totals(context.simulator.table(layers, [context.hw_space.accelerator(i) for i in indices]),
                            np.ones((1, len(layers))))
    edp = (totals["latency_s"] * totals["energy_pj"])[0]
    chosen = context.hw_space.index_of(result["accelerator"])
    assert edp[indices.index(chosen)] == edp.min()
    assert result["exhaustive"]["accelerators"] == 16
    assert result["method"] == "sequential"


@pytest.mark.parametrize("kind", ["evolution", pytest.param("random", marks=pytest.mark.slow)])
def test_simulator_in_the_loop_search_stops_at_the_budget_with_a_feasible_best(context, tmp_path, kind):
    result = run_evolution(context, tmp_path / kind, kind=kind, budget_s=3.0)
    assert result["evaluations"] >= 1
    assert result["search"]["seconds"] < 3.0 + 15.0  # the last pair started before the budget ran out
    best = min((h for h in result["history"] if h["score"] is not None), key=lambda h: h["score"])
    assert result["architecture"]["choice"] == best["choice"]
    assert result["feasible"]


@pytest.mark.slow
def test_compare_writes_one_row_per_method(context, tmp_path):
    out = compare(dataclasses.replace(context, out_dir=tmp_path), methods=["cosearch", "sequential", "random"])
    table = pd.read_csv(out["csv"])
    assert table["method"].tolist() == ["cosearch", "sequential", "random"]
    assert {"test_accuracy", "latency_ms", "energy_uj", "area_mm2", "edap", "search_s"} <= set(table.columns)
    assert (tmp_path / "compare.md").read_text().startswith("| method |")
    for method in ("cosearch", "sequential", "random"):
        assert (tmp_path / method / "result.json").is_file()
    # the random search had the co-search's own search time as its budget
    cosearch_time = table.loc[table.method == "cosearch", "search_s"].item()
    assert out["results"]["random"]["budget_s"] == cosearch_time
