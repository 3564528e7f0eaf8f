"""dance-search through its console script: result.json, dance-sim, multirun summaries.

The multirun test is also the end-to-end test of a run: both jobs' results are checked."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

BIN = Path(sys.executable).parent


def dance(*args, cwd):
    env = {**os.environ, "MPLBACKEND": "Agg"}
    return subprocess.run([str(BIN / args[0]), *args[1:]], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def check_result_against_dance_sim(out, cwd):
    """result.json has the documented fields and dance-sim --network reproduces `simulated`."""
    result = json.loads((out / "result.json").read_text())
    layer_fields = {"name", "in_h", "in_w", "in_c", "out_c", "k_h", "k_w", "stride", "pad", "groups", "batch",
                    "w_bits", "a_bits"}
    assert all(set(layer) == layer_fields for layer in result["network"])
    assert set(result["accelerator"]) == {"pe_rows", "pe_cols", "dataflow", "rf_bytes", "ifmap_kb", "filter_kb",
                                          "ofmap_kb", "dram_bw", "word_bits", "freq_mhz", "pe_kind"}
    for key in ("predicted", "simulated", "relative_error"):
        assert set(result[key]) == {"latency_s", "energy_pj", "area_mm2", "edp", "edap"}
    assert 0.0 <= result["test_accuracy"] <= 1.0
    assert (out / "config.yaml").is_file() and (out / ".hydra" / "config.yaml").is_file()

    simulated = dance("dance-sim", "--network", str(out / "result.json"), "--json", cwd=cwd)
    assert simulated.returncode == 0, simulated.stderr
    rows = [json.loads(line) for line in simulated.stdout.splitlines() if line.startswith("{")]
    assert [row["layer"] for row in rows] == [layer["name"] for layer in result["network"]]
    assert sum(row["latency_s"] for row in rows) == pytest.approx(result["simulated"]["latency_s"], rel=1e-12)
    assert sum(row["energy_pj"] for row in rows) == pytest.approx(result["simulated"]["energy_pj"], rel=1e-12)
    assert rows[0]["area_mm2"] == pytest.approx(result["simulated"]["area_mm2"], rel=1e-12)
    return result


def test_multirun_over_two_lambdas_writes_the_sweep_summary_and_pareto_plot(evaluator_path, tmp_path):
    out = tmp_path / "sweep"
    done = dance("dance-search", "-m", f"evaluator={evaluator_path}", "+experiment=fast",
                 "search.lambda_cost=0.1,10", "threads=1", f"out={out}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = pd.read_csv(out / "sweep_summary.csv")
    assert sorted(summary["lambda_cost"]) == [0.1, 10.0]
    assert {"test_accuracy", "simulated.latency_s", "simulated.energy_pj", "pareto"} <= set(summary.columns)
    assert summary["pareto"].any()
    png = (out / "pareto.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    # each job wrote a complete result that dance-sim reproduces
    for job in ("0", "1"):
        result = check_result_against_dance_sim(out / job, tmp_path)
        assert result["search"]["lambda_cost"] in (0.1, 10.0)


@pytest.mark.slow
def test_a_single_run_writes_result_json_into_out(evaluator_path, tmp_path):
    out = tmp_path / "run"
    done = dance("dance-search", f"evaluator={evaluator_path}", "+experiment=fast", f"out={out}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "cosearch: searched in" in done.stdout
    check_result_against_dance_sim(out, tmp_path)


@pytest.mark.slow
def test_compare_mode_prints_the_table(evaluator_path, tmp_path):
    out = tmp_path / "compare"
    done = dance("dance-search", f"evaluator={evaluator_path}", "+experiment=fast", "mode=compare", f"out={out}",
                 cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| cosearch |" in done.stdout and "| sequential |" in done.stdout and "| evolution |" in done.stdout
    assert (out / "compare.csv").is_file()


@pytest.mark.slow
def test_optuna_sweep_over_lambda_and_temperature(evaluator_path, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    out = tmp_path / "optuna"
    done = dance("dance-search", f"evaluator={evaluator_path}", "+experiment=fast", "+hparams_search=optuna",
                 "hydra.sweeper.n_trials=2", "threads=1", f"out={out}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = pd.read_csv(out / "sweep_summary.csv")
    assert len(summary) == 2
    assert (out / "optimization_results.yaml").is_file()


def test_export_needs_no_evaluator(tmp_path):
    # the documented first step of training an evaluator for a search space (docs/search.md)
    done = dance("dance-search", "mode=export", f"out={tmp_path / 'export'}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "export" / "search_layers.csv").is_file()
    assert (tmp_path / "export" / "space" / "search.yaml").is_file()
    refused = dance("dance-search", f"out={tmp_path / 'search'}", cwd=tmp_path)  # a search still needs one
    assert refused.returncode == 2 and "'evaluator' is required" in refused.stderr
