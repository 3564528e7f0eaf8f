"""Trace a torch model's Conv2d and Linear layers into `Layer`s.

torch is imported inside `layers_from_module` only: `dataset_gen` (the simulator side) must
import without torch installed.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

from dataset_gen.space import Layer, SpaceError

__all__ = ["layers_from_module"]


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def _conv_layer(name: str, conv: Any, input_shape: Sequence[int]) -> Layer:
    """One Conv2d call as a Layer; refuses what the Layer schema cannot express."""
    if len(input_shape) == 3:  # unbatched input (C, H, W)
        input_shape = (1, *input_shape)
    batch, in_c, in_h, in_w = (int(size) for size in input_shape)
    k_h, k_w = _pair(conv.kernel_size)
    stride_h, stride_w = _pair(conv.stride)
    if _pair(conv.dilation) != (1, 1):
        raise SpaceError(f"module {name!r}: dilation = {conv.dilation}: only dilation 1 is supported")
    if stride_h != stride_w:
        raise SpaceError(f"module {name!r}: stride = {conv.stride}: the layer schema needs equal strides")
    if conv.padding == "valid":
        pad_h = pad_w = 0
    elif conv.padding == "same":
        # torch pads k-1 in total, the odd pixel at the end: symmetric only for odd kernels
        if (k_h - 1) % 2 or (k_w - 1) % 2:
            raise SpaceError(f"module {name!r}: padding='same' with an even kernel {conv.kernel_size} "
                             "is asymmetric; the layer schema needs a symmetric pad")
        pad_h, pad_w = (k_h - 1) // 2, (k_w - 1) // 2
    else:
        pad_h, pad_w = _pair(conv.padding)
    if pad_h != pad_w:
        raise SpaceError(f"module {name!r}: padding = {conv.padding}: the layer schema needs equal pads")
    try:
        return Layer(in_h, in_w, in_c, int(conv.out_channels), k_h, k_w, stride_h, pad_h,
                     int(conv.groups), batch, **_precision(conv), name=name)
    except SpaceError as error:
        raise SpaceError(f"module {name!r}: {error}") from None


def _precision(module: Any) -> dict[str, int]:
    """The precision a quantised module declares (``w_bits``/``a_bits`` attributes, as the
    co-search's quantised layers have); 0 (the word width) for a plain module."""
    return {field: int(getattr(module, field, 0) or 0) for field in ("w_bits", "a_bits")}


def _linear_layer(name: str, linear: Any, input_shape: Sequence[int]) -> Layer:
    """One Linear call as a 1x1 conv on a 1x1 input; leading dimensions form the batch."""
    batch = math.prod(int(size) for size in input_shape[:-1]) if len(input_shape) > 1 else 1
    try:
        return dataclasses.replace(
            Layer.fully_connected(int(linear.in_features), int(linear.out_features), batch=batch, name=name),
            **_precision(linear))
    except SpaceError as error:
        raise SpaceError(f"module {name!r}: {error}") from None


def layers_from_module(module: Any, input_shape: Sequence[int]) -> list[Layer]:
    """Run a model once and record each Conv2d and Linear call as a `Layer`.

    Forward pre-hooks see the real input of every call (and refuse a layer before it
    runs), so the layers carry the shapes the model actually computes on, including a
    module called twice, recorded twice. The model runs in eval mode under
    ``torch.no_grad()`` on zeros, on the device and dtype of its parameters; a model built
    on ``torch.device("meta")`` is traced without any memory or compute. Its training flags
    are restored afterwards.

    Parameters
    ----------
    module : torch.nn.Module
        The model to trace.
    input_shape : sequence of int
        Shape of one input tensor, ``(batch, channels, height, width)`` for a CNN; the
        batch becomes each layer's ``batch``. For a Linear the leading dimensions of its
        input (batch, tokens, ...) multiply into ``batch``.

    Returns
    -------
    list of Layer
        In call order, named after the module (``layer1.0.conv1``); a module called again
        gets ``:2``, ``:3``... appended.

    Raises
    ------
    SpaceError
        For an input shape with a non-positive size, or a layer the schema cannot express
        (dilation, unequal strides or pads, a size outside `LAYER_LIMITS`).
    """
    import torch  # lazily: dataset_gen must import without torch

    if not isinstance(module, torch.nn.Module):
        raise SpaceError(f"module = {type(module).__name__}: expected a torch.nn.Module")
    shape = tuple(input_shape)
    if not shape or any(isinstance(size, bool) or not isinstance(size, int) or size < 1 for size in shape):
        raise SpaceError(f"input_shape = {shape!r}: expected positive integers, e.g. (1, 3, 224, 224)")

    layers: list[Layer] = []
    calls: dict[str, int] = {}

    def record(name: str, kind: str):
        def hook(mod, args):
            calls[name] = calls.get(name, 0) + 1
            label = name if calls[name] == 1 else f"{name}:{calls[name]}"
            build = _conv_layer if kind == "conv" else _linear_layer
            layers.append(build(label, mod, tuple(args[0].shape)))
        return hook

    handles = []
    for name, sub in module.named_modules():
        if isinstance(sub, torch.nn.Conv2d):
            handles.append(sub.register_forward_pre_hook(record(name or "conv", "conv")))
        elif isinstance(sub, torch.nn.Linear):
            handles.append(sub.register_forward_pre_hook(record(name or "linear", "linear")))

    parameter = next(module.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32
    was_training = {sub: sub.training for sub in module.modules()}
    try:
        module.eval()
        with torch.no_grad():
            module(torch.zeros(shape, device=device, dtype=dtype))
    except SpaceError:  # a layer the schema cannot express, raised by the hook
        raise
    except Exception as error:  # a shape the model cannot take: say so with the shape
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise SpaceError(f"input_shape = {shape!r}: the model failed on it: {first_line}") from error
    finally:
        for handle in handles:
            handle.remove()
        for sub, training in was_training.items():
            sub.training = training  # per module: a mixed train/eval state comes back as it was
    return layers
