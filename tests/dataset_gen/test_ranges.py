"""The space-ranges schema: what a space config may say, and the errors for what it may not."""

import copy
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from dataset_gen.ranges import PAD_SAME, parse_space
from dataset_gen.space import SpaceError, space_hash

CONF = Path(__file__).resolve().parents[2] / "conf"

SMALL = yaml.safe_load((CONF / "space" / "small.yaml").read_text())
DANCE = yaml.safe_load((CONF / "space" / "dance.yaml").read_text())


def with_field(part, field, spec, base=SMALL):
    config = copy.deepcopy(base)
    config[part][field] = spec
    return config


def test_every_shipped_space_parses_and_varies_the_fields_it_names():
    for path in sorted((CONF / "space").glob("*.yaml")):
        space = parse_space(yaml.safe_load(path.read_text()))
        assert space.accelerator_dims, path.name
    dance = parse_space(DANCE)
    assert dance.accelerator_dims == ("pe_rows", "pe_cols", "dataflow", "rf_bytes", "ifmap_kb", "filter_kb",
                                      "ofmap_kb", "pe_kind")


def test_dance_space_matches_dance_accelerator_choices():
    space = parse_space(DANCE)
    unit = np.linspace(0, 1, 1001, endpoint=False)
    assert set(space.accelerator["pe_rows"].from_unit(unit)) == set(range(8, 25))
    assert set(space.accelerator["rf_bytes"].from_unit(unit)) == {4, 8, 16, 32, 64}
    assert set(space.accelerator["dataflow"].from_unit(unit)) == {"ws", "os", "rs"}
    assert set(space.accelerator["ifmap_kb"].from_unit(unit)) == {8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0}


def test_a_list_and_a_choices_mapping_mean_the_same_space_and_hash():
    listed = parse_space(with_field("accelerator", "dataflow", ["ws", "os"]))
    spelled = parse_space(with_field("accelerator", "dataflow", {"choices": ["ws", "os"]}))
    assert listed.to_dict() == spelled.to_dict()
    assert listed.hash == spelled.hash == space_hash(listed.to_dict())


def test_the_name_does_not_change_the_hash_but_a_range_does():
    renamed = copy.deepcopy(SMALL)
    renamed["name"] = "other"
    assert parse_space(renamed).hash == parse_space(SMALL).hash
    wider = with_field("accelerator", "pe_rows", {"min": 2, "max": 9})
    assert parse_space(wider).hash != parse_space(SMALL).hash


def test_the_canonical_form_parses_back_to_the_same_space():
    space = parse_space(DANCE)
    assert parse_space(space.to_dict()).to_dict() == space.to_dict()


@pytest.mark.parametrize("part,field,spec,message", [
    ("accelerator", "pe_rows", {"min": 32, "max": 16}, "space.accelerator.pe_rows: min = 32 > max = 16"),
    ("accelerator", "dataflow", [], "space.accelerator.dataflow: the choice list is empty"),
    ("accelerator", "dataflow", ["ws", "xs"], "space.accelerator.dataflow[1] = 'xs': unknown dataflow"),
    ("accelerator", "word_bits", [12], "space.accelerator.word_bits[0] = 12: unknown word_bits"),
    ("accelerator", "pe_rows", {"min": 0, "max": 8}, "space.accelerator.pe_rows.min = 0: outside the allowed range [1, 4096]"),
    ("accelerator", "pe_rows", {"min": 2.5, "max": 8}, "space.accelerator.pe_rows.min = 2.5: expected an integer"),
    ("accelerator", "ifmap_kb", {"min": 3, "max": 3, "pow2": True}, "holds no power of two"),
    ("accelerator", "pe_rows", {"min": 2, "max": 8, "lgo": True}, "space.accelerator.pe_rows.lgo: unknown key"),
    ("accelerator", "pe_rows", {"min": 2}, "space.accelerator.pe_rows.max: missing"),
    ("accelerator", "pe_rows", {"min": 2, "max": 8, "log": "yes"}, "space.accelerator.pe_rows.log = 'yes': expected true or false"),
    ("accelerator", "dataflow", {"min": 1, "max": 2}, "space.accelerator.dataflow: dataflow is categorical"),
    ("accelerator", "rf_bytes", {"choices": [16], "min": 1}, "give either choices or min/max"),
    ("layer", "in_c", {"min": 8, "max": 4}, "space.layer.in_c: min = 8 > max = 4"),
    ("layer", "k_h", [1, 3, 3], "a choice is listed twice"),
    ("layer", "in_w", {"same_as": "in_c"}, "space.layer.in_w.same_as = 'in_c': in_w allows only same_as: in_h"),
    ("layer", "pad", ["valid"], "space.layer.pad[0] = 'valid': expected an integer"),
    ("layer", "kinds", {"conv": 1, "attention": 1}, "space.layer.kinds.attention: unknown layer kind"),
    ("layer", "kinds", {"conv": 0}, "space.layer.kinds: the weights sum to 0"),
    ("layer", "groups", [1], "space.layer.groups: grouped layers have weight"),
])
def test_bad_ranges_fail_with_a_message_naming_the_key(part, field, spec, message):
    with pytest.raises(SpaceError, match=re.escape(message)):
        parse_space(with_field(part, field, spec))


def test_missing_and_unknown_fields_are_named():
    config = copy.deepcopy(SMALL)
    del config["accelerator"]["dram_bw"]
    with pytest.raises(SpaceError, match=r"space.accelerator: missing field\(s\) \['dram_bw'\]"):
        parse_space(config)
    with pytest.raises(SpaceError, match="space.accelerator.dram_gb: unknown field"):
        parse_space(with_field("accelerator", "dram_gb", 4))
    no_kinds = copy.deepcopy(SMALL)
    del no_kinds["layer"]["kinds"]
    with pytest.raises(SpaceError, match="space.layer.kinds: missing"):
        parse_space(no_kinds)
    with pytest.raises(SpaceError, match="space.layers: unknown key"):
        parse_space({**SMALL, "layers": {}})


def test_pow2_ranges_draw_every_power_of_two_equally_often():
    space = parse_space(with_field("accelerator", "ifmap_kb", {"min": 1, "max": 100, "pow2": True}))
    values = space.accelerator["ifmap_kb"].from_unit(np.random.default_rng(0).random(70_000))
    powers, counts = np.unique(values, return_counts=True)
    assert powers.tolist() == [1, 2, 4, 8, 16, 32, 64]
    assert counts.min() > 0.9 * 10_000 and counts.max() < 1.1 * 10_000


def test_log_ranges_put_as_many_values_in_each_decade():
    space = parse_space(with_field("layer", "in_c", {"min": 1, "max": 9999, "log": True}))
    values = space.layer["in_c"].from_unit(np.random.default_rng(1).random(80_000))
    assert values.min() >= 1 and values.max() <= 9999
    decades = np.bincount(np.floor(np.log10(values)).astype(int))
    assert decades.size == 4 and decades.min() > 0.9 * 20_000 and decades.max() < 1.1 * 20_000


def test_integer_ranges_reach_both_ends_and_floats_stay_inside():
    space = parse_space(SMALL)
    unit = np.array([0.0, 0.5, 1.0 - 1e-12, 1.0])
    assert space.accelerator["pe_rows"].from_unit(unit).tolist() == [2, 5, 8, 8]
    dram = space.accelerator["dram_bw"].from_unit(unit)
    assert dram[0] == pytest.approx(4.0) and dram[-1] <= 32.0 and dram.dtype == np.float64


def test_a_fixed_value_is_a_one_choice_field_without_a_sampling_dimension():
    space = parse_space(DANCE)
    assert space.accelerator["word_bits"].is_fixed
    assert "word_bits" not in space.accelerator_dims
    assert space.accelerator["word_bits"].from_unit(np.zeros(3)).tolist() == [16, 16, 16]


def test_pad_same_travels_as_a_marker_until_the_kernel_is_known():
    space = parse_space(SMALL)
    values = space.layer["pad"].from_unit(np.array([0.0, 0.99]))
    assert values.tolist() == [0, PAD_SAME]
