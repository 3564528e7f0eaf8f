"""The network JSON format (also the co-search's result.json) loads, saves and validates."""

import json
from pathlib import Path

import pytest

from dataset_gen.network_json import load_network, network_from_dict, network_to_dict, save_network
from dataset_gen.networks import mobilenet_v2
from dataset_gen.keys import InputWarning
from dataset_gen.space import LAYER_DEFAULTS, Accelerator, Layer, SpaceError

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_round_trip_keeps_layers_names_accelerator_and_extra_keys(tmp_path):
    layers = mobilenet_v2(input_size=64, batch=2)
    accelerator = Accelerator(pe_rows=8, pe_cols=32, dataflow="rs", ofmap_kb=12.5)
    extra = {"accuracy": 0.91, "predicted": {"latency_s": 1e-3}}
    path = save_network(tmp_path / "result.json", layers, accelerator, extra)
    design = load_network(path)
    assert list(design.layers) == layers
    assert [layer.name for layer in design.layers] == [layer.name for layer in layers]
    assert design.accelerator == accelerator
    assert design.extra == extra
    document = json.loads(path.read_text())
    assert set(document) == {"network", "accelerator", "accuracy", "predicted"}
    assert document["network"][1]["groups"] == 32


def test_optional_layer_fields_and_accelerator_take_defaults_and_say_which():
    design = network_from_dict({"network": [{"in_h": 7, "in_w": 7, "in_c": 8, "out_c": 4, "macs": 1568}]})
    assert design.layers == (Layer(7, 7, 8, 4),)  # "macs" is a derived figure: checked, not used
    assert design.accelerator is None
    # a layer without a precision runs at the word width, as before layers had one: no note
    assert design.layers_defaulted == {field: 1 for field in LAYER_DEFAULTS if field not in ("w_bits", "a_bits")}
    partial = network_from_dict({"network": [{"in_h": 1, "in_w": 1, "in_c": 2, "out_c": 2}],
                                 "accelerator": {"dataflow": "os"}})
    assert partial.accelerator == Accelerator(dataflow="os")
    assert partial.accelerator_given == ("dataflow",)


def test_the_one_layer_defaults_table_is_what_layers_take():
    assert Layer(8, 8, 4, 4).to_dict() == {"in_h": 8, "in_w": 8, "in_c": 4, "out_c": 4, **LAYER_DEFAULTS}


@pytest.mark.parametrize(
    "document, message",
    [
        ([], "top level is a list"),
        ({"accelerator": {}}, "'network' must be a non-empty list"),
        ({"network": [3]}, r"network\[0\] is a int"),
        ({"network": [{"in_h": 8, "in_w": 8, "in_c": 4}]}, r"network\[0\]: missing field\(s\) \['out_c'\]"),
        ({"network": [{"in_h": 8, "in_w": 8, "in_c": 4, "out_c": 4}, {"in_h": -1, "in_w": 8, "in_c": 4, "out_c": 4}]},
         r"layer.in_h = -1: expected an integer in \[1, 8192\] in src: network\[1\]"),
        ({"network": [{"in_h": 8, "in_w": 8, "in_c": 4, "out_c": 4, "stride": 1.5}]}, r"layer.stride = 1.5: expected an integer"),
        ({"network": [{"in_h": 2, "in_w": 2, "in_c": 4, "out_c": 4, "k_h": 5}]}, r"k_h = 5.*at most in_h \+ 2\*pad = 2"),
        ({"network": [{"in_h": 8, "in_w": 8, "in_c": 4, "out_c": 4}], "accelerator": {"dataflow": "xx"}},
         r"dataflow = 'xx': expected one of .* in src: accelerator"),
        ({"network": [{"in_h": 8, "in_w": 8, "in_c": 4, "out_c": 4}], "accelerator": [1]}, "'accelerator' must be an object"),
        ({"network": [{"in_h": 8, "in_w": 8, "in_c": 4, "out_c": 4, "strides": 2}]},
         r"src: network\[0\]: unknown key 'strides' \(did you mean 'stride'\?\)"),
        ({"network": [{"in_h": 8, "in_w": 8, "in_c": 4, "out_c": 4}], "accelerator": {"pe_row": 8}},
         r"src: accelerator: unknown key 'pe_row' \(did you mean 'pe_rows'\?\)"),
        ({"network": [{"in_h": 8, "in_w": 8, "in_c": 4, "out_c": 4}], "accelarator": {"pe_rows": 8}},
         r"src: top-level key 'accelarator' \(did you mean 'accelerator'\?\)"),
        ({"network": [{"in_h": 8, "in_w": 8, "in_c": 4, "out_c": 4, "k_h": 3, "k_w": 3, "out_h": 8}]},
         r"network\[0\]: out_h = 8 but the layer's fields give 6"),
    ],
)
def test_invalid_documents_name_the_source_the_layer_index_and_the_field(document, message):
    with pytest.raises(SpaceError, match=message):
        network_from_dict(document, source="src")


def test_files_missing_or_not_json_are_refused_with_position(tmp_path):
    with pytest.raises(SpaceError, match="not found"):
        load_network(tmp_path / "absent.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"network": [\n  {"in_h": 1,,}\n]}')
    with pytest.raises(SpaceError, match="not valid JSON: .* at line 2"):
        load_network(broken)


def test_extra_keys_may_not_shadow_the_format_or_be_unserialisable(tmp_path):
    with pytest.raises(SpaceError, match="reserved"):
        network_to_dict([Layer(1, 1, 1, 1)], extra={"network": []})
    with pytest.raises(SpaceError, match="not JSON-serialisable"):
        save_network(tmp_path / "x.json", [Layer(1, 1, 1, 1)], extra={"bad": object()})
    assert not list(tmp_path.iterdir())


def test_shipped_network_example_loads():
    design = load_network(EXAMPLES / "networks" / "resnet18_cifar.json")
    assert len(design.layers) == 21 and design.accelerator is not None


def test_a_key_repeated_in_a_file_is_refused_and_lenient_mode_warns_instead(tmp_path):
    path = tmp_path / "net.json"
    path.write_text('{"network": [{"in_h": 8, "in_w": 8, "in_c": 4, "out_c": 4, "pad": 1, "pad": 0, "pe_row": 1}]}')
    with pytest.raises(SpaceError, match="net.json: key 'pad' appears twice in one object"):
        load_network(path)
    with pytest.warns(InputWarning) as warned:
        design = load_network(path, lenient=True)
    assert design.layers == (Layer(8, 8, 4, 4, pad=0),)  # the last value, as JSON readers do
    assert any("unknown key 'pe_row'" in str(warning.message) for warning in warned)
