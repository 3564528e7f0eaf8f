"""Samplers: (layer, accelerator) pairs for one shard, drawn from a `Space` and a layer pool.

Determinism is by construction: a shard's rows depend only on the configuration and the
shard's index, never on which process draws them or in what order shards run.

- Accelerators come from the configured sampler. ``uniform`` draws i.i.d. points from the
  shard's own random stream, ``numpy.random.SeedSequence(seed, spawn_key=(0, shard))``.
  ``sobol`` (scrambled Sobol') and ``lhs`` (Latin hypercube) are space-filling designs over
  the whole run: one global sequence of ``n_samples`` points, seeded from ``seed``, of which
  a shard takes its slice (Sobol' by fast-forwarding, the hypercube by building it whole).
- Layers come from a mixture: with probability ``mix`` a random shape from the space's layer
  ranges, otherwise a layer from the pool (real networks, torch modules or a user's file),
  each distinct pool layer equally likely. Both draws use the shard's random stream.

Random shapes are valid layers by construction: depthwise layers get ``groups = in_c =
out_c``; grouped ones round their channels down to a multiple of ``groups``; a fully
connected layer is a 1x1 conv on a 1x1 input; ``pad`` never exceeds ``kernel - 1`` (more
only adds outputs that see nothing but zeros); an input smaller than the kernel (padding
included) grows to fit it, within the input range (beyond it, the kernel is cut).
"""

from __future__ import annotations

import functools
import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from dataset_gen.ranges import LAYER_KINDS, PAD_SAME, Space
from dataset_gen.space import ACCELERATOR_FIELDS, LAYER_FIELDS, PRECISION_FIELDS, Layer, SpaceError, layer_from_mapping

__all__ = [
    "SAMPLERS", "LayerPool", "LayerMix", "parse_layers", "shard_bounds", "unit_points",
    "sample_accelerators", "sample_random_layers", "sample_pairs",
]

SAMPLERS: tuple[str, ...] = ("uniform", "sobol", "lhs")
PAIR_COLUMNS: tuple[str, ...] = ("row_id", *LAYER_FIELDS, "layer_name", *ACCELERATOR_FIELDS)
_SHARD_STREAM = 0  # spawn_key prefix of the per-shard random streams
_QMC_STREAM = 1  # spawn_key of the global space-filling sequence


def shard_bounds(n_samples: int, shard_rows: int, shard_index: int) -> tuple[int, int]:
    """First row id and row count of one shard (the last shard holds the remainder)."""
    start = shard_index * shard_rows
    return start, max(0, min(shard_rows, n_samples - start))


# --------------------------------------------------------------------------- accelerators

@functools.lru_cache(maxsize=2)
def _latin_hypercube(seed: int, n_samples: int, dims: int) -> np.ndarray:
    """The run's whole hypercube: each of its strata depends on every other point."""
    from scipy.stats import qmc

    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_QMC_STREAM,)))
    return qmc.LatinHypercube(dims, rng=rng).random(n_samples)


def unit_points(sampler: str, seed: int, n_samples: int, dims: int, start: int, count: int,
                rng: np.random.Generator) -> np.ndarray:
    """Rows ``start .. start + count`` of the run's design in the unit cube.

    Parameters
    ----------
    sampler : {"uniform", "sobol", "lhs"}
    seed : int
        The run's seed (the space-filling sequences derive from it alone).
    n_samples : int
        Rows in the whole run (the hypercube's size).
    dims : int
        Dimensions of the cube (the accelerator fields that vary).
    start, count : int
        The slice of the run's rows wanted.
    rng : numpy.random.Generator
        The shard's own stream, used by ``uniform``.

    Returns
    -------
    numpy.ndarray
        Shape ``(count, dims)``, values in [0, 1).
    """
    if sampler == "uniform":
        return rng.random((count, dims))
    if dims == 0:
        return np.empty((count, 0))
    if sampler == "sobol":
        from scipy.stats import qmc

        engine = qmc.Sobol(dims, scramble=True,
                           rng=np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_QMC_STREAM,))))
        with warnings.catch_warnings():
            # balance warnings for slices that are not powers of two: the union is still the
            # first n points of one sequence, which is what a space-filling run needs
            warnings.simplefilter("ignore", UserWarning)
            if start:  # scipy's fast_forward(0) underflows
                engine.fast_forward(start)
            return engine.random(count)
    if sampler == "lhs":
        return _latin_hypercube(seed, n_samples, dims)[start:start + count]
    raise SpaceError(f"sampler = {sampler!r}: expected one of {list(SAMPLERS)}")


def sample_accelerators(space: Space, unit: np.ndarray) -> dict[str, np.ndarray]:
    """Accelerator columns for points of the unit cube (one column per varying field).

    Parameters
    ----------
    space : Space
    unit : numpy.ndarray
        Shape ``(n, len(space.accelerator_dims))``.

    Returns
    -------
    dict of str to numpy.ndarray
        One array of length ``n`` per field of `ACCELERATOR_FIELDS`.
    """
    count = unit.shape[0]
    dims = space.accelerator_dims
    columns = {}
    for field_name in ACCELERATOR_FIELDS:
        spec = space.accelerator[field_name]
        if field_name in dims:
            columns[field_name] = spec.from_unit(unit[:, dims.index(field_name)])
        else:
            columns[field_name] = np.repeat(spec.from_unit(np.zeros(1)), count)
    return columns


# --------------------------------------------------------------------------- layers

def sample_random_layers(space: Space, rng: np.random.Generator, count: int) -> dict[str, np.ndarray]:
    """Random, valid layer shapes from the space's layer ranges and kind weights.

    Parameters
    ----------
    space : Space
    rng : numpy.random.Generator
    count : int

    Returns
    -------
    dict of str to numpy.ndarray
        One int64 array of length ``count`` per field of `LAYER_FIELDS`.
    """
    weights = np.array([space.kinds[kind] for kind in LAYER_KINDS])
    kind = rng.choice(len(LAYER_KINDS), size=count, p=weights / weights.sum())
    # one uniform draw per field, always, so a field's values don't depend on ties elsewhere
    units = {name: rng.random(count) for name in LAYER_FIELDS}
    raw = {}
    for name in LAYER_FIELDS:
        spec = space.layer[name]
        raw[name] = raw[spec.same_as].copy() if spec.same_as else spec.from_unit(units[name])
    in_h, in_w, in_c, out_c = raw["in_h"], raw["in_w"], raw["in_c"], raw["out_c"]
    k_h, k_w, stride, batch = raw["k_h"], raw["k_w"], raw["stride"], raw["batch"]
    widest = np.maximum(k_h, k_w)
    pad = np.where(raw["pad"] == PAD_SAME, (widest - 1) // 2, raw["pad"])
    pad = np.minimum(pad, widest - 1)
    groups = np.ones(count, dtype=np.int64)

    depthwise = kind == LAYER_KINDS.index("depthwise")
    out_c = np.where(depthwise, in_c, out_c)
    groups = np.where(depthwise, in_c, groups)

    grouped = kind == LAYER_KINDS.index("grouped")
    group_count = raw["groups"]
    in_c = np.where(grouped, np.maximum(group_count, in_c // group_count * group_count), in_c)
    out_c = np.where(grouped, np.maximum(group_count, out_c // group_count * group_count), out_c)
    groups = np.where(grouped, group_count, groups)

    fc = kind == LAYER_KINDS.index("fc")
    one = np.ones(count, dtype=np.int64)
    in_h, in_w = np.where(fc, one, in_h), np.where(fc, one, in_w)
    k_h, k_w, stride = np.where(fc, one, k_h), np.where(fc, one, k_w), np.where(fc, one, stride)
    pad = np.where(fc, 0, pad)

    # A kernel wider than the padded input: grow the input to fit the kernel (the kernel
    # choices are kept), up to the input range's top; cut the kernel only beyond that.
    tied = space.layer["in_w"].same_as == "in_h"
    top_h = space.layer["in_h"].values_bound()[1]
    top_w = top_h if tied else space.layer["in_w"].values_bound()[1]
    need_h, need_w = k_h - 2 * pad, k_w - 2 * pad
    if tied:
        need_h = need_w = np.maximum(need_h, need_w)
    in_h = np.where(fc, in_h, np.maximum(in_h, np.minimum(need_h, top_h)))
    in_w = in_h.copy() if tied else np.where(fc, in_w, np.maximum(in_w, np.minimum(need_w, top_w)))
    k_h = np.minimum(k_h, in_h + 2 * pad)
    k_w = np.minimum(k_w, in_w + 2 * pad)
    values = {"in_h": in_h, "in_w": in_w, "in_c": in_c, "out_c": out_c, "k_h": k_h, "k_w": k_w,
              "stride": stride, "pad": pad, "groups": groups, "batch": batch,
              "w_bits": raw["w_bits"], "a_bits": raw["a_bits"]}
    return {name: np.asarray(values[name], dtype=np.int64) for name in LAYER_FIELDS}


@dataclass(frozen=True)
class LayerPool:
    """Distinct real layers to sample from: ``fields`` is ``(n, len(LAYER_FIELDS))`` int64."""

    fields: np.ndarray
    names: tuple[str, ...]

    @property
    def hash(self) -> str:
        """A 16-hex-digit hash of the pool's layers and names (resuming checks it)."""
        digest = hashlib.sha256(np.ascontiguousarray(self.fields, dtype="<i8").tobytes())
        digest.update("\n".join(self.names).encode())
        return digest.hexdigest()[:16]

    @classmethod
    def from_layers(cls, named_layers: Sequence[tuple[str, Layer]]) -> "LayerPool":
        """Deduplicate by shape (the first name wins) so that repeated blocks don't dominate."""
        seen: dict[tuple[int, ...], str] = {}
        for name, layer in named_layers:
            seen.setdefault(tuple(getattr(layer, f) for f in LAYER_FIELDS), name)
        fields = np.array(list(seen), dtype=np.int64).reshape(-1, len(LAYER_FIELDS))
        return cls(fields, tuple(seen.values()))


@dataclass(frozen=True)
class LayerMix:
    """Where layers come from: a share ``mix`` of random shapes, the rest from ``pool``."""

    mix: float
    pool: LayerPool | None = None
    config: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """What a dataset records about its layers: the settings and the pool by size and hash.

        A file source is recorded by its content (the pool hash), not its path, so that a
        run resumes from another working directory.
        """
        record = {key: value for key, value in self.config.items() if key != "file"}
        record["pool_size"] = 0 if self.pool is None else len(self.pool.names)
        record["pool_hash"] = None if self.pool is None else self.pool.hash
        return record


def _read_layer_file(path: Path, key: str) -> list[tuple[str, Layer]]:
    if not path.is_file():
        raise SpaceError(f"{key} = {str(path)!r}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        frame = pd.read_parquet(path)
    elif suffix == ".csv":
        header = path.read_text(errors="replace").splitlines()[:1]
        columns = [name.strip() for name in header[0].split(",")] if header else []
        if not {"in_h", "in_w", "in_c", "out_c"} <= set(columns):
            from dataset_gen import scalesim_io  # a SCALE-Sim topology file

            layers = scalesim_io.load_topology(path)
            return [(layer.name or f"{path.stem}:{index}", layer) for index, layer in enumerate(layers)]
        frame = pd.read_csv(path, skipinitialspace=True)
    else:
        raise SpaceError(f"{key} = {str(path)!r}: expected a .csv (SCALE-Sim topology or layer "
                         "fields) or a .parquet file of layer fields")
    if frame.empty:
        raise SpaceError(f"{key} = {str(path)!r}: the file holds no layers")
    named = []
    for index, row in enumerate(frame.to_dict("records")):
        layer = layer_from_mapping(row, where=f" ({key} = {str(path)!r}, row {index})")
        named.append((layer.name or f"{path.stem}:{index}", layer))
    return named


def _trace_modules(entries: Sequence[Any], key: str) -> list[tuple[str, Layer]]:
    from hydra.utils import instantiate  # hydra-core is a core dependency; only used here

    from dataset_gen.torch_layers import layers_from_module

    named = []
    for index, entry in enumerate(entries):
        where = f"{key}[{index}]"
        if not isinstance(entry, Mapping) or set(entry) != {"module", "input_shape"}:
            raise SpaceError(f"{where} = {entry!r}: expected {{module: {{_target_: ...}}, input_shape: [N, C, H, W]}}")
        module_config = dict(entry["module"])
        target = str(module_config.get("_target_", f"module{index}"))
        try:
            module = instantiate(module_config)
        except Exception as error:  # instantiate wraps any import/constructor error
            raise SpaceError(f"{where}.module: cannot build {target}: {error}") from None
        for layer in layers_from_module(module, list(entry["input_shape"])):
            named.append((f"{target.rsplit('.', 1)[-1]}:{layer.name}", layer))
    return named


_LAYERS_KEYS = ("mix", "source", "networks", "input_sizes", "batches", "modules")


def parse_layers(config: Mapping[str, Any], key: str = "layers") -> LayerMix:
    """Validate the layer-source config and build the pool of real layers.

    Parameters
    ----------
    config : mapping
        ``mix`` (share of random shapes, in [0, 1]); ``source``: ``networks`` (the zoo
        networks ``networks`` at every size of ``input_sizes`` and batch of ``batches``, plus
        the torch ``modules``), ``random`` (no pool), or the path of a file: a SCALE-Sim
        topology CSV, or a CSV / Parquet file with layer-field columns.
    key : str
        The config path, for error messages.

    Returns
    -------
    LayerMix
        Its pool is None when every row gets a random shape (``mix = 1``).
    """
    config = dict(config)
    unknown = sorted(set(config) - set(_LAYERS_KEYS))
    if unknown:
        raise SpaceError(f"{key}.{unknown[0]}: unknown key; expected {list(_LAYERS_KEYS)}")
    for required in ("mix", "source"):
        if required not in config:
            raise SpaceError(f"{key}.{required}: missing (conf/layers/ gives every key)")
    mix = config["mix"]
    if isinstance(mix, bool) or not isinstance(mix, (int, float)) or not 0 <= mix <= 1:
        raise SpaceError(f"{key}.mix = {mix!r}: expected a share of random shapes in [0, 1]")
    mix = float(mix)
    source = config["source"] or "random"
    record: dict[str, Any] = {"mix": mix, "source": str(source)}
    if mix == 1.0:
        return LayerMix(mix, None, record)
    if source == "random":
        raise SpaceError(f"{key}.mix = {mix:g} leaves rows for real layers but {key}.source = random; "
                         f"set {key}.source (networks or a FILE) or {key}.mix = 1")
    if source == "networks":
        from dataset_gen.networks import NETWORKS, get_network

        lists = {}
        for name in ("networks", "input_sizes", "batches", "modules"):
            value = config.get(name)
            if value is None or isinstance(value, (str, Mapping)) or not hasattr(value, "__iter__"):
                raise SpaceError(f"{key}.{name} = {value!r}: expected a list (source = networks needs "
                                 "networks, input_sizes, batches and modules)")
            lists[name] = list(value)
        named = []
        for name in lists["networks"]:
            if str(name).lower().replace("-", "_") not in NETWORKS:
                raise SpaceError(f"{key}.networks: {name!r} is not a known network; expected some of {sorted(NETWORKS)}")
            for size in lists["input_sizes"]:
                for batch in lists["batches"]:
                    try:
                        layers = get_network(name, input_size=size, batch=batch)
                    except SpaceError as error:
                        raise SpaceError(f"{key}: {error}") from None
                    named += [(f"{name}@{size}:{layer.name}", layer) for layer in layers]
        named += _trace_modules(lists["modules"], f"{key}.modules")
        if not named:
            raise SpaceError(f"{key}.source = networks but {key}.networks and {key}.modules are empty")
        record.update(networks=lists["networks"], input_sizes=lists["input_sizes"], batches=lists["batches"],
                      modules=[dict(entry) for entry in lists["modules"]])
        return LayerMix(mix, LayerPool.from_layers(named), record)
    path = Path(str(source)).expanduser()
    pool = LayerPool.from_layers(_read_layer_file(path, f"{key}.source"))
    record.update(source="file", file=str(path.resolve()))
    return LayerMix(mix, pool, record)


# --------------------------------------------------------------------------- pairs

def sample_pairs(space: Space, layers: LayerMix, sampler: str, seed: int, n_samples: int,
                 shard_rows: int, shard_index: int) -> pd.DataFrame:
    """The (layer, accelerator) pairs of one shard, ready for `simulate_batch`.

    Parameters
    ----------
    space : Space
    layers : LayerMix
    sampler : {"uniform", "sobol", "lhs"}
    seed : int
    n_samples : int
        Rows of the whole run.
    shard_rows : int
        Rows per shard (the last shard holds the remainder).
    shard_index : int

    Returns
    -------
    pandas.DataFrame
        Columns `PAIR_COLUMNS`: ``row_id`` (the row's global index, stable across workers
        and resumes), the layer fields, ``layer_name`` (``""`` for a random shape, else
        ``network@size:module``) and the accelerator fields.
    """
    start, count = shard_bounds(n_samples, shard_rows, shard_index)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_SHARD_STREAM, shard_index)))
    unit = unit_points(sampler, seed, n_samples, len(space.accelerator_dims), start, count, rng)
    accelerators = sample_accelerators(space, unit)
    random_share = rng.random(count) < layers.mix
    layer_columns = sample_random_layers(space, rng, count)
    names = np.full(count, "", dtype=object)
    if layers.pool is not None and not random_share.all():
        picks = rng.integers(0, len(layers.pool.names), size=count)
        from_pool = ~random_share
        for column, name in enumerate(LAYER_FIELDS):
            pooled = layers.pool.fields[picks, column]
            if name in PRECISION_FIELDS:  # a real layer without a precision takes the sampled one
                pooled = np.where(pooled == 0, layer_columns[name], pooled)
            layer_columns[name] = np.where(from_pool, pooled, layer_columns[name])
        names[from_pool] = np.asarray(layers.pool.names, dtype=object)[picks[from_pool]]
    frame = pd.DataFrame({"row_id": np.arange(start, start + count, dtype=np.int64), **layer_columns,
                          "layer_name": names, **accelerators})
    return frame[list(PAIR_COLUMNS)]
