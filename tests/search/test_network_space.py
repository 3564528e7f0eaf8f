"""The network search space: candidates, blocks, and the layers each choice implies."""


import pytest

from dataset_gen.space import LAYER_FIELDS, Layer, SpaceError
from dataset_gen.torch_layers import layers_from_module
from search.network_space import NetworkSpace, parse_candidate
from search.supernet import ChildNet

CANDIDATES = ("k3_e3", "k3_e6", "k5_e3", "k5_e6", "k7_e3", "k7_e6", "skip")


def digits_space(**changes):
    values = dict(in_channels=1, num_classes=10, stem_channels=16,
                  stages=((16, 1, 1), (24, 2, 2), (32, 2, 2)), head_channels=64, candidates=CANDIDATES)
    values.update(changes)
    return NetworkSpace(**values)


def test_candidates_parse_kernel_and_expansion():
    assert parse_candidate("k5_e6").kernel == 5
    assert parse_candidate("k5_e6").expansion == 6
    assert parse_candidate("skip").is_skip


@pytest.mark.parametrize("name", ["k4_e3", "mb3", "k3", "k3_e0", ""])
def test_malformed_candidates_are_refused_by_name(name):
    with pytest.raises(SpaceError, match="candidates"):
        parse_candidate(name)


def test_skip_is_allowed_only_where_the_block_keeps_its_shape():
    space = digits_space()
    skip = CANDIDATES.index("skip")
    allowed = [block.allowed[skip] for block in space.blocks]
    # stage 1 keeps 16 channels at stride 1; the first block of stages 2 and 3 changes shape
    assert allowed == [True, False, True, False, True]
    with pytest.raises(SpaceError, match="block 1 cannot be 'skip'"):
        space.check_choice((0, skip, 0, 0, 0))


def test_bad_space_values_name_the_field():
    with pytest.raises(SpaceError, match=r"stages\[1\].stride"):
        digits_space(stages=((16, 1, 1), (24, 2, 0)))
    with pytest.raises(SpaceError, match="at least one MBConv"):
        digits_space(candidates=("skip",))


def test_mbconv_layers_are_expand_depthwise_project_with_same_padding():
    space = digits_space()
    block = space.blocks[1]  # 16 -> 24 channels, stride 2
    layers = space.candidate_layers(block, CANDIDATES.index("k5_e6"), size=56)
    assert [layer.name for layer in layers] == ["blocks.1.expand.conv", "blocks.1.depthwise.conv",
                                                "blocks.1.project.conv"]
    expand, depthwise, project = layers
    assert (expand.in_c, expand.out_c, expand.k_h) == (16, 96, 1)
    assert (depthwise.groups, depthwise.k_h, depthwise.stride, depthwise.pad) == (96, 5, 2, 2)
    assert depthwise.out_h == 28
    assert (project.in_h, project.in_c, project.out_c) == (28, 96, 24)


def test_layer_table_holds_every_candidate_layer_and_the_fixed_ones():
    space = digits_space()
    table = space.layer_table(224)
    mbconvs = sum(sum(block.allowed) - block.allowed[-1] for block in space.blocks)
    assert len(table) == 1 + 3 * mbconvs + 2  # stem, 3 convs per MBConv candidate, head and classifier
    assert list(table[table.block < 0].name) == ["stem.conv", "head.conv", "classifier"]
    assert set(LAYER_FIELDS) <= set(table.columns)


@pytest.mark.parametrize("choice", [(0, 1, 6, 3, 6), (5, 4, 2, 1, 0), (6, 0, 6, 0, 6)])
@pytest.mark.parametrize("resolution", [8, 32, 224])
def test_analytic_layers_equal_the_traced_torch_child_network(choice, resolution):
    space = digits_space()
    child = ChildNet(space, choice)
    traced = layers_from_module(child, (1, 1, resolution, resolution))
    analytic = space.network_layers(choice, resolution)
    # shapes and precisions (the tracer reads the quantised modules' w_bits/a_bits)
    assert analytic == traced
    assert [layer.name for layer in analytic] == [layer.name for layer in traced]
    assert all(layer.w_bits == layer.a_bits == 16 for layer in traced)  # the default precision


def test_network_layers_are_the_table_rows_of_the_chosen_candidates():
    space = digits_space()
    table = space.layer_table(64, batch=2)
    choice = (2, 1, 6, 5, 0)
    rows = table[(table.block < 0) | (table.candidate == table.block.map(lambda b: choice[b] if b >= 0 else -1))]
    from_table = [Layer(**{f: int(r[f]) for f in LAYER_FIELDS}, name=r["name"]) for _, r in rows.iterrows()]
    assert from_table == space.network_layers(choice, 64, batch=2)


def test_a_config_without_strides_is_refused_naming_the_key():
    config = {"stem_channels": 8, "stages": [{"channels": 8, "blocks": 1, "stride": 1}], "head_channels": 16,
              "candidates": ["k3_e3", "skip"], "precision": [16], "fixed_bits": 16}
    with pytest.raises(SpaceError, match="stem_stride"):
        NetworkSpace.from_config(config, 1, 10)
    config.update(stem_stride=1, stages=[{"channels": 8, "blocks": 1}])
    with pytest.raises(SpaceError, match=r"stages\[0\]"):
        NetworkSpace.from_config(config, 1, 10)
    config["stages"][0]["stride"] = 2
    assert NetworkSpace.from_config(config, 1, 10).stages == ((8, 1, 2),)
