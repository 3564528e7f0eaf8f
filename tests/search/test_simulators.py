"""The search verifies with the simulator its evaluator imitates, and with others side by side.

The "other simulator" is a real adapter defined here: our simulator with latency and energy
scaled by a factor (a tool with other constants), registered in
`dataset_gen.adapters.ADAPTERS` for each test's duration. An evaluator is trained on a
dataset it made, so every number below says which simulator produced it.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dataset_gen.adapters import ADAPTERS, AdapterError, make_adapter
from dataset_gen.adapters.builtin import BuiltinAdapter
from dataset_gen.adapters.registry import load_simulator_config
from search.context import build_context, build_verifiers, verifier_config
from search.simulated import SimulatorCache
from search.verify import verify_design

from .conftest import search_settings, train_search_evaluator

SCALED = "tests.search.test_simulators:ScaledAdapter"
FACTOR = 2.0


class ScaledAdapter(BuiltinAdapter):
    """Our simulator with latency and energy multiplied by ``factor``."""

    name = "scaled"

    @property
    def version(self) -> str:
        return "scaled 1"

    def simulate(self, pairs: pd.DataFrame) -> pd.DataFrame:
        results = super().simulate(pairs)
        factor = float(self.settings.get("factor", FACTOR))
        for column in ("latency_s", "total_cycles", "energy_pj"):
            results[column] = results[column] * factor if column != "total_cycles" else \
                np.where(results["feasible"], np.round(results[column] * factor), results[column]).astype("int64")
        return results


@pytest.fixture(autouse=True)
def scaled_registered(monkeypatch):
    monkeypatch.setitem(ADAPTERS, "scaled", SCALED)


@pytest.fixture(scope="module")
def scaled_evaluator(tmp_path_factory) -> str:
    """An evaluator trained (briefly) on the fast search space, simulated by the scaled adapter."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(ADAPTERS, "scaled", SCALED)
        return train_search_evaluator(tmp_path_factory.mktemp("scaled"), n_samples=1500, depth=2, width=48,
                                      epochs=3, batch_size=256, simulator={"name": "scaled", "factor": FACTOR})


def test_a_named_simulator_config_is_composed_from_conf_simulator():
    assert load_simulator_config("builtin") == {"name": "builtin"}
    assert load_simulator_config({"name": "scaled", "factor": 3}) == {"name": "scaled", "factor": 3}
    with pytest.raises(AdapterError, match=r"no conf/simulator/nonesuch.yaml; expected one of \[.*'builtin'"):
        load_simulator_config("nonesuch")
    with pytest.raises(AdapterError, match="expected a mapping with a name"):
        load_simulator_config({"factor": 3})


def test_further_verifiers_get_the_main_mapping_and_objective_and_unique_names():
    main = SimulatorCache(adapter=make_adapter({"name": "scaled", "mapping": "scalesim", "objective": "energy"}))
    verifiers = build_verifiers(main, ["builtin", {"name": "builtin", "objective": "latency"}, {"name": "scaled"}])
    assert list(verifiers) == ["builtin", "builtin_2", "scaled"]
    assert verifiers["builtin"].identity["settings"] == {"mapping": "scalesim", "objective": "energy"}
    assert verifiers["builtin_2"].identity["settings"] == {"mapping": "scalesim", "objective": "latency"}
    with pytest.raises(AdapterError, match="nonesuch"):
        build_verifiers(main, ["nonesuch"])


def test_the_main_verifier_is_the_evaluators_simulator_with_optional_overrides(scaled_evaluator):
    import evaluator

    loaded = evaluator.load(scaled_evaluator)
    assert loaded.simulator["name"] == "scaled"
    assert verifier_config(loaded, {"mapping": None, "objective": None}) == {
        "name": "scaled", "factor": FACTOR, "mapping": "search", "objective": "latency"}
    assert verifier_config(loaded, {"mapping": "scalesim", "objective": None})["mapping"] == "scalesim"


def test_the_search_verifies_with_the_evaluators_simulator_and_others_side_by_side(scaled_evaluator, tmp_path):
    context = build_context(search_settings("verify.simulators=[builtin]", evaluator=scaled_evaluator), tmp_path)
    assert context.simulator.identity == {"name": "scaled", "version": "scaled 1",
                                          "settings": {"factor": FACTOR, "mapping": "search", "objective": "latency"}}
    # one ground truth per run: the cost reference is the scaled simulator's too
    builtin = SimulatorCache()
    reference = builtin.table(context.layer_table, [context.hw_space.accelerator(context.reference_index)])
    assert context.spec.reference["area_mm2"] == pytest.approx(float(reference.area_mm2[0]))
    choice = (0, 0)
    layers = context.network_layers(choice)
    accelerator = context.hw_space.accelerator(context.reference_index)
    summary, per_layer = verify_design(layers, accelerator, context.evaluator, context.simulator, context.spec,
                                       others=context.verifiers)
    by = summary["simulated_by"]["builtin"]
    assert summary["simulator"]["name"] == "scaled" and by["simulator"]["name"] == "builtin"
    table = builtin.table(layers, [accelerator])
    assert by["latency_s"] == pytest.approx(table.latency_s.sum(), rel=1e-12)
    assert summary["simulated"]["latency_s"] == pytest.approx(FACTOR * by["latency_s"], rel=1e-12)
    assert summary["simulated"]["energy_pj"] == pytest.approx(FACTOR * by["energy_pj"], rel=1e-12)
    assert summary["simulated"]["area_mm2"] == pytest.approx(by["area_mm2"])
    assert by["edap"] == pytest.approx(by["latency_s"] * by["energy_pj"] * by["area_mm2"])
    p = summary["predicted"]
    assert by["relative_error"]["latency_s"] == pytest.approx((p["latency_s"] - by["latency_s"]) / by["latency_s"])
    assert np.allclose(per_layer["builtin_latency_s"] * FACTOR, per_layer["simulated_latency_s"], rtol=1e-12)


def test_result_json_records_the_verifier_and_the_further_simulators(scaled_evaluator, tmp_path, capsys):
    from search.app import run

    result = run(search_settings("verify.simulators=[builtin]", evaluator=scaled_evaluator), tmp_path)
    on_disk = json.loads((tmp_path / "result.json").read_text())
    assert on_disk["simulator"]["name"] == "scaled"
    assert on_disk["evaluator"]["simulator"]["name"] == "scaled"
    by = on_disk["simulated_by"]["builtin"]
    assert set(by) >= {"latency_s", "energy_pj", "area_mm2", "edp", "edap", "relative_error", "simulator"}
    if result["feasible"]:
        assert on_disk["simulated"]["latency_s"] == pytest.approx(FACTOR * by["latency_s"], rel=1e-9)
    printed = capsys.readouterr().out
    assert "simulated by scaled:" in printed and "simulated by builtin:" in printed
