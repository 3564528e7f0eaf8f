"""The network zoo has the published shapes and MAC counts of torchvision's models."""

import pytest

from dataset_gen.networks import NETWORKS, get_network, mobilenet_v2, resnet18, resnet50
from dataset_gen.space import Layer, SpaceError


def by_name(layers):
    return {layer.name: layer for layer in layers}


@pytest.mark.parametrize(
    "name, layer_count, giga_macs",
    [
        # MACs as torchvision's model cards state them (GFLOPS there = multiply-accumulates)
        ("resnet18", 21, 1.814),
        ("resnet50", 54, 4.089),
        ("mobilenet_v2", 53, 0.301),
        ("vgg16", 16, 15.470),
        ("alexnet", 8, 0.714),
    ],
)
def test_zoo_networks_match_published_layer_counts_and_macs(name, layer_count, giga_macs):
    layers = get_network(name)
    assert len(layers) == layer_count
    assert sum(layer.macs for layer in layers) / 1e9 == pytest.approx(giga_macs, abs=5e-4)
    assert all(isinstance(layer, Layer) and layer.name for layer in layers)
    assert len({layer.name for layer in layers}) == layer_count


def test_resnet18_stem_blocks_downsamples_and_classifier_at_224():
    layers = by_name(resnet18())
    conv1 = layers["conv1"]
    assert (conv1.in_h, conv1.in_c, conv1.out_c, conv1.k_h, conv1.stride, conv1.pad) == (224, 3, 64, 7, 2, 3)
    assert conv1.out_h == conv1.out_w == 112
    # the 3x3/2 max pool takes 112 to 56
    assert layers["layer1.0.conv1"].in_h == 56
    assert layers["layer2.0.conv1"].stride == 2 and layers["layer2.0.conv1"].out_h == 28
    for stage, (in_c, out_c, in_size) in {2: (64, 128, 56), 3: (128, 256, 28), 4: (256, 512, 14)}.items():
        shortcut = layers[f"layer{stage}.0.downsample.0"]
        assert (shortcut.k_h, shortcut.k_w, shortcut.stride, shortcut.pad) == (1, 1, 2, 0)
        assert (shortcut.in_c, shortcut.out_c, shortcut.in_h) == (in_c, out_c, in_size)
        assert shortcut.out_h == layers[f"layer{stage}.0.conv2"].out_h
    assert "layer1.0.downsample.0" not in layers  # stage 1 keeps 64 channels and stride 1
    assert layers["layer4.1.conv2"].out_h == 7
    fc = layers["fc"]
    assert (fc.in_h, fc.in_w, fc.in_c, fc.out_c, fc.k_h, fc.k_w) == (1, 1, 512, 1000, 1, 1)


def test_resnet_layers_come_in_torchvision_execution_order():
    names = [layer.name for layer in resnet18()]
    assert names[:6] == ["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1",
                         "layer1.1.conv2", "layer2.0.conv1"]
    assert names.index("layer2.0.downsample.0") == names.index("layer2.0.conv2") + 1
    assert names[-1] == "fc"


def test_resnet50_bottleneck_puts_the_stride_on_the_3x3_conv():
    layers = by_name(resnet50())
    assert layers["layer2.0.conv1"].stride == 1 and layers["layer2.0.conv1"].k_h == 1
    assert layers["layer2.0.conv2"].stride == 2 and layers["layer2.0.conv2"].k_h == 3
    assert layers["layer2.0.conv3"].out_c == 512
    # stage 1 needs a projection too: 64 -> 256 channels at stride 1
    assert layers["layer1.0.downsample.0"].stride == 1 and layers["layer1.0.downsample.0"].out_c == 256
    assert layers["fc"].in_c == 2048


def test_mobilenet_v2_depthwise_layers_have_groups_equal_to_channels():
    layers = mobilenet_v2()
    depthwise = [layer for layer in layers if layer.groups > 1]
    assert len(depthwise) == 17  # one per inverted residual block
    for layer in depthwise:
        assert layer.groups == layer.in_c == layer.out_c
        assert (layer.k_h, layer.k_w, layer.pad) == (3, 3, 1)
    named = by_name(layers)
    assert named["features.1.conv.0.0"].groups == 32  # t = 1: no expansion conv
    assert named["features.2.conv.0.0"].out_c == 96 and named["features.2.conv.0.0"].k_h == 1
    assert named["features.2.conv.1.0"].stride == 2 and named["features.2.conv.1.0"].out_h == 56
    assert named["features.18.0"].out_c == 1280 and named["features.18.0"].in_h == 7
    assert named["classifier.1"].in_c == 1280


def test_vgg16_and_alexnet_classifiers_follow_the_adaptive_pool():
    vgg = by_name(get_network("vgg16"))
    assert vgg["classifier.0"].in_c == 512 * 7 * 7
    assert vgg["features.28"].in_h == 14
    alexnet = by_name(get_network("alexnet"))
    assert alexnet["features.0"].out_h == 55
    assert alexnet["features.3"].in_h == 27 and alexnet["features.3"].out_c == 192
    assert alexnet["classifier.1"].in_c == 256 * 6 * 6


def test_cifar_input_size_and_batch_and_classes_propagate():
    layers = get_network("resnet18", input_size=32, batch=8, num_classes=10)
    assert layers[0].in_h == 32 and layers[0].out_h == 16
    assert layers[1].in_h == 8  # after the max pool
    assert by_name(layers)["layer4.1.conv2"].in_h == 1
    assert all(layer.batch == 8 for layer in layers)
    assert layers[-1].out_c == 10
    assert get_network("vgg16", input_size=32)[-3].in_c == 512 * 7 * 7


def test_names_are_case_and_dash_insensitive():
    assert get_network("MobileNet-V2") == mobilenet_v2()
    assert set(NETWORKS) == {"resnet18", "resnet50", "mobilenet_v2", "vgg16", "alexnet"}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "resnet19"}, "expected one of"),
        ({"name": "resnet18", "input_size": 0}, r"input_size = 0: expected an integer in \[1, 8192\]"),
        ({"name": "resnet18", "batch": -1}, r"batch = -1: expected an integer in \[1, 4096\]"),
        ({"name": "alexnet", "input_size": 62}, "too small"),
        ({"name": "vgg16", "num_classes": 0}, r"num_classes = 0: expected an integer in \[1, 65536\]"),
    ],
)
def test_bad_arguments_raise_space_error_naming_the_field(kwargs, message):
    with pytest.raises(SpaceError, match=message):
        get_network(**kwargs)


def test_alexnet_smallest_input_is_63():
    assert get_network("alexnet", input_size=63)[4].in_h == 3
