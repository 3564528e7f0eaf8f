"""Tracing torch models gives the layers they compute, and the zoo equals the traced models."""

import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from dataset_gen.networks import alexnet, mobilenet_v2, resnet18, resnet50, vgg16  # noqa: E402
from dataset_gen.space import Layer, SpaceError  # noqa: E402
from dataset_gen.torch_layers import layers_from_module  # noqa: E402


class TinyNet(nn.Module):
    """A stem conv, a depthwise conv, a pointwise conv, a pool and a classifier."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.block = nn.Sequential(
            nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),  # depthwise
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 16, 1),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = self.block(self.stem(x))
        return self.head(torch.flatten(self.pool(x), 1))


def test_tiny_cnn_traces_to_its_conv_depthwise_and_linear_layers():
    layers = layers_from_module(TinyNet(), (4, 3, 32, 32))
    assert layers == [
        Layer(32, 32, 3, 8, 3, 3, stride=2, pad=1, batch=4),
        Layer(16, 16, 8, 8, 3, 3, stride=1, pad=1, groups=8, batch=4),
        Layer(16, 16, 8, 16, 1, 1, batch=4),
        Layer(1, 1, 16, 10, batch=4),
    ]
    assert [layer.name for layer in layers] == ["stem", "block.0", "block.3", "head"]


def test_tracing_restores_training_mode_and_leaves_no_hooks():
    model = TinyNet().train()
    model.block[1].eval()  # a mixed state must come back as it was
    layers_from_module(model, (1, 3, 16, 16))
    assert model.training and model.stem.training and not model.block[1].training
    assert all(not module._forward_pre_hooks for module in model.modules())
    # batch norm statistics untouched: the model ran in eval mode
    assert torch.equal(model.block[1].running_mean, torch.zeros(8))


def test_linear_batch_is_the_product_of_leading_dimensions():
    model = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 32))
    layers = layers_from_module(model, (2, 5, 32))  # (batch, tokens, features)
    assert layers == [Layer.fully_connected(32, 64, batch=10), Layer.fully_connected(64, 32, batch=10)]
    assert [layer.name for layer in layers] == ["0", "2"]


def test_a_module_called_twice_is_recorded_twice():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            return self.conv(self.conv(x))

    layers = layers_from_module(Twice(), (1, 4, 8, 8))
    assert [layer.name for layer in layers] == ["conv", "conv:2"]
    assert layers[0] == layers[1]


def test_same_and_valid_padding_strings_and_unbatched_input():
    model = nn.Sequential(nn.Conv2d(2, 4, 5, padding="same"), nn.Conv2d(4, 4, 3, padding="valid"))
    same, valid = layers_from_module(model, (2, 12, 12))  # unbatched (C, H, W) input
    assert (same.pad, same.out_h, same.batch) == (2, 12, 1)
    assert (valid.pad, valid.out_h) == (0, 10)


@pytest.mark.parametrize(
    "conv, message",
    [
        (nn.Conv2d(3, 4, 3, dilation=2), "dilation"),
        (nn.Conv2d(3, 4, 3, stride=(1, 2)), "stride"),
        (nn.Conv2d(3, 4, 3, padding=(1, 0)), "padding"),
        (nn.Conv2d(3, 4, 4, padding="same"), "asymmetric"),
    ],
)
def test_layers_outside_the_schema_are_refused_naming_the_module(conv, message):
    with pytest.raises(SpaceError, match=rf"module '0'.*{message}"):
        layers_from_module(nn.Sequential(conv), (1, 3, 16, 16))


def test_bad_input_shapes_are_refused():
    with pytest.raises(SpaceError, match=r"input_shape = \(1, 0, 8, 8\): expected positive integers"):
        layers_from_module(TinyNet(), (1, 0, 8, 8))
    with pytest.raises(SpaceError, match="the model failed on it"):
        layers_from_module(TinyNet(), (1, 5, 8, 8))  # 5 channels into a 3-channel stem
    with pytest.raises(SpaceError, match="expected a torch.nn.Module"):
        layers_from_module(lambda x: x, (1, 3, 8, 8))


def test_importing_dataset_gen_does_not_import_torch():
    code = ("import sys, dataset_gen.space, dataset_gen.networks, dataset_gen.torch_layers, "
            "dataset_gen.scalesim_io, dataset_gen.network_json, dataset_gen.cli_sim; print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# Hand-built torchvision look-alikes (torchvision is not a dependency). They are built on
# the meta device: tracing propagates shapes only, so even VGG-16 costs nothing.

def conv_bn(in_c, out_c, k, stride=1, groups=1, act=nn.ReLU6):
    return nn.Sequential(nn.Conv2d(in_c, out_c, k, stride, (k - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(out_c), act())


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_c, width, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_c, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = None
        if stride != 1 or in_c != width:
            self.downsample = nn.Sequential(nn.Conv2d(in_c, width, 1, stride, bias=False), nn.BatchNorm2d(width))

    def forward(self, x):
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_c, width, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_c, width, 1, bias=False)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
        self.downsample = None
        if stride != 1 or in_c != width * 4:
            self.downsample = nn.Sequential(nn.Conv2d(in_c, width * 4, 1, stride, bias=False),
                                            nn.BatchNorm2d(width * 4))

    def forward(self, x):
        out = self.conv3(torch.relu(self.conv2(torch.relu(self.conv1(x)))))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    def __init__(self, block, counts, num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_c = 64
        for stage, (width, count) in enumerate(zip((64, 128, 256, 512), counts), start=1):
            blocks = []
            for index in range(count):
                blocks.append(block(in_c, width, 2 if stage > 1 and index == 0 else 1))
                in_c = width * block.expansion
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_c, num_classes)

    def forward(self, x):
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class InvertedResidual(nn.Module):
    def __init__(self, in_c, out_c, stride, expansion):
        super().__init__()
        hidden = in_c * expansion
        layers = [conv_bn(in_c, hidden, 1)] if expansion != 1 else []
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, out_c, 1, bias=False), nn.BatchNorm2d(out_c)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and in_c == out_c

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self):
        super().__init__()
        features = [conv_bn(3, 32, 3, 2)]
        in_c = 32
        for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                           (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)):
            for index in range(n):
                features.append(InvertedResidual(in_c, c, s if index == 0 else 1, t))
                in_c = c
        features.append(conv_bn(in_c, 1280, 1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


def alexnet_model():
    features = nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
    )
    classifier = nn.Sequential(nn.Dropout(), nn.Linear(256 * 36, 4096), nn.ReLU(), nn.Dropout(),
                               nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000))
    return Classifier(features, nn.AdaptiveAvgPool2d(6), classifier)


class Classifier(nn.Module):
    """torchvision's AlexNet / VGG layout: features, adaptive pool, classifier."""

    def __init__(self, features, avgpool, classifier):
        super().__init__()
        self.features, self.avgpool, self.classifier = features, avgpool, classifier

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def vgg16_model():
    features, in_c = [], 3
    for item in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"):
        if item == "M":
            features.append(nn.MaxPool2d(2, 2))
        else:
            features += [nn.Conv2d(in_c, item, 3, padding=1), nn.ReLU()]
            in_c = item
    classifier = nn.Sequential(nn.Linear(512 * 49, 4096), nn.ReLU(), nn.Dropout(),
                               nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, 1000))
    return Classifier(nn.Sequential(*features), nn.AdaptiveAvgPool2d(7), classifier)


@pytest.mark.parametrize(
    "build_model, zoo, input_size",
    [
        (lambda: ResNet(BasicBlock, (2, 2, 2, 2)), resnet18, 224),
        (lambda: ResNet(BasicBlock, (2, 2, 2, 2)), resnet18, 32),
        (lambda: ResNet(Bottleneck, (3, 4, 6, 3)), resnet50, 224),
        (MobileNetV2, mobilenet_v2, 224),
        (MobileNetV2, mobilenet_v2, 96),
        (vgg16_model, vgg16, 224),
        (alexnet_model, alexnet, 224),
    ],
)
def test_zoo_networks_equal_the_traced_torch_models(build_model, zoo, input_size):
    with torch.device("meta"):
        model = build_model()
    traced = layers_from_module(model, (2, 3, input_size, input_size))
    expected = zoo(input_size=input_size, batch=2)
    assert traced == expected
    assert [layer.name for layer in traced] == [layer.name for layer in expected]
