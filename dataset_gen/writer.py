"""A dataset directory on disk: Parquet shards, their metadata, the manifest, atomic writes.

Layout of a dataset directory ``out``::

    out/part-00000.parquet   one shard per ``shard_rows`` rows, in row-id order
    out/part-00001.parquet
    out/_manifest.json       shards, rows, infeasible counts, the generation settings
    out/_config.yaml         the resolved configuration of the run

Names starting with ``_`` or ``.`` are skipped by ``pyarrow.dataset`` (and so by
``pandas.read_parquet(out)``): the manifest, the config and the temporary files of shards
being written (``.part-00003.parquet.tmp-PID``) never disturb a reader. A shard appears
under its final name only once complete (written to a temporary name, flushed to disk,
renamed), so a killed run leaves whole shards and hidden leftovers, never a torn shard.

Every shard carries the whole story in its Parquet schema metadata (see `shard_metadata`),
so a directory can be checked shard by shard even without its manifest (pyarrow shows one
file's metadata for a whole dataset).

The manifest records the sha256 of every shard's bytes: a resumed run and every reader
(`dataset_gen.reader`) compare them, so a shard damaged on disk (its footer intact, bytes
flipped inside) is found, named and, on resume, generated again. A shard the manifest
lists without a checksum (manifests older than checksums) or does not list (a run killed
between the shard and the manifest) is verified by reading it whole, page checksums
included (shards are written with Parquet page CRCs).

A dataset directory belongs to dance-gen: ``overwrite=true`` removes only what dance-gen
wrote there (the shards its manifest lists or whose metadata is dance-gen's, the manifest,
the config and its hidden temporaries). Any other file or folder is refused by name,
overwrite or not (it would be deleted, or would break ``pandas.read_parquet(out)``);
names starting with ``.`` or ``_``, which readers skip, are left alone.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dataset_gen.common.errors import UserError
from dataset_gen.common.files import atomic_write_bytes, atomic_write_text
from dataset_gen.space import ACCELERATOR_FIELDS, LAYER_FIELDS

__all__ = [
    "DatasetError", "FORMAT", "MANIFEST", "CONFIG_FILE", "METADATA_KEYS", "REPAIR_ADVICE", "shard_name",
    "shard_schema", "frame_to_table", "write_shard", "shard_metadata", "list_shards", "prepare_output",
    "write_manifest", "read_manifest", "file_sha256", "shard_damage",
]

FORMAT = "dance-gen/1"
MANIFEST = "_manifest.json"
CONFIG_FILE = "_config.yaml"
_SHARD_RE = re.compile(r"^part-(\d{5,})\.parquet$")
# the result cache of slow simulator adapters (dataset_gen.adapters.cache) and SQLite's logs
_CACHE_RE = re.compile(r"^_cache\.sqlite(-wal|-shm|-journal)?$")
_TEMP_RE = re.compile(r"^\.(part-\d{5,}\.parquet|_manifest\.json|_config\.yaml)\.tmp-\d+$")

# Schema-metadata keys of every shard (values are UTF-8 strings; ``generation`` and ``space``
# are JSON). ``generation`` holds every setting that determines the rows: two shards belong
# to one dataset iff their ``generation`` is equal.
METADATA_KEYS: tuple[str, ...] = (
    "format", "simulator_version", "space_hash", "sampler", "seed", "package_version",
    "shard_index", "rows", "infeasible", "generation", "space", "simulator", "errors",
)

_INT_ACCELERATOR = ("pe_rows", "pe_cols", "rf_bytes", "word_bits")
_ARROW_TYPES = {"bool": pa.bool_(), "int64": pa.int64(), "float64": pa.float64(), "str": pa.string()}


REPAIR_ADVICE = "re-running the same dance-gen command (same config and out) repairs it"


class DatasetError(UserError):
    """A dataset directory that cannot be used as asked (foreign, mismatched, damaged or incomplete)."""


def shard_name(index: int) -> str:
    """File name of shard ``index`` (``part-00042.parquet``)."""
    return f"part-{index:05d}.parquet"


def shard_schema(result_dtypes: Mapping[str, str]) -> pa.Schema:
    """The dataset's columns and Arrow types, in order.

    ``row_id``; the layer fields (int64) and ``layer_name``; the accelerator fields
    (``dataflow`` string, integer fields int64, the rest float64); the simulator's result
    fields with the types of ``result_dtypes`` (``RESULT_DTYPES`` of the simulator).
    """
    fields = [pa.field("row_id", pa.int64())]
    fields += [pa.field(name, pa.int64()) for name in LAYER_FIELDS]
    fields.append(pa.field("layer_name", pa.string()))
    for name in ACCELERATOR_FIELDS:
        kind = pa.string() if name in ("dataflow", "pe_kind") else pa.int64() if name in _INT_ACCELERATOR else pa.float64()
        fields.append(pa.field(name, kind))
    for name, dtype in result_dtypes.items():
        fields.append(pa.field(name, _ARROW_TYPES[dtype]))
    return pa.schema(fields)


def frame_to_table(frame: pd.DataFrame, schema: pa.Schema, metadata: Mapping[str, Any]) -> pa.Table:
    """A shard's rows as an Arrow table with the dataset schema and the shard's metadata.

    Parameters
    ----------
    frame : pandas.DataFrame
        Every column of ``schema``.
    schema : pyarrow.Schema
        From `shard_schema`.
    metadata : mapping
        Schema metadata; values that are not strings are stored as JSON.

    Returns
    -------
    pyarrow.Table
    """
    arrays = []
    for field in schema:
        values = frame[field.name]
        if pa.types.is_string(field.type):
            arrays.append(pa.array(values.astype(object).to_numpy(), type=field.type))
        else:
            arrays.append(pa.array(np.asarray(values.to_numpy(), dtype=field.type.to_pandas_dtype()), type=field.type))
    encoded = {key: value if isinstance(value, str) else json.dumps(value, sort_keys=True)
               for key, value in metadata.items()}
    return pa.Table.from_arrays(arrays, schema=schema.with_metadata(encoded))


def write_shard(out: Path, index: int, table: pa.Table) -> tuple[Path, str]:
    """Write one shard atomically; return its final path and the sha256 of its bytes.

    The Parquet bytes (zstd, with page checksums) are made in memory, hashed, and written
    through `dataset_gen.common.files.atomic_write_bytes` (hidden temporary name, flushed,
    renamed), so the final name only ever holds a complete shard.
    """
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", row_group_size=max(1, table.num_rows),
                   write_page_checksum=True)
    data = sink.getvalue().to_pybytes()
    path = atomic_write_bytes(Path(out) / shard_name(index), data)
    return path, hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    """The sha256 (hex) of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def shard_damage(path: Path, sha256: str | None) -> str | None:
    """Why a shard is damaged, or None if it is sound.

    With a recorded ``sha256`` the file's bytes are compared with it; without one the
    shard is read whole (decompressed, page checksums verified).
    """
    if sha256 is not None:
        actual = file_sha256(path)
        return None if actual == sha256 else (f"its bytes do not match the sha256 recorded in {MANIFEST} "
                                              f"({actual[:12]}... instead of {sha256[:12]}...)")
    try:
        pq.read_table(path, page_checksum_verification=True)
    except (OSError, pa.ArrowException) as error:
        return f"unreadable ({' '.join(str(error).split())})"
    return None


def shard_metadata(path: Path) -> dict[str, Any]:
    """The dance-gen metadata of one shard, decoded (``generation`` and ``space`` as dicts).

    Raises
    ------
    DatasetError
        If the file is not Parquet or was not written by dance-gen.
    """
    try:
        raw = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException) as error:
        raise DatasetError(f"{path}: not a readable Parquet file ({error})") from None
    decoded = {key.decode(): value.decode() for key, value in raw.items()}
    if decoded.get("format") != FORMAT:
        raise DatasetError(f"{path}: not a dance-gen shard (no {FORMAT!r} format in its schema metadata)")
    for key in ("generation", "space", "shard_index", "rows", "infeasible", "seed", "simulator", "errors"):
        if key in decoded:  # simulator, errors: absent from shards written before adapters existed
            decoded[key] = json.loads(decoded[key])
    return decoded


def list_shards(out: Path) -> dict[int, Path]:
    """Shards under their final names, by index."""
    shards = {}
    for path in Path(out).iterdir():
        match = _SHARD_RE.match(path.name)
        if match and path.is_file():
            shards[int(match.group(1))] = path
    return dict(sorted(shards.items()))


def read_manifest(out: Path) -> dict[str, Any] | None:
    """The manifest of a dataset directory, or None if it has none."""
    path = Path(out) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DatasetError(f"{path}: not valid JSON ({error})") from None


def write_manifest(out: Path, manifest: Mapping[str, Any]) -> Path:
    """Write the manifest atomically (``_manifest.json``)."""
    return atomic_write_text(Path(out) / MANIFEST, json.dumps(manifest, indent=2, sort_keys=False) + "\n")


def _describe_difference(theirs: Mapping[str, Any], ours: Mapping[str, Any]) -> list[str]:
    """``key = theirs there, ours here`` for every setting that differs (nested keys dotted)."""
    differences = []
    for key in sorted(set(theirs) | set(ours)):
        there, here = theirs.get(key), ours.get(key)
        if isinstance(there, Mapping) and isinstance(here, Mapping):
            differences += [f"{key}.{item}" for item in _describe_difference(there, here)]
        elif there != here:
            differences.append(f"{key} = {there!r} there, {here!r} here")
    return differences


def check_compatible(where: str, theirs: Mapping[str, Any], ours: Mapping[str, Any], out: Path,
                     their_space: Mapping[str, Any] | None = None, our_space: Mapping[str, Any] | None = None) -> None:
    """Refuse data generated under other settings, naming each setting that differs.

    ``theirs``/``ours`` are generation records; ``their_space``/``our_space`` the space
    descriptions, which name the differing ranges (``space.accelerator.pe_rows.max``) when
    the space hashes differ.
    """
    advice = f"pass overwrite=true to replace it, or choose another out (out = {str(out)!r})"
    if theirs.get("simulator_version") != ours.get("simulator_version"):
        raise DatasetError(
            f"{where} holds data from another simulator version ({theirs.get('simulator_version')!r} there, "
            f"{ours.get('simulator_version')!r} here): {advice}")
    if theirs.get("space_hash") != ours.get("space_hash"):
        fields = (_describe_difference({"space": their_space}, {"space": our_space})
                  if isinstance(their_space, Mapping) and isinstance(our_space, Mapping) else [])
        raise DatasetError(
            f"{where} holds data from another design space (space hash {theirs.get('space_hash')!r} there, "
            f"{ours.get('space_hash')!r} here{': ' + '; '.join(fields) if fields else ''}): {advice}")
    differences = _describe_difference(theirs, ours)
    if differences:
        raise DatasetError(f"{where} holds data generated with other settings ({'; '.join(differences)}); "
                           f"resuming needs the same settings: {advice}")


def _is_dance_shard(path: Path) -> bool:
    try:
        shard_metadata(path)
    except DatasetError:
        return False
    return True


def _sort_entries(out: Path) -> tuple[dict[str, Any] | None, dict[str, Path], list[str]]:
    """Sort a dataset directory: dance-gen's manifest (None if there is none), the paths
    dance-gen wrote (shards, manifest, config, temporaries) by name, and the sorted names of
    everything else that readers would see."""
    try:
        manifest = read_manifest(out)
    except DatasetError:
        manifest = None  # not JSON: not ours
    ours = (isinstance(manifest, Mapping) and manifest.get("format") == FORMAT
            and isinstance(manifest.get("generation"), Mapping))
    listed = ({entry.get("file") for entry in manifest.get("shards", []) if isinstance(entry, Mapping)}
              if ours else set())
    owned: dict[str, Path] = {}
    foreign: list[str] = []
    for path in sorted(out.iterdir()):
        name = path.name
        if _TEMP_RE.match(name) or (name == MANIFEST and ours) or (ours and _CACHE_RE.match(name)):
            owned[name] = path
        elif _SHARD_RE.match(name) and path.is_file() and (name in listed or _is_dance_shard(path)):
            owned[name] = path
        elif name in (MANIFEST, CONFIG_FILE):
            continue  # sorted below, once the shards are known
        elif name.startswith((".", "_")):
            continue  # hidden from readers, and not ours to delete
        else:
            foreign.append(name)
    if (out / MANIFEST).exists() and not ours:
        foreign.append(MANIFEST)
    if (out / CONFIG_FILE).exists():
        # the config is written after the manifest: ours when any other file of ours is there
        if ours or any(_SHARD_RE.match(name) for name in owned):
            owned[CONFIG_FILE] = out / CONFIG_FILE
        else:
            foreign.append(CONFIG_FILE)
    return (dict(manifest) if ours else None), owned, sorted(foreign)


def _refuse_foreign(out: Path, foreign: list[str]) -> None:
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise DatasetError(f"out = {str(out)!r} holds files dance-gen did not write ({shown}): move them "
                           "elsewhere or choose another out (overwrite=true only ever removes dance-gen's "
                           "own shards, manifest, config and temporary files)")


def prepare_output(out: Path, generation: Mapping[str, Any], overwrite: bool,
                   expected_rows: Mapping[int, int], space: Mapping[str, Any] | None = None
                   ) -> dict[int, dict[str, Any]]:
    """Make ``out`` ready for a run and return the shards that are already done.

    Parameters
    ----------
    out : Path
        The dataset directory (created if missing).
    generation : mapping
        This run's generation settings (``generation`` metadata of its shards).
    overwrite : bool
        Delete the earlier dataset (dance-gen's shards, manifest, config and temporaries)
        instead of resuming it.
    expected_rows : mapping of int to int
        Rows of every shard this run will hold, by index.
    space : mapping, optional
        This run's space description (`Space.to_dict`): names the differing ranges when
        the data there comes from another space.

    Returns
    -------
    dict of int to dict
        The metadata of the sound, complete shards already there, by index (to be
        skipped), each with its ``sha256``. A damaged shard (checksum or read failure) is
        removed, to be generated again.

    Raises
    ------
    DatasetError
        If ``out`` is a file, holds files dance-gen did not write (named; even with
        ``overwrite``), or data from another simulator version, space or generation
        settings (naming which).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DatasetError(f"out = {str(out)!r} is a file; expected a directory for the dataset")
    out.mkdir(parents=True, exist_ok=True)
    manifest, owned, foreign = _sort_entries(out)
    _refuse_foreign(out, foreign)
    if overwrite:
        for path in owned.values():
            path.unlink()
        return {}
    for name, path in owned.items():
        if _TEMP_RE.match(name):
            path.unlink()  # a shard or manifest torn by a killed run: never renamed, never read
    checksums: dict[str, str | None] = {}
    if manifest is not None:
        check_compatible(f"out = {str(out)!r} (its manifest)", manifest["generation"], generation, out,
                         manifest.get("space"), space)
        checksums = {entry["file"]: entry.get("sha256") for entry in manifest.get("shards", [])
                     if isinstance(entry, Mapping) and "file" in entry}
    done = {}
    for index, path in list_shards(out).items():
        try:
            metadata = shard_metadata(path)
        except DatasetError:
            if path.name not in checksums:
                raise
            path.unlink()  # listed by our manifest, its footer damaged: generated again
            continue
        check_compatible(f"out = {str(out)!r} (shard {path.name})", metadata["generation"], generation, out,
                         metadata.get("space"), space)
        if index not in expected_rows or metadata["rows"] != expected_rows[index]:
            raise DatasetError(f"{path}: holds {metadata['rows']} rows but this run's shard {index} has "
                               f"{expected_rows.get(index, 0)}: pass overwrite=true to start again")
        if shard_damage(path, checksums.get(path.name)) is not None:
            path.unlink()  # ours and damaged: this run generates it again, bit for bit
            continue
        done[index] = {**metadata, "sha256": checksums.get(path.name) or file_sha256(path)}
    return done


def new_manifest(generation: Mapping[str, Any], config: Mapping[str, Any], space: Mapping[str, Any],
                 package_version: str, n_shards: int) -> dict[str, Any]:
    """An empty manifest for a run (``complete`` false, no shards yet)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return {
        "format": FORMAT,
        "complete": False,
        "simulator_version": generation["simulator_version"],
        "space_hash": generation["space_hash"],
        "sampler": generation["sampler"],
        "seed": generation["seed"],
        "package_version": package_version,
        "n_samples": generation["n_samples"],
        "n_shards": n_shards,
        "rows": 0,
        "infeasible": 0,
        "created_at": now,
        "updated_at": now,
        "generation": dict(generation),
        "space": dict(space),
        "config": dict(config),
        "shards": [],
    }


def update_manifest(manifest: dict[str, Any], shards: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Fill a manifest's shard list and totals from the metadata of the complete shards
    (each with its ``sha256``, recorded for the readers to verify)."""
    entries = sorted(({"file": shard_name(meta["shard_index"]), "index": meta["shard_index"],
                       "rows": meta["rows"], "infeasible": meta["infeasible"], "sha256": meta.get("sha256")}
                      for meta in shards),
                     key=lambda entry: entry["index"])
    manifest["shards"] = entries
    manifest["rows"] = sum(entry["rows"] for entry in entries)
    manifest["infeasible"] = sum(entry["infeasible"] for entry in entries)
    manifest["complete"] = len(entries) == manifest["n_shards"]
    manifest["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return manifest
