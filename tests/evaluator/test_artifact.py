"""The artifact: one file that round-trips exactly and refuses anything else clearly."""

import pickle
import re

import numpy as np
import pandas as pd
import pytest
import torch

import evaluator
from dataset_gen.simulator import SIMULATOR_VERSION
from dataset_gen.space import Accelerator, Layer
from evaluator import EvaluatorLoadError
from evaluator.analytic import ANALYTIC_VERSION
from evaluator.artifact import FORMAT_VERSION

LAYERS = [Layer(16, 16, 8, 16, 3, 3, 1, 1), Layer.fully_connected(64, 10)]
ACCELERATOR = Accelerator(pe_rows=4, pe_cols=4, dataflow="ws", rf_bytes=16, ifmap_kb=2, filter_kb=2, ofmap_kb=2,
                          dram_bw=8.0, word_bits=16, freq_mhz=1000.0)


def test_an_artifact_round_trips_weights_metadata_and_metrics(trained, tmp_path):
    path = evaluator.save(trained.evaluator, tmp_path / "copy.pt")
    loaded = evaluator.load(path)
    before = trained.evaluator.predict(LAYERS, ACCELERATOR)
    after = loaded.predict(LAYERS, ACCELERATOR)
    assert np.array_equal(before.to_numpy(), after.to_numpy())
    assert loaded.dataset_metadata["space_hash"] == trained.evaluator.space_hash
    assert loaded.simulator_version == trained.evaluator.simulator_version
    assert loaded.metrics["test"]["latency"]["n"] == trained.report["test"]["latency"]["n"]
    assert loaded.extra["split"] == trained.evaluator.extra["split"]
    assert not loaded.training and all(not p.requires_grad for p in loaded.parameters())


def test_the_training_run_wrote_an_artifact_that_loads_with_weights_only(trained):
    payload = torch.load(trained.artifact, weights_only=True)  # plain data: loading runs no code
    assert payload["format"] == "dance-evaluator" and payload["format_version"] == FORMAT_VERSION
    assert {"state_dict", "feature_spec", "targets", "dataset_metadata", "metrics"} <= set(payload)
    assert "target_mean" in payload["state_dict"] and "layer_std" in payload["state_dict"]


def test_a_missing_file_is_reported_by_name(tmp_path):
    with pytest.raises(EvaluatorLoadError, match="nothing.pt.*not found"):
        evaluator.load(tmp_path / "nothing.pt")


@pytest.mark.parametrize("content", [b"", b"not a torch file at all", b"PK\x03\x04garbage"])
def test_a_corrupt_file_is_refused_naming_the_file(tmp_path, content):
    path = tmp_path / "corrupt.pt"
    path.write_bytes(content)
    with pytest.raises(EvaluatorLoadError, match="corrupt.pt.*not a readable evaluator artifact"):
        evaluator.load(path)


def test_a_truncated_artifact_is_refused(trained, tmp_path):
    path = tmp_path / "truncated.pt"
    path.write_bytes(trained.artifact.read_bytes()[:2000])
    with pytest.raises(EvaluatorLoadError, match="truncated.pt"):
        evaluator.load(path)


def test_a_foreign_torch_file_is_refused_as_not_an_evaluator(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    with pytest.raises(EvaluatorLoadError, match="weights.pt.*not a dance evaluator artifact"):
        evaluator.load(path)


class _Payload:
    """A pickled object: weights_only loading must refuse to build it."""


# torch notes the foreign file's pickle protocol before it refuses it: that file is the point
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    path = tmp_path / "object.pt"
    with path.open("wb") as stream:
        pickle.dump({"format": "dance-evaluator", "payload": _Payload()}, stream)
    with pytest.raises(EvaluatorLoadError, match="object.pt.*weights_only"):
        evaluator.load(path)


def test_an_artifact_from_a_newer_format_or_another_encoding_is_refused(trained, tmp_path):
    payload = torch.load(trained.artifact, weights_only=True)
    newer = tmp_path / "newer.pt"
    torch.save({**payload, "format_version": FORMAT_VERSION + 1}, newer)
    with pytest.raises(EvaluatorLoadError, match="newer.pt.*newer"):
        evaluator.load(newer)
    other = tmp_path / "other-features.pt"
    spec = dict(payload["feature_spec"], layer_features=["log2_in_h"])
    torch.save({**payload, "feature_spec": spec}, other)
    with pytest.raises(EvaluatorLoadError, match="other-features.pt.*feature encoding"):
        evaluator.load(other)
    broken = tmp_path / "broken-weights.pt"
    state = {k: v for k, v in payload["state_dict"].items() if k != "target_std"}
    torch.save({**payload, "state_dict": state}, broken)
    with pytest.raises(EvaluatorLoadError, match="broken-weights.pt.*weights"):
        evaluator.load(broken)


def test_artifacts_from_before_the_loop_nest_or_its_cycles_load_with_what_they_had(trained, tmp_path):
    """Without ``base_loopnest`` (no loop nest), or with its first four entries only (the energy
    followed the least-energy nest; the cycles did not follow it)."""
    payload = torch.load(trained.artifact, weights_only=True)
    for name, entries, expected in (("no-nest", None, [0.0] * 7),
                                    ("energy-only", [1.0, 6.0, 100.0, 0.0], [1.0, 6.0, 100.0, 0.0, 0.0, 0.0, 0.0])):
        state = {k: v for k, v in payload["state_dict"].items() if k != "base_loopnest"}
        if entries is not None:
            state["base_loopnest"] = torch.tensor(entries)
        path = tmp_path / f"{name}.pt"
        torch.save({**payload, "state_dict": state}, path)
        loaded = evaluator.load(path)
        assert loaded.network.base_loopnest.tolist() == expected
        nest = loaded.analytic_base["loopnest"]
        assert nest is None if entries is None else nest["objective"] == "energy" and not nest["cycles"]


def test_an_artifact_of_another_simulator_version_is_refused_naming_both(trained, tmp_path):
    payload = torch.load(trained.artifact, weights_only=True)
    assert payload["dataset_metadata"]["simulator_version"] == SIMULATOR_VERSION
    older = tmp_path / "older-simulator.pt"
    torch.save({**payload, "dataset_metadata": {**payload["dataset_metadata"], "simulator_version": "0.0.1"}}, older)
    with pytest.raises(EvaluatorLoadError, match=rf"older-simulator.pt.*simulator 0\.0\.1.*installed simulator is "
                                                 rf"{re.escape(SIMULATOR_VERSION)}"):
        evaluator.load(older)
    unknown = tmp_path / "unknown-simulator.pt"
    torch.save({**payload, "dataset_metadata": {}}, unknown)
    with pytest.raises(EvaluatorLoadError, match=rf"unknown-simulator.pt.*simulator_version.*{re.escape(SIMULATOR_VERSION)}"):
        evaluator.load(unknown)


def test_an_artifact_of_another_analytic_model_version_is_refused(trained, tmp_path):
    payload = torch.load(trained.artifact, weights_only=True)
    other = tmp_path / "other-analytic.pt"
    spec = dict(payload["feature_spec"], analytic_version=ANALYTIC_VERSION + 1)
    torch.save({**payload, "feature_spec": spec}, other)
    with pytest.raises(EvaluatorLoadError, match="other-analytic.pt.*feature encoding"):
        evaluator.load(other)


def test_an_artifact_written_and_loaded_by_this_code_predicts_on_a_pairs_frame(trained, tmp_path):
    loaded = evaluator.load(evaluator.save(trained.evaluator, tmp_path / "current.pt"))
    pairs = pd.DataFrame([{**layer.to_dict(), **ACCELERATOR.to_dict()} for layer in LAYERS])
    assert np.array_equal(loaded.predict(pairs).to_numpy(), trained.evaluator.predict(LAYERS, ACCELERATOR).to_numpy())
