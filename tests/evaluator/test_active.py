"""dance-active: active learning of the evaluator from a budget of simulated rows (tiny budgets)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from dataset_gen.common.config import compose_config
from dataset_gen.reader import read_dataset
from evaluator.active import ActiveConfigError, INPUT_COLUMNS, run_active, select_batch, uncertainty_scores

TINY = ["space=small", "layers.input_sizes=[32]", "init_rows=300", "batch_rows=100", "budget_rows=500",
        "pool_rows=1000", "val_rows=300", "model.width=32", "model.depth=2", "model.ensemble=2", "min_steps=40",
        "trainer.max_epochs=3", "progress=false"]


def config(out, *overrides):
    return OmegaConf.to_container(compose_config("active", [f"out={out}", *TINY, *overrides]), resolve=True)


def quiet(line):
    pass


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("active") / "run"
    result = run_active(config(out), log=quiet)
    return out, result


def test_a_run_writes_a_dataset_an_artifact_and_a_learning_curve(finished_run):
    import evaluator

    out, result = finished_run
    assert result["finished"].startswith("budget_rows") and result["new_rounds"] == 3
    data = read_dataset(out / "data", expect_simulator_version="installed")
    assert len(data) == 500 and data.attrs["dance_gen"]["complete"]
    assert not data[INPUT_COLUMNS].duplicated().any()
    assert list(data["row_id"]) == list(range(500))
    ev = evaluator.load(out / "evaluator.pt")
    assert ev.ensemble == 2
    curve = json.loads((out / "curve.json").read_text())
    assert curve["rows"] == [300, 400, 500]
    for name in ("active", "uniform"):
        assert len(curve[name]) == 3
        for entry in curve[name]:
            for target in ("latency", "energy"):
                assert 0 <= entry[target]["within_10pct"] <= 1 and -1 <= entry[target]["kendall_tau"] <= 1
    assert (out / "learning_curve.png").stat().st_size > 1000
    unseen = curve["unseen"]
    assert unseen["pairs"] == 300 and len(unseen["active"]) == len(unseen["uniform"]) == 3
    assert all(entry["n"] > 0 and 0 <= entry["energy"]["within_10pct"] <= 1 for entry in unseen["active"])
    # every later round chose pairs more uncertain than its pool's average
    assert all(r["score_chosen"] > r["score_pool"] for r in curve["rounds"][1:])


def test_uncertainty_choice_picks_higher_std_pairs_than_random(finished_run):
    import evaluator
    from dataset_gen.ranges import parse_space
    from dataset_gen.sampling import parse_layers, sample_pairs

    out, _ = finished_run
    ev = evaluator.load(out / "evaluator.pt")
    cfg = config(out)
    pool = sample_pairs(parse_space(cfg["space"]), parse_layers(cfg["layers"]), "uniform", 123, 2000, 2000, 0)
    from evaluator.active import _features

    scores = uncertainty_scores(ev, pool)
    rng = np.random.default_rng(0)
    picked = select_batch(scores, _features(pool), 100, 0.25, rng)
    assert len(set(picked)) == 100
    randoms = [scores[rng.choice(len(pool), 100, replace=False)].mean() for _ in range(20)]
    assert scores[picked].mean() > 1.5 * np.mean(randoms)
    std = ev.predict(pool.iloc[picked], return_std=True)
    assert std["total_cycles_std"].mean() > ev.predict(pool, return_std=True)["total_cycles_std"].mean()


def test_the_unseen_layers_are_real_layers_the_pool_never_draws(finished_run, tmp_path):
    from dataset_gen.networks import get_network
    from dataset_gen.space import LAYER_FIELDS
    from evaluator.active import _Run

    out, _ = finished_run
    unseen = pd.read_parquet(out / "_active" / "unseen.parquet")
    # the tiny run draws the zoo's layers at 32 px only: every network's 224 px layers are unseen
    assert len(unseen) >= 300 and "alexnet" in set(unseen["network"])
    drawable = {tuple(layer.to_dict()[f] for f in LAYER_FIELDS)
                for name in ("resnet18", "resnet50", "mobilenet_v2", "vgg16") for layer in get_network(name, 32)}
    shapes = set(map(tuple, unseen[list(LAYER_FIELDS)].to_numpy().tolist()))
    assert shapes and not shapes & drawable
    # the default mix (224 and 32 px): only AlexNet's layers, less its last two FC layers (VGG-16's shapes)
    run = _Run(config(tmp_path / "default", "layers.input_sizes=[224,32]", "unseen_pairs=60"), quiet)
    run.state_dir.mkdir(parents=True)
    unseen = run.unseen_set()
    assert set(unseen["layer_name"]) == {f"alexnet@224:{name}" for name in
                                         ("features.0", "features.3", "features.6", "features.8", "features.10",
                                          "classifier.1")}


def test_unseen_networks_are_checked_and_an_all_drawable_choice_measures_nothing(tmp_path):
    from evaluator.active import _Run

    with pytest.raises(ActiveConfigError, match=r"unseen_networks = \['lenet'\]: expected null or a list of zoo"):
        run_active(config(tmp_path / "a", "unseen_networks=[lenet]"), log=quiet)
    lines = []
    # ResNet-18 at 32 px is in the layer mix's pool (layers.input_sizes=[32]): nothing unseen
    run = _Run(config(tmp_path / "b", "unseen_networks=[resnet18]", "unseen_input_sizes=[32]"), lines.append)
    run.state_dir.mkdir(parents=True)
    assert run.unseen_set() is None and "no unseen layers" in lines[0]
    # at 224 px its layers are unseen (other spatial sizes): measured
    run = _Run(config(tmp_path / "c", "unseen_networks=[resnet18]", "unseen_pairs=40"), quiet)
    run.state_dir.mkdir(parents=True)
    unseen = run.unseen_set()
    assert len(unseen) >= 40 and set(unseen["network"]) == {"resnet18"}


def test_min_steps_defaults_to_more_steps_for_an_external_simulators_few_rows(tmp_path):
    from evaluator.active import MIN_STEPS_BUILTIN, MIN_STEPS_EXTERNAL, _Run

    example = [sys.executable, str(Path(__file__).resolve().parents[2] / "examples" / "adapters"
                                   / "builtin_over_protocol.py")]
    command = ",".join(f"'{part}'" for part in example)
    builtin = _Run(config(tmp_path / "a", "min_steps=null"), quiet)
    external = _Run(config(tmp_path / "b", "min_steps=null", "simulator=command", f"simulator.command=[{command}]"),
                    quiet)
    try:
        assert (builtin.min_steps, external.min_steps) == (MIN_STEPS_BUILTIN, MIN_STEPS_EXTERNAL) == (300, 3000)
        assert _Run(config(tmp_path / "c", "min_steps=50"), quiet).min_steps == 50  # an explicit value wins
    finally:
        external.adapter.close()
    with pytest.raises(ActiveConfigError, match="min_steps"):
        run_active(config(tmp_path / "d", "min_steps=-1"), log=quiet)


def test_selection_keeps_chosen_pairs_apart():
    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(0, 0.01, (50, 2)), rng.uniform(10, 100, (50, 2))])
    scores = np.concatenate([np.full(50, 10.0), np.ones(50)])  # the most uncertain are one tight cluster
    greedy = select_batch(scores, features, 10, 0.25, rng)
    assert (greedy < 50).sum() == 1  # one of the cluster, then the rest elsewhere
    assert (select_batch(scores, features, 10, 0.0, rng) < 50).all()  # no diversity: top scores only


def test_running_the_same_command_again_after_it_finished_does_nothing(finished_run):
    out, _ = finished_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    lines = []
    result = run_active(config(out), log=lines.append)
    assert result["new_rounds"] == 0 and "nothing to do" in lines[0]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


def test_another_config_in_the_same_out_is_refused_naming_the_key(finished_run):
    out, _ = finished_run
    with pytest.raises(ActiveConfigError, match=r"batch_rows = 100 there, 50 here"):
        run_active(config(out, "batch_rows=50"), log=quiet)


def test_a_stopped_run_continues_where_it_stopped_and_redoes_a_half_written_round(finished_run, tmp_path):
    full, _ = finished_run
    out = tmp_path / "run"
    first = run_active(config(out, "max_rounds=1", "uniform_baseline=false"), log=quiet)
    assert first["new_rounds"] == 1 and first["finished"] is None
    assert len(read_dataset(out / "data")) == 300
    # a round killed half-way: its row file written, the state not
    (out / "_active" / "rows" / "round-001.parquet").write_bytes(b"torn")
    second = run_active(config(out, "uniform_baseline=false"), log=quiet)  # max_rounds is not a setting of the run
    assert second["new_rounds"] == 2 and second["finished"].startswith("budget_rows")
    resumed, straight = read_dataset(out / "data"), read_dataset(full / "data")
    assert len(resumed) == 500
    # every draw derives from the seed and the round: the same rows as the uninterrupted run
    pd.testing.assert_frame_equal(resumed[INPUT_COLUMNS], straight[INPUT_COLUMNS])


def test_the_active_evaluators_fit_their_base_on_round_zero(monkeypatch, tmp_path):
    """Every active round's data module fits the analytic base on the first init_rows rows
    (round 0's space-filling design); the uniform baseline's on all of its rows."""
    import evaluator.data as data_module

    seen = []
    original = data_module.PairsDataModule.__init__

    def recording(self, path, *args, **kwargs):
        seen.append((Path(path).name, kwargs.get("base_rows")))
        original(self, path, *args, **kwargs)

    monkeypatch.setattr(data_module.PairsDataModule, "__init__", recording)
    run_active(config(tmp_path / "run", "budget_rows=400"), log=quiet)
    assert seen == [("data", 300), ("uniform-data", None), ("data", 300), ("uniform-data", None)]


def test_bad_settings_fail_before_any_work(tmp_path):
    with pytest.raises(ActiveConfigError, match="model.ensemble"):
        run_active(config(tmp_path / "a", "model.ensemble=1"), log=quiet)
    with pytest.raises(ActiveConfigError, match="init_rows"):
        run_active(config(tmp_path / "b", "init_rows=600"), log=quiet)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_every_simulator_option_composes_with_dance_active():
    for name in ("builtin", "zigzag", "scalesim", "command"):
        assert compose_config("active", [f"simulator={name}"]).simulator.name == name
    assert compose_config("active", ["simulator=zigzag"]).shard_rows == 100


def test_the_command_line_reports_a_user_error_in_one_line(tmp_path):
    command = [sys.executable, "-c", "from evaluator.active_cli import main; main()", f"out={tmp_path / 'r'}",
               "model.ensemble=1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("dance-active: error: model.ensemble = 1")


def test_pool_networks_mix_zoo_layers_into_the_candidate_pool(tmp_path):
    from evaluator.active import _Run

    run = _Run(config(tmp_path / "r", "pool_networks=[alexnet]", "pool_input_sizes=[224]", "pool_network_share=0.5"), quiet)
    pool = run.draw(run.pool_layers, "uniform", 0, 400)
    from_zoo = pool["layer_name"].str.startswith("alexnet@")
    assert 0.35 < from_zoo.mean() < 0.65 and from_zoo.sum() + (pool["layer_name"] == "").sum() == 400
    # the dataset's config names the pool's networks, so that an OOD set leaves them out
    assert "alexnet" in run.dataset_config()["layers"]["networks"]


def test_a_bad_selection_setting_names_its_key(tmp_path):
    with pytest.raises(ActiveConfigError, match="selection.random_share"):
        run_active(config(tmp_path / "a", "selection.random_share=2"), log=quiet)
    with pytest.raises(ActiveConfigError, match="selection.rule"):
        run_active(config(tmp_path / "b", "selection.rule=kmeans"), log=quiet)
