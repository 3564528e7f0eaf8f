"""The supernet (every candidate in every block, mixed by architecture weights) and the
derived child network (one candidate per block).

Both keep their tensors channels-last: PyTorch's CPU depthwise convolutions (the MBConv
candidates' middle layer) train about twice as fast in that layout.

Module names are chosen so that tracing a `ChildNet` with
`dataset_gen.torch_layers.layers_from_module` yields exactly
`NetworkSpace.network_layers` (``stem.conv``, ``blocks.3.expand.conv``, ``head.conv``,
``classifier``): the network that is trained is the network that is costed.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from search.network_space import BlockSpec, NetworkSpace

__all__ = ["ConvBN", "MBConv", "MixedBlock", "Supernet", "ChildNet"]


class ConvBN(nn.Module):
    """Conv2d ("same" padding, no bias), batch norm and an optional ReLU6."""

    def __init__(self, in_c: int, out_c: int, kernel: int, stride: int = 1, groups: int = 1,
                 activation: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_c, out_c, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_c)
        self.act = nn.ReLU6(inplace=True) if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class MBConv(nn.Module):
    """MobileNet-v2 inverted residual: 1x1 expand, KxK depthwise (strided), 1x1 project."""

    def __init__(self, in_c: int, out_c: int, stride: int, kernel: int, expansion: int) -> None:
        super().__init__()
        hidden = in_c * expansion
        self.expand = ConvBN(in_c, hidden, 1) if expansion != 1 else nn.Identity()
        self.depthwise = ConvBN(hidden, hidden, kernel, stride, groups=hidden)
        self.project = ConvBN(hidden, out_c, 1, activation=False)
        self.residual = stride == 1 and in_c == out_c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


def _candidate_module(space: NetworkSpace, block: BlockSpec, index: int) -> nn.Module:
    candidate = space.parsed_candidates[index]
    if candidate.is_skip:
        return nn.Identity()
    return MBConv(block.in_c, block.out_c, block.stride, candidate.kernel, candidate.expansion)


class MixedBlock(nn.Module):
    """All candidates of one block; the output is their weighted sum (DARTS / FBNet)."""

    def __init__(self, space: NetworkSpace, block: BlockSpec) -> None:
        super().__init__()
        self.allowed = block.allowed
        # Disallowed candidates (skip where the shape changes) hold an Identity never called.
        self.ops = nn.ModuleList(
            _candidate_module(space, block, i) if ok else nn.Identity() for i, ok in enumerate(block.allowed)
        )

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        # weights: (n_candidates,), zero on disallowed candidates. A candidate whose weight is
        # exactly zero (not sampled, or disallowed) is not computed at all: with path
        # sampling (ProxylessNAS) a step costs one or two candidates, not all of them.
        active = (weights.detach() != 0).tolist()
        out = None
        for i, op in enumerate(self.ops):
            if not (self.allowed[i] and active[i]):
                continue
            term = weights[i] * op(x)
            out = term if out is None else out + term
        return out


class _Head(nn.Module):
    def __init__(self, in_c: int, head_c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_c, head_c, 1, bias=False)
        self.bn = nn.BatchNorm2d(head_c)
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class _Stem(_Head):
    def __init__(self, in_c: int, out_c: int, stride: int) -> None:
        nn.Module.__init__(self)
        self.conv = nn.Conv2d(in_c, out_c, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_c)
        self.act = nn.ReLU6(inplace=True)


class Supernet(nn.Module):
    """Weights of every candidate plus one architecture logit per (block, candidate).

    ``arch_logits`` is ``(n_blocks, n_candidates)``; disallowed entries are masked to -inf
    in `arch_probs`, so they get probability 0 and no gradient.
    """

    def __init__(self, space: NetworkSpace) -> None:
        super().__init__()
        self.space = space
        self.stem = _Stem(space.in_channels, space.stem_channels, space.stem_stride)
        self.blocks = nn.ModuleList(MixedBlock(space, block) for block in space.blocks)
        self.head = _Head(space.last_channels, space.head_channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(space.head_channels, space.num_classes)
        self.arch_logits = nn.Parameter(torch.zeros(space.num_blocks, space.num_candidates))
        mask = torch.tensor([block.allowed for block in space.blocks], dtype=torch.bool)
        self.register_buffer("arch_mask", mask, persistent=False)
        self.to(memory_format=torch.channels_last)

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if name != "arch_logits"]

    def masked_logits(self) -> torch.Tensor:
        return self.arch_logits.masked_fill(~self.arch_mask, float("-inf"))  # (blocks, cands)

    def arch_probs(self) -> torch.Tensor:
        """Softmax over each block's allowed candidates: ``(n_blocks, n_candidates)``."""
        return torch.softmax(self.masked_logits(), dim=-1)

    def sample_weights(self, tau: float, hard: bool = False) -> torch.Tensor:
        """Gumbel-softmax weights over each block's allowed candidates (FBNet)."""
        return nn.functional.gumbel_softmax(self.masked_logits(), tau=tau, hard=hard, dim=-1)

    def sample_paths(self, paths: int) -> torch.Tensor:
        """ProxylessNAS path sampling: ``paths`` distinct candidates per block drawn from the
        architecture probabilities; their weights are the softmax over the sampled logits only
        (zero elsewhere), so gradients reach the sampled candidates' logits and a forward pass
        computes only those candidates. ``paths = 1`` gives a one-hot (single-path) sample.
        """
        with torch.no_grad():
            probs = self.arch_probs()
            allowed = self.arch_mask.sum(dim=1)
            picks = [torch.multinomial(p, int(min(paths, n)), replacement=False) for p, n in zip(probs, allowed)]
            sampled = torch.zeros_like(self.arch_mask)
            for block, pick in enumerate(picks):
                sampled[block, pick] = True
        logits = self.arch_logits.masked_fill(~sampled, float("-inf"))
        return torch.softmax(logits, dim=-1)  # (blocks, cands)

    def derive(self) -> tuple[int, ...]:
        """The most probable candidate of every block."""
        return tuple(int(i) for i in self.masked_logits().argmax(dim=-1))

    def derived_weights(self) -> torch.Tensor:
        """One-hot weights of the most probable architecture ``(n_blocks, n_candidates)``."""
        return nn.functional.one_hot(torch.tensor(self.derive()), self.space.num_candidates).to(self.arch_logits)

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        # x: (batch, in_channels, H, W); weights: (n_blocks, n_candidates)
        weights = self.arch_probs() if weights is None else weights
        x = self.stem(x.contiguous(memory_format=torch.channels_last))
        for block, w in zip(self.blocks, weights):
            x = block(x, w)
        x = self.pool(self.head(x)).flatten(1)  # (batch, head_channels)
        return self.classifier(x)  # (batch, num_classes)


class ChildNet(nn.Module):
    """The discrete network of one architecture choice, trainable from scratch."""

    def __init__(self, space: NetworkSpace, choice: Sequence[int]) -> None:
        super().__init__()
        self.space = space
        self.choice = space.check_choice(choice)
        self.stem = _Stem(space.in_channels, space.stem_channels, space.stem_stride)
        self.blocks = nn.ModuleList(_candidate_module(space, block, index)
                                    for block, index in zip(space.blocks, self.choice))
        self.head = _Head(space.last_channels, space.head_channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(space.head_channels, space.num_classes)
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x.contiguous(memory_format=torch.channels_last))
        for block in self.blocks:
            x = block(x)
        return self.classifier(self.pool(self.head(x)).flatten(1))
