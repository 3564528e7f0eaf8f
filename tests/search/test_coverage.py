"""Coverage: the search's space against the evaluator's training space."""

from search.coverage import coverage_report, describe
from search.export import generation_space
from search.hardware import AcceleratorSpace
from search.network_space import NetworkSpace

CHOICES = {"pe_rows": [8, 16], "pe_cols": [8, 16], "dataflow": ["ws", "rs"], "rf_bytes": [16, 64],
           "ifmap_kb": [64], "filter_kb": [64], "ofmap_kb": [64], "dram_bw": [16], "word_bits": [16],
           "freq_mhz": [500], "pe_kind": ["fixed"]}
SPACE = NetworkSpace(1, 10, 8, ((8, 1, 1), (16, 1, 2)), 32, ("k3_e3", "k5_e6", "skip"))


def test_an_exported_space_covers_its_own_search():
    hw = AcceleratorSpace.from_config(CHOICES)
    table = SPACE.layer_table(224)
    report = coverage_report({"space": generation_space(hw, table)}, hw, table)
    assert report == {"known": True, "accelerator": {}, "layers": {}}
    assert describe(report) is None


def test_choices_and_layers_outside_the_training_space_are_listed():
    trained_on = AcceleratorSpace.from_config(CHOICES)
    table = SPACE.layer_table(32)
    wider = AcceleratorSpace.from_config({**CHOICES, "pe_rows": [8, 32], "dataflow": ["ws", "is"]})
    report = coverage_report({"space": generation_space(trained_on, table)}, wider, SPACE.layer_table(224))
    assert report["accelerator"] == {"pe_rows": [32], "dataflow": ["is"]}
    assert 224 in report["layers"]["in_h"]
    assert "hw.choices.pe_rows [32]" in describe(report)


def test_an_artifact_without_a_recorded_space_is_reported_unchecked():
    hw = AcceleratorSpace.from_config(CHOICES)
    assert coverage_report({}, hw, SPACE.layer_table(8))["known"] is False
