"""The simulator a dataset was made with travels with it: rows it failed on are left out of
training and validation, the dataset check and the artifact compare with the installed
version of the dataset's own adapter, and the report names the simulator the evaluator
imitates.

The "other simulator" is a real adapter defined here: our simulator behind a tool that
fails on every ``fail_every``-th pair of a batch (error rows, as a foreign tool's crash
gives), registered in `dataset_gen.adapters.ADAPTERS` for each test's duration.
"""

from __future__ import annotations

import re
import warnings

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch

import evaluator
from dataset_gen.adapters import ADAPTERS, empty_results
from dataset_gen.adapters.builtin import BuiltinAdapter
from dataset_gen.cli_gen import load_config
from dataset_gen.describe import describe_dataset
from dataset_gen.generate import generate
from dataset_gen.reader import (
    ForeignDatasetError,
    SimulatorNotInstalledWarning,
    read_dataset,
    read_metadata,
    simulator_identity,
)
from dataset_gen.simulator import SIMULATOR_VERSION
from dataset_gen.space import ACCELERATOR_FIELDS, LAYER_FIELDS, Accelerator, Layer
from evaluator.data import (
    SPLITS,
    PairsDataModule,
    TooFewRowsError,
    assign_split,
    read_split,
)
from evaluator.dataset import check_dataset
from evaluator.model import EvaluatorModule
from evaluator.ood import ood_set
from evaluator.train import train
from evaluator.validate import ValidationConfig, validate_artifact

FLAKY = "tests.evaluator.test_simulator_identity:FlakyAdapter"


class FlakyAdapter(BuiltinAdapter):
    """Our simulator behind a tool that fails on every ``fail_every``-th pair of each batch."""

    name = "flaky"
    installed_version = "flaky 2.0"  # class attribute: a test "upgrades" the tool by changing it

    @property
    def version(self) -> str:
        return type(self).installed_version

    def simulate(self, pairs: pd.DataFrame) -> pd.DataFrame:
        results = super().simulate(pairs)
        every = int(self.settings.get("fail_every", 10))
        failed = np.arange(len(pairs)) % every == every - 1
        for column, values in empty_results(int(failed.sum()), "flaky: the tool crashed").items():
            results.loc[failed, column] = values
        return results


@pytest.fixture(autouse=True)
def flaky_registered(monkeypatch):
    monkeypatch.setitem(ADAPTERS, "flaky", FLAKY)
    monkeypatch.setattr(FlakyAdapter, "installed_version", "flaky 2.0")


def flaky_dataset(out, n_samples, fail_every, *overrides):
    """A dataset of the small space made by the flaky adapter (every ``fail_every``-th pair fails)."""
    config = load_config(["space=small", f"n_samples={n_samples}", "shard_rows=1000", "workers=1", "progress=false",
                          "layers.input_sizes=[32]", f"out={out}", *overrides])
    config.pop("describe")
    config["simulator"] = {"name": "flaky", "fail_every": fail_every}
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(ADAPTERS, "flaky", FLAKY)
        generate(config)
    return out


@pytest.fixture(scope="module")
def flaky_data(tmp_path_factory):
    """3000 pairs in three shards, every 10th pair of a shard failed (300 error rows)."""
    return flaky_dataset(tmp_path_factory.mktemp("flaky") / "data", 3000, 10)


@pytest.fixture(scope="module")
def flaky_trained(flaky_data, tmp_path_factory):
    """A tiny evaluator trained for one epoch on the flaky dataset."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(ADAPTERS, "flaky", FLAKY)
        trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                            enable_model_summary=False, enable_checkpointing=False)
        lines: list[str] = []
        result = train(EvaluatorModule(depth=2, width=32, area_depth=1, area_width=16),
                       PairsDataModule(str(flaky_data), batch_size=256), trainer,
                       tmp_path_factory.mktemp("flaky-run"),
                       validation=ValidationConfig(ood_pairs=0, baselines=(), plots=False), log=lines.append)
    return result, lines


def usable_counts(path):
    """Per split: rows with a result, and rows the simulator failed on, counted from the rows."""
    frame = read_dataset(path)
    split = assign_split(frame, (0.8, 0.1, 0.1))
    failed = frame["error"].to_numpy(dtype=object) != ""
    rows = {name: int(((split == i) & ~failed).sum()) for i, name in enumerate(SPLITS)}
    errors = {name: int(((split == i) & failed).sum()) for i, name in enumerate(SPLITS)}
    feasible = {name: int(((split == i) & ~failed & frame["feasible"].to_numpy()).sum()) for i, name in enumerate(SPLITS)}
    return rows, errors, feasible


def test_the_metadata_names_the_simulator_and_counts_its_failures(flaky_data):
    meta = read_metadata(flaky_data)
    assert meta["simulator"] == {"name": "flaky", "version": "flaky 2.0",
                                 "settings": {"fail_every": 10, "mapping": "search", "objective": "latency"}}
    assert meta["simulator_version"] == "flaky 2.0"
    assert meta["errors"] == 300  # 100 of each 1000-row shard
    frame = read_dataset(flaky_data)
    assert int((frame["error"] != "").sum()) == 300
    assert not frame.loc[frame["error"] != "", "feasible"].any()  # failed rows follow the conventions


def test_describe_shows_the_simulator_identity_and_the_error_count(flaky_data):
    text = describe_dataset(flaky_data)
    assert "simulator    flaky flaky 2.0 (fail_every 10, mapping search, objective latency)" in text
    assert "errors       300 rows (10.0%) the simulator failed on" in text


def test_an_old_dataset_without_a_simulator_record_is_builtins(small_dataset):
    meta = read_metadata(small_dataset)
    assert meta["simulator"]["name"] == "builtin" and meta["simulator"]["version"] == SIMULATOR_VERSION
    assert meta["errors"] == 0
    old = {key: value for key, value in meta.items() if key != "simulator"}  # as read before adapters
    assert simulator_identity(old) == {"name": "builtin", "version": SIMULATOR_VERSION,
                                       "settings": {"mapping": "search", "objective": "latency"}}


@pytest.mark.parametrize("in_memory", [True, False])
def test_training_data_leaves_out_the_rows_the_simulator_failed_on(flaky_data, in_memory):
    rows, errors, feasible = usable_counts(flaky_data)
    data = PairsDataModule(str(flaky_data), batch_size=256, in_memory=in_memory)
    data.setup("fit")
    assert data.streaming is (not in_memory)
    assert data.rows == rows
    assert data.error_rows == errors and sum(errors.values()) == 300
    batches = list(data.train_dataloader())
    assert sum(int(b["feasible"].shape[0]) for b in batches) == rows["train"]
    # the failed rows are feasible = False by convention: had they been kept, more zeros
    assert sum(int(b["feasible"].sum()) for b in batches) == feasible["train"]


def test_read_split_leaves_out_failed_rows_and_says_how_many(flaky_data):
    rows, errors, _ = usable_counts(flaky_data)
    test = read_split(flaky_data, "test")
    assert len(test) == rows["test"] and test.attrs["error_rows"] == errors["test"]
    assert "error" not in test.columns
    everything = read_split(flaky_data, None, drop_errors=False)
    assert len(everything) == 3000 and int((everything["error"] != "").sum()) == 300


def test_the_too_few_rows_check_counts_only_rows_with_a_result(tmp_path):
    path = flaky_dataset(tmp_path / "all-failed", 60, 1)  # the tool fails on every pair
    with pytest.raises(TooFewRowsError, match=r"0 rows, 0 feasible \(60 more the simulator failed on, left out\)"):
        PairsDataModule(str(path)).setup("fit")


def test_the_dataset_check_expects_the_installed_version_of_the_datasets_own_adapter(flaky_data, monkeypatch):
    assert check_dataset(flaky_data)["simulator_version"] == "flaky 2.0"  # not builtin's 1.0.0
    monkeypatch.setattr(FlakyAdapter, "installed_version", "flaky 3.0")  # the tool was upgraded
    with pytest.raises(ForeignDatasetError, match=r"'flaky 2.0', expected 'flaky 3.0'"):
        check_dataset(flaky_data)


def test_a_dataset_of_a_simulator_not_installed_here_still_trains_with_a_warning(flaky_data, monkeypatch):
    monkeypatch.delitem(ADAPTERS, "flaky")  # as if its tool were not installed
    with pytest.warns(SimulatorNotInstalledWarning, match=r"simulator 'flaky' flaky 2.0, which is not installed"):
        meta = check_dataset(flaky_data)
    assert meta["simulator"]["name"] == "flaky"
    data = PairsDataModule(str(flaky_data), batch_size=256)
    with pytest.warns(SimulatorNotInstalledWarning):
        data.setup("fit")
    assert sum(data.rows.values()) == 2700


def test_training_logs_the_simulator_and_the_rows_left_out(flaky_trained, flaky_data):
    result, lines = flaky_trained
    _, errors, _ = usable_counts(flaky_data)
    assert "300 rows left out: the simulator failed on them" in lines[0]
    assert "simulator flaky flaky 2.0" in lines[0]
    assert result.evaluator.extra["error_rows"] == errors
    assert result.report["simulator"]["name"] == "flaky"
    assert result.report["error_rows"] == {"test": errors["test"]}  # no OOD set in this run


def test_the_artifact_records_the_simulator_and_loads_against_its_own_adapter(flaky_trained, tmp_path, monkeypatch):
    result, _ = flaky_trained
    payload = torch.load(result.artifact, weights_only=True)
    assert payload["simulator"]["name"] == "flaky" and payload["simulator"]["version"] == "flaky 2.0"
    loaded = evaluator.load(result.artifact)  # flaky 2.0 installed: no complaint about builtin's 1.0.0
    assert loaded.simulator == payload["simulator"]
    monkeypatch.setattr(FlakyAdapter, "installed_version", "flaky 3.0")
    with pytest.raises(evaluator.EvaluatorLoadError, match=r"simulator flaky 2.0 \(flaky\).*installed simulator is "
                                                           r"flaky 3.0 \(flaky\)"):
        evaluator.load(result.artifact)
    monkeypatch.delitem(ADAPTERS, "flaky")
    with pytest.warns(SimulatorNotInstalledWarning, match="flaky"):
        unchecked = evaluator.load(result.artifact)  # prediction needs no simulator
    layer, accelerator = Layer(16, 16, 8, 16, 3, 3, 1, 1), Accelerator(
        pe_rows=4, pe_cols=4, dataflow="ws", rf_bytes=16, ifmap_kb=2, filter_kb=2, ofmap_kb=2, dram_bw=8.0,
        word_bits=16, freq_mhz=1000.0)
    assert np.array_equal(unchecked.predict([layer], accelerator).to_numpy(),
                          loaded.predict([layer], accelerator).to_numpy())


def test_an_old_artifact_without_a_simulator_record_is_checked_against_builtin(trained, tmp_path):
    payload = torch.load(trained.artifact, weights_only=True)
    metadata = {key: value for key, value in payload["dataset_metadata"].items() if key != "simulator"}
    old = tmp_path / "old.pt"
    torch.save({key: value for key, value in {**payload, "dataset_metadata": metadata}.items() if key != "simulator"},
               old)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SimulatorNotInstalledWarning)
        assert evaluator.load(old).simulator == {"name": "builtin", "version": SIMULATOR_VERSION,
                                                 "settings": {"mapping": "search", "objective": "latency"}}
    torch.save({**{k: v for k, v in payload.items() if k != "simulator"},
                "dataset_metadata": {**metadata, "simulator_version": "0.0.1"}}, old)
    with pytest.raises(evaluator.EvaluatorLoadError, match=r"simulator 0\.0\.1 \(builtin\)"):
        evaluator.load(old)


def test_the_ood_set_is_simulated_by_the_datasets_adapter(flaky_data):
    meta = read_metadata(flaky_data)
    ood = ood_set(meta, read_split(flaky_data, "train"), n_pairs=40, seed=0, networks=["alexnet"], input_sizes=[224])
    failed = (ood["error"] != "").to_numpy()
    assert failed.tolist() == [i % 10 == 9 for i in range(len(ood))]  # the flaky tool's own pattern
    # the rows it did not fail on are our simulator's, with the dataset's mapping and objective
    builtin = BuiltinAdapter({"mapping": "search", "objective": "latency"}).simulate(
        ood[[*LAYER_FIELDS, *ACCELERATOR_FIELDS]])
    assert np.array_equal(ood.loc[~failed, "total_cycles"].to_numpy(), builtin.loc[~failed, "total_cycles"].to_numpy())


def test_validation_names_the_simulator_and_leaves_failed_rows_out_of_every_set(flaky_trained, flaky_data, tmp_path):
    result, _ = flaky_trained
    _, errors, _ = usable_counts(flaky_data)
    report = validate_artifact(result.artifact, flaky_data, tmp_path / "validate",
                               ValidationConfig(ood_pairs=40, ood_networks=["alexnet"], ood_input_sizes=[224],
                                                baselines=(), plots=False), log=lambda *_: None)
    assert report["simulator"]["name"] == "flaky" and report["simulator"]["version"] == "flaky 2.0"
    assert report["error_rows"]["test"] == errors["test"]
    assert report["test"]["n_pairs"] == len(read_split(flaky_data, "test"))
    ood_errors = report["error_rows"]["ood"]
    assert ood_errors > 0 and ood_errors == (report["ood"]["n_pairs"] + ood_errors) // 10
    text = (tmp_path / "validate" / "report.txt").read_text()
    assert text.splitlines()[0].startswith("imitating simulator flaky flaky 2.0 (fail_every 10, mapping search")


def test_validation_refuses_a_dataset_of_another_simulator(flaky_trained, small_dataset, tmp_path):
    result, _ = flaky_trained
    with pytest.raises(ForeignDatasetError,
                       match=rf"simulator version '{re.escape(SIMULATOR_VERSION)}', expected 'flaky 2.0'"):
        validate_artifact(result.artifact, small_dataset, tmp_path / "validate",
                          ValidationConfig(ood_pairs=0, baselines=(), plots=False), log=lambda *_: None)
