"""Read a dance-gen dataset back, refusing data that is not what the caller expects.

::

    from dataset_gen.reader import read_dataset, read_metadata

    frame = read_dataset("data/dance", expect_simulator_version="1.0.0")
    frame.attrs["dance_gen"]["space_hash"]      # the dataset's metadata travels with it
    read_metadata("data/dance")["space"]        # the ranges it was sampled from

Every shard's own schema metadata is checked (pyarrow shows one file's metadata for a
whole directory), so a stray shard from another run is caught, and a dataset still being
generated (or killed half-way) is refused unless ``allow_incomplete=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dataset_gen.writer import DatasetError, list_shards, read_manifest, shard_metadata

__all__ = ["DatasetError", "read_dataset", "read_metadata", "dataset_metadata"]


def _checked_shards(path: Path, expect_simulator_version: str | None, expect_space_hash: str | None,
                    allow_incomplete: bool) -> tuple[dict[int, Path], dict[str, Any]]:
    """Shards by index and the dataset's metadata, after every check."""
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such dataset directory")
    shards = list_shards(path)
    if not shards:
        raise DatasetError(f"{path}: holds no dance-gen shards (part-NNNNN.parquet)")
    first: dict[str, Any] | None = None
    rows = 0
    for shard in shards.values():
        meta = shard_metadata(shard)
        rows += meta["rows"]
        if expect_simulator_version is not None and meta["simulator_version"] != expect_simulator_version:
            raise DatasetError(f"{shard}: simulator version {meta['simulator_version']!r}, "
                               f"expected {expect_simulator_version!r}: regenerate the dataset with this "
                               "simulator, or ask for the version it was made with")
        if expect_space_hash is not None and meta["space_hash"] != expect_space_hash:
            raise DatasetError(f"{shard}: space hash {meta['space_hash']!r}, expected {expect_space_hash!r}: "
                               "the dataset was sampled from another design space")
        if first is None:
            first = meta
        elif meta["generation"] != first["generation"]:
            raise DatasetError(f"{shard}: generated with other settings than {shards[min(shards)].name} "
                               "(a shard from another run): remove it or regenerate the dataset")
    assert first is not None
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
    metadata.update(space=first["space"], generation=generation, n_shards=n_shards, shards=len(shards),
                    rows=rows, complete=not missing)
    return shards, metadata


def read_metadata(path: str | Path) -> dict[str, Any]:
    """A dataset's metadata without its rows.

    Parameters
    ----------
    path : str or Path
        The dataset directory.

    Returns
    -------
    dict
        ``simulator_version``, ``space_hash``, ``sampler``, ``seed``, ``package_version``,
        ``mapping``, ``objective``, ``n_samples``, ``layers`` (the layer mix: ``mix``,
        ``source``, ``networks``..., ``pool_size``, ``pool_hash``), ``space`` (the canonical
        ranges: `dataset_gen.ranges.parse_space` rebuilds them), ``generation`` (every
        setting that determined the rows), ``rows``, ``shards`` (present), ``n_shards``
        (planned), ``complete``, and ``config`` (the run's resolved config, from the
        manifest; None without one).

    Raises
    ------
    FileNotFoundError
        No directory at ``path``.
    DatasetError
        No dance-gen shards there, or shards of different runs.
    """
    path = Path(path)
    _, metadata = _checked_shards(path, None, None, allow_incomplete=True)
    manifest = read_manifest(path)
    metadata["config"] = None if manifest is None else manifest.get("config")
    return metadata


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
    DatasetError
        Naming the shard and what did not match: simulator version, space hash, a shard
        from another run, a file that is not a dance-gen shard, or missing shards.
    """
    path = Path(path)
    shards, metadata = _checked_shards(path, expect_simulator_version, expect_space_hash, allow_incomplete)
    tables = [pq.read_table(shard, columns=list(columns) if columns is not None else None)
              for shard in shards.values()]
    frame = pa.concat_tables(tables).replace_schema_metadata(None).to_pandas()
    manifest = read_manifest(path)
    metadata["config"] = None if manifest is None else manifest.get("config")
    frame.attrs["dance_gen"] = metadata
    return frame
