"""Generate a simulator dataset: sample pairs, simulate them, write Parquet shards.

`generate` is the whole job of ``dance-gen`` without Hydra: give it the configuration as a
mapping (what ``conf/gen.yaml`` composes to) and it validates everything first, then runs
the shard tasks on the chosen backend and writes the dataset (layout in
`dataset_gen.writer`). A shard's rows depend only on the configuration and the shard's
index (`dataset_gen.sampling`), so the dataset is the same, bit for bit, whatever the
number of workers or the backend, and a killed run resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import yaml

import dataset_gen
from dataset_gen.common.errors import UserError
from dataset_gen.backends import BACKENDS, run_tasks
from dataset_gen.common.cpus import usable_cpus
from dataset_gen.common.files import atomic_write_text
from dataset_gen.ranges import Space, parse_space
from dataset_gen.sampling import SAMPLERS, LayerMix, parse_layers, sample_pairs, shard_bounds
from dataset_gen.adapters import ERROR_COLUMN, SimulatorAdapter, make_adapter, result_columns
from dataset_gen.adapters.cache import CACHE_FILE, ResultCache
from dataset_gen.simulator import OBJECTIVES
from dataset_gen.space import ACCELERATOR_FIELDS, LAYER_FIELDS
from dataset_gen.writer import (
    CONFIG_FILE, FORMAT, frame_to_table, new_manifest, prepare_output, read_manifest,
    shard_schema, update_manifest, write_manifest, write_shard,
)

__all__ = ["ConfigError", "GenerationConfig", "ShardPlan", "GenerationResult", "parse_config",
           "compute_shard", "generate"]

MAPPINGS: tuple[str, ...] = ("search", "scalesim")
CONFIG_KEYS: tuple[str, ...] = ("n_samples", "seed", "out", "shard_rows", "workers", "sampler", "backend",
                                "ray", "simulator", "mapping", "objective", "overwrite", "progress", "space",
                                "layers")
MAX_SHARDS = 100_000  # more files than this in one directory helps no reader or file system


class ConfigError(UserError):
    """A generation setting with a bad value; the message names the key."""


@dataclass(frozen=True)
class GenerationConfig:
    """Validated settings of one run (see `parse_config`)."""

    n_samples: int
    seed: int
    out: Path
    shard_rows: int
    workers: int
    sampler: str
    backend: str
    ray_address: str | None
    simulator: dict
    mapping: str
    objective: str
    overwrite: bool
    progress: bool
    space: Space
    layers: LayerMix
    resolved: dict

    @property
    def adapter_config(self) -> dict[str, Any]:
        """The simulator adapter's config: its group (``conf/simulator/``) plus the mapping
        and objective every adapter is asked for."""
        return {**self.simulator, "mapping": self.mapping, "objective": self.objective}


@dataclass(frozen=True)
class ShardPlan:
    """Everything a shard task needs (picklable, sent to workers)."""

    space: Space
    layers: LayerMix
    sampler: str
    seed: int
    n_samples: int
    shard_rows: int
    simulator: dict
    cache: Path | None
    metadata: dict


@dataclass(frozen=True)
class ShardResult:
    """One finished shard: its table and counts."""

    index: int
    table: Any  # pyarrow.Table
    metadata: dict


@dataclass(frozen=True)
class GenerationResult:
    """What a run did (`summary` is the closing paragraph that ``dance-gen`` prints)."""

    out: Path
    rows: int
    n_samples: int
    infeasible: int
    errors: int
    new_rows: int
    resumed_rows: int
    seconds: float
    workers: int
    backend: str
    n_shards: int
    simulator: str
    simulator_version: str
    space_hash: str
    sampler: str
    seed: int
    repaired_shards: int = 0

    @property
    def rows_per_second(self) -> float:
        """Rows this run generated per second of wall time (resumed rows excluded)."""
        return self.new_rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def simulator_label(self) -> str:
        """The adapter's name and version (the name once, where the version already starts with it)."""
        if self.simulator_version.startswith(self.simulator):
            return self.simulator_version
        return f"{self.simulator} {self.simulator_version}"

    @property
    def infeasible_fraction(self) -> float:
        return self.infeasible / self.rows if self.rows else 0.0

    def summary(self) -> str:
        """One paragraph: rows, infeasible fraction, rows per second, where the data is."""
        resumed = (f", after {self.resumed_rows:,} rows resumed from an earlier run" if self.resumed_rows else "")
        if self.repaired_shards:
            resumed += (f"; {self.repaired_shards} shard(s) the earlier run had finished were damaged or "
                        "missing and were generated again")
        return (
            f"dance-gen wrote {self.new_rows:,} rows in {self.seconds:.1f} s "
            f"({self.rows_per_second:,.0f} rows/s on {self.workers} worker(s), {self.backend} backend{resumed}). "
            f"The dataset at {self.out} holds {self.rows:,} of {self.n_samples:,} rows in {self.n_shards} "
            f"Parquet shard(s), {self.infeasible_fraction:.1%} of them infeasible (no mapping fits)"
            + (f", {self.errors:,} failed in the simulator (their error column says why; the same command "
               f"tries them again only with overwrite=true)" if self.errors else "")
            + f"; simulator {self.simulator_label}, space {self.space_hash}, sampler {self.sampler}, seed {self.seed}. "
            f"Read it with dataset_gen.reader.read_dataset('{self.out}') or pandas.read_parquet('{self.out}')."
        )


def _integer(config: Mapping, key: str, low: int, high: int) -> int:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{key} = {value!r}: expected an integer in [{low}, {high}]")
    return value


def _boolean(config: Mapping, key: str) -> bool:
    if not isinstance(config[key], bool):
        raise ConfigError(f"{key} = {config[key]!r}: expected true or false")
    return config[key]


def _choice(config: Mapping, key: str, allowed: tuple[str, ...]) -> str:
    if config[key] not in allowed:
        raise ConfigError(f"{key} = {config[key]!r}: expected one of {list(allowed)}")
    return config[key]


def parse_config(config: Mapping[str, Any]) -> GenerationConfig:
    """Validate a generation config (before any work) and build its parts.

    Parameters
    ----------
    config : mapping
        Every key of `CONFIG_KEYS` (``conf/gen.yaml`` composes them; plain values, e.g.
        ``OmegaConf.to_container(cfg, resolve=True)``); a ``describe: null`` is ignored.

    Returns
    -------
    GenerationConfig

    Raises
    ------
    ConfigError, SpaceError
        Naming the first bad key and what it allows.
    """
    config = dict(config)
    if config.pop("describe", None) is not None:  # the composed config has it; only the CLI uses it
        raise ConfigError("describe is set: that asks dance-gen to describe a dataset "
                          "(dataset_gen.describe.describe_dataset), not to generate one")
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown key; expected {list(CONFIG_KEYS)}")
    missing = [key for key in CONFIG_KEYS if key not in config]
    if missing:
        raise ConfigError(f"missing key(s) {missing}: compose the config from conf/gen.yaml "
                          "(dataset_gen.cli_gen.load_config) or give every key")
    n_samples = _integer(config, "n_samples", 1, 1 << 40)
    seed = _integer(config, "seed", 0, (1 << 63) - 1)
    shard_rows = _integer(config, "shard_rows", 1, 10_000_000)
    if math.ceil(n_samples / shard_rows) > MAX_SHARDS:
        raise ConfigError(f"shard_rows = {shard_rows}: n_samples = {n_samples} would make "
                          f"{math.ceil(n_samples / shard_rows):,} shards, more than {MAX_SHARDS:,}; raise shard_rows")
    if config["workers"] is not None:
        _integer(config, "workers", 1, 4096)
    # null: the CPUs free on this (maybe shared) machine; a count: capped at the CPUs we may use
    workers = usable_cpus(config["workers"])
    if not config["out"] or not isinstance(config["out"], (str, Path)):
        raise ConfigError(f"out = {config['out']!r}: expected the path of the dataset directory")
    sampler = _choice(config, "sampler", SAMPLERS)
    backend = _choice(config, "backend", BACKENDS)
    ray_config = config["ray"] or {}
    if not isinstance(ray_config, Mapping) or set(ray_config) - {"address"}:
        raise ConfigError(f"ray = {ray_config!r}: expected {{address: null | auto | ray://HOST:PORT}}")
    ray_address = ray_config.get("address")
    if backend == "ray":
        try:
            import ray  # noqa: F401  (checked now: failing after the first shards helps nobody)
        except ImportError:
            raise ConfigError("backend = 'ray' needs Ray, which is not installed: "
                              "pip install 'dance-cosearch[ray]', or use backend=local") from None
    simulator = config["simulator"]
    if not isinstance(simulator, Mapping) or not isinstance(simulator.get("name"), str):
        raise ConfigError(f"simulator = {simulator!r}: expected a config of conf/simulator/ "
                          "(simulator=builtin|zigzag|scalesim|command)")
    mapping = _choice(config, "mapping", MAPPINGS)
    objective = _choice(config, "objective", tuple(OBJECTIVES))
    overwrite = _boolean(config, "overwrite")
    progress = _boolean(config, "progress")
    space = parse_space(config["space"], "space")
    if not isinstance(config["layers"], Mapping):
        raise ConfigError(f"layers = {config['layers']!r}: expected a mapping (conf/layers/)")
    layers = parse_layers(config["layers"], "layers")
    resolved = {**config, "workers": workers, "out": str(config["out"])}
    return GenerationConfig(n_samples, seed, Path(config["out"]).expanduser(), shard_rows, workers, sampler,
                            backend, ray_address, dict(simulator), mapping, objective, overwrite, progress,
                            space, layers, resolved)


def generation_record(settings: GenerationConfig, adapter: SimulatorAdapter | None = None) -> dict[str, Any]:
    """Every setting that determines the rows (equal records, equal rows): resuming checks it.

    ``adapter`` is the run's simulator adapter (built from ``settings`` when not given).
    """
    adapter = adapter or make_adapter(settings.adapter_config)
    return {
        "format": FORMAT,
        "simulator": adapter.identity(),
        "simulator_version": adapter.version,
        "space_hash": settings.space.hash,
        "sampler": settings.sampler,
        "seed": settings.seed,
        "n_samples": settings.n_samples,
        "shard_rows": settings.shard_rows,
        "mapping": settings.mapping,
        "objective": settings.objective,
        "layers": settings.layers.to_dict(),
    }


def compute_shard(plan: ShardPlan, index: int) -> ShardResult:
    """Sample and simulate one shard: the task every backend runs.

    Parameters
    ----------
    plan : ShardPlan
    index : int
        The shard's index; its rows are ``index * shard_rows`` onwards.

    Returns
    -------
    ShardResult
        The shard as an Arrow table with the dataset schema and its metadata.
    """
    pairs = sample_pairs(plan.space, plan.layers, plan.sampler, plan.seed, plan.n_samples,
                         plan.shard_rows, index)
    inputs = pairs[list(LAYER_FIELDS + ACCELERATOR_FIELDS)]
    results = _adapter(plan).simulate(inputs)
    frame = pd.concat([pairs, results], axis=1)
    failed = results[ERROR_COLUMN].to_numpy(dtype=object) != ""
    infeasible = int(((~results["feasible"].to_numpy(dtype=bool)) & ~failed).sum())
    metadata = {**plan.metadata, "shard_index": index, "rows": len(frame), "infeasible": infeasible,
                "errors": int(failed.sum())}
    table = frame_to_table(frame, shard_schema(result_columns()), metadata)
    return ShardResult(index, table, metadata)


# One adapter per worker process and simulator config: an external tool (a subprocess, an
# imported package) is started once, not once per shard.
_ADAPTERS: dict[str, SimulatorAdapter] = {}


def _adapter(plan: ShardPlan) -> SimulatorAdapter:
    key = json.dumps([plan.simulator, str(plan.cache)], sort_keys=True, default=str)
    if key not in _ADAPTERS:
        _ADAPTERS[key] = make_adapter(plan.simulator, cache=plan.cache)
    return _ADAPTERS[key]


def _progress_bar(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="rows", unit_scale=True, disable=not enabled,
                desc="dance-gen", smoothing=0.1)


def generate(config: Mapping[str, Any] | GenerationConfig) -> GenerationResult:
    """Generate (or finish) a simulator dataset.

    Parameters
    ----------
    config : mapping or GenerationConfig
        The run's configuration (see `parse_config`); all of it is checked before any work.

    Returns
    -------
    GenerationResult
        Counts, timing and `GenerationResult.summary`.

    Raises
    ------
    ConfigError, SpaceError
        For a bad setting (naming the key), before anything is written.
    dataset_gen.writer.DatasetError
        If ``out`` holds foreign data or data from another space, simulator version or
        settings (naming which), unless ``overwrite`` is set.
    """
    settings = config if isinstance(config, GenerationConfig) else parse_config(config)
    adapter = make_adapter(settings.adapter_config)
    adapter.check()  # a missing tool fails now, naming the adapter, not in the first shard
    generation = generation_record(settings, adapter)
    n_shards = math.ceil(settings.n_samples / settings.shard_rows)
    expected = {index: shard_bounds(settings.n_samples, settings.shard_rows, index)[1] for index in range(n_shards)}
    space_description = settings.space.to_dict()
    done = prepare_output(settings.out, generation, settings.overwrite, expected, space_description)
    earlier = read_manifest(settings.out)  # dance-gen's (prepare_output refuses another), None after overwrite
    earlier_done = {entry.get("index") for entry in (earlier or {}).get("shards", []) if isinstance(entry, dict)}
    repaired = len(earlier_done - set(done)) if isinstance(earlier, dict) else 0

    manifest = new_manifest(generation, settings.resolved, space_description, dataset_gen.__version__, n_shards)
    if isinstance(earlier, dict):  # resuming: the dataset was created when its first run started
        manifest["created_at"] = earlier.get("created_at", manifest["created_at"])
    # the manifest first: a config file alone in out is not recognisably dance-gen's
    write_manifest(settings.out, update_manifest(manifest, done.values()))
    atomic_write_text(settings.out / CONFIG_FILE, yaml.safe_dump(settings.resolved, sort_keys=False))

    plan = ShardPlan(settings.space, settings.layers, settings.sampler, settings.seed, settings.n_samples,
                     settings.shard_rows, settings.adapter_config,
                     cache=settings.out / CACHE_FILE if adapter.uses_cache else None,
                     metadata={"format": FORMAT, "simulator_version": adapter.version,
                               "simulator": adapter.identity(),
                               "space_hash": settings.space.hash, "sampler": settings.sampler,
                               "seed": settings.seed, "package_version": dataset_gen.__version__,
                               "generation": generation, "space": space_description})
    if plan.cache is not None:
        ResultCache(plan.cache).create()
    todo = [index for index in range(n_shards) if index not in done]
    resumed_rows = sum(meta["rows"] for meta in done.values())
    started = time.perf_counter()
    new_rows = 0
    with _progress_bar(settings.n_samples, resumed_rows, settings.progress) as bar:
        for result in run_tasks(compute_shard, plan, todo, settings.backend, settings.workers, settings.ray_address):
            _, sha256 = write_shard(settings.out, result.index, result.table)
            done[result.index] = {**result.metadata, "sha256": sha256}
            write_manifest(settings.out, update_manifest(manifest, done.values()))
            new_rows += result.metadata["rows"]
            bar.update(result.metadata["rows"])
    seconds = time.perf_counter() - started
    return GenerationResult(
        out=settings.out.resolve(), rows=manifest["rows"], n_samples=settings.n_samples,
        infeasible=manifest["infeasible"], errors=sum(int(meta.get("errors", 0)) for meta in done.values()),
        new_rows=new_rows, resumed_rows=resumed_rows, seconds=seconds,
        workers=settings.workers, backend=settings.backend, n_shards=n_shards,
        simulator=adapter.name, simulator_version=adapter.version, space_hash=settings.space.hash, sampler=settings.sampler,
        seed=settings.seed, repaired_shards=repaired,
    )
