"""The out-of-distribution set: real-network layers unseen in training, simulated fresh.

Layers come from the zoo (`dataset_gen.networks`): every network the dataset's layer pool
did not use (all of them when the dataset drew random shapes only), minus any layer whose
shape occurs in the training split. Each layer is paired with accelerators drawn at random
from the dataset's design space (its recorded sampling ranges) and the pairs are simulated
now by the simulator the evaluator imitates: the adapter the dataset records, with its
recorded settings (mapping, objective...), built by `dataset_gen.adapters.make_adapter`
(``builtin`` for datasets older than adapters). Rows it fails on keep their ``error``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from dataset_gen.adapters import ERROR_COLUMN, SimulatorAdapter, make_adapter
from dataset_gen.networks import NETWORKS, get_network
from dataset_gen.reader import simulator_identity
from dataset_gen.simulator import RESULT_FIELDS
from dataset_gen.space import ACCELERATOR_FIELDS, LAYER_FIELDS, SpaceError


def _training_networks(metadata: dict[str, Any]) -> set[str]:
    """Zoo networks whose layers the dataset's pool held (empty if random shapes only).

    dance-gen records the resolved config (``config.layers.networks``) and a description of
    the pool (``layers.pool``, e.g. ``"networks: resnet18, vgg16"``); either will do.
    """
    layers = metadata.get("layers") or {}
    if isinstance(layers, dict) and float(layers.get("mix", 1.0)) >= 1.0:
        return set()
    config = (metadata.get("config") or {}).get("layers") if isinstance(metadata.get("config"), dict) else None
    names: list[str] = []
    if isinstance(config, dict) and config.get("source", "networks") == "networks":
        names = [str(name) for name in config.get("networks") or []]
    elif isinstance(layers, dict) and str(layers.get("pool") or "").startswith("networks:"):
        names = [name.strip() for name in str(layers["pool"]).split(":", 1)[1].split(",")]
    return {name.lower().replace("-", "_") for name in names if name}


def ood_layers(metadata: dict[str, Any], train_layers: pd.DataFrame, networks: Sequence[str] | None = None,
               input_sizes: Sequence[int] = (224,), batch: int = 1) -> pd.DataFrame:
    """Distinct real-network layers not used in training.

    Parameters
    ----------
    metadata : dict
        The dataset's metadata (which networks its layer pool used).
    train_layers : pandas.DataFrame
        Layer fields of the training split; layers with these exact shapes are dropped.
    networks : list of str, optional
        Networks to draw from (default: every zoo network the dataset did not use; all of
        them if it used every one).
    input_sizes : list of int
        Input resolutions at which the networks are instantiated.
    batch : int

    Returns
    -------
    pandas.DataFrame
        The layer fields plus ``network`` and ``layer_name``, one row per distinct shape.
    """
    used = _training_networks(metadata)
    if networks is None:
        networks = [name for name in NETWORKS if name not in used] or list(NETWORKS)
    rows = []
    for name in networks:
        if name not in NETWORKS:
            raise SpaceError(f"ood networks: {name!r} is not a zoo network; expected some of {sorted(NETWORKS)}")
        for size in input_sizes:
            try:
                layers = get_network(name, input_size=int(size), batch=batch)
            except SpaceError:
                continue  # too small an input for this network's pooling: not a network at all
            for layer in layers:
                rows.append({**layer.to_dict(), "network": name, "layer_name": f"{name}@{size}:{layer.name}"})
    frame = pd.DataFrame(rows, columns=[*LAYER_FIELDS, "network", "layer_name"])
    frame = frame.drop_duplicates(subset=list(LAYER_FIELDS)).reset_index(drop=True)
    if len(train_layers):
        seen = set(map(tuple, train_layers[list(LAYER_FIELDS)].to_numpy(dtype=np.int64).tolist()))
        keep = [tuple(row) not in seen for row in frame[list(LAYER_FIELDS)].to_numpy(dtype=np.int64).tolist()]
        frame = frame[np.asarray(keep, dtype=bool)].reset_index(drop=True)
    return frame


def random_accelerators(metadata: dict[str, Any], count: int, seed: int,
                        fallback: pd.DataFrame | None = None) -> pd.DataFrame:
    """``count`` accelerators drawn uniformly from the dataset's recorded design space.

    Without a recorded space, accelerators are drawn from the dataset's own rows
    (``fallback``), which lie in its space by construction.
    """
    rng = np.random.default_rng(seed)
    space_description = metadata.get("space")
    if isinstance(space_description, dict) and "accelerator" in space_description:
        from dataset_gen.ranges import parse_space
        from dataset_gen.sampling import sample_accelerators

        space = parse_space(space_description)
        unit = rng.random((count, len(space.accelerator_dims)))
        return pd.DataFrame(sample_accelerators(space, unit))[list(ACCELERATOR_FIELDS)]
    if fallback is None or len(fallback) == 0:
        raise ValueError("the dataset records no design space and no rows to draw accelerators from")
    picks = rng.integers(0, len(fallback), size=count)
    return fallback[list(ACCELERATOR_FIELDS)].iloc[picks].reset_index(drop=True)


def dataset_adapter(metadata: dict[str, Any]) -> SimulatorAdapter:
    """The simulator adapter a dataset was made with, with its recorded settings, ready to run.

    Raises
    ------
    dataset_gen.adapters.AdapterError
        The adapter's tool is not installed here (the message names it).
    """
    identity = simulator_identity(metadata)
    adapter = make_adapter({"name": identity["name"], **identity["settings"]})
    adapter.check()
    return adapter


def ood_set(metadata: dict[str, Any], train_frame: pd.DataFrame, n_pairs: int = 2000, seed: int = 0,
            networks: Sequence[str] | None = None, input_sizes: Sequence[int] = (224,),
            adapter: SimulatorAdapter | None = None) -> pd.DataFrame:
    """Simulated OOD pairs: unseen real layers on random accelerators of the dataset's space.

    Parameters
    ----------
    metadata : dict
        Dataset metadata (space, layer pool).
    train_frame : pandas.DataFrame
        The training split (layer fields; accelerator fields used when no space is recorded).
    n_pairs : int
        About this many pairs: every unseen layer gets ``ceil(n_pairs / n_layers)`` accelerators.
    seed : int
    adapter : SimulatorAdapter, optional
        The simulator (default: `dataset_adapter` of ``metadata``, the dataset's own).

    Returns
    -------
    pandas.DataFrame
        Layer and accelerator fields, ``network``, ``layer_name``, the `RESULT_FIELDS` and
        ``error`` (non-empty where the simulator failed: callers leave those rows out);
        empty if no real layer is unseen.

    Raises
    ------
    dataset_gen.adapters.AdapterError
        The dataset's simulator cannot run here.
    """
    layers = ood_layers(metadata, train_frame, networks, input_sizes)
    if layers.empty or n_pairs <= 0:
        return pd.DataFrame(columns=[*LAYER_FIELDS, "network", "layer_name", *ACCELERATOR_FIELDS, *RESULT_FIELDS,
                                     ERROR_COLUMN])
    per_layer = max(1, -(-n_pairs // len(layers)))
    accelerators = random_accelerators(metadata, per_layer * len(layers), seed, fallback=train_frame)
    pairs = pd.concat([layers.loc[layers.index.repeat(per_layer)].reset_index(drop=True), accelerators], axis=1)
    # Simulated as the dataset was: the same adapter with the same settings (mapping, objective).
    adapter = adapter if adapter is not None else dataset_adapter(metadata)
    results = adapter.simulate(pairs[[*LAYER_FIELDS, *ACCELERATOR_FIELDS]])
    return pd.concat([pairs, results.reset_index(drop=True)], axis=1)
