"""The evaluator's view of a simulator dataset: its metadata, checked before any training.

A dataset records (per shard) the simulator that made it (its adapter's identity and
version) and the design-space hash. The evaluator imitates one simulator on one space, so it
refuses data from another, with a message saying which. The check itself is the dataset
reader's (`dataset_gen.reader.check_dataset`); this module only supplies the evaluator's
default: the version the dataset's own adapter has in this installation
(`dataset_gen.reader.INSTALLED`). When that adapter's tool is not installed here, training
still works (it needs no simulator): the version is not checked, with a
`SimulatorNotInstalledWarning`.
"""

from __future__ import annotations

import os
from typing import Any

from dataset_gen.reader import INSTALLED, ForeignDatasetError, SimulatorNotInstalledWarning
from dataset_gen.reader import check_dataset as _check_dataset

__all__ = ["ForeignDatasetError", "SimulatorNotInstalledWarning", "check_dataset"]


def check_dataset(path: str | os.PathLike, expect_simulator_version: str | None = None,
                  expect_space_hash: str | None = None) -> dict[str, Any]:
    """Read a dataset's metadata, refusing a foreign, damaged or unfinished one.

    Parameters
    ----------
    path : str or PathLike
        A ``dance-gen`` output directory.
    expect_simulator_version : str, optional
        The simulator version the data must come from; default: the installed version of
        the adapter the dataset records (builtin's `SIMULATOR_VERSION` for datasets older
        than adapters), since the evaluator imitates that simulator as installed.
    expect_space_hash : str, optional
        The design-space hash the data must have (None: any space).

    Returns
    -------
    dict
        The dataset metadata (`dataset_gen.reader.read_metadata`'s dict).

    Raises
    ------
    ForeignDatasetError
        Another simulator version or space (the message names the shard and both values).
    dataset_gen.reader.DatasetError
        Not a dance-gen dataset, shards of different runs, a damaged shard (named, with
        how to repair it), or an unfinished dataset.
    FileNotFoundError
        No dataset at ``path``.
    """
    return _check_dataset(path, expect_simulator_version or INSTALLED, expect_space_hash)
