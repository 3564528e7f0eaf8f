"""Feature encoding: what each column holds, the input forms, and the soft encoding."""

import math

import pandas as pd
import pytest
import torch

from dataset_gen.space import ACCELERATOR_FIELDS, DATAFLOWS, LAYER_FIELDS, WORD_BITS, Accelerator, Layer, SpaceError
from evaluator.features import (ACCEL_FEATURES, D_ACC, D_LAYER, FREQ_FEATURE_INDEX, LAYER_FEATURES, PAIR_FEATURES,
                                encode_accelerators, encode_accelerators_soft, encode_layers, pair_features)

CONV = Layer(in_h=32, in_w=32, in_c=16, out_c=64, k_h=3, k_w=3, stride=2, pad=1, batch=2)
DEPTHWISE = Layer(in_h=14, in_w=14, in_c=96, out_c=96, k_h=3, k_w=3, stride=1, pad=1, groups=96)
ACCELERATORS = [
    Accelerator(),
    Accelerator(pe_rows=12, pe_cols=20, dataflow="rs", rf_bytes=16, ifmap_kb=8, filter_kb=256, ofmap_kb=32,
                dram_bw=4.5, word_bits=8, freq_mhz=1000),
    Accelerator(pe_rows=3, pe_cols=7, dataflow="is", word_bits=32, freq_mhz=200),
]


def feature(row, name, names=LAYER_FEATURES):
    return float(row[names.index(name)])


def test_layer_features_are_log2_sizes_and_derived_quantities():
    x = encode_layers([CONV])[0]
    assert x.shape == (D_LAYER,) and x.dtype == torch.float32
    assert feature(x, "log2_in_h") == 5 and feature(x, "log2_out_c") == 6 and feature(x, "log2_pad_plus_1") == 1
    assert feature(x, "log2_out_h") == 4  # (32 + 2 - 3) // 2 + 1 = 16
    assert feature(x, "log2_macs") == pytest.approx(math.log2(CONV.macs))  # 2 * 16*16 * 64 * 16*3*3
    assert feature(x, "log2_window") == pytest.approx(math.log2(3 * 3 * 16))
    assert feature(x, "log2_ifmap_words") == pytest.approx(math.log2(2 * 32 * 32 * 16))
    assert feature(x, "depthwise") == 0


def test_depthwise_layers_are_flagged_with_one_channel_per_group():
    x = encode_layers([DEPTHWISE])[0]
    assert feature(x, "depthwise") == 1
    assert feature(x, "log2_in_c_per_group") == 0 and feature(x, "log2_out_c_per_group") == 0
    assert feature(x, "log2_macs") == pytest.approx(math.log2(DEPTHWISE.macs))


def test_a_dataframe_a_list_and_a_dict_of_tensors_encode_alike():
    layers = [CONV, DEPTHWISE, Layer.fully_connected(512, 10)]
    frame = pd.DataFrame([layer.to_dict() for layer in layers])
    tensors = {field: torch.tensor(frame[field].to_numpy()) for field in LAYER_FIELDS}
    expected = encode_layers(layers)
    assert torch.equal(encode_layers(frame), expected)
    assert torch.equal(encode_layers(tensors), expected)
    # Optional fields may be left out: Layer's defaults fill them.
    minimal = frame[["in_h", "in_w", "in_c", "out_c"]].iloc[[2]]
    assert torch.equal(encode_layers(minimal), expected[[2]])


@pytest.mark.parametrize("field,value", [("in_c", 0), ("k_h", 99), ("batch", -1)])
def test_a_layer_outside_the_limits_is_refused_naming_the_field(field, value):
    frame = pd.DataFrame([CONV.to_dict()]).assign(**{field: value})
    with pytest.raises(SpaceError, match=f"layer.{field}"):
        encode_layers(frame)


def test_a_missing_layer_field_is_refused():
    with pytest.raises(SpaceError, match="in_c"):
        encode_layers(pd.DataFrame({"in_h": [4], "in_w": [4], "out_c": [8]}))


def test_accelerator_features_are_log2_values_then_one_hot_dataflow_and_word_bits():
    x = encode_accelerators(ACCELERATORS[1])[0]
    assert x.shape == (D_ACC,)
    assert feature(x, "log2_pe_rows", ACCEL_FEATURES) == pytest.approx(math.log2(12))
    assert feature(x, "log2_dram_bw", ACCEL_FEATURES) == pytest.approx(math.log2(4.5))
    assert float(x[FREQ_FEATURE_INDEX]) == pytest.approx(math.log2(1000))
    dataflow = x[[ACCEL_FEATURES.index(f"dataflow_{d}") for d in DATAFLOWS]]
    assert dataflow.tolist() == [0, 0, 0, 1]  # rs, in DATAFLOWS order
    bits = x[[ACCEL_FEATURES.index(f"word_bits_{b}") for b in WORD_BITS]]
    assert bits.tolist() == [1, 0, 0]


def test_accelerators_as_objects_dicts_and_frames_encode_alike():
    expected = encode_accelerators(ACCELERATORS)
    frame = pd.DataFrame([a.to_dict() for a in ACCELERATORS])
    assert torch.equal(encode_accelerators(frame), expected)
    assert torch.equal(encode_accelerators([a.to_dict() for a in ACCELERATORS]), expected)
    columns = {field: frame[field].tolist() for field in ACCELERATOR_FIELDS}
    assert torch.equal(encode_accelerators(columns), expected)
    # In a dict of tensors, the dataflow may be an index into DATAFLOWS.
    columns["dataflow"] = torch.tensor([DATAFLOWS.index(d) for d in frame["dataflow"]])
    assert torch.equal(encode_accelerators(columns), expected)


def test_an_unknown_dataflow_or_word_width_is_refused():
    frame = pd.DataFrame([Accelerator().to_dict()])
    with pytest.raises(SpaceError, match="dataflow"):
        encode_accelerators(frame.assign(dataflow="xs"))
    with pytest.raises(SpaceError, match="word_bits"):
        encode_accelerators(frame.assign(word_bits=12))
    with pytest.raises(SpaceError, match="dram_bw"):
        encode_accelerators(frame.assign(dram_bw=0.0))


def _one_hot_choices(chosen: list[Accelerator]):
    """Soft choices over a few candidates per field whose probabilities pick ``chosen``."""
    choices = {}
    for field in ACCELERATOR_FIELDS:
        values = sorted({getattr(a, field) for a in ACCELERATORS}, key=str)
        probs = torch.zeros(len(chosen), len(values))
        for row, accelerator in enumerate(chosen):
            probs[row, values.index(getattr(accelerator, field))] = 1.0
        choices[field] = (values, probs)
    return choices


def test_soft_encoding_with_one_hot_probabilities_equals_the_hard_encoding_exactly():
    chosen = [ACCELERATORS[1], ACCELERATORS[0], ACCELERATORS[2], ACCELERATORS[1]]
    soft = encode_accelerators_soft(_one_hot_choices(chosen))
    assert torch.equal(soft, encode_accelerators(chosen))


def test_soft_encoding_mixes_numeric_fields_in_log_space_and_keeps_category_probabilities():
    choices = _one_hot_choices([Accelerator()])
    choices["pe_rows"] = ([8, 32], torch.tensor([[0.25, 0.75]]))
    choices["dataflow"] = (["os", "rs"], torch.tensor([[0.4, 0.6]]))
    x = encode_accelerators_soft(choices)[0]
    assert feature(x, "log2_pe_rows", ACCEL_FEATURES) == pytest.approx(0.25 * 3 + 0.75 * 5)
    slots = [feature(x, f"dataflow_{d}", ACCEL_FEATURES) for d in DATAFLOWS]
    assert slots == pytest.approx([0.0, 0.4, 0.0, 0.6])


def test_soft_encoding_is_differentiable_with_respect_to_the_probabilities():
    choices = _one_hot_choices([Accelerator()])
    logits = torch.zeros(1, 2, requires_grad=True)
    choices["pe_cols"] = ([4, 64], torch.softmax(logits, dim=1))
    x = encode_accelerators_soft(choices)
    x[0, ACCEL_FEATURES.index("log2_pe_cols")].backward()
    assert logits.grad is not None and logits.grad[0, 1] > 0 > logits.grad[0, 0]


def test_soft_encoding_refuses_missing_fields_and_bad_probabilities():
    choices = _one_hot_choices([Accelerator()])
    with pytest.raises(SpaceError, match="freq_mhz"):
        encode_accelerators_soft({k: v for k, v in choices.items() if k != "freq_mhz"})
    choices["pe_rows"] = ([8, 16], torch.tensor([[0.5, 0.2]]))
    with pytest.raises(SpaceError, match="sum to 1"):
        encode_accelerators_soft(choices)


def test_pair_features_are_finite_and_pass_gradients_to_the_accelerator():
    layer_x = encode_layers([CONV, DEPTHWISE])
    acc_x = encode_accelerators([ACCELERATORS[0], ACCELERATORS[1]]).requires_grad_(True)
    pairs = pair_features(layer_x, acc_x)
    assert pairs.shape == (2, len(PAIR_FEATURES)) and torch.isfinite(pairs).all()
    pairs[:, PAIR_FEATURES.index("log2_est_cycles")].sum().backward()
    assert acc_x.grad[:, ACCEL_FEATURES.index("log2_pe_rows")].abs().sum() > 0
