"""Simulator adapters: the ground truth a dataset is made of, pluggable.

``dance-gen simulator=NAME`` (config group ``conf/simulator/``) picks one:

=========  ==========================================================================
name       what it runs
=========  ==========================================================================
builtin    this package's cycle-level simulator (`dataset_gen.simulator`), vectorised
zigzag     ZigZag (``pip install '.[zigzag]'``): its hardware model, mapper and cost model
scalesim   the real SCALE-Sim 3.0.0, in its own virtual environment, as a subprocess
command    any executable speaking the JSON-lines protocol of `dataset_gen.adapters.command`
=========  ==========================================================================

Every adapter takes a batch of (layer, accelerator) pairs and returns the dataset's result
columns (`dataset_gen.simulator.RESULT_DTYPES`) plus ``error``; columns it cannot provide
follow the infeasible conventions (ints -1, floats NaN, strings ""). `make_adapter` builds
one from its config; its `identity` (name, version, settings) enters the shard metadata,
the generation settings (a resume refuses a mix), the evaluator artifact and result.json.
"""

from dataset_gen.adapters.base import (ERROR_COLUMN, AdapterError, PairwiseAdapter, SimulatorAdapter,
                                       empty_results, result_columns)
from dataset_gen.adapters.registry import ADAPTERS, adapter_version, make_adapter

__all__ = ["ADAPTERS", "ERROR_COLUMN", "AdapterError", "PairwiseAdapter", "SimulatorAdapter", "adapter_version",
           "empty_results", "make_adapter", "result_columns"]
