"""The README's main command, scaled down, through the real entry points.

`make demo` runs `dance-demo`, which runs `dance-gen`, `dance-train`, `dance-search` and
`dance-sim --network` as subprocesses; here the same chain runs on a small dataset, two
training epochs and the smoke-sized search, so the README cannot silently rot.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dataset_gen.network_json import load_network
from dataset_gen.simulator import simulate_batch

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_shows_exactly_the_two_setup_commands():
    text = README.read_text()
    assert "make demo" in text and "make test" in text
    makefile = (README.parent / "Makefile").read_text()
    assert re.search(r"^demo: install\n\t\$\(BIN\)/dance-demo", makefile, re.M)
    assert "make test" in (README.parent / ".ci" / "run").read_text()


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    demo = Path(sys.executable).with_name("dance-demo")
    completed = subprocess.run([str(demo), "--out", str(out), "--samples", "3000", "--quick"],
                               capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return out, completed.stdout


def test_demo_produces_dataset_evaluator_and_verified_search_result(demo_run):
    out, stdout = demo_run
    assert len(list((out / "data").glob("part-*.parquet"))) >= 1
    assert (out / "evaluator" / "evaluator.pt").is_file()
    report = json.loads((out / "evaluator" / "report.json").read_text())
    assert "latency" in json.dumps(report)
    result = json.loads((out / "search" / "result.json").read_text())
    for key in ("network", "accelerator", "predicted", "simulated", "test_accuracy"):
        assert key in result
    assert 0.0 <= result["test_accuracy"] <= 1.0


def test_demo_summary_reports_every_stage(demo_run):
    _, stdout = demo_run
    summary = stdout[stdout.index("=== Summary"):]
    for needle in ("Dataset: 3000", "Evaluator", "within 10%", "Kendall tau", "Searched network",
                   "latency_s", "energy_pj", "area_mm2", "predicted", "simulated", "Test accuracy", ".png"):
        assert needle in summary, needle


def test_simulated_figures_in_result_match_a_fresh_simulation(demo_run):
    out, _ = demo_run
    design = load_network(out / "search" / "result.json")
    result = json.loads((out / "search" / "result.json").read_text())
    pairs = [{**layer.to_dict(), **design.accelerator.to_dict()} for layer in design.layers]
    import pandas as pd

    frame = simulate_batch(pd.DataFrame(pairs), mapping="search")
    assert frame["feasible"].all()
    latency = frame["latency_s"].sum()
    assert latency == pytest.approx(result["simulated"]["latency_s"], rel=1e-9)
    assert frame["energy_pj"].sum() == pytest.approx(result["simulated"]["energy_pj"], rel=1e-9)


def test_demo_runs_again_into_its_own_folder(demo_run):
    """Last in this file: it replaces the first run's evaluator and search (overwrite=true on
    the demo's own folders); the dataset is reused (dance-gen resumes a finished dataset)."""
    out, _ = demo_run
    demo = Path(sys.executable).with_name("dance-demo")
    completed = subprocess.run([str(demo), "--out", str(out), "--samples", "3000", "--quick"],
                               capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "=== Summary" in completed.stdout
    checkpoints = sorted(path.name for path in (out / "evaluator" / "checkpoints").iterdir() if "last" in path.name)
    assert checkpoints == ["last.ckpt"]  # replaced, not versioned beside the first run's
