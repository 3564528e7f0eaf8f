"""Simulator datasets as training batches: the split, the statistics, the LightningDataModule.

The split is a pure function of a row's *inputs* (its layer and accelerator fields): a
64-bit hash of their canonical values picks train, validation or test. So the same pair
always lands in the same split, whatever the shard layout, the row order or the number of
workers, and duplicated pairs never straddle train and test.

Two code paths read the Parquet shards (``pyarrow.dataset``): a dataset that fits in memory
is read and encoded once into tensors; a larger one is streamed shard by shard, record batch
by record batch, shuffled within a bounded buffer. Both give the same rows per split.

Rows whose ``error`` column is not empty (the simulator failed on the pair: its result is
unknown, not infeasible) are dropped by both paths and by `read_split`: learning them as
infeasible would teach the evaluator a crash of the tool. Datasets older than the column
have no such rows.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import lightning as L
import numpy as np
import pandas as pd
import pyarrow.dataset as pads
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from dataset_gen.reader import simulator_identity
from dataset_gen.space import ACCELERATOR_FIELDS, DATAFLOWS, LAYER_FIELDS, PE_KINDS, SpaceError
from dataset_gen.writer import DatasetError, list_shards
from evaluator.features import (
    D_ACC,
    D_LAYER,
    D_PAIR,
    LAYER_DEFAULTS,
    encode_accelerators,
    encode_layers,
    pair_features,
)
from evaluator.network import (
    COMPONENT_COLUMNS,
    LOG1P_COLUMNS,
    TARGET_MATRIX_COLUMNS,
    analytic_base,
    fit_base,
    loopnest_base_input,
    loopnest_log_costs,
    loopnest_used,
)

SPLITS: tuple[str, ...] = ("train", "val", "test")
INPUT_FIELDS: tuple[str, ...] = (*LAYER_FIELDS, *ACCELERATOR_FIELDS)
RESULT_COLUMNS: tuple[str, ...] = ("feasible", "total_cycles", "energy_pj", "area_mm2", *COMPONENT_COLUMNS)
ERROR_COLUMN = "error"  # dataset_gen.adapters.ERROR_COLUMN: non-empty where the simulator failed
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


# ------------------------------------------------------------------------------- split


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser (Steele et al. 2014): a bijective, well-mixing uint64 hash."""
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return x ^ (x >> np.uint64(31))


def pair_hash(pairs: pd.DataFrame, salt: int = 0) -> np.ndarray:
    """A uint64 hash of each row's layer and accelerator fields (nothing else).

    Numbers are hashed as float64 (so ``64`` and ``64.0`` agree); ``dataflow`` by its index
    in `DATAFLOWS`; missing optional layer fields take `Layer`'s defaults.
    """
    n = len(pairs)
    state = _splitmix64(np.full(n, np.uint64(salt & 0xFFFFFFFFFFFFFFFF), dtype=np.uint64))
    for position, field in enumerate(INPUT_FIELDS):
        if field in ("dataflow", "pe_kind"):
            names = DATAFLOWS if field == "dataflow" else PE_KINDS
            lookup = {name: i for i, name in enumerate(names)}
            # a frame without pe_kind (written before PEs had a kind) means fixed MACs
            codes = pairs[field].map(lookup) if field in pairs.columns else pd.Series(np.zeros(n))
            if codes.isna().any():
                row = int(np.flatnonzero(codes.isna().to_numpy())[0])
                raise SpaceError(f"accelerator.{field} = {pairs[field].iloc[row]!r} (row {row}): expected one of "
                                 f"{list(names)}")
            bits = codes.to_numpy(dtype=np.uint64)
        else:
            if field in pairs.columns:
                values = pd.to_numeric(pairs[field]).to_numpy(dtype=np.float64)
            elif field in LAYER_DEFAULTS:
                values = np.full(n, float(LAYER_DEFAULTS[field]))
            else:
                raise SpaceError(f"pairs: missing column {field!r}")
            bits = (values + 0.0).view(np.uint64)  # + 0.0 turns -0.0 into +0.0
        with np.errstate(over="ignore"):
            state = _splitmix64(state ^ _splitmix64(bits + np.uint64(position)))
    return state


def assign_split(pairs: pd.DataFrame, fractions: Sequence[float] = (0.8, 0.1, 0.1), salt: int = 0) -> np.ndarray:
    """Split of each row: 0 train, 1 validation, 2 test (int8), from `pair_hash`.

    Parameters
    ----------
    pairs : pandas.DataFrame
        Layer and accelerator columns.
    fractions : (train, val, test)
        Non-negative shares summing to 1.
    salt : int
        Changes the split (a different, equally deterministic partition).
    """
    fractions = check_fractions(fractions)
    unit = (pair_hash(pairs, salt) >> np.uint64(11)).astype(np.float64) / float(1 << 53)  # [0, 1)
    edges = np.cumsum(fractions)[:2]
    return np.searchsorted(edges, unit, side="right").astype(np.int8)


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validate (train, val, test) shares."""
    values = tuple(float(f) for f in fractions)
    if len(values) != 3 or any(not 0 <= f <= 1 for f in values) or abs(sum(values) - 1) > 1e-9 or values[0] == 0:
        raise ValueError(f"split = {list(fractions)!r}: expected [train, val, test] shares in [0, 1] summing to 1, train > 0")
    return values  # type: ignore[return-value]


# -------------------------------------------------------------------------- encoding


def log_targets(frame: pd.DataFrame, columns: Sequence[str] = TARGET_MATRIX_COLUMNS) -> np.ndarray:
    """``(n, len(columns))`` natural logs of simulator columns; NaN where undefined.

    Everything but ``area_mm2`` is defined on feasible rows only; ``stall_cycles`` is fitted
    as ``ln(1 + stalls)`` (it can be 0); other non-positive values count as undefined.
    """
    feasible = frame["feasible"].to_numpy(dtype=bool)
    result = np.full((len(frame), len(columns)), np.nan)
    for i, column in enumerate(columns):
        if column not in frame.columns:
            continue  # e.g. a dataset without component columns: those targets stay NaN
        values = pd.to_numeric(frame[column]).to_numpy(dtype=np.float64)
        log1p = column in LOG1P_COLUMNS
        defined = np.isfinite(values) & ((values >= 0) if log1p else (values > 0))
        if column != "area_mm2":
            defined &= feasible
        safe = np.where(defined, values, 1.0)
        result[:, i] = np.where(defined, np.log1p(safe) if log1p else np.log(safe), np.nan)
    return result


def encode_frame(frame: pd.DataFrame) -> dict[str, torch.Tensor]:
    """A batch of training tensors from a frame of pairs with simulator results.

    Returns
    -------
    dict
        ``layer_x (n, d_layer)``, ``acc_x (n, d_acc)``, ``pair_x (n, d_pair)``, ``targets (n, 10)`` (natural logs of
        `TARGET_MATRIX_COLUMNS`, NaN where undefined), ``feasible (n,)`` (0./1.), float32.
    """
    layer_x, acc_x = encode_layers(frame), encode_accelerators(frame)
    return {
        "layer_x": layer_x,
        "acc_x": acc_x,
        "pair_x": pair_features(layer_x, acc_x),  # parameter-free: computed once, not every epoch
        "targets": torch.tensor(log_targets(frame), dtype=torch.float32),
        "feasible": torch.tensor(frame["feasible"].to_numpy(dtype=bool), dtype=torch.float32),
    }


def usable(frame: pd.DataFrame) -> np.ndarray:
    """Which rows hold a simulator result (bool mask): those with an empty ``error``.

    A frame without the column (a dataset written before adapters existed) has no failed rows.
    """
    if ERROR_COLUMN not in frame.columns:
        return np.ones(len(frame), dtype=bool)
    return (frame[ERROR_COLUMN].fillna("").astype(str) == "").to_numpy()


def drop_error_rows(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The rows with a simulator result (without the ``error`` column), and how many were not."""
    keep = usable(frame)
    dropped = int((~keep).sum())
    frame = frame[keep] if dropped else frame
    return frame.drop(columns=[ERROR_COLUMN], errors="ignore"), dropped


def _columns(available: Sequence[str]) -> list[str]:
    # the error column is read to drop failed rows (drop_error_rows), never learned from
    wanted = [c for c in (*INPUT_FIELDS, *RESULT_COLUMNS, ERROR_COLUMN) if c in available]
    missing = [c for c in (*LAYER_FIELDS[:4], *ACCELERATOR_FIELDS, *RESULT_COLUMNS) if c not in available]
    if missing:
        raise SpaceError(f"dataset: missing column(s) {missing}")
    return wanted


def parquet_files(path: str | os.PathLike) -> list[str]:
    """The shards of a dance-gen dataset directory in shard order (or the one file given)."""
    path = Path(path)
    if path.is_file():
        return [str(path)]
    if not path.is_dir():
        raise FileNotFoundError(f"dataset {str(path)!r}: no such directory")
    files = [str(shard) for shard in list_shards(path).values()]
    if not files:
        raise FileNotFoundError(f"dataset {str(path)!r}: no dance-gen shards (part-NNNNN.parquet) in it")
    return files


def read_split(path: str | os.PathLike, split: str | None, fractions: Sequence[float] = (0.8, 0.1, 0.1),
               salt: int = 0, columns: Sequence[str] | None = None, max_rows: int | None = None,
               seed: int = 0, drop_errors: bool = True) -> pd.DataFrame:
    """The rows of one split (or all with ``split=None``) as a DataFrame, streamed shard by shard.

    Rows the simulator failed on (non-empty ``error``) are left out unless ``drop_errors`` is
    false (then the ``error`` column is kept, when the dataset has one); ``attrs["error_rows"]``
    says how many of the split's rows were left out. ``max_rows`` keeps a uniform random subset
    (seeded) of at most that many of the remaining rows.
    """
    files = parquet_files(path)
    dataset = pads.dataset(files, format="parquet")
    wanted = list(columns) if columns is not None else _columns(dataset.schema.names)
    if ERROR_COLUMN in dataset.schema.names and ERROR_COLUMN not in wanted:
        read = [*wanted, ERROR_COLUMN]
    else:
        read = wanted
    parts = []
    errors = 0
    for batch in dataset.to_batches(columns=read, batch_size=131072):
        frame = batch.to_pandas()
        if split is not None:
            frame = frame[assign_split(frame, fractions, salt) == SPLITS.index(split)]
        if drop_errors:
            frame, dropped = drop_error_rows(frame)
            errors += dropped
        parts.append(frame)
    kept = [c for c in wanted if c != ERROR_COLUMN or not drop_errors]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=kept)
    if max_rows is not None and len(frame) > max_rows:
        frame = frame.sample(n=max_rows, random_state=seed).sort_index().reset_index(drop=True)
    frame.attrs["error_rows"] = errors
    return frame


# --------------------------------------------------------------------------- datasets


def _epoch_seed() -> int:
    """A seed that changes every epoch yet is fixed by ``seed_everything``.

    In a worker, torch seeds each epoch's workers from the main RNG; in the main process we
    draw from the main RNG directly.
    """
    info = get_worker_info()
    if info is not None:
        return int(info.seed % (1 << 63))
    return int(torch.randint(0, 1 << 62, (1,)).item())


class InMemoryBatches(IterableDataset):
    """Pre-encoded tensors served as whole batches (no per-sample collation)."""

    def __init__(self, tensors: dict[str, torch.Tensor], batch_size: int, shuffle: bool) -> None:
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.n = int(tensors["feasible"].shape[0])

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(_epoch_seed())
            order = torch.randperm(self.n, generator=generator)
        else:
            order = None
        for start in range(0, self.n, self.batch_size):
            if order is None:
                yield {k: v[start:start + self.batch_size] for k, v in self.tensors.items()}
            else:
                index = order[start:start + self.batch_size]
                yield {k: v[index] for k, v in self.tensors.items()}


class StreamingBatches(IterableDataset):
    """One split of a sharded dataset, streamed: shards in (shuffled) order, record batches
    filtered to the split, encoded, shuffled within a buffer of ``buffer_rows`` rows.

    Workers take disjoint shards (shard i goes to worker i mod n_workers).
    """

    def __init__(self, files: Sequence[str], split: str, fractions: Sequence[float], salt: int,
                 batch_size: int, shuffle: bool, rows: int, buffer_rows: int = 262144,
                 read_rows: int = 65536) -> None:
        self.files = list(files)
        self.split_index = SPLITS.index(split)
        self.fractions = check_fractions(fractions)
        self.salt = salt
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.rows = rows
        self.buffer_rows = max(buffer_rows, batch_size)
        self.read_rows = read_rows

    def __len__(self) -> int:
        return math.ceil(self.rows / self.batch_size)

    def _encoded_chunks(self, files: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
        for file in files:
            dataset = pads.dataset(file, format="parquet")
            columns = _columns(dataset.schema.names)
            for batch in dataset.to_batches(columns=columns, batch_size=self.read_rows):
                frame = batch.to_pandas()
                frame = frame[assign_split(frame, self.fractions, self.salt) == self.split_index]
                frame, _ = drop_error_rows(frame)
                if len(frame):
                    yield encode_frame(frame)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        seed = _epoch_seed()
        generator = torch.Generator().manual_seed(seed)
        files = list(self.files)
        if self.shuffle:
            files = [files[i] for i in torch.randperm(len(files), generator=generator).tolist()]
        info = get_worker_info()
        if info is not None:
            files = files[info.id::info.num_workers]
        buffer: list[dict[str, torch.Tensor]] = []
        held = 0
        for chunk in self._encoded_chunks(files):
            buffer.append(chunk)
            held += int(chunk["feasible"].shape[0])
            if held >= self.buffer_rows:
                merged = self._merge(buffer, generator)
                full = (held // self.batch_size) * self.batch_size
                for start in range(0, full, self.batch_size):
                    yield {k: v[start:start + self.batch_size] for k, v in merged.items()}
                buffer = [{k: v[full:] for k, v in merged.items()}]
                held -= full
        if held:
            merged = self._merge(buffer, generator)
            for start in range(0, held, self.batch_size):
                yield {k: v[start:start + self.batch_size] for k, v in merged.items()}

    def _merge(self, buffer: list[dict[str, torch.Tensor]], generator: torch.Generator) -> dict[str, torch.Tensor]:
        merged = {k: torch.cat([chunk[k] for chunk in buffer]) for k in buffer[0]}
        if self.shuffle:
            order = torch.randperm(merged["feasible"].shape[0], generator=generator)
            merged = {k: v[order] for k, v in merged.items()}
        return merged


# ------------------------------------------------------------------------- statistics


class _Moments:
    """Running float64 sums for means and standard deviations (columns may hold NaN)."""

    def __init__(self, width: int) -> None:
        self.count = np.zeros(width)
        self.total = np.zeros(width)
        self.squares = np.zeros(width)
        self.low = np.full(width, np.inf)
        self.high = np.full(width, -np.inf)

    def add(self, values: np.ndarray) -> None:
        defined = np.isfinite(values)
        clean = np.where(defined, values, 0.0)
        self.count += defined.sum(axis=0)
        self.total += clean.sum(axis=0)
        self.squares += (clean**2).sum(axis=0)
        self.low = np.minimum(self.low, np.where(defined, values, np.inf).min(axis=0, initial=np.inf))
        self.high = np.maximum(self.high, np.where(defined, values, -np.inf).max(axis=0, initial=-np.inf))

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        count = np.maximum(self.count, 1)
        mean = self.total / count
        variance = np.maximum(self.squares / count - mean**2, 0.0)
        return mean, np.sqrt(variance)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return np.where(np.isfinite(self.low), self.low, 0.0), np.where(np.isfinite(self.high), self.high, 0.0)


def statistics_of(chunks: Any, base_chunks: Any = None,
                  simulator: dict[str, Any] | None = None) -> tuple[dict[str, torch.Tensor], int]:
    """Normalisation statistics from encoded training chunks, and their row count.

    ``chunks`` is a list of chunks or a function returning an iterable of them (read twice:
    once to fit the analytic base to the simulator, `fit_base`, once for the moments);
    ``base_chunks`` (a list), when given, are the rows the base is fitted on instead. Means
    and standard deviations of every feature, target and residual of a target against its
    (fitted) analytic estimate, the range (min, max) of every feature (the network clamps its
    inputs to it, see `EvaluatorNetwork`) and the base's fit (`BASE_FIT`; ``simulator``, the
    data's simulator identity, lets it try the loop-nest model, `fit_base`).
    """
    if not callable(chunks) and iter(chunks) is chunks:  # a one-shot iterator: the moments would see nothing
        raise TypeError("statistics_of: pass a list of chunks or a function returning an iterable of them")
    read = chunks if callable(chunks) else (lambda: chunks)
    fit = fit_base(read() if base_chunks is None else base_chunks, simulator)
    layer, acc, pair = _Moments(D_LAYER), _Moments(D_ACC), _Moments(D_PAIR)
    target, residual = _Moments(len(TARGET_MATRIX_COLUMNS)), _Moments(len(TARGET_MATRIX_COLUMNS))
    rows = 0
    for chunk in read():
        layer.add(chunk["layer_x"].double().numpy())
        acc.add(chunk["acc_x"].double().numpy())
        pair.add(chunk["pair_x"].double().numpy())
        target.add(chunk["targets"].double().numpy())
        nest = (loopnest_base_input(loopnest_log_costs(chunk["layer_x"], chunk["acc_x"], fit["base_loopnest"]),
                                    fit["base_loopnest"]) if loopnest_used(fit["base_loopnest"]) else None)
        base = analytic_base(chunk["pair_x"], chunk["acc_x"], fit["base_roofline"], fit["base_energy_scales"],
                             fit["base_objective"], nest)
        residual.add((chunk["targets"] - base).double().numpy())
        rows += int(chunk["feasible"].shape[0])
    stats = dict(fit)
    for name, moments in (("layer", layer), ("acc", acc), ("pair", pair), ("target", target), ("residual", residual)):
        mean, std = moments.result()
        stats[f"{name}_mean"] = torch.tensor(mean, dtype=torch.float32)
        stats[f"{name}_std"] = torch.tensor(std, dtype=torch.float32)
        if name not in ("target", "residual"):
            low, high = moments.bounds()
            stats[f"{name}_min"] = torch.tensor(low, dtype=torch.float32)
            stats[f"{name}_max"] = torch.tensor(high, dtype=torch.float32)
    return stats, rows


# ------------------------------------------------------------------------- row counts


# Feasible pairs every split with a positive share needs: latency and energy are defined on
# feasible pairs only, and the report's rank correlation (Kendall's tau) needs two of them.
MIN_FEASIBLE_ROWS_PER_SPLIT = 2


class TooFewRowsError(DatasetError):
    """A dataset too small, or with too few mappable pairs, to train and evaluate on."""


def check_split_rows(path: str, rows: dict[str, int], feasible: dict[str, int], fractions: Sequence[float],
                     error_rows: dict[str, int] | None = None) -> None:
    """Refuse a split that would train on nothing or report NaN metrics.

    Every split with a positive share must hold `MIN_FEASIBLE_ROWS_PER_SPLIT` feasible pairs:
    without them the network has nothing to fit (train), nothing to stop on (val) or nothing
    to report (test). ``rows`` and ``feasible`` count usable rows only; ``error_rows`` (rows
    the simulator failed on, per split, already left out) only enter the message.

    Raises
    ------
    TooFewRowsError
        Naming the dataset, its row and feasible-row counts per split and the minimum.
    """
    short = [name for name, share in zip(SPLITS, fractions) if share > 0 and feasible[name] < MIN_FEASIBLE_ROWS_PER_SPLIT]
    if not short:
        return
    total, total_feasible = sum(rows.values()), sum(feasible.values())
    failed = sum((error_rows or {}).values())
    per_split = ", ".join(f"{name} {rows[name]} ({feasible[name]} feasible)" for name in SPLITS)
    raise TooFewRowsError(
        f"dataset {path!r}: {total} rows, {total_feasible} feasible"
        + (f" ({failed} more the simulator failed on, left out)" if failed else "")
        + f", split {list(fractions)} into {per_split}; "
        f"training needs at least {MIN_FEASIBLE_ROWS_PER_SPLIT} feasible rows in every split with a positive share "
        f"(fewer in {short}): "
        "generate more pairs (dance-gen n_samples=...) or a design space where more pairs map"
    )


# ------------------------------------------------------------------------ data module


class PairsDataModule(L.LightningDataModule):
    """Training, validation and test batches from a simulator dataset directory.

    Parameters
    ----------
    path : str
        Dataset directory (``dance-gen`` output) or one Parquet file.
    batch_size : int
        Training batch size (at most: see ``min_batches_per_epoch``).
    min_batches_per_epoch : int
        A small dataset's batches shrink so that an epoch has at least this many (a few
        thousand rows from a slow simulator would otherwise make one or two full-batch
        steps per epoch).
    eval_batch_size : int
        Validation / test batch size.
    split : (train, val, test)
        Shares of the hash split (see `assign_split`).
    split_salt : int
        Picks another deterministic partition.
    in_memory : {"auto", True, False}
        Encode the whole dataset once into tensors; "auto" does so up to
        ``max_rows_in_memory`` rows, else streams.
    max_rows_in_memory : int
    buffer_rows : int
        Shuffle buffer of the streaming path.
    num_workers : int
        DataLoader workers (streaming: each reads its own shards).
    expect_simulator_version : str, optional
        Refuse data from another simulator version (default: the installed simulator's).
    expect_space_hash : str, optional
        Refuse data from another design space.
    base_rows : int, optional
        Fit the analytic base (`evaluator.network.fit_base`) on the training rows among the
        dataset's first ``base_rows`` rows (file order) instead of on every training row:
        dance-active's space-filling round 0, when later rows were chosen for being unusual
        (in memory only; a streamed dataset fits on every training row).
    """

    def __init__(self, path: str, batch_size: int = 2048, eval_batch_size: int = 16384, min_batches_per_epoch: int = 1,
                 split: Sequence[float] = (0.8, 0.1, 0.1), split_salt: int = 0, in_memory: Any = "auto",
                 max_rows_in_memory: int = 5_000_000, buffer_rows: int = 262144, num_workers: int = 0,
                 expect_simulator_version: str | None = None, expect_space_hash: str | None = None,
                 base_rows: int | None = None) -> None:
        super().__init__()
        if in_memory not in ("auto", True, False):
            raise ValueError(f"in_memory = {in_memory!r}: expected 'auto', true or false")
        for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} = {value!r}: expected a positive integer")
        if not isinstance(min_batches_per_epoch, int) or min_batches_per_epoch < 1:
            raise ValueError(f"min_batches_per_epoch = {min_batches_per_epoch!r}: expected a positive integer")
        if base_rows is not None and (isinstance(base_rows, bool) or not isinstance(base_rows, int) or base_rows < 1):
            raise ValueError(f"base_rows = {base_rows!r}: expected a positive integer or null (every training row)")
        self.base_rows = base_rows
        self.path = str(path)
        self.batch_size = batch_size
        self.min_batches_per_epoch = min_batches_per_epoch
        self.eval_batch_size = eval_batch_size
        self.fractions = check_fractions(split)
        self.split_salt = int(split_salt)
        self.in_memory = in_memory
        self.max_rows_in_memory = max_rows_in_memory
        self.buffer_rows = buffer_rows
        self.num_workers = num_workers
        self.expect_simulator_version = expect_simulator_version
        self.expect_space_hash = expect_space_hash
        self.metadata: dict[str, Any] = {}
        self.statistics: dict[str, torch.Tensor] | None = None
        self.rows: dict[str, int] = {}
        self.error_rows: dict[str, int] = {name: 0 for name in SPLITS}
        self._tensors: dict[str, dict[str, torch.Tensor]] = {}
        self._files: list[str] = []
        self.streaming = False

    @property
    def split_definition(self) -> dict[str, Any]:
        """What an artifact records to reproduce the split."""
        return {"fractions": list(self.fractions), "salt": self.split_salt, "hash": "splitmix64 over layer+accelerator fields"}

    def setup(self, stage: str | None = None) -> None:
        if self.statistics is not None:
            return
        from evaluator.dataset import check_dataset

        self.metadata = check_dataset(self.path, self.expect_simulator_version, self.expect_space_hash)
        self._files = parquet_files(self.path)
        total = pads.dataset(self._files, format="parquet").count_rows()
        self.streaming = self.in_memory is False or (self.in_memory == "auto" and total > self.max_rows_in_memory)
        if not self.streaming:
            frame = read_split(self.path, None, drop_errors=False)  # dropped below, counted per split
            split = assign_split(frame, self.fractions, self.split_salt)
            first = np.arange(len(frame)) < (self.base_rows if self.base_rows is not None else len(frame))
            keep = usable(frame)
            self.error_rows = {name: int((~keep & (split == index)).sum()) for index, name in enumerate(SPLITS)}
            frame, split, first = frame[keep].drop(columns=[ERROR_COLUMN], errors="ignore"), split[keep], first[keep]
            parts = {name: frame[split == index] for index, name in enumerate(SPLITS)}
            self.rows = {name: len(part) for name, part in parts.items()}
            feasible = {name: int(part["feasible"].sum()) for name, part in parts.items()}
            check_split_rows(self.path, self.rows, feasible, self.fractions, self.error_rows)
            self._tensors = {name: encode_frame(part) for name, part in parts.items()}
            train = self._tensors["train"]
            in_base = torch.as_tensor(first[split == SPLITS.index("train")])  # the train rows among the first
            base = None if self.base_rows is None else [{name: value[in_base] for name, value in train.items()}]
            self.statistics, _ = statistics_of([train], base, simulator_identity(self.metadata))
        else:
            counts = np.zeros(len(SPLITS), dtype=np.int64)
            feasible_counts = np.zeros(len(SPLITS), dtype=np.int64)
            error_counts = np.zeros(len(SPLITS), dtype=np.int64)
            dataset = pads.dataset(self._files, format="parquet")
            columns = [*INPUT_FIELDS, "feasible", *([ERROR_COLUMN] if ERROR_COLUMN in dataset.schema.names else [])]
            for batch in dataset.to_batches(columns=columns):
                frame = batch.to_pandas()
                split = assign_split(frame, self.fractions, self.split_salt)
                keep = usable(frame)
                counts += np.bincount(split[keep], minlength=len(SPLITS))
                error_counts += np.bincount(split[~keep], minlength=len(SPLITS))
                feasible_counts += np.bincount(split[keep & frame["feasible"].to_numpy(dtype=bool)],
                                               minlength=len(SPLITS))
            self.rows = {name: int(count) for name, count in zip(SPLITS, counts)}
            self.error_rows = {name: int(count) for name, count in zip(SPLITS, error_counts)}
            check_split_rows(self.path, self.rows, dict(zip(SPLITS, feasible_counts.tolist())), self.fractions,
                             self.error_rows)
            train_stream = StreamingBatches(self._files, "train", self.fractions, self.split_salt, 1 << 30, False, 0)
            self.statistics, _ = statistics_of(lambda: train_stream._encoded_chunks(self._files),
                                               simulator=simulator_identity(self.metadata))

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if self.statistics is None:
            self.setup()
        batch_size = self.train_batch_size if split == "train" else self.eval_batch_size
        if self.streaming:
            dataset: IterableDataset = StreamingBatches(self._files, split, self.fractions, self.split_salt,
                                                        batch_size, shuffle, self.rows[split], self.buffer_rows)
            workers = self.num_workers
        else:
            dataset = InMemoryBatches(self._tensors[split], batch_size, shuffle)
            workers = 0  # tensors already in memory: workers would only copy them
        # Our datasets yield whole batches and know their length; with several workers each
        # reads its own shards, so Lightning's warning about __len__ does not apply.
        warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined")
        return DataLoader(dataset, batch_size=None, num_workers=workers, persistent_workers=False)

    @property
    def train_batch_size(self) -> int:
        """``batch_size``, or less on a small dataset: ``min_batches_per_epoch`` batches per epoch."""
        return max(1, min(self.batch_size, math.ceil(self.rows["train"] / self.min_batches_per_epoch)))

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
