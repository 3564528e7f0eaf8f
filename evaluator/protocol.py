"""The one interface every predictor of the simulator's figures offers (evaluator and baselines).

A predictor takes a frame of (layer, accelerator) pairs, with the dataset's column names,
and returns one row per pair, in the same order and with the same index, with
`PREDICTION_COLUMNS`. The validation report treats every predictor alike through it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import pandas as pd

from dataset_gen.space import ACCELERATOR_FIELDS, LAYER_FIELDS, SpaceError

# What a predictor returns: the simulator's latency (cycles and seconds), energy and area,
# and the probability that the mapper finds a mapping at all.
PREDICTION_COLUMNS: tuple[str, ...] = ("total_cycles", "latency_s", "energy_pj", "area_mm2", "p_feasible")
# Columns a pairs frame must have: the layer's sizes (its other fields default as in `Layer`)
# and every accelerator field (an accelerator is never guessed).
REQUIRED_PAIR_COLUMNS: tuple[str, ...] = (*LAYER_FIELDS[:4], *ACCELERATOR_FIELDS)


@runtime_checkable
class Predictor(Protocol):
    """Anything that predicts the simulator's figures for a frame of pairs."""

    def predict(self, pairs: pd.DataFrame) -> pd.DataFrame:
        """Predictions for every pair.

        Parameters
        ----------
        pairs : pandas.DataFrame
            One row per (layer, accelerator) pair, with at least `REQUIRED_PAIR_COLUMNS`.

        Returns
        -------
        pandas.DataFrame
            ``pairs.index``, one row per pair in order, columns `PREDICTION_COLUMNS`.
        """
        ...


def check_pairs(pairs: pd.DataFrame) -> pd.DataFrame:
    """``pairs`` if it is a frame with every `REQUIRED_PAIR_COLUMNS`, else a SpaceError naming what is missing."""
    if not isinstance(pairs, pd.DataFrame):
        raise SpaceError(f"pairs = {type(pairs).__name__}: expected a pandas DataFrame of layer and accelerator columns")
    missing = [column for column in REQUIRED_PAIR_COLUMNS if column not in pairs.columns]
    if missing:
        raise SpaceError(f"pairs: missing column(s) {missing}; required: {list(REQUIRED_PAIR_COLUMNS)}")
    return pairs
