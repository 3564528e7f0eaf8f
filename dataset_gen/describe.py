"""Describe a dance-gen dataset: size, provenance, value ranges, latency by dataflow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dataset_gen.reader import read_dataset
from dataset_gen.space import ACCELERATOR_FIELDS, LAYER_FIELDS

__all__ = ["describe_dataset", "latency_quantiles"]

QUANTILES: tuple[float, ...] = (0.0, 0.05, 0.5, 0.95, 1.0)


def latency_quantiles(frame: pd.DataFrame, quantiles: tuple[float, ...] = QUANTILES) -> pd.DataFrame:
    """Latency quantiles (seconds) of the feasible rows, one row per dataflow.

    Returns
    -------
    pandas.DataFrame
        Index: dataflow; columns: ``rows``, ``infeasible`` (fraction) and one column per
        quantile (``p0``, ``p5``, ``p50``, ...).
    """
    records = {}
    for dataflow, group in frame.groupby("dataflow", sort=True):
        feasible = group.loc[group["feasible"], "latency_s"].to_numpy()
        values = np.quantile(feasible, quantiles) if feasible.size else np.full(len(quantiles), np.nan)
        records[dataflow] = {"rows": len(group), "infeasible": 1 - feasible.size / len(group),
                             **{f"p{round(q * 100):g}": value for q, value in zip(quantiles, values)}}
    return pd.DataFrame.from_dict(records, orient="index")


def _range_line(frame: pd.DataFrame, column: str) -> str:
    values = frame[column]
    if values.dtype.kind in "iuf":
        distinct = np.unique(values.to_numpy())
        if len(distinct) <= 8:
            return f"  {column:<12} {', '.join(f'{value:g}' for value in distinct)}"
        return f"  {column:<12} {values.min():g} .. {values.max():g} ({len(distinct)} distinct)"
    counts = values.value_counts().sort_index()
    return f"  {column:<12} " + ", ".join(f"{name} ({count / len(values):.0%})" for name, count in counts.items())


def _identity_text(identity: dict) -> str:
    """``builtin 1.0.0 (mapping search, objective latency)``: an adapter's name, version, settings."""
    settings = ", ".join(f"{key} {value}" for key, value in sorted((identity.get("settings") or {}).items()))
    return f"{identity['name']} {identity.get('version')}" + (f" ({settings})" if settings else "")


def describe_dataset(path: str | Path) -> str:
    """A plain-text description of a dataset (what ``dance-gen describe=PATH`` prints).

    Parameters
    ----------
    path : str or Path
        The dataset directory.

    Returns
    -------
    str
        Row and shard counts, metadata (the simulator: adapter name, version and settings such
        as the mapping; space hash, sampler, seed, package version, layer sources), the range
        of every layer and accelerator column, the infeasible fraction, the rows the simulator
        failed on, and per-dataflow latency quantiles of the feasible rows.
    """
    columns = ["row_id", *LAYER_FIELDS, "layer_name", *ACCELERATOR_FIELDS, "feasible", "latency_s",
               "energy_pj", "area_mm2"]
    frame = read_dataset(path, columns=columns, allow_incomplete=True)
    meta = frame.attrs["dance_gen"]
    generation = meta["generation"]
    layers = generation["layers"]
    from_pool = (frame["layer_name"] != "").mean() if len(frame) else 0.0
    # rows the simulator failed on are feasible = False by convention, yet not infeasible
    errors = meta["errors"] / len(frame) if len(frame) else 0.0
    infeasible = (~frame["feasible"]).mean() - errors if len(frame) else 0.0
    lines = [
        f"dance-gen dataset {Path(path).resolve()}",
        f"  rows         {meta['rows']:,} of {generation['n_samples']:,} "
        f"({meta['shards']} of {meta['n_shards']} shards{'' if meta['complete'] else ', INCOMPLETE'})",
        f"  simulator    {_identity_text(meta['simulator'])}",
        f"  space hash   {meta['space_hash']}",
        f"  sampler      {meta['sampler']}, seed {meta['seed']}",
        f"  package      dance-cosearch {meta['package_version']}",
        f"  layers       {layers.get('mix', 1):.0%} random shapes, {from_pool:.0%} of rows from the pool "
        f"({layers.get('source')}, {layers.get('pool_size', 0)} distinct layers)",
        f"  infeasible   {infeasible:.1%} of rows (no mapping fits)",
        f"  errors       {meta['errors']:,} rows ({errors:.1%}) the simulator failed on (unknown, not infeasible: "
        "their error column says why; training skips them)",
        "Layer fields:",
        *(_range_line(frame, column) for column in LAYER_FIELDS),
        "Accelerator fields:",
        *(_range_line(frame, column) for column in ACCELERATOR_FIELDS),
        "Latency of feasible rows by dataflow (seconds):",
    ]
    table = latency_quantiles(frame)
    formatted = table.to_string(formatters={"rows": "{:,}".format, "infeasible": "{:.1%}".format,
                                            **{c: "{:.3g}".format for c in table.columns if c.startswith("p")}})
    lines += ["  " + line for line in formatted.splitlines()]
    return "\n".join(lines)
