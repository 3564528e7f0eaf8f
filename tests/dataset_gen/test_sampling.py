"""Samplers: valid random layers, space-filling designs sliced by shard, layer pools and mixes."""

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import qmc

from dataset_gen.networks import get_network
from dataset_gen.ranges import parse_space
from dataset_gen.sampling import (
    PAIR_COLUMNS, parse_layers, sample_pairs, sample_random_layers, shard_bounds, unit_points,
)
from dataset_gen.space import LAYER_FIELDS, Layer, SpaceError

CONF = Path(__file__).resolve().parents[2] / "conf"
SMALL = yaml.safe_load((CONF / "space" / "small.yaml").read_text())
DANCE = yaml.safe_load((CONF / "space" / "dance.yaml").read_text())
RANDOM = {"mix": 1.0, "source": "random"}


def networks_source(mix, networks, input_sizes=(224,)):
    return {"mix": mix, "source": "networks", "networks": list(networks), "input_sizes": list(input_sizes),
            "batches": [1], "modules": []}


def as_layers(columns):
    return [Layer(**{field: int(columns[field][i]) for field in LAYER_FIELDS})
            for i in range(len(columns["in_h"]))]


@settings(max_examples=40)
@given(seed=st.integers(0, 2**32 - 1),
       in_max=st.integers(1, 64), channels_max=st.integers(1, 256),
       kernels=st.lists(st.integers(1, 11), min_size=1, max_size=4, unique=True),
       pads=st.lists(st.one_of(st.just("same"), st.integers(0, 5)), min_size=1, max_size=3, unique=True),
       groups=st.lists(st.integers(2, 64), min_size=1, max_size=3, unique=True),
       square=st.booleans())
def test_random_layers_are_always_valid_layers(seed, in_max, channels_max, kernels, pads, groups, square):
    config = copy.deepcopy(SMALL)
    config["layer"].update(
        in_h={"min": 1, "max": in_max}, in_w={"same_as": "in_h"} if square else {"min": 1, "max": in_max},
        in_c={"min": 1, "max": channels_max, "log": True}, out_c={"min": 1, "max": channels_max},
        k_h=kernels, k_w={"same_as": "k_h"} if square else sorted(kernels), pad=pads, groups=groups,
        stride=[1, 2, 3],
    )
    columns = sample_random_layers(parse_space(config), np.random.default_rng(seed), 300)
    layers = as_layers(columns)  # Layer() raises SpaceError for any invalid shape
    assert all(layer.pad <= max(layer.k_h, layer.k_w) - 1 for layer in layers)
    if square:
        assert all(layer.in_h == layer.in_w and layer.k_h == layer.k_w for layer in layers)


def test_random_layers_cover_every_kind_in_its_share():
    space = parse_space(DANCE)
    layers = as_layers(sample_random_layers(space, np.random.default_rng(0), 20_000))
    fc = np.mean([layer.in_h == layer.in_w == layer.k_h == 1 and layer.groups == 1 for layer in layers])
    depthwise = np.mean([layer.groups == layer.in_c == layer.out_c and layer.groups > 1 for layer in layers])
    grouped = np.mean([1 < layer.groups < layer.in_c or (1 < layer.groups and layer.in_c != layer.out_c)
                       for layer in layers])
    assert fc == pytest.approx(0.15, abs=0.02)  # plus the rare conv drawn on a 1x1 input
    assert depthwise == pytest.approx(0.15, abs=0.02)
    assert grouped == pytest.approx(0.10, abs=0.02)
    assert {layer.k_h for layer in layers} == {1, 3, 5, 7}
    assert {layer.stride for layer in layers} == {1, 2}
    assert all(layer.pad == (layer.k_h - 1) // 2 for layer in layers if layer.in_h > 1 or layer.k_h == 1)


def test_an_input_smaller_than_the_kernel_grows_to_fit_it_within_the_input_range():
    config = copy.deepcopy(SMALL)
    config["layer"].update(kinds={"conv": 1}, in_h={"min": 1, "max": 2}, in_w={"same_as": "in_h"},
                           k_h=[5], k_w={"same_as": "k_h"}, pad=[0])
    layers = as_layers(sample_random_layers(parse_space(config), np.random.default_rng(0), 100))
    assert {(layer.in_h, layer.k_h) for layer in layers} == {(2, 2)}  # 5x5 cannot fit a 2x2 input
    config["layer"]["in_h"] = {"min": 1, "max": 16}
    layers = as_layers(sample_random_layers(parse_space(config), np.random.default_rng(0), 100))
    assert {layer.k_h for layer in layers} == {5} and min(layer.in_h for layer in layers) == 5


def test_uniform_shards_depend_only_on_seed_and_shard_index():
    space, layers = parse_space(SMALL), parse_layers(RANDOM)
    first = sample_pairs(space, layers, "uniform", 7, 1000, 100, 3)
    again = sample_pairs(space, layers, "uniform", 7, 1000, 100, 3)
    other_total = sample_pairs(space, layers, "uniform", 7, 5000, 100, 3)
    pd.testing.assert_frame_equal(first, again)
    pd.testing.assert_frame_equal(first, other_total)
    assert not first.equals(sample_pairs(space, layers, "uniform", 7, 1000, 100, 4))
    assert not first.equals(sample_pairs(space, layers, "uniform", 8, 1000, 100, 3))
    assert list(first.columns) == list(PAIR_COLUMNS)
    assert first["row_id"].tolist() == list(range(300, 400))


def test_sobol_shards_are_slices_of_one_global_sequence():
    rng = np.random.default_rng(0)
    whole = unit_points("sobol", 3, 256, 5, 0, 256, rng)
    sliced = np.vstack([unit_points("sobol", 3, 256, 5, start, count, rng)
                        for start, count in (shard_bounds(256, 60, i) for i in range(5))])
    np.testing.assert_array_equal(whole, sliced)
    # a space-filling sequence: far lower discrepancy than i.i.d. points of the same size
    assert qmc.discrepancy(whole) < 0.5 * qmc.discrepancy(np.random.default_rng(1).random((256, 5)))


def test_latin_hypercube_shards_form_one_hypercube_with_every_stratum_once():
    rng = np.random.default_rng(0)
    n = 300
    sliced = np.vstack([unit_points("lhs", 11, n, 4, start, count, rng)
                        for start, count in (shard_bounds(n, 70, i) for i in range(5))])
    for dim in range(4):
        assert sorted(np.floor(sliced[:, dim] * n).astype(int)) == list(range(n))


def test_sobol_pairs_cover_the_accelerator_choices_evenly():
    space, layers = parse_space(DANCE), parse_layers(RANDOM)
    pairs = pd.concat([sample_pairs(space, layers, "sobol", 0, 4096, 1024, i) for i in range(4)])
    counts = pairs["dataflow"].value_counts()
    assert counts.max() - counts.min() <= 4  # i.i.d. draws would differ by ~50
    assert set(pairs["pe_rows"]) == set(range(8, 25))


def test_the_mix_sets_the_share_of_random_shapes_and_pool_layers_keep_their_names():
    space = parse_space(SMALL)
    layers = parse_layers(networks_source(0.3, ["resnet18"], [32]))
    pairs = sample_pairs(space, layers, "uniform", 0, 4000, 4000, 0)
    from_pool = pairs[pairs["layer_name"] != ""]
    assert len(from_pool) / len(pairs) == pytest.approx(0.7, abs=0.03)
    resnet = {f"resnet18@32:{layer.name}": layer for layer in get_network("resnet18", input_size=32)}
    for row in from_pool.head(200).itertuples():
        assert Layer(**{f: getattr(row, f) for f in LAYER_FIELDS}) == resnet[row.layer_name]


def test_the_pool_holds_each_distinct_layer_shape_once():
    layers = parse_layers(networks_source(0.0, ["resnet18", "resnet18"]))
    shapes = {tuple(row) for row in layers.pool.fields}
    assert len(shapes) == len(layers.pool.names) == len({layer.to_dict().values().__repr__()
                                                         for layer in get_network("resnet18")})


def test_layers_from_a_scalesim_topology_file(tmp_path):
    topology = tmp_path / "net.csv"
    topology.write_text("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
                        "Num Filter, Strides,\nConv1, 34, 34, 3, 3, 3, 16, 1,\nFC, 1, 1, 1, 1, 64, 10, 1,\n")
    layers = parse_layers({"mix": 0.0, "source": str(topology)})
    pairs = sample_pairs(parse_space(SMALL), layers, "uniform", 0, 200, 200, 0)
    assert set(pairs["layer_name"]) == {"Conv1", "FC"}
    conv = pairs[pairs["layer_name"] == "Conv1"].iloc[0]
    assert (conv["in_h"], conv["in_c"], conv["out_c"], conv["k_h"], conv["pad"]) == (34, 3, 16, 3, 0)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_layers_from_a_table_of_layer_fields(tmp_path, suffix):
    table = pd.DataFrame({"name": ["a", "b"], "in_h": [8, 1], "in_w": [8, 1], "in_c": [16, 128],
                          "out_c": [16, 10], "k_h": [3, 1], "k_w": [3, 1], "pad": [1, 0], "groups": [16, 1]})
    path = tmp_path / f"layers{suffix}"
    table.to_csv(path, index=False) if suffix == ".csv" else table.to_parquet(path)
    layers = parse_layers({"mix": 0.25, "source": str(path)})
    pairs = sample_pairs(parse_space(SMALL), layers, "uniform", 0, 400, 400, 0)
    assert set(pairs["layer_name"]) == {"a", "b", ""}
    depthwise = pairs[pairs["layer_name"] == "a"].iloc[0]
    assert (depthwise["groups"], depthwise["batch"], depthwise["stride"]) == (16, 1, 1)


def test_bad_layer_sources_are_refused_naming_the_key(tmp_path):
    with pytest.raises(SpaceError, match="layers.mix = 1.5"):
        parse_layers({"mix": 1.5, "source": "random"})
    with pytest.raises(SpaceError, match="layers.mix = 0.5 leaves rows for real layers"):
        parse_layers({"mix": 0.5, "source": "random"})
    with pytest.raises(SpaceError, match="layers.networks: 'resnet9' is not a known network"):
        parse_layers(networks_source(0.5, ["resnet9"]))
    with pytest.raises(SpaceError, match="layers.batches = None: expected a list"):
        parse_layers({**networks_source(0.5, ["resnet18"]), "batches": None})
    with pytest.raises(SpaceError, match="layers.source = .*: no such file"):
        parse_layers({"mix": 0.5, "source": str(tmp_path / "missing.csv")})
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"in_h": [4], "in_w": [4], "in_c": [6], "out_c": [8], "groups": [4]}).to_csv(bad, index=False)
    with pytest.raises(SpaceError, match=r"groups = 4: must divide in_c = 6 .*row 0"):
        parse_layers({"mix": 0.0, "source": str(bad)})
    with pytest.raises(SpaceError, match="layers.sources: unknown key"):
        parse_layers({"mix": 1.0, "sources": "x"})


def test_layers_traced_from_a_torch_module_join_the_pool():
    pytest.importorskip("torch")
    module = {"_target_": "torch.nn.Sequential",
              "_args_": [{"_target_": "torch.nn.Conv2d", "in_channels": 3, "out_channels": 8,
                          "kernel_size": 3, "padding": 1},
                         {"_target_": "torch.nn.Conv2d", "in_channels": 8, "out_channels": 8,
                          "kernel_size": 3, "groups": 8}]}
    layers = parse_layers({**networks_source(0.0, []),
                           "modules": [{"module": module, "input_shape": [2, 3, 16, 16]}]})
    assert layers.pool.names == ("Sequential:0", "Sequential:1")
    # traced layers carry no precision (0: sampled with the pairs, see sample_pairs)
    assert layers.pool.fields.tolist() == [[16, 16, 3, 8, 3, 3, 1, 1, 1, 2, 0, 0], [16, 16, 8, 8, 3, 3, 1, 0, 8, 2, 0, 0]]
