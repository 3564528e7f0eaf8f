"""The ``builtin`` adapter: this package's simulator (`dataset_gen.simulator`), vectorised.

It fills every result column. Settings: ``mapping`` (``search``: our mapper;
``scalesim``: SCALE-Sim's fixed mapping), ``objective`` (what the mapper minimises).
"""

from __future__ import annotations

from typing import ClassVar

import pandas as pd

from dataset_gen.adapters.base import ERROR_COLUMN, SimulatorAdapter
from dataset_gen.simulator import RESULT_DTYPES, SIMULATOR_VERSION, simulate_batch

__all__ = ["BuiltinAdapter", "SIMULATE_CHUNK"]

# simulate_batch's fast engine holds every candidate mapping of its pairs at once: chunks of
# this many pairs bound that memory without costing speed (its per-call overhead is small)
SIMULATE_CHUNK = 4096


class BuiltinAdapter(SimulatorAdapter):
    """This package's cycle-level simulator."""

    name: ClassVar[str] = "builtin"
    provides: ClassVar[frozenset[str]] = frozenset(RESULT_DTYPES)

    @property
    def version(self) -> str:
        return SIMULATOR_VERSION

    def simulate(self, pairs: pd.DataFrame) -> pd.DataFrame:
        results = pd.concat([simulate_batch(pairs.iloc[start:start + SIMULATE_CHUNK],
                                            mapping=self.settings["mapping"],
                                            objective=self.settings["objective"])
                             for start in range(0, len(pairs), SIMULATE_CHUNK)])
        results.index = pairs.index
        results[ERROR_COLUMN] = ""
        return results
