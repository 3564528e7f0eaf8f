"""The supernet (every candidate in every block, mixed by architecture weights) and the
derived child network (one candidate per block).

Both keep their tensors channels-last: PyTorch's CPU depthwise convolutions (the MBConv
candidates' middle layer) train about twice as fast in that layout.

Module names are chosen so that tracing a `ChildNet` with
`dataset_gen.torch_layers.layers_from_module` yields exactly
`NetworkSpace.network_layers` (``stem.conv``, ``blocks.3.expand.conv``, ``head.conv``,
``classifier``): the network that is trained is the network that is costed.

Every conv and the classifier are quantisation-aware (`search.quant`): a `ChildNet` trains
each layer at its precision (the derived bits; the stem, head and classifier at
``network.fixed_bits``), and the supernet mixes or samples each block's precision with the
block's precision weights (``bits_logits``, next to ``arch_logits``), the same ways as the
candidates. Layers at 16 bits or more train unquantised.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from search.network_space import BlockSpec, NetworkSpace
from search.quant import QuantConv2d, QuantLinear, quant_layers

__all__ = ["ConvBN", "MBConv", "MixedBlock", "Supernet", "ChildNet"]


class ConvBN(nn.Module):
    """Quantised Conv2d ("same" padding, no bias), batch norm and an optional ReLU6.

    ``bits`` is the conv's precision (weights and input); ``signed_input`` False when the
    input is a ReLU6 output (quantised over [0, 6]), True otherwise (a running range).
    """

    def __init__(self, in_c: int, out_c: int, kernel: int, stride: int = 1, groups: int = 1,
                 activation: bool = True, bits: int = 32, signed_input: bool = True) -> None:
        super().__init__()
        self.conv = QuantConv2d(in_c, out_c, kernel, stride, kernel // 2, groups=groups, bias=False, bits=bits,
                                signed_input=signed_input)
        self.bn = nn.BatchNorm2d(out_c)
        self.act = nn.ReLU6(inplace=True) if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class MBConv(nn.Module):
    """MobileNet-v2 inverted residual: 1x1 expand, KxK depthwise (strided), 1x1 project."""

    def __init__(self, in_c: int, out_c: int, stride: int, kernel: int, expansion: int, bits: int = 32) -> None:
        super().__init__()
        hidden = in_c * expansion
        # the block input is signed (the previous projection has no activation, plus the
        # residual); the depthwise and projection inputs are ReLU6 outputs in [0, 6]
        self.expand = ConvBN(in_c, hidden, 1, bits=bits, signed_input=True) if expansion != 1 else nn.Identity()
        self.depthwise = ConvBN(hidden, hidden, kernel, stride, groups=hidden, bits=bits, signed_input=expansion == 1)
        self.project = ConvBN(hidden, out_c, 1, activation=False, bits=bits, signed_input=False)
        self.residual = stride == 1 and in_c == out_c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


def _candidate_module(space: NetworkSpace, block: BlockSpec, index: int, bits: int = 32) -> nn.Module:
    candidate = space.parsed_candidates[index]
    if candidate.is_skip:
        return nn.Identity()
    return MBConv(block.in_c, block.out_c, block.stride, candidate.kernel, candidate.expansion, bits=bits)


class MixedBlock(nn.Module):
    """All candidates of one block; the output is their weighted sum (DARTS / FBNet), each
    candidate's layers quantised at the block's precision mixture."""

    def __init__(self, space: NetworkSpace, block: BlockSpec) -> None:
        super().__init__()
        self.allowed = block.allowed
        self.precision = space.precision
        # Disallowed candidates (skip where the shape changes) hold an Identity never called.
        self.ops = nn.ModuleList(
            _candidate_module(space, block, i, space.precision[0]) if ok else nn.Identity()
            for i, ok in enumerate(block.allowed)
        )
        self._quant = [quant_layers(op) for op in self.ops]  # per candidate (plain list: not registered twice)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, bits_weights: torch.Tensor | None = None) -> torch.Tensor:
        # weights: (n_candidates,), zero on disallowed candidates. A candidate whose weight is
        # exactly zero (not sampled, or disallowed) is not computed at all: with path
        # sampling (ProxylessNAS) a step costs one or two candidates, not all of them.
        # bits_weights: (n_precisions,) over space.precision (None: the first precision); each
        # computed candidate's layers quantise at their mixture (search.quant), one conv each.
        if bits_weights is None:
            bits_weights = torch.nn.functional.one_hot(torch.tensor(0), len(self.precision)).to(x.dtype)
        active = (weights.detach() != 0).tolist()
        out = None
        for i, op in enumerate(self.ops):
            if not (self.allowed[i] and active[i]):
                continue
            for layer in self._quant[i]:
                layer.set_mixture(self.precision, bits_weights)
            term = weights[i] * op(x)
            out = term if out is None else out + term
        return out


class _Head(nn.Module):
    def __init__(self, in_c: int, head_c: int, bits: int = 32) -> None:
        super().__init__()
        self.conv = QuantConv2d(in_c, head_c, 1, bias=False, bits=bits, signed_input=True)
        self.bn = nn.BatchNorm2d(head_c)
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class _Stem(_Head):
    def __init__(self, in_c: int, out_c: int, stride: int, bits: int = 32) -> None:
        nn.Module.__init__(self)
        self.conv = QuantConv2d(in_c, out_c, 3, stride, 1, bias=False, bits=bits, signed_input=True)
        self.bn = nn.BatchNorm2d(out_c)
        self.act = nn.ReLU6(inplace=True)


def _masked_paths(logits: torch.Tensor, mask: torch.Tensor, paths: int) -> torch.Tensor:
    """ProxylessNAS path sampling on ``(rows, n)`` logits: ``paths`` distinct allowed entries per
    row drawn from the softmax over the allowed ones; the weights are the softmax over the
    sampled logits only (zero elsewhere)."""
    with torch.no_grad():
        probs = torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)
        allowed = mask.sum(dim=1)
        picks = [torch.multinomial(p, int(min(paths, n)), replacement=False) for p, n in zip(probs, allowed)]
        sampled = torch.zeros_like(mask)
        for row, pick in enumerate(picks):
            sampled[row, pick] = True
    return torch.softmax(logits.masked_fill(~sampled, float("-inf")), dim=-1)


class Supernet(nn.Module):
    """Weights of every candidate plus one architecture logit per (block, candidate) and one
    precision logit per (block, precision).

    ``arch_logits`` is ``(n_blocks, n_candidates)``; disallowed entries are masked to -inf
    in `arch_probs`, so they get probability 0 and no gradient. ``bits_logits`` is
    ``(n_blocks, n_precisions)`` over ``space.precision`` (a single precision: one column,
    probability 1). The stem, head and classifier run at ``space.fixed_bits``.
    """

    def __init__(self, space: NetworkSpace) -> None:
        super().__init__()
        self.space = space
        self.stem = _Stem(space.in_channels, space.stem_channels, space.stem_stride, bits=space.fixed_bits)
        self.blocks = nn.ModuleList(MixedBlock(space, block) for block in space.blocks)
        self.head = _Head(space.last_channels, space.head_channels, bits=space.fixed_bits)
        self.pool = nn.AdaptiveAvgPool2d(1)
        # its input is the pooled head output (ReLU6): in [0, 6]
        self.classifier = QuantLinear(space.head_channels, space.num_classes, bits=space.fixed_bits,
                                      signed_input=False)
        self.arch_logits = nn.Parameter(torch.zeros(space.num_blocks, space.num_candidates))
        self.bits_logits = nn.Parameter(torch.zeros(space.num_blocks, space.num_precisions))
        mask = torch.tensor([block.allowed for block in space.blocks], dtype=torch.bool)
        self.register_buffer("arch_mask", mask, persistent=False)
        self.to(memory_format=torch.channels_last)

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if name not in ("arch_logits", "bits_logits")]

    def architecture_parameters(self) -> list[nn.Parameter]:
        """The architecture and precision logits (what the architecture step updates)."""
        return [self.arch_logits, self.bits_logits]

    def masked_logits(self) -> torch.Tensor:
        return self.arch_logits.masked_fill(~self.arch_mask, float("-inf"))  # (blocks, cands)

    def arch_probs(self) -> torch.Tensor:
        """Softmax over each block's allowed candidates: ``(n_blocks, n_candidates)``."""
        return torch.softmax(self.masked_logits(), dim=-1)

    def bits_probs(self) -> torch.Tensor:
        """Softmax over each block's precisions: ``(n_blocks, n_precisions)``."""
        return torch.softmax(self.bits_logits, dim=-1)

    def sample_weights(self, tau: float, hard: bool = False) -> torch.Tensor:
        """Gumbel-softmax weights over each block's allowed candidates (FBNet)."""
        return nn.functional.gumbel_softmax(self.masked_logits(), tau=tau, hard=hard, dim=-1)

    def sample_bits_weights(self, tau: float, hard: bool = False) -> torch.Tensor:
        """Gumbel-softmax weights over each block's precisions ``(n_blocks, n_precisions)``
        (one precision: its probability 1, drawing no random numbers)."""
        if self.space.num_precisions == 1:
            return self.bits_probs()
        return nn.functional.gumbel_softmax(self.bits_logits, tau=tau, hard=hard, dim=-1)

    def sample_paths(self, paths: int) -> torch.Tensor:
        """ProxylessNAS path sampling: ``paths`` distinct candidates per block drawn from the
        architecture probabilities; their weights are the softmax over the sampled logits only
        (zero elsewhere), so gradients reach the sampled candidates' logits and a forward pass
        computes only those candidates. ``paths = 1`` gives a one-hot (single-path) sample.
        """
        return _masked_paths(self.arch_logits, self.arch_mask, paths)  # (blocks, cands)

    def sample_bits_paths(self, paths: int) -> torch.Tensor:
        """Path sampling of the precisions, as `sample_paths`: ``(n_blocks, n_precisions)`` (one
        precision: its probability 1, drawing no random numbers, so a fixed-precision search
        draws the same candidates as before precisions existed)."""
        if self.space.num_precisions == 1:
            return self.bits_probs()
        mask = torch.ones_like(self.bits_logits, dtype=torch.bool)
        return _masked_paths(self.bits_logits, mask, paths)

    def derive(self) -> tuple[int, ...]:
        """The most probable candidate of every block."""
        return tuple(int(i) for i in self.masked_logits().argmax(dim=-1))

    def derive_bits(self) -> tuple[int, ...]:
        """The most probable precision of every block (indices into ``space.precision``)."""
        return tuple(int(i) for i in self.bits_logits.argmax(dim=-1))

    def derived_weights(self) -> torch.Tensor:
        """One-hot weights of the most probable architecture ``(n_blocks, n_candidates)``."""
        return nn.functional.one_hot(torch.tensor(self.derive()), self.space.num_candidates).to(self.arch_logits)

    def derived_bits_weights(self) -> torch.Tensor:
        """One-hot weights of the most probable precisions ``(n_blocks, n_precisions)``."""
        return nn.functional.one_hot(torch.tensor(self.derive_bits()), self.space.num_precisions).to(self.bits_logits)

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None = None,
                bits_weights: torch.Tensor | None = None) -> torch.Tensor:
        # x: (batch, in_channels, H, W); weights: (n_blocks, n_candidates);
        # bits_weights: (n_blocks, n_precisions) (None: the precision probabilities)
        weights = self.arch_probs() if weights is None else weights
        bits_weights = self.bits_probs() if bits_weights is None else bits_weights
        x = self.stem(x.contiguous(memory_format=torch.channels_last))
        for block, w, b in zip(self.blocks, weights, bits_weights):
            x = block(x, w, b)
        x = self.pool(self.head(x)).flatten(1)  # (batch, head_channels)
        return self.classifier(x)  # (batch, num_classes)


class ChildNet(nn.Module):
    """The discrete network of one architecture choice, trainable from scratch, each block
    quantisation-aware at its precision (``precision``: one index into ``space.precision`` per
    block; None: the first precision), the stem, head and classifier at ``space.fixed_bits``."""

    def __init__(self, space: NetworkSpace, choice: Sequence[int], precision: Sequence[int] | None = None) -> None:
        super().__init__()
        self.space = space
        self.choice = space.check_choice(choice)
        self.precision = space.check_precision(precision)
        self.bits = tuple(space.bits_of(self.precision))
        self.stem = _Stem(space.in_channels, space.stem_channels, space.stem_stride, bits=space.fixed_bits)
        self.blocks = nn.ModuleList(_candidate_module(space, block, index, bits)
                                    for block, index, bits in zip(space.blocks, self.choice, self.bits))
        self.head = _Head(space.last_channels, space.head_channels, bits=space.fixed_bits)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = QuantLinear(space.head_channels, space.num_classes, bits=space.fixed_bits,
                                      signed_input=False)
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x.contiguous(memory_format=torch.channels_last))
        for block in self.blocks:
            x = block(x)
        return self.classifier(self.pool(self.head(x)).flatten(1))
