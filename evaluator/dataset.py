"""The evaluator's view of a simulator dataset: its metadata, checked before any training.

A dataset records (per shard) the simulator version and the design-space hash it was made
with. The evaluator imitates one simulator on one space, so it refuses data from another,
with a message saying which.
"""

from __future__ import annotations

import os
from typing import Any

from dataset_gen.common.errors import UserError
from dataset_gen.simulator import SIMULATOR_VERSION


class ForeignDatasetError(UserError):
    """A dataset made by another simulator version or on another design space."""


def check_dataset(path: str | os.PathLike, expect_simulator_version: str | None = None,
                  expect_space_hash: str | None = None) -> dict[str, Any]:
    """Read a dataset's metadata, refusing a foreign one.

    Parameters
    ----------
    path : str or PathLike
        A ``dance-gen`` output directory.
    expect_simulator_version : str, optional
        The simulator version the data must come from; default: the installed simulator's
        (`SIMULATOR_VERSION`), since the evaluator imitates that one.
    expect_space_hash : str, optional
        The design-space hash the data must have (None: any space).

    Returns
    -------
    dict
        The dataset metadata (at least ``simulator_version`` and ``space_hash``).

    Raises
    ------
    ForeignDatasetError
        Another simulator version or space (the message names both values), or an
        unfinished dataset.
    dataset_gen.reader.DatasetError
        Not a dance-gen dataset, or shards of different runs.
    FileNotFoundError
        No dataset at ``path``.
    """
    from dataset_gen.reader import read_metadata

    expected_version = expect_simulator_version or SIMULATOR_VERSION
    metadata = read_metadata(path)  # checks every shard: one run, readable, dance-gen's
    version = metadata.get("simulator_version")
    if version != expected_version:
        raise ForeignDatasetError(
            f"dataset {os.fspath(path)!r} was made by simulator version {version!r}, expected "
            f"{expected_version!r}: regenerate it with this simulator (dance-gen)"
        )
    space = metadata.get("space_hash")
    if expect_space_hash is not None and space != expect_space_hash:
        raise ForeignDatasetError(
            f"dataset {os.fspath(path)!r} comes from design space {space!r}, expected {expect_space_hash!r}: "
            "it was made on another space than the one this evaluator was trained on"
        )
    if not metadata.get("complete", True):
        raise ForeignDatasetError(
            f"dataset {os.fspath(path)!r} is incomplete ({metadata.get('shards')} of {metadata.get('n_shards')} "
            "shards): run dance-gen again with the same config to finish it"
        )
    return metadata
