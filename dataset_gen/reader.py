"""Read a dance-gen dataset back, refusing data that is not what the caller expects.

::

    from dataset_gen.reader import check_dataset, read_dataset, read_metadata

    frame = read_dataset("data/dance", expect_simulator_version="1.0.0")
    frame.attrs["dance_gen"]["space_hash"]      # the dataset's metadata travels with it
    read_metadata("data/dance")["space"]        # the ranges it was sampled from
    check_dataset("data/dance", expect_space_hash=h)  # every check, no rows (the evaluator's)

Every shard's own schema metadata is checked (pyarrow shows one file's metadata for a
whole directory), so a stray shard from another run is caught, and a dataset still being
generated (or killed half-way) is refused unless ``allow_incomplete=True``. Every shard's
bytes are verified against the sha256 the manifest records (a shard it lists without one,
from a manifest older than checksums, or does not list, is read whole instead): a damaged
shard is a `DatasetError` naming it, never a decompression traceback half-way through
training. This module holds the one check of a dataset's simulator version and space
hash; the evaluator calls `check_dataset` with ``expect_simulator_version=INSTALLED``: the
version the adapter the dataset records (`simulator_identity`) has in this installation.

Rows whose ``error`` column is not empty are pairs the simulator failed on: unknown, not
infeasible. The metadata counts them (``errors``); readers that learn or measure skip them.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dataset_gen.adapters.base import AdapterError
from dataset_gen.adapters.registry import adapter_version
from dataset_gen.simulator import SIMULATOR_VERSION
from dataset_gen.writer import (
    REPAIR_ADVICE, DatasetError, list_shards, read_manifest, shard_damage, shard_metadata,
)

__all__ = ["DatasetError", "ForeignDatasetError", "INSTALLED", "SimulatorNotInstalledWarning", "check_dataset",
           "installed_simulator_version", "read_dataset", "read_metadata", "dataset_metadata", "simulator_identity"]

#: ``expect_simulator_version=INSTALLED``: the installed version of the dataset's own adapter
INSTALLED = "installed"


class ForeignDatasetError(DatasetError):
    """A dataset made by another simulator version or on another design space than expected."""


class SimulatorNotInstalledWarning(UserWarning):
    """The simulator a dataset or an artifact records cannot run here, so its version is not
    checked; learning from the data and predicting need no simulator, simulating does."""


def simulator_identity(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """The identity (``name``, ``version``, ``settings``) of the simulator a dataset records.

    Datasets (and artifacts) written before simulator adapters existed record none: they
    were made by this package's simulator, the ``builtin`` adapter, with the recorded
    version, mapping and objective, which is the identity returned for them.

    Parameters
    ----------
    metadata : mapping or None
        A dataset's metadata (`read_metadata`), or an artifact's ``dataset_metadata``.

    Returns
    -------
    dict
        A new dict (the caller may change it).
    """
    metadata = metadata or {}
    recorded = metadata.get("simulator")
    if isinstance(recorded, Mapping) and recorded.get("name"):
        return {"name": recorded["name"], "version": recorded.get("version"),
                "settings": dict(recorded.get("settings") or {})}
    return {"name": "builtin", "version": metadata.get("simulator_version", SIMULATOR_VERSION),
            "settings": {"mapping": metadata.get("mapping", "search"),
                         "objective": metadata.get("objective", "latency")}}


def installed_simulator_version(identity: Mapping[str, Any], what: str = "dataset") -> str | None:
    """The version the adapter of a recorded identity has in this installation.

    Returns None, with a `SimulatorNotInstalledWarning` naming the adapter, when that
    adapter's tool is not installed here (`AdapterError`): a version cannot be compared
    then, and training or prediction does not need the simulator anyway.
    """
    try:
        return adapter_version(identity)
    except AdapterError as error:
        warnings.warn(f"{what}: made with simulator {identity.get('name')!r} {identity.get('version')}, which is not "
                      f"installed here ({error}); its version is not checked: training and prediction need no "
                      "simulator, but simulating (OOD set, verification) with it will fail",
                      SimulatorNotInstalledWarning, stacklevel=3)
        return None


def _checksums(manifest: Mapping[str, Any] | None, generation: Mapping[str, Any]) -> dict[str, str]:
    """The manifest's shard checksums by file name, if the manifest describes these shards."""
    if not isinstance(manifest, Mapping) or manifest.get("generation") != generation:
        return {}  # no manifest, or one left by another run: its checksums say nothing here
    return {entry["file"]: entry["sha256"] for entry in manifest.get("shards", [])
            if isinstance(entry, Mapping) and entry.get("file") and entry.get("sha256")}


def _checked_shards(path: Path, expect_simulator_version: str | None, expect_space_hash: str | None,
                    allow_incomplete: bool, verify: bool, read_unlisted: bool
                    ) -> tuple[dict[int, Path], dict[str, Any]]:
    """Shards by index and the dataset's metadata (``config`` included), after every check.

    ``verify``: compare every listed shard's sha256; ``read_unlisted``: also read whole the
    shards without a recorded checksum (else their reader reports damage).
    """
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such dataset directory")
    shards = list_shards(path)
    if not shards:
        raise DatasetError(f"{path}: holds no dance-gen shards (part-NNNNN.parquet)")
    first: dict[str, Any] | None = None
    rows = errors = 0
    for shard in shards.values():
        meta = shard_metadata(shard)
        rows += meta["rows"]
        errors += int(meta.get("errors", 0))  # absent from shards older than adapters: none failed
        if expect_simulator_version == INSTALLED:
            # every shard of one run records one adapter (their generations are compared below)
            expect_simulator_version = installed_simulator_version(simulator_identity(meta), f"{path}")
        if expect_simulator_version is not None and meta["simulator_version"] != expect_simulator_version:
            raise ForeignDatasetError(
                f"{shard}: simulator version {meta['simulator_version']!r}, expected {expect_simulator_version!r}: "
                "regenerate the dataset with this simulator (dance-gen), or ask for the version it was made with")
        if expect_space_hash is not None and meta["space_hash"] != expect_space_hash:
            raise ForeignDatasetError(
                f"{shard}: space hash {meta['space_hash']!r}, expected {expect_space_hash!r}: "
                "the dataset was sampled from another design space")
        if first is None:
            first = meta
        elif meta["generation"] != first["generation"]:
            raise DatasetError(f"{shard}: generated with other settings than {shards[min(shards)].name} "
                               "(a shard from another run): remove it or regenerate the dataset")
    assert first is not None
    manifest = read_manifest(path)
    if verify:
        checksums = _checksums(manifest, first["generation"])
        for shard in shards.values():
            if shard.name in checksums or read_unlisted:
                damage = shard_damage(shard, checksums.get(shard.name))
                if damage is not None:
                    raise DatasetError(f"{shard}: damaged, {damage}: {REPAIR_ADVICE}")
    n_shards = -(-first["generation"]["n_samples"] // first["generation"]["shard_rows"])
    missing = sorted(set(range(n_shards)) - set(shards))
    if missing and not allow_incomplete:
        raise DatasetError(f"{path}: incomplete, {len(shards)} of {n_shards} shards (missing "
                           f"{', '.join(map(str, missing[:5]))}{'...' if len(missing) > 5 else ''}): run dance-gen "
                           "again with the same config to finish it, or pass allow_incomplete=True")
    generation = first["generation"]
    metadata = {key: first[key] for key in ("simulator_version", "space_hash", "sampler", "seed",
                                            "package_version")}
    metadata.update({key: generation[key] for key in ("mapping", "objective", "n_samples", "layers")})
    metadata.update(simulator=simulator_identity(first), space=first["space"], generation=generation,
                    n_shards=n_shards, shards=len(shards), rows=rows, errors=errors, complete=not missing,
                    config=None if manifest is None else manifest.get("config"))
    return shards, metadata


def check_dataset(path: str | Path, expect_simulator_version: str | None = None,
                  expect_space_hash: str | None = None, allow_incomplete: bool = False) -> dict[str, Any]:
    """Every check of `read_dataset`, without returning the rows: the one dataset check.

    Each shard is dance-gen's and of one run, of the expected simulator version and space,
    present (unless ``allow_incomplete``) and sound: its bytes match the manifest's sha256,
    or, without one, it reads whole.

    Parameters
    ----------
    path : str or Path
        The dataset directory.
    expect_simulator_version : str, optional
        Refuse data of another simulator version (None: any; `INSTALLED`: the version the
        adapter the dataset records has here, or, when that adapter's tool is not installed,
        any, with a `SimulatorNotInstalledWarning`).
    expect_space_hash : str, optional
        Refuse data of another design space (None: any).
    allow_incomplete : bool
        Accept a dataset whose generation has not finished.

    Returns
    -------
    dict
        `read_metadata`'s dict.

    Raises
    ------
    FileNotFoundError
        No directory at ``path``.
    ForeignDatasetError
        Another simulator version or space (the message names the shard and both values).
    DatasetError
        Not dance-gen's, shards of different runs, a damaged shard (named, with how to
        repair it) or missing shards.
    """
    return _checked_shards(Path(path), expect_simulator_version, expect_space_hash, allow_incomplete,
                           verify=True, read_unlisted=True)[1]


def read_metadata(path: str | Path) -> dict[str, Any]:
    """A dataset's metadata without its rows (and without verifying the shards' bytes).

    Parameters
    ----------
    path : str or Path
        The dataset directory.

    Returns
    -------
    dict
        ``simulator`` (the identity of the adapter that made it: ``name``, ``version``,
        ``settings``; `simulator_identity`), ``simulator_version``, ``space_hash``,
        ``sampler``, ``seed``, ``package_version``, ``mapping``, ``objective``, ``n_samples``, ``layers`` (the layer mix: ``mix``,
        ``source``, ``networks``..., ``pool_size``, ``pool_hash``), ``space`` (the canonical
        ranges: `dataset_gen.ranges.parse_space` rebuilds them), ``generation`` (every
        setting that determined the rows), ``rows``, ``errors`` (rows the simulator failed
        on: their ``error`` column says why), ``shards`` (present), ``n_shards``
        (planned), ``complete``, and ``config`` (the run's resolved config, from the
        manifest; None without one).

    Raises
    ------
    FileNotFoundError
        No directory at ``path``.
    DatasetError
        No dance-gen shards there, or shards of different runs.
    """
    return _checked_shards(Path(path), None, None, allow_incomplete=True, verify=False, read_unlisted=False)[1]


dataset_metadata = read_metadata  # the name the evaluator uses


def read_dataset(path: str | Path, expect_simulator_version: str | None = None,
                 expect_space_hash: str | None = None, columns: Sequence[str] | None = None,
                 allow_incomplete: bool = False) -> pd.DataFrame:
    """Read a dance-gen dataset into one DataFrame, checking every shard first.

    Parameters
    ----------
    path : str or Path
        The dataset directory (what ``dance-gen out=...`` wrote).
    expect_simulator_version : str, optional
        Refuse the data unless every shard was simulated by this simulator version
        (e.g. ``dataset_gen.simulator.SIMULATOR_VERSION``).
    expect_space_hash : str, optional
        Refuse the data unless every shard was sampled from the space with this hash.
    columns : sequence of str, optional
        Read only these columns (all by default).
    allow_incomplete : bool
        Read a dataset whose generation has not finished (missing shards).

    Returns
    -------
    pandas.DataFrame
        Rows in ``row_id`` order with typed columns (layer and accelerator fields, every
        simulator result and the chosen mapping); ``attrs["dance_gen"]`` holds
        `read_metadata`'s dict.

    Raises
    ------
    FileNotFoundError
        No directory at ``path``.
    ForeignDatasetError
        Another simulator version or space than expected (naming the shard).
    DatasetError
        Naming the shard and what is wrong: a shard from another run, a file that is not
        a dance-gen shard, a damaged shard (with how to repair it), or missing shards.
    """
    path = Path(path)
    # shards without a recorded checksum are verified by the read below
    shards, metadata = _checked_shards(path, expect_simulator_version, expect_space_hash, allow_incomplete,
                                       verify=True, read_unlisted=False)
    tables = []
    for shard in shards.values():
        try:
            tables.append(pq.read_table(shard, columns=list(columns) if columns is not None else None,
                                        page_checksum_verification=True))
        except (OSError, pa.ArrowException) as error:
            raise DatasetError(f"{shard}: damaged, unreadable ({' '.join(str(error).split())}): "
                               f"{REPAIR_ADVICE}") from None
    frame = pa.concat_tables(tables).replace_schema_metadata(None).to_pandas()
    frame.attrs["dance_gen"] = metadata
    return frame
