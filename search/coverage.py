"""Does the evaluator know the design space the search is about to ask it about?

A learned evaluator is trustworthy inside the ranges it was trained on. Its artifact keeps
the training dataset's metadata, including the sampling space (`dataset_gen.ranges`); this
module compares the search's accelerator choices and layer table with it and lists what lies
outside, so that a run can warn before spending time (and the result records it). The
simulator re-checks every derived design anyway; this is about the search's gradients.
"""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd

from dataset_gen.space import ACCELERATOR_FIELDS, LAYER_FIELDS, PRECISION_FIELDS, SpaceError
from search.hardware import AcceleratorSpace

__all__ = ["coverage_report"]


def _outside(range_: Any, value: Any) -> bool:
    if range_.choices is not None:
        choices = [str(c) for c in range_.choices]
        if str(value) in choices:
            return False
        try:
            return float(value) not in [float(c) for c in range_.choices if c != "same"]
        except (TypeError, ValueError):
            return True
    low, high = range_.values_bound()
    return not low <= float(value) <= high


def coverage_report(metadata: Mapping[str, Any] | None, hw_space: AcceleratorSpace,
                    layer_table: pd.DataFrame) -> dict[str, Any]:
    """Accelerator choices and layer sizes outside the evaluator's training space.

    Parameters
    ----------
    metadata : mapping, optional
        The evaluator's dataset metadata (``Evaluator.dataset_metadata``) with ``space``.
    hw_space : AcceleratorSpace
    layer_table : pandas.DataFrame
        The search's layer table.

    Returns
    -------
    dict
        ``known`` (whether the training space was recorded), ``accelerator`` (field ->
        values outside) and ``layers`` (field -> [min, max] of the table where it exceeds
        the random-shape ranges; real-network layers of the training pool may still cover
        them).
    """
    space_config = (metadata or {}).get("space")
    if not space_config:
        return {"known": False, "accelerator": {}, "layers": {}}
    from dataset_gen.ranges import parse_space

    try:
        space = parse_space(space_config, "evaluator training space")
    except SpaceError:
        return {"known": False, "accelerator": {}, "layers": {}}
    accelerator = {}
    for field in ACCELERATOR_FIELDS:
        bad = [value for value in hw_space.values(field) if _outside(space.accelerator[field], value)]
        if bad:
            accelerator[field] = bad
    layers = {}
    for field in LAYER_FIELDS:
        range_ = space.layer[field]
        if range_.same_as is not None or field in ("pad", "groups"):
            continue  # tied fields follow their partner; pad and groups derive from the kind
        values = layer_table.loc[layer_table["in_h"] > 1, field] if field in ("in_h", "in_w") else layer_table[field]
        bad = sorted({int(v) for v in values if _outside(range_, v)})
        if field in PRECISION_FIELDS and not _outside(range_, 0):
            # bits equal to every word_bits choice run as 0 ("the accelerator's word") does
            words = {int(w) for w in hw_space.values("word_bits")}
            bad = [v for v in bad if words != {v}]
        if bad:
            layers[field] = bad[:10]
    return {"known": True, "accelerator": accelerator, "layers": layers}


def describe(report: Mapping[str, Any]) -> str | None:
    """A one-line warning for a coverage report, or None when everything is covered."""
    if not report.get("known"):
        return "the evaluator artifact does not record its training space: coverage unchecked"
    parts = [f"hw.choices.{field} {values}" for field, values in report["accelerator"].items()]
    parts += [f"layer {field} {values}" for field, values in report["layers"].items()]
    if not parts:
        return None
    return ("outside the evaluator's training space (its predictions there are extrapolations; "
            "dance-search mode=export writes a matching dance-gen space): " + "; ".join(parts))
