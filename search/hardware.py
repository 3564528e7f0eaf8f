"""The accelerator search space and its two learnable parameterisations.

Every accelerator field the evaluator knows (`dataset_gen.space.ACCELERATOR_FIELDS`) is a
categorical choice over configured values (``conf/hw``); a field with one value is fixed.

- ``hw.mode = logits`` (`AcceleratorLogits`): one learnable logit vector per field,
  sampled with Gumbel-softmax at the schedule's temperature (as in DANCE's hardware
  parameters, DNA and EDD).
- ``hw.mode = generator`` (`HardwareGenerator`): DANCE's hardware-generation network, an
  MLP from the architecture probabilities to per-field logits; pre-trained to imitate the
  simulator's best accelerator for an architecture (`search.generator`), then used in the
  search so that the hardware follows the architecture.

Both return per-field logits ``(batch, n_values)``; `sample_choices` turns them into the
probabilities that `evaluator.features.encode_accelerators_soft` expects.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from dataset_gen.space import ACCELERATOR_FIELDS, Accelerator, SpaceError

__all__ = ["AcceleratorSpace", "AcceleratorLogits", "HardwareGenerator", "sample_choices", "choices_for_encoding"]


def _canonical(field: str, value: Any) -> Any:
    """A validated value of one field (through `Accelerator`'s own checks)."""
    if field in ("dataflow", "pe_kind"):  # names
        value = str(value)
    try:
        return getattr(Accelerator(**{field: value}), field)
    except (SpaceError, TypeError) as error:
        raise SpaceError(f"hw.choices.{field}: {error}") from None


@dataclass(frozen=True)
class AcceleratorSpace:
    """Categorical choices for every accelerator field, in `ACCELERATOR_FIELDS` order.

    An accelerator of the space is an *index*: one choice index per field.
    """

    choices: tuple[tuple[str, tuple[Any, ...]], ...]

    @classmethod
    def from_config(cls, choices: Mapping[str, Sequence[Any]]) -> "AcceleratorSpace":
        """Build from ``hw.choices`` (a mapping field -> list of values).

        Raises
        ------
        SpaceError
            A missing or unknown field, an empty or duplicated list, or a value outside the
            accelerator's limits (naming the field and the allowed range).
        """
        missing = [f for f in ACCELERATOR_FIELDS if f not in choices]
        unknown = [f for f in choices if f not in ACCELERATOR_FIELDS]
        if missing or unknown:
            raise SpaceError(f"hw.choices: missing field(s) {missing}, unknown field(s) {unknown}; "
                             f"expected every accelerator field: {list(ACCELERATOR_FIELDS)}")
        fields = []
        for field in ACCELERATOR_FIELDS:
            raw = choices[field]
            values = [raw] if isinstance(raw, (str, int, float)) else list(raw)
            if not values:
                raise SpaceError(f"hw.choices.{field}: expected at least one value")
            values = [_canonical(field, value) for value in values]
            if len(set(values)) != len(values):
                raise SpaceError(f"hw.choices.{field} = {values}: duplicated values")
            fields.append((field, tuple(values)))
        return cls(tuple(fields))

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(field for field, _ in self.choices)

    def values(self, field: str) -> tuple[Any, ...]:
        return dict(self.choices)[field]

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(len(values) for _, values in self.choices)

    @property
    def size(self) -> int:
        """Number of accelerators in the space (the product of the choice counts)."""
        return math.prod(self.sizes)

    def check_index(self, index: Sequence[int]) -> tuple[int, ...]:
        index = tuple(int(i) for i in index)
        if len(index) != len(self.choices):
            raise SpaceError(f"accelerator index: {len(index)} entries for {len(self.choices)} fields")
        for (field, values), i in zip(self.choices, index):
            if not 0 <= i < len(values):
                raise SpaceError(f"accelerator index: {field} = {i}: expected 0..{len(values) - 1}")
        return index

    def accelerator(self, index: Sequence[int]) -> Accelerator:
        """The accelerator of one index."""
        index = self.check_index(index)
        return Accelerator(**{field: values[i] for (field, values), i in zip(self.choices, index)})

    def index_of(self, accelerator: Accelerator | Mapping[str, Any]) -> tuple[int, ...]:
        """The index of an accelerator of the space (SpaceError if a value is not a choice)."""
        values = accelerator.to_dict() if isinstance(accelerator, Accelerator) else dict(accelerator)
        index = []
        for field, choices in self.choices:
            value = _canonical(field, values[field])
            if value not in choices:
                raise SpaceError(f"accelerator.{field} = {value!r}: not one of the choices {list(choices)}")
            index.append(choices.index(value))
        return tuple(index)

    def middle(self) -> tuple[int, ...]:
        """The middle choice of every field (the default reference accelerator)."""
        return tuple((n - 1) // 2 for n in self.sizes)

    def all_indices(self) -> Iterator[tuple[int, ...]]:
        return itertools.product(*(range(n) for n in self.sizes))

    def enumerate(self, limit: int | None = None, seed: int = 0) -> list[tuple[int, ...]]:
        """Every index of the space, or ``limit`` distinct ones drawn uniformly when larger."""
        if limit is None or self.size <= limit:
            return list(self.all_indices())
        rng = np.random.default_rng(seed)
        flat = rng.choice(self.size, size=limit, replace=False)
        return [tuple(int(i) for i in np.unravel_index(f, self.sizes)) for f in sorted(flat)]

    def frame(self, indices: Sequence[Sequence[int]]) -> pd.DataFrame:
        """Accelerators of several indices as a DataFrame with the `ACCELERATOR_FIELDS`."""
        array = np.asarray(indices, dtype=np.int64).reshape(-1, len(self.choices))
        return pd.DataFrame({field: [values[i] for i in array[:, j]]
                             for j, (field, values) in enumerate(self.choices)})

    def to_dict(self) -> dict[str, list[Any]]:
        return {field: list(values) for field, values in self.choices}


def choices_for_encoding(space: AcceleratorSpace, probs: Mapping[str, torch.Tensor]) -> dict[str, tuple[list, torch.Tensor]]:
    """Per-field ``(values, probs)`` pairs, as `encode_accelerators_soft` takes them."""
    return {field: (list(values), probs[field]) for field, values in space.choices}


def sample_choices(logits: Mapping[str, torch.Tensor], tau: float, samples: int = 1, hard: bool = False,
                   gumbel: bool = True) -> dict[str, torch.Tensor]:
    """Relaxed one-hot samples of every field.

    Parameters
    ----------
    logits : dict[str, Tensor]
        Per field, ``(1, n_values)`` or ``(samples, n_values)``.
    tau : float
        Gumbel-softmax temperature (> 0).
    samples : int
        Number of samples drawn (rows of the result).
    hard : bool
        Straight-through one-hot samples (the forward pass sees a discrete accelerator).
    gumbel : bool
        False gives the plain softmax (no noise), e.g. for monitoring.

    Returns
    -------
    dict[str, Tensor]
        Per field, ``(samples, n_values)`` probabilities whose rows sum to 1.
    """
    if tau <= 0:
        raise SpaceError(f"temperature = {tau}: expected a positive number")
    out = {}
    for field, field_logits in logits.items():
        field_logits = field_logits.expand(samples, -1) if field_logits.shape[0] == 1 else field_logits
        if field_logits.shape[-1] == 1:  # a fixed field: nothing to sample, nothing to learn
            out[field] = torch.ones_like(field_logits)
        elif gumbel:
            out[field] = nn.functional.gumbel_softmax(field_logits, tau=tau, hard=hard, dim=-1)
        else:
            out[field] = torch.softmax(field_logits / tau, dim=-1)
    return out


class AcceleratorLogits(nn.Module):
    """``hw.mode = logits``: one learnable logit vector per accelerator field."""

    def __init__(self, space: AcceleratorSpace, init: Sequence[int] | None = None, init_bias: float = 0.0) -> None:
        super().__init__()
        self.space = space
        self.logits = nn.ParameterDict(
            {field: nn.Parameter(torch.zeros(len(values))) for field, values in space.choices})
        if init is not None and init_bias:
            with torch.no_grad():
                for (field, _), i in zip(space.choices, space.check_index(init)):
                    self.logits[field][i] += init_bias

    def forward(self, arch_probs: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Per-field logits ``(1, n_values)`` (the architecture is ignored in this mode)."""
        return {field: self.logits[field].unsqueeze(0) for field in self.space.fields}

    def derive(self, arch_probs: torch.Tensor | None = None) -> tuple[int, ...]:
        return tuple(int(self.logits[field].argmax()) for field in self.space.fields)


class HardwareGenerator(nn.Module):
    """``hw.mode = generator``: an MLP from architecture probabilities to accelerator logits.

    Input: the architecture probabilities ``(batch, n_blocks, n_candidates)`` (or one
    architecture ``(n_blocks, n_candidates)``), flattened. Output: per-field logits
    ``(batch, n_values)``.
    """

    def __init__(self, space: AcceleratorSpace, n_blocks: int, n_candidates: int, hidden: int = 64,
                 layers: int = 2) -> None:
        super().__init__()
        if hidden < 1 or layers < 1:
            raise SpaceError(f"hw.generator: hidden = {hidden}, layers = {layers}: expected positive integers")
        self.space = space
        self.in_features = n_blocks * n_candidates
        trunk: list[nn.Module] = []
        width = self.in_features
        for _ in range(layers):
            trunk += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        self.trunk = nn.Sequential(*trunk)
        self.heads = nn.ModuleDict({field: nn.Linear(hidden, len(values)) for field, values in space.choices})

    def forward(self, arch_probs: torch.Tensor) -> dict[str, torch.Tensor]:
        x = arch_probs.reshape(-1, self.in_features)  # (batch, n_blocks * n_candidates)
        h = self.trunk(x)  # (batch, hidden)
        return {field: self.heads[field](h) for field in self.space.fields}  # each (batch, n_values)

    def derive(self, arch_probs: torch.Tensor) -> tuple[int, ...]:
        """The generator's most probable accelerator for one architecture."""
        with torch.no_grad():
            logits = self.forward(arch_probs)
        return tuple(int(logits[field][0].argmax()) for field in self.space.fields)
