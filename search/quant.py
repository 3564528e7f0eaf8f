"""Quantisation-aware training: fake quantisers with a straight-through estimator (STE), and
the quantised conv and linear layers of the supernet and of the derived network.

A layer at ``b`` bits computes its conv (or matmul) on fake-quantised operands: values
rounded to a ``b``-bit uniform grid but kept in float, so that training sees the rounding
error the accelerator will have while gradients flow as if the rounding were the identity
(STE: ``q(x) = x + (round(x) - x).detach()``; Bengio et al. 2013, as in DoReFa/PACT-style QAT).

- **Weights**: symmetric, per output channel, scale ``max|w_c| / (2^(b-1) - 1)`` (the
  largest weight of each filter lands on the grid's end; 2 bits is ternary {-s, 0, s}).
  The scale is computed from the detached weights (no gradient through the max).
- **Activations after a ReLU6** (the inputs of the depthwise and projection convs, and of the
  classifier): unsigned uniform over ``[0, 6]``, ``2^b - 1`` steps of ``6 / (2^b - 1)``;
  values outside are clipped (the clipped STE: zero gradient outside the range).
- **Signed activations** (a block's input: the previous projection's batch norm plus the
  residual; the image at the stem; the last block's output at the head): symmetric over
  ``[-m, m]`` with ``2^(b-1) - 1`` steps each side, ``m`` a running maximum of ``|x|``
  (exponential moving average, momentum `RUNNING_MOMENTUM`, of the per-batch maxima, updated
  in training, frozen in evaluation; initialised by the first batch) held as the buffer
  ``input_max`` of the layer, so that the trained range is saved with the network.

Precisions of `FLOAT_BITS` (16) bits and more are not fake-quantised: a 16-bit grid's error
(2^-15 of the range) is far below float32 training noise, so a 16-bit (or 32-bit) layer
trains exactly as an unquantised one, and the default search (every layer at 16 bits) trains
exactly as before layers carried a precision.

Why STE with fixed ranges rather than a learned step size (LSQ, Esser et al., ICLR 2020):
LSQ learns each layer's step by gradient descent and is usually better at 2-4 bits after
long training, but its steps need their own learning-rate scaling and initialisation, and in a
supernet every (candidate, precision) pair would need its own step, trained only when that
path is sampled. The fixed rules here have no parameter to learn: every precision of a layer
shares its weights and range, any path can be sampled at any step, and the derived network
retrains with the same rules. ReLU6's fixed [0, 6] range is what makes this cheap (the
activations' range is known without calibration); only signed inputs need a running max.

The supernet mixes precisions at the quantiser (EDD-style): a layer with precision weights
``p_j`` over bit widths ``b_j`` computes its conv on ``sum_j p_j q_{b_j}(x)`` and
``sum_j p_j q_{b_j}(w)``, one conv whatever the number of precisions, with a gradient for every
``p_j`` of a non-zero weight.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

__all__ = ["FLOAT_BITS", "RELU6_MAX", "RUNNING_MOMENTUM", "ste_round", "quantize_weight", "quantize_unsigned",
           "quantize_signed", "QuantMixin", "QuantConv2d", "QuantLinear", "quant_layers"]

FLOAT_BITS = 16  # precisions at or above this train unquantised (their error is below float noise)
RELU6_MAX = 6.0  # the range of the unsigned activations (ReLU6 outputs)
RUNNING_MOMENTUM = 0.1  # of the running max of a signed input's |x|


def _check_bits(bits: int) -> int:
    if isinstance(bits, bool) or int(bits) != bits or not 2 <= int(bits) <= 32:
        raise ValueError(f"bits = {bits!r}: expected an integer in [2, 32]")
    return int(bits)


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """``round(x)`` forward, identity backward (the straight-through estimator)."""
    return x + (torch.round(x) - x).detach()


def quantize_weight(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric per-output-channel fake quantisation of a weight tensor.

    Parameters
    ----------
    weight : torch.Tensor
        ``(out_channels, ...)`` (conv: ``(out, in/groups, k_h, k_w)``; linear: ``(out, in)``).
    bits : int
        2..32; at `FLOAT_BITS` or more the weight is returned unchanged.

    Returns
    -------
    torch.Tensor
        Same shape: each output channel on its grid ``s_c * {-(2^(b-1)-1), ..., 2^(b-1)-1}``,
        ``s_c = max|w_c| / (2^(b-1) - 1)``; the gradient is the identity's (STE).
    """
    bits = _check_bits(bits)
    if bits >= FLOAT_BITS:
        return weight
    levels = 2 ** (bits - 1) - 1
    dims = tuple(range(1, weight.dim()))
    peak = weight.detach().abs().amax(dim=dims, keepdim=True) if dims else weight.detach().abs()
    scale = torch.clamp(peak, min=1e-12) / levels  # (out, 1, ...) zero filters stay zero
    return ste_round(weight / scale) * scale


def quantize_unsigned(x: torch.Tensor, bits: int, high: float = RELU6_MAX) -> torch.Tensor:
    """Unsigned uniform fake quantisation over ``[0, high]`` (``2^b - 1`` steps); values outside
    are clipped (zero gradient there: the clipped STE). Unchanged at `FLOAT_BITS` or more."""
    bits = _check_bits(bits)
    if bits >= FLOAT_BITS:
        return x
    step = high / (2 ** bits - 1)
    return ste_round(torch.clamp(x, 0.0, high) / step) * step


def quantize_signed(x: torch.Tensor, bits: int, peak: torch.Tensor | float) -> torch.Tensor:
    """Symmetric fake quantisation over ``[-peak, peak]`` (``2^(b-1) - 1`` steps each side),
    clipped outside (clipped STE). Unchanged at `FLOAT_BITS` or more."""
    bits = _check_bits(bits)
    if bits >= FLOAT_BITS:
        return x
    peak = torch.clamp(torch.as_tensor(peak, dtype=x.dtype, device=x.device), min=1e-8)
    step = peak / (2 ** (bits - 1) - 1)
    return ste_round(torch.maximum(torch.minimum(x, peak), -peak) / step) * step


class QuantMixin:
    """Fake quantisation of a layer's input and weight at a fixed precision (``bits``) or, for
    one forward of the supernet, at a mixture of precisions (`set_mixture`)."""

    bits: int
    signed_input: bool
    mixture: tuple[tuple[int, ...], torch.Tensor] | None

    def _init_quant(self, bits: int, signed_input: bool) -> None:
        self.bits = _check_bits(bits)
        self.signed_input = bool(signed_input)
        self.mixture = None
        # running max of |input| for signed inputs (0: not seen any batch yet)
        self.register_buffer("input_max", torch.zeros(()))

    @property
    def w_bits(self) -> int:
        """The fixed precision of the weights (as a `dataset_gen.space.Layer` field)."""
        return self.bits

    @property
    def a_bits(self) -> int:
        """The fixed precision of the activations."""
        return self.bits

    def set_mixture(self, values: Sequence[int] | None, weights: torch.Tensor | None = None) -> None:
        """Use precision weights ``weights`` ``(n,)`` over bit widths ``values`` in the next
        forwards (None: back to the fixed ``bits``). Zero weights are not computed."""
        self.mixture = None if values is None else (tuple(int(v) for v in values), weights)

    def _quantise_input(self, x: torch.Tensor, bits: int) -> torch.Tensor:
        if bits >= FLOAT_BITS:
            return x
        if not self.signed_input:
            return quantize_unsigned(x, bits)
        return quantize_signed(x, bits, self.input_max)

    def _update_range(self, x: torch.Tensor, active: Sequence[int]) -> None:
        if not self.signed_input or all(b >= FLOAT_BITS for b in active):
            return
        if self.training:
            with torch.no_grad():
                peak = x.detach().abs().max()
                if float(self.input_max) == 0.0:
                    self.input_max.copy_(peak)
                else:
                    self.input_max.mul_(1 - RUNNING_MOMENTUM).add_(RUNNING_MOMENTUM * peak)
        elif float(self.input_max) == 0.0:  # evaluated before any training batch: this batch's range
            self.input_max.copy_(x.detach().abs().max())

    def quantised_operands(self, x: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The (mixed) fake-quantised input and weight of one forward."""
        if self.mixture is None:
            self._update_range(x, (self.bits,))
            return self._quantise_input(x, self.bits), quantize_weight(weight, self.bits)
        values, weights = self.mixture
        active = [j for j, w in enumerate(weights.detach().tolist()) if w != 0]
        self._update_range(x, [values[j] for j in active])
        if len(active) == 1 and float(weights.detach()[active[0]]) == 1.0 and (
                not weights.requires_grad or len(values) == 1):
            # a one-hot choice (a single precision's weight has no gradient either): no mixing
            bits = values[active[0]]
            return self._quantise_input(x, bits), quantize_weight(weight, bits)
        x_mix = sum(weights[j] * self._quantise_input(x, values[j]) for j in active)
        w_mix = sum(weights[j] * quantize_weight(weight, values[j]) for j in active)
        return x_mix, w_mix


class QuantConv2d(QuantMixin, nn.Conv2d):
    """`torch.nn.Conv2d` on fake-quantised input and weight (``bits``: 2..32; 16 and more: float).

    ``signed_input`` False: the input is a ReLU6 output, quantised over [0, 6]; True: over a
    running ``[-max|x|, max|x|]``.
    """

    def __init__(self, *args, bits: int = 32, signed_input: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_quant(bits, signed_input)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xq, wq = self.quantised_operands(x, self.weight)
        return self._conv_forward(xq, wq, self.bias)


class QuantLinear(QuantMixin, nn.Linear):
    """`torch.nn.Linear` on fake-quantised input and weight (see `QuantConv2d`)."""

    def __init__(self, *args, bits: int = 32, signed_input: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._init_quant(bits, signed_input)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xq, wq = self.quantised_operands(x, self.weight)
        return nn.functional.linear(xq, wq, self.bias)


def quant_layers(module: nn.Module) -> list[QuantMixin]:
    """Every quantised layer inside ``module`` (itself included), in registration order."""
    return [m for m in module.modules() if isinstance(m, QuantMixin)]
