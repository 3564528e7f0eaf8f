"""A zoo of real networks as lists of conv / fully connected `Layer`s.

Each network is written out as torchvision defines it (ResNet v1.5 with the stride in the
3x3 conv, AlexNet in torchvision's single-tower variant with 64/192/384/256/256 channels,
VGG-16 without batch norm, MobileNet-v2 with width multiplier 1.0). Layer names are the
torchvision module names (``layer1.0.conv1``, ``features.2.conv.1.0``, ``fc``) and layers
come in execution order, so a list here equals what `dataset_gen.torch_layers` traces from
the torch model. Pooling, normalisation, activations and additions carry no MACs on the PE
array and are not layers; they only change the spatial size, which is tracked here.

Any input size works as long as every pooling window still fits (the CIFAR-style 32x32 input
included: the architecture stays the ImageNet one, as ``torchvision.models.resnet18()`` run
on a 32x32 image). Adaptive average pools (AlexNet, VGG, ResNet) fix the classifier's input
whatever the input size, as in torchvision.
"""

from __future__ import annotations

import numbers
from typing import Callable

from dataset_gen.space import Layer, SpaceError

__all__ = ["NETWORKS", "get_network", "resnet18", "resnet50", "mobilenet_v2", "vgg16", "alexnet"]


class _Builder:
    """Tracks the activation shape while a network's layers are appended in order."""

    def __init__(self, network: str, input_size: int, batch: int, in_channels: int = 3) -> None:
        for field, value, high in (("input_size", input_size, 8192), ("batch", batch, 4096)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 1 <= value <= high:
                raise SpaceError(f"{network}: {field} = {value!r}: expected an integer in [1, {high}]")
        self.network = network
        self.batch = int(batch)
        self.size = int(input_size)  # current square activation height = width
        self.channels = in_channels
        self.layers: list[Layer] = []

    def conv(self, name: str, out_c: int, k: int, stride: int = 1, pad: int = 0, groups: int = 1,
             in_size: int | None = None, in_c: int | None = None) -> int:
        """Append a conv reading the current activation (or an explicit one); return its out size."""
        size = self.size if in_size is None else in_size
        channels = self.channels if in_c is None else in_c
        if k > size + 2 * pad:
            raise SpaceError(
                f"{self.network}: layer {name!r} has a {k}x{k} kernel on a {size}x{size} input "
                f"(pad {pad}): the input size is too small for this network"
            )
        layer = Layer(size, size, channels, out_c, k, k, stride, pad, groups, self.batch, name=name)
        self.layers.append(layer)
        return layer.out_h

    def pool(self, name: str, k: int, stride: int, pad: int = 0) -> None:
        """Apply a max/avg pool to the current activation (not a layer: no MACs on the array)."""
        out = (self.size + 2 * pad - k) // stride + 1
        if self.size + 2 * pad < k or out < 1:
            raise SpaceError(
                f"{self.network}: pool {name!r} ({k}x{k}, stride {stride}) does not fit a "
                f"{self.size}x{self.size} activation: the input size is too small for this network"
            )
        self.size = out

    def fc(self, name: str, in_features: int, out_features: int) -> None:
        self.layers.append(Layer.fully_connected(in_features, out_features, batch=self.batch, name=name))
        self.channels = out_features
        self.size = 1


def _check_classes(network: str, num_classes: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or not 1 <= num_classes <= 65536:
        raise SpaceError(f"{network}: num_classes = {num_classes!r}: expected an integer in [1, 65536]")


def _resnet(network: str, block: str, blocks_per_stage: tuple[int, ...], input_size: int,
            batch: int, num_classes: int) -> list[Layer]:
    _check_classes(network, num_classes)
    net = _Builder(network, input_size, batch)
    net.size = net.conv("conv1", 64, 7, stride=2, pad=3)
    net.channels = 64
    net.pool("maxpool", 3, 2, pad=1)
    expansion = 1 if block == "basic" else 4
    for stage, (width, count) in enumerate(zip((64, 128, 256, 512), blocks_per_stage), start=1):
        for index in range(count):
            stride = 2 if stage > 1 and index == 0 else 1
            prefix = f"layer{stage}.{index}"
            in_size, in_c = net.size, net.channels
            out_c = width * expansion
            if block == "basic":
                mid = net.conv(f"{prefix}.conv1", width, 3, stride=stride, pad=1)
                out = net.conv(f"{prefix}.conv2", width, 3, pad=1, in_size=mid, in_c=width)
            else:  # bottleneck, torchvision v1.5: the stride sits on the 3x3 conv
                net.conv(f"{prefix}.conv1", width, 1)
                mid = net.conv(f"{prefix}.conv2", width, 3, stride=stride, pad=1, in_c=width)
                out = net.conv(f"{prefix}.conv3", out_c, 1, in_size=mid, in_c=width)
            if stride != 1 or in_c != out_c:
                # torchvision runs the shortcut after the main branch in forward()
                net.conv(f"{prefix}.downsample.0", out_c, 1, stride=stride, in_size=in_size, in_c=in_c)
            net.size, net.channels = out, out_c
    net.fc("fc", 512 * expansion, num_classes)  # after the adaptive average pool to 1x1
    return net.layers


def resnet18(input_size: int = 224, batch: int = 1, num_classes: int = 1000) -> list[Layer]:
    """ResNet-18 (He et al. 2016) as in ``torchvision.models.resnet18``: 20 convs and the FC.

    Parameters
    ----------
    input_size : int
        Height = width of the input image in pixels (224 for ImageNet, 32 for CIFAR sizes).
    batch : int
        Images per inference; every layer gets this batch.
    num_classes : int
        Outputs of the final fully connected layer.

    Returns
    -------
    list of Layer
        The conv and FC layers in execution order, named as torchvision's modules.
    """
    return _resnet("resnet18", "basic", (2, 2, 2, 2), input_size, batch, num_classes)


def resnet50(input_size: int = 224, batch: int = 1, num_classes: int = 1000) -> list[Layer]:
    """ResNet-50 v1.5 as in ``torchvision.models.resnet50``: 53 convs and the FC.

    Parameters and return value as in `resnet18`.
    """
    return _resnet("resnet50", "bottleneck", (3, 4, 6, 3), input_size, batch, num_classes)


def mobilenet_v2(input_size: int = 224, batch: int = 1, num_classes: int = 1000) -> list[Layer]:
    """MobileNet-v2 (Sandler et al. 2018), width 1.0, as in ``torchvision.models.mobilenet_v2``.

    Depthwise 3x3 convs have ``groups = in_c = out_c``. Parameters and return value as in
    `resnet18`.
    """
    _check_classes("mobilenet_v2", num_classes)
    net = _Builder("mobilenet_v2", input_size, batch)
    net.size = net.conv("features.0.0", 32, 3, stride=2, pad=1)
    net.channels = 32
    # (expansion t, output channels c, repeats n, first stride s), from the paper's Table 2
    settings = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
    feature = 1
    for expansion, out_c, repeats, first_stride in settings:
        for index in range(repeats):
            stride = first_stride if index == 0 else 1
            prefix = f"features.{feature}.conv"
            hidden = net.channels * expansion
            part = 0
            if expansion != 1:
                net.conv(f"{prefix}.0.0", hidden, 1)
                part = 1
            size = net.conv(f"{prefix}.{part}.0", hidden, 3, stride=stride, pad=1, groups=hidden, in_c=hidden)
            net.conv(f"{prefix}.{part + 1}", out_c, 1, in_size=size, in_c=hidden)
            net.size, net.channels = size, out_c
            feature += 1
    net.conv(f"features.{feature}.0", 1280, 1)
    net.fc("classifier.1", 1280, num_classes)  # after the global average pool
    return net.layers


def vgg16(input_size: int = 224, batch: int = 1, num_classes: int = 1000) -> list[Layer]:
    """VGG-16 (Simonyan and Zisserman 2015, configuration D) as ``torchvision.models.vgg16``.

    Parameters and return value as in `resnet18`. The adaptive average pool makes the
    classifier's input 512 x 7 x 7 whatever the input size.
    """
    _check_classes("vgg16", num_classes)
    net = _Builder("vgg16", input_size, batch)
    plan = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
    index = 0  # torchvision's index in `features`: conv, relu (and a pool after each stage)
    for item in plan:
        if item == "M":
            net.pool(f"features.{index}", 2, 2)
            index += 1
        else:
            net.size = net.conv(f"features.{index}", item, 3, pad=1)
            net.channels = item
            index += 2
    net.fc("classifier.0", 512 * 7 * 7, 4096)
    net.fc("classifier.3", 4096, 4096)
    net.fc("classifier.6", 4096, num_classes)
    return net.layers


def alexnet(input_size: int = 224, batch: int = 1, num_classes: int = 1000) -> list[Layer]:
    """AlexNet as ``torchvision.models.alexnet`` (Krizhevsky's single-GPU "one weird trick"
    variant: 64, 192, 384, 256, 256 channels), 5 convs and 3 FC layers.

    Parameters and return value as in `resnet18`. Needs ``input_size >= 63`` for its three
    3x3/2 max pools to fit.
    """
    _check_classes("alexnet", num_classes)
    net = _Builder("alexnet", input_size, batch)
    for index, out_c, k, stride, pad, pool in ((0, 64, 11, 4, 2, True), (3, 192, 5, 1, 2, True),
                                               (6, 384, 3, 1, 1, False), (8, 256, 3, 1, 1, False),
                                               (10, 256, 3, 1, 1, True)):
        net.size = net.conv(f"features.{index}", out_c, k, stride=stride, pad=pad)
        net.channels = out_c
        if pool:
            net.pool(f"features.{index + 2}", 3, 2)
    net.fc("classifier.1", 256 * 6 * 6, 4096)
    net.fc("classifier.4", 4096, 4096)
    net.fc("classifier.6", 4096, num_classes)
    return net.layers


NETWORKS: dict[str, Callable[..., list[Layer]]] = {
    "resnet18": resnet18,
    "resnet50": resnet50,
    "mobilenet_v2": mobilenet_v2,
    "vgg16": vgg16,
    "alexnet": alexnet,
}


def get_network(name: str, input_size: int = 224, batch: int = 1, num_classes: int = 1000) -> list[Layer]:
    """The layers of a zoo network by name.

    Parameters
    ----------
    name : str
        One of `NETWORKS` (``resnet18``, ``resnet50``, ``mobilenet_v2``, ``vgg16``,
        ``alexnet``); case-insensitive, ``-`` accepted for ``_``.
    input_size : int
        Height = width of the input image in pixels.
    batch : int
        Images per inference.
    num_classes : int
        Outputs of the classifier.

    Returns
    -------
    list of Layer
        Conv and FC layers in execution order, named as torchvision's modules.

    Raises
    ------
    SpaceError
        For an unknown name, or an input size too small for the network's pools.
    """
    key = str(name).strip().lower().replace("-", "_")
    if key not in NETWORKS:
        raise SpaceError(f"network = {name!r}: expected one of {sorted(NETWORKS)}")
    return NETWORKS[key](input_size=input_size, batch=batch, num_classes=num_classes)
