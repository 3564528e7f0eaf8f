"""SCALE-Sim topology CSVs and .cfg files read into Layers and Accelerators, and back."""

from pathlib import Path

import pytest

from dataset_gen.keys import InputWarning
from dataset_gen.networks import mobilenet_v2, resnet18
from dataset_gen.scalesim_io import (
    load_scalesim_config, load_topology, read_scalesim_config, save_scalesim_config, save_topology,
)
from dataset_gen.space import Accelerator, Layer, SpaceError

FIXTURES = Path(__file__).parents[1] / "fixtures"
EXAMPLES = Path(__file__).parents[2] / "examples"

HEADER = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"


def write(tmp_path, text, name="topology.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_resnet18_topology_fixture_reads_as_unpadded_layers_with_the_zoo_outputs():
    layers = load_topology(FIXTURES / "resnet18_topology.csv")
    zoo = resnet18()
    assert [layer.name for layer in layers] == [layer.name for layer in zoo]
    assert layers[0] == Layer(230, 230, 3, 64, 7, 7, stride=2, pad=0, name="conv1")
    assert all(layer.pad == 0 and layer.batch == 1 and layer.groups == 1 for layer in layers)
    # the file gives the padded input sizes, so outputs and MACs equal the padded network's
    assert [(layer.out_h, layer.out_w, layer.macs) for layer in layers] == [
        (layer.out_h, layer.out_w, layer.macs) for layer in zoo
    ]


def test_scalesim_quirks_blank_lines_tabs_comments_missing_commas_and_dp_marker():
    layers = load_topology(FIXTURES / "depthwise_topology.csv")
    assert [layer.name for layer in layers] == ["Conv1", "Conv2_DP", "Conv3", "FC"]
    depthwise = layers[1]
    # SCALE-Sim runs a "DP" layer as Channels one-channel convolutions
    assert (depthwise.in_c, depthwise.out_c, depthwise.groups) == (32, 32, 32)
    assert depthwise.out_h == 112
    assert layers[2] == Layer(112, 112, 32, 64, name="Conv3")  # no trailing comma, tab-indented
    assert layers[3] == Layer.fully_connected(64, 10)  # a 9th field: the equal width stride


def test_a_file_without_header_is_read_from_its_first_line(tmp_path):
    path = write(tmp_path, "c1,8,8,3,3,4,8,1,\n")
    assert load_topology(path) == [Layer(8, 8, 4, 8, 3, 3, name="c1")]


@pytest.mark.parametrize(
    "row, message",
    [
        ("Conv1, -224, 224, 3, 3, 3, 64, 1,", r"row 2 \(line 3\).*'IFMAP Height' = '-224': expected an integer in \[1, 8192\]"),
        ("Conv1, 224, 224, 3, 3, 3, 64, 0,", r"'Strides' = '0': expected an integer in \[1, 64\]"),
        ("Conv1, 224, 224, 3, 3, three, 64, 1,", r"'Channels' = 'three': expected an integer in \[1, 65536\]"),
        ("Conv1, 224, 224, 3, 3, 3, 64,", r"7 fields, expected 8"),
        ("Conv1, 2, 2, 3, 3, 3, 64, 1,", r"'Filter Height' = 3: expected an integer in \[1, 2\]"),
        ("Conv1, 8, 8, 3, 3, 3, 64, 1, 2,", r"'Stride width' = '2': expected 1"),
        (", 8, 8, 3, 3, 3, 64, 1,", r"'Layer name' is empty"),
    ],
)
def test_malformed_rows_name_the_file_row_field_and_range(tmp_path, row, message):
    path = write(tmp_path, HEADER + "ok, 8, 8, 1, 1, 3, 4, 1,\n" + row + "\n")
    with pytest.raises(SpaceError, match=message) as caught:
        load_topology(path)
    assert str(path) in str(caught.value)


def test_missing_and_empty_topologies_are_refused(tmp_path):
    with pytest.raises(SpaceError, match="not found"):
        load_topology(tmp_path / "absent.csv")
    with pytest.raises(SpaceError, match="no layer rows"):
        load_topology(write(tmp_path, HEADER + "\n\n"))


def test_topology_round_trip_pads_into_the_input_and_keeps_depthwise(tmp_path):
    network = mobilenet_v2(input_size=96)
    path = save_topology(tmp_path / "out" / "mobilenet.csv", network)
    text = path.read_text()
    assert text.startswith("Layer name, IFMAP Height,") and text.splitlines()[1].endswith(",")
    back = load_topology(path)
    assert len(back) == len(network)
    for original, read in zip(network, back):
        assert (read.out_h, read.out_w, read.in_c, read.out_c, read.groups, read.macs) == (
            original.out_h, original.out_w, original.in_c, original.out_c, original.groups, original.macs)
        assert read.pad == 0 and read.in_h == original.in_h + 2 * original.pad
    assert back[1].name.endswith("_DP") and back[1].groups == 32
    assert not list(tmp_path.glob("out/.*.tmp"))  # nothing half-written left behind


@pytest.mark.parametrize(
    "layer, message",
    [
        (Layer(8, 8, 4, 8, batch=2, name="b"), "batch = 2"),
        (Layer(8, 8, 4, 8, groups=2, name="g"), "groups = 2 with 2 input channels per group"),
        (Layer(8, 8, 4, 8, name="DPconv"), "marks a depthwise layer"),
    ],
)
def test_layers_scalesim_cannot_express_are_refused_on_writing(tmp_path, layer, message):
    with pytest.raises(SpaceError, match=message):
        save_topology(tmp_path / "t.csv", [layer])
    assert not (tmp_path / "t.csv").exists()


def test_scalesim_config_reads_architecture_presets_and_converts_bandwidth_to_bytes():
    accelerator = load_scalesim_config(FIXTURES / "scalesim_example.cfg")
    assert accelerator == Accelerator(pe_rows=32, pe_cols=32, dataflow="os", ifmap_kb=64, filter_kb=64,
                                      ofmap_kb=32, dram_bw=20.0)  # 10 words/cycle x 2 bytes
    eight_bit = load_scalesim_config(FIXTURES / "scalesim_example.cfg", word_bits=8)
    assert (eight_bit.word_bits, eight_bit.dram_bw) == (8, 10.0)


def test_config_round_trip_keeps_every_accelerator_field(tmp_path):
    accelerator = Accelerator(pe_rows=12, pe_cols=14, dataflow="rs", rf_bytes=512, ifmap_kb=108.5,
                              filter_kb=32, ofmap_kb=16, dram_bw=6.0, word_bits=8, freq_mhz=200)
    path = save_scalesim_config(tmp_path / "eyeriss.cfg", accelerator, run_name="eyeriss")
    assert "ArrayHeight : 12" in path.read_text() and "Bandwidth : 6" in path.read_text()
    assert load_scalesim_config(path) == accelerator


def test_config_keys_are_case_insensitive_v1_names_accepted_and_gaps_take_defaults(tmp_path):
    path = write(tmp_path, "[architecture_presets]\narrayheight = 8\nIfmapSramSz: 128\nDataflow : WS  # comment\n"
                           "Bandwidth : 4, 2\n", "v1.cfg")
    accelerator = load_scalesim_config(path)
    assert accelerator == Accelerator(pe_rows=8, ifmap_kb=128, dataflow="ws", dram_bw=4.0)  # min bank: 2 words


@pytest.mark.parametrize(
    "body, message",
    [
        ("[general]\nrun_name = x\n", r"no \[architecture_presets\] section"),
        ("[architecture_presets]\nDataflow : xs\n", r"Dataflow = 'xs': expected one of \['ws', 'os', 'is', 'rs'\]"),
        ("[architecture_presets]\nArrayHeight : -4\n", r"ArrayHeight = '-4' \(accelerator.pe_rows\): expected an integer in \[1, 4096\]"),
        ("[architecture_presets]\nArrayWidth : 2.5\n", r"ArrayWidth = '2.5' \(accelerator.pe_cols\): expected an integer in \[1, 4096\]"),
        ("[architecture_presets]\nBandwidth : fast\n", r"Bandwidth = 'fast': expected a number"),
        ("[architecture_presets]\nWordBits : 12\n", r"WordBits = '12' \(accelerator.word_bits\): expected one of \[8, 16, 32\]"),
        ("no section header\n", "not a valid .cfg"),
    ],
)
def test_bad_configs_name_the_file_key_and_allowed_values(tmp_path, body, message):
    path = write(tmp_path, body, "bad.cfg")
    with pytest.raises(SpaceError, match=message) as caught:
        load_scalesim_config(path)
    assert str(path) in str(caught.value)


def test_missing_config_is_refused(tmp_path):
    with pytest.raises(SpaceError, match="config file .* not found"):
        load_scalesim_config(tmp_path / "absent.cfg")


def test_shipped_examples_load():
    for topology in EXAMPLES.glob("scalesim/*.csv"):
        assert load_topology(topology)
    configs = list(EXAMPLES.glob("scalesim/*.cfg"))
    assert configs
    for config in configs:
        assert isinstance(load_scalesim_config(config), Accelerator)


@pytest.mark.parametrize(
    "body, message",
    [
        ("[architecture_presets]\nArrayHieght : 8\n", r"unknown key 'ArrayHieght' \(did you mean 'ArrayHeight'\?\)"),
        ("[architecture_presets]\nArrayHeight : 8\nArrayHeight : 16\n", r"line 3: \[architecture_presets\] key 'ArrayHeight' is given twice"),
        ("[architecture_presets]\nIfmapSramSzkB : 8\nIfmapSramSz : 16\n", "both IfmapSramSzkB and IfmapSramSz give accelerator.ifmap_kb"),
    ],
)
def test_unknown_or_repeated_config_keys_are_refused_naming_them(tmp_path, body, message):
    path = write(tmp_path, body, "typo.cfg")
    with pytest.raises(SpaceError, match=message) as caught:
        load_scalesim_config(path)
    assert str(path) in str(caught.value)


def test_lenient_reading_warns_about_unknown_and_repeated_keys_and_goes_on(tmp_path):
    path = write(tmp_path, "[architecture_presets]\nArrayHieght : 8\nArrayWidth : 4\nArrayWidth : 16\n", "typo.cfg")
    with pytest.warns(InputWarning) as warned:
        accelerator = load_scalesim_config(path, lenient=True)
    assert accelerator == Accelerator(pe_cols=16)  # the typo ignored, the last repeated value kept
    messages = [str(warning.message) for warning in warned]
    assert any("'ArrayWidth' is given twice" in message and "the last value is used" in message for message in messages)
    assert any("unknown key 'ArrayHieght'" in message and "(ignored)" in message for message in messages)


def test_read_scalesim_config_returns_only_the_fields_the_file_gives(tmp_path):
    path = write(tmp_path, "[architecture_presets]\nArrayHeight : 8\nBandwidth : 4\n", "partial.cfg")
    assert read_scalesim_config(path) == {"pe_rows": 8, "dram_bw": 8.0}
    assert read_scalesim_config(path, default_word_bits=8) == {"pe_rows": 8, "dram_bw": 4.0}
