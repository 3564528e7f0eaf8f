"""Export a search's design space for ``dance-gen``, so that an evaluator can be trained on
the layers and accelerators the search will ask it about.

``dance-search mode=export out=DIR`` writes:

- ``DIR/search_layers.csv``: every layer any architecture of the network space can contain
  at the deployment resolution (deduplicated, named), in the layer-field CSV format that
  ``dance-gen layers.source=FILE`` reads;
- ``DIR/space/search.yaml``: a ``dance-gen`` space (`dataset_gen.ranges`) whose accelerator
  part is exactly the accelerator choices (``hw.choices``) and whose layer part spans the
  layer table's sizes (for the share of random shapes, ``layers.mix``).

so that ``dance-gen --config-dir DIR space=search layers.source=DIR/search_layers.csv
layers.mix=0.3 out=DATA`` simulates a training set for an evaluator of this search.
`generation_config` builds the same configuration as a dict (the tests use it to train a
small real evaluator).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import yaml

from dataset_gen.space import LAYER_FIELDS, PRECISION_FIELDS
from dataset_gen.common.files import atomic_write_text
from search.hardware import AcceleratorSpace

__all__ = ["generation_space", "write_layer_pool", "generation_config", "export_space"]


def _log_range(values: pd.Series) -> dict[str, Any]:
    low, high = int(values.min()), int(values.max())
    return {"min": low, "max": max(high, low), "log": low < high} if low < high else {"min": low, "max": high}


def generation_space(hw_space: AcceleratorSpace, layer_table: pd.DataFrame, name: str = "search") -> dict[str, Any]:
    """A ``dance-gen`` space: the accelerator choices, and layer ranges spanning the table.

    Parameters
    ----------
    hw_space : AcceleratorSpace
        Its choices become the accelerator choice lists (single values stay fixed).
    layer_table : pandas.DataFrame
        `NetworkSpace.layer_table` (or any frame with the layer fields).
    """
    accelerator = {field: (list(values) if len(values) > 1 else values[0]) for field, values in hw_space.choices}
    kernels = sorted({int(k) for k in layer_table["k_h"]} | {1})
    conv = layer_table[layer_table["in_h"] > 1]
    layer = {
        "kinds": {"conv": 1.0, "depthwise": 1.0, "grouped": 0.0, "fc": 0.1},
        "in_h": _log_range(conv["in_h"] if len(conv) else layer_table["in_h"]),
        "in_w": {"same_as": "in_h"},
        "in_c": _log_range(layer_table["in_c"]),
        "out_c": _log_range(layer_table["out_c"]),
        "k_h": kernels,
        "k_w": {"same_as": "k_h"},
        "stride": sorted({int(s) for s in layer_table["stride"]} | {1}),
        "pad": ["same"],
        "groups": 1,
        "batch": sorted({int(b) for b in layer_table["batch"]}),
        # the precisions the table's layers use (network.precision and fixed_bits)
        **{field: sorted({int(b) for b in layer_table[field]}) if field in layer_table else [0]
           for field in PRECISION_FIELDS},
    }
    for field in ("stride", "batch", "k_h", *PRECISION_FIELDS):
        if len(layer[field]) == 1:
            layer[field] = layer[field][0]
    return {"name": name, "accelerator": accelerator, "layer": layer}


def write_layer_pool(layer_table: pd.DataFrame, path: str | Path) -> Path:
    """The distinct layers of a layer table as a CSV (``name`` + layer fields), atomically."""
    frame = layer_table[["name", *LAYER_FIELDS]].drop_duplicates(subset=list(LAYER_FIELDS)).reset_index(drop=True)
    return atomic_write_text(Path(path), frame.to_csv(index=False))


def generation_config(out: str | Path, layer_pool: str | Path, space: Mapping[str, Any], n_samples: int = 20000,
                      mix: float = 0.2, seed: int = 0, mapping: str = "search", objective: str = "latency",
                      workers: int | None = 1, shard_rows: int | None = None) -> dict[str, Any]:
    """A complete `dataset_gen.generate.generate` configuration for the exported space.

    Parameters
    ----------
    out : path-like
        The dataset folder to write.
    layer_pool : path-like
        `write_layer_pool`'s CSV (the real layers: ``1 - mix`` of the rows).
    space : mapping
        `generation_space`.
    n_samples : int
        Pairs to simulate.
    mix : float
        Share of random layer shapes (the rest from the pool).
    mapping, objective
        The simulator's mapping policy and mapper objective (as the search's ``verify``).
    """
    return {
        "n_samples": int(n_samples), "seed": int(seed), "out": str(out),
        "shard_rows": int(shard_rows or max(1000, math.ceil(n_samples / 4))), "workers": workers,
        "sampler": "uniform", "backend": "local", "ray": {"address": None},
        "simulator": {"name": "builtin"}, "mapping": mapping,
        "objective": objective, "overwrite": True, "progress": False, "space": dict(space),
        "layers": {"mix": float(mix), "source": str(layer_pool)},
    }


def export_space(hw_space: AcceleratorSpace, layer_table: pd.DataFrame, out_dir: str | Path) -> dict[str, Path]:
    """Write ``search_layers.csv`` and ``space/search.yaml`` into ``out_dir``."""
    out = Path(out_dir)
    (out / "space").mkdir(parents=True, exist_ok=True)
    layers = write_layer_pool(layer_table, out / "search_layers.csv")
    text = "# dance-gen space of a dance-search run (dance-search mode=export)\n"
    text += yaml.safe_dump(generation_space(hw_space, layer_table), sort_keys=False)
    space = atomic_write_text(out / "space" / "search.yaml", text)
    return {"layers": layers, "space": space}
