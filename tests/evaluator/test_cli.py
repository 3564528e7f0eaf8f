"""dance-train and dance-validate end to end, through their real entry points."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import evaluator
from evaluator.cli import train_main, validate_main

SCRIPTS = Path(sys.executable).parent
TARGET_KEYS = {"n", "mape", "within_5pct", "within_10pct", "kendall_tau", "spearman_rho", "rmse_log"}
TINY = ["model=small", "trainer=debug", "min_steps=0", "datamodule.batch_size=256", "validation.ood_pairs=60",
        "validation.ood_input_sizes=[64]"]


def run_entry_point(main, monkeypatch, *arguments):
    monkeypatch.setattr(sys, "argv", ["dance", *arguments])
    main()


@pytest.fixture(scope="module")
def run(small_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("dance-train") / "run"
    with pytest.MonkeyPatch.context() as monkeypatch:
        run_entry_point(train_main, monkeypatch, f"dataset={small_dataset}", f"out={out}", *TINY)
    return out


def test_dance_train_writes_the_artifact_the_report_and_the_resolved_config(run, small_dataset):
    assert (run / "evaluator.pt").is_file() and (run / "report.txt").is_file()
    config = (run / "config.yaml").read_text()
    assert str(small_dataset) in config and "${" not in config  # resolved
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert list((run / "logs" / "csv").rglob("metrics.csv")) and list((run / "logs" / "tensorboard").rglob("events.*"))
    for plot in ("parity_test.png", "parity_ood.png", "calibration.png"):
        assert (run / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_report_has_every_target_on_both_sets_and_the_baselines(run):
    report = json.loads((run / "report.json").read_text())
    for name in ("test", "ood"):
        for target in ("latency", "energy", "area"):
            assert TARGET_KEYS <= set(report[name][target]), (name, target)
            assert report[name][target]["n"] > 0
        assert 0 <= report[name]["feasibility"]["accuracy"] <= 1
    assert set(report["baselines"]) == {"analytic_base", "hist_gradient_boosting", "k_neighbors"}
    assert report["baselines"]["k_neighbors"]["ood"]["energy"]["n"] == report["ood"]["energy"]["n"]
    # the analytic base alone: builtin rules on a builtin dataset, close but not the evaluator
    base = report["baselines"]["analytic_base"]
    assert base["test"]["energy"]["n"] == report["test"]["energy"]["n"]
    assert 0.9 < base["test"]["latency"]["within_10pct"] < 1.0
    assert base["test"]["latency"]["mape"] != pytest.approx(report["test"]["latency"]["mape"])
    assert base["test"]["area"]["within_10pct"] == 1.0  # the analytic area is exact
    assert "analytic_base" in (run / "report.txt").read_text()
    assert "alexnet" in report["ood"]["description"]  # the one zoo network the dataset did not use
    assert set(report["goal"]["met"]) == {"test", "ood"}
    stored = evaluator.load(run / "evaluator.pt").metrics
    assert stored["test"]["latency"]["mape"] == pytest.approx(report["test"]["latency"]["mape"])


def test_the_report_measures_the_default_ensembles_uncertainty_on_both_sets(run):
    report = json.loads((run / "report.json").read_text())
    assert report["ensemble"] == 5 and set(report["calibration"]["scale"]) == {"latency", "energy", "area"}
    for name in ("test", "ood"):
        for target in ("latency", "energy"):
            uncertainty = report[name][target]["uncertainty"]
            assert uncertainty["n"] == report[name][target]["n"]
            assert 0 <= uncertainty["coverage_1sigma"] <= uncertainty["coverage_2sigma"] <= 1
    assert "in2sig" in (run / "report.txt").read_text()


def test_a_bad_ensemble_size_is_one_line_naming_the_field(small_dataset, tmp_path):
    done = subprocess.run([str(SCRIPTS / "dance-train"), f"dataset={small_dataset}", f"out={tmp_path / 'run'}",
                           "model.ensemble=0"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip() == ("dance-train: error: model.ensemble = 0: expected an integer in [1, 64] "
                                   "(members of the deep ensemble; 1: a single network, no uncertainty)")


# Lightning says so on purpose when a run resumes into another folder: the point of this test.
@pytest.mark.filterwarnings("ignore:The dirpath has changed:UserWarning")
def test_training_resumes_from_a_checkpoint(run, small_dataset, tmp_path, monkeypatch):
    out = tmp_path / "resumed"
    run_entry_point(train_main, monkeypatch, f"dataset={small_dataset}", f"out={out}", *TINY,
                    f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "trainer.max_epochs=2",
                    "validation.baselines=[]", "logger=none")
    resumed = evaluator.load(out / "evaluator.pt")
    assert resumed.extra["epochs"] == 2  # one epoch from the checkpoint, one more here
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] == 0


def test_a_second_dance_train_into_a_finished_run_is_refused_and_changes_nothing(run, small_dataset):
    kept = {name: (run / name).read_bytes() for name in ("config.yaml", "evaluator.pt", "report.json")}
    listing = sorted(str(path.relative_to(run)) for path in run.rglob("*"))
    done = subprocess.run([str(SCRIPTS / "dance-train"), f"dataset={small_dataset}", f"out={run}", *TINY],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] == (
        f"dance-train: error: out={run} already holds a run ({run / 'evaluator.pt'}); choose another out=, pass "
        "overwrite=true to replace that run, or ckpt_path= a checkpoint inside it to resume it")
    assert {name: (run / name).read_bytes() for name in kept} == kept
    assert sorted(str(path.relative_to(run)) for path in run.rglob("*")) == listing  # no last-v1.ckpt


def test_overwrite_replaces_the_run_and_keeps_what_dance_train_did_not_write(run, small_dataset, tmp_path,
                                                                             monkeypatch):
    out = tmp_path / "again"
    shutil.copytree(run, out)
    (out / "notes.txt").write_text("mine")
    run_entry_point(train_main, monkeypatch, f"dataset={small_dataset}", f"out={out}", *TINY, "overwrite=true",
                    "validation.ood_pairs=0", "validation.baselines=[]", "validation.plots=false")
    assert (out / "notes.txt").read_text() == "mine"
    assert not list(out.glob("parity_*.png"))  # the earlier run's plots went with it
    assert sorted(path.name for path in (out / "checkpoints").iterdir() if "last" in path.name) == ["last.ckpt"]
    assert [path.name for path in (out / "logs" / "csv").iterdir()] == ["version_0"]
    assert json.loads((out / "report.json").read_text()).get("ood") is None


# Resuming in place means a non-empty checkpoint folder (and, as the run was copied, another dirpath).
@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty:UserWarning")
@pytest.mark.filterwarnings("ignore:The dirpath has changed:UserWarning")
def test_resuming_inside_out_continues_that_run_in_place(run, small_dataset, tmp_path, monkeypatch):
    out = tmp_path / "resumed_in_place"
    shutil.copytree(run, out)
    run_entry_point(train_main, monkeypatch, f"dataset={small_dataset}", f"out={out}", *TINY,
                    f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}", "trainer.max_epochs=2",
                    "validation.ood_pairs=0", "validation.baselines=[]", "logger=none")
    assert evaluator.load(out / "evaluator.pt").extra["epochs"] == 2


def test_dance_validate_reports_an_artifact_on_its_dataset(run, small_dataset, tmp_path, monkeypatch):
    out = tmp_path / "validation"
    run_entry_point(validate_main, monkeypatch, f"artifact={run / 'evaluator.pt'}", f"dataset={small_dataset}",
                    f"out={out}", "validation.ood_pairs=0", "validation.baselines=[k_neighbors]")
    report = json.loads((out / "report.json").read_text())
    original = json.loads((run / "report.json").read_text())
    latency, again = original["test"]["latency"], report["test"]["latency"]
    assert again.pop("uncertainty") == pytest.approx(latency.pop("uncertainty"))  # same split, same stored scale
    assert again == pytest.approx(latency)  # same split, same numbers
    assert "ood" not in report and set(report["baselines"]) == {"analytic_base", "k_neighbors"}


def test_dance_validate_refuses_data_from_another_space(run, other_space_dataset, tmp_path):
    completed = subprocess.run(
        [str(SCRIPTS / "dance-validate"), f"artifact={run / 'evaluator.pt'}", f"dataset={other_space_dataset}",
         f"out={tmp_path / 'refused'}"], capture_output=True, text=True, timeout=300)
    assert completed.returncode != 0
    assert "design space" in completed.stderr and "Traceback" not in completed.stderr
    assert not (tmp_path / "refused" / "report.json").exists()


def test_dance_validate_refuses_a_corrupt_artifact_in_one_line(small_dataset, tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(SystemExit) as exited:
        run_entry_point(validate_main, monkeypatch, f"artifact={bad}", f"dataset={small_dataset}",
                        f"out={tmp_path / 'v'}")
    assert exited.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"dance-validate: error: {bad}: not a readable evaluator artifact")
