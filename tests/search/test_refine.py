"""search.refine_rounds: refining the evaluator where the co-search ended (search/refine.py)."""

import copy
import dataclasses
import json
import math

import pytest

from dataset_gen.space import SpaceError
from evaluator import load
from search.app import run
from search.cosearch import run_search
from search.refine import ARTIFACT, neighbourhood

from .conftest import search_settings

FIGURES = ("predicted", "simulated", "relative_error", "test_accuracy", "architecture", "accelerator")


def _with(context, out, **search):
    settings = copy.deepcopy(context.settings)
    settings["search"].update(search)
    return dataclasses.replace(context, settings=settings, out_dir=out)


def test_a_bad_value_is_refused_naming_the_key_and_the_range(evaluator_path, tmp_path):
    for bad in ("-1", "101", "1.5"):
        settings = search_settings(f"search.refine_rounds={bad}", evaluator=evaluator_path)
        with pytest.raises(SpaceError, match=r"search\.refine_rounds = .*integer from 0 .* to 100"):
            run(settings, tmp_path / "run")
        assert not (tmp_path / "run").exists()


def test_the_neighbourhood_is_one_step_in_one_field(context):
    space = context.hw_space
    index = space.middle()
    around = neighbourhood(space, index)
    assert around[0] == index and len(set(around)) == len(around)
    for other in around[1:]:
        steps = [abs(a - b) for a, b in zip(index, other)]
        assert max(steps) == 1 and sum(steps) == 1


def test_zero_rounds_is_the_search_as_before(context, tmp_path):
    without = copy.deepcopy(context.settings)
    without["search"].pop("refine_rounds")  # a config from before the key
    before = run_search(dataclasses.replace(context, settings=without, out_dir=tmp_path / "before"))
    zero = run_search(_with(context, tmp_path / "zero", refine_rounds=0))
    for key in FIGURES:
        assert zero[key] == before[key], key
    written = json.loads((tmp_path / "zero" / "result.json").read_text())
    assert "refine" not in written and not (tmp_path / "zero" / ARTIFACT).exists()


def test_one_round_refines_the_evaluator_on_the_derived_design(context, tmp_path):
    out = tmp_path / "run"
    refine = {**context.settings["search"]["refine"], "epochs": 1, "steps": 150, "replay_rows": 512}
    result = run_search(_with(context, out, refine_rounds=1, refine=refine))
    written = json.loads((out / "result.json").read_text())
    block = written["refine"]
    assert block == json.loads(json.dumps(result["refine"]))  # result.json holds the returned block
    assert len(block["rounds"]) == 1 and block["replay_rows"] > 0
    record = block["rounds"][0]
    assert record["rows"] > 0 and record["accelerators"] > 1
    losses = record["fine_tune"]
    assert losses["loss_after"] < losses["loss_before"]
    before, after = record["design_error_before"], record["design_error_after"]
    for figure in ("latency_s", "energy_pj"):
        # the design's own layers were trained on: the error shrinks, or stays within a tolerance
        assert after["layer_abs_log_error"][figure] <= before["layer_abs_log_error"][figure] + 0.01, figure
        assert math.isfinite(after["relative_error"][figure])
    refined = load(out / ARTIFACT)
    assert block["artifact"] == str(out / ARTIFACT)
    assert refined.ensemble == context.evaluator.ensemble
    assert refined.extra["refined"][0]["rows"] == record["rows"]
    # the final verification used the refined evaluator
    design = result["network"]
    assert written["evaluator"]["path"] == str(context.settings["evaluator"]) and design
