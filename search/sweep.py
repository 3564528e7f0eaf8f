"""Sweep summaries: every run's result.json in one CSV, and the accuracy/cost Pareto plot.

Runs automatically at the end of ``dance-search -m ...`` (the Hydra callback
`SweepSummaryCallback`, configured in ``conf/search.yaml``), or by hand on any folder of
results: ``python -m search.sweep DIR [--x simulated.latency_s] [--y test_accuracy]``.
Writes ``DIR/sweep_summary.csv`` (one row per result: the sweep's overrides, accuracy,
predicted and simulated figures, relative errors, search time, the precision setting and the
derived bits) and ``DIR/pareto.png``.

``--group COLUMN`` (the callback's ``group``) draws one Pareto front per value of a column,
with a legend: ``--group precision`` shows the front of a bitwidth search
(``network.precision=[4,8,16]``, labelled ``4/8/16-bit search``) against fixed-precision
fronts (``[16]``, ``[8]``: ``16-bit``, ``8-bit``); the CSV then also flags each run's
``pareto_in_group``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from dataset_gen.common.files import atomic_write_text
from search.plots import save_figure

try:  # the callback base class; plain object when Hydra is absent (the CLI needs it anyway)
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover
    Callback = object

__all__ = ["collect_results", "pareto_mask", "plot_pareto", "summarize", "SweepSummaryCallback", "main",
           "precision_label"]

_FIGURES = ("latency_s", "energy_pj", "area_mm2", "edp", "edap")
# The Pareto plot's axes when nobody says otherwise (python -m search.sweep, the callback).
DEFAULT_X, DEFAULT_Y = "simulated.latency_s", "test_accuracy"


def _overrides(result_dir: Path) -> dict[str, str]:
    """The Hydra overrides of the job that wrote a result (its ``.hydra/overrides.yaml``)."""
    for folder in (result_dir, *result_dir.parents[:2]):
        path = folder / ".hydra" / "overrides.yaml"
        if path.is_file():
            import yaml

            entries = yaml.safe_load(path.read_text()) or []
            return {str(e).split("=", 1)[0].lstrip("+~"): str(e).split("=", 1)[1] for e in entries if "=" in str(e)}
    return {}


def precision_label(precision: Sequence[int] | None) -> str:
    """How a run's ``network.precision`` setting reads in a legend: ``16-bit`` for a fixed
    precision, ``4/8/16-bit search`` for a searched one (``""`` when the result has none)."""
    bits = [int(b) for b in (precision or [])]
    if not bits:
        return ""
    return f"{bits[0]}-bit" if len(bits) == 1 else f"{'/'.join(str(b) for b in bits)}-bit search"


def collect_results(root: str | Path) -> pd.DataFrame:
    """One row per ``result.json`` under ``root`` (any depth), sorted by path."""
    root = Path(root)
    rows = []
    for path in sorted(root.rglob("result.json")):
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if "simulated" not in result:
            continue  # a network JSON that is not a search result
        row: dict[str, Any] = {"run": str(path.parent.relative_to(root)) or ".", "method": result.get("method")}
        row.update({f"override.{k}": v for k, v in _overrides(path.parent).items()})
        row["lambda_cost"] = (result.get("search") or {}).get("lambda_cost")
        row["metric"] = (result.get("search") or {}).get("metric")
        row["test_accuracy"] = result.get("test_accuracy")
        for side in ("predicted", "simulated", "relative_error"):
            for key in _FIGURES:
                row[f"{side}.{key}"] = (result.get(side) or {}).get(key)
        row["feasible"] = result.get("feasible")
        row["search_s"] = (result.get("search") or {}).get("seconds")
        row["network"] = "/".join((result.get("architecture") or {}).get("candidates") or [])
        # the precision setting (network.precision) and the derived bits per block
        row["precision"] = precision_label((result.get("search") or {}).get("precision"))
        row["bits"] = "/".join(str(b) for b in (result.get("architecture") or {}).get("bits") or [])
        accelerator = result.get("accelerator") or {}
        row.update({f"accelerator.{k}": v for k, v in accelerator.items()})
        rows.append(row)
    return pd.DataFrame(rows)


def pareto_mask(cost: Sequence[float], accuracy: Sequence[float]) -> np.ndarray:
    """True for the points no other point beats (lower cost and higher accuracy, one strictly)."""
    cost = np.asarray(cost, dtype=np.float64)
    accuracy = np.asarray(accuracy, dtype=np.float64)
    valid = np.isfinite(cost) & np.isfinite(accuracy)
    mask = np.zeros(len(cost), dtype=bool)
    for i in np.flatnonzero(valid):
        dominated = valid & (cost <= cost[i]) & (accuracy >= accuracy[i]) & ((cost < cost[i]) | (accuracy > accuracy[i]))
        mask[i] = not dominated.any()
    return mask


_UNITS = {"latency_s": ("latency (ms)", 1e3), "energy_pj": ("energy (uJ)", 1e-6), "area_mm2": ("area (mm^2)", 1.0),
          "edp": ("EDP (pJ s)", 1.0), "edap": ("EDAP (pJ s mm^2)", 1.0)}


def _axis(column: str) -> tuple[str, float]:
    """A readable axis label and scale factor for a result column (``simulated.latency_s``)."""
    side, _, figure = column.rpartition(".")
    if figure in _UNITS:
        label, scale = _UNITS[figure]
        return f"{side} {label}".strip(), scale
    return column, 1.0


def plot_pareto(table: pd.DataFrame, x: str, y: str, path: str | Path, title: str = "",
                group: str | None = None) -> Path:
    """Scatter of every run, the Pareto front dashed, written as PNG (atomically).

    Points are labelled with their lambda; runs that landed on the same design share a label.
    With ``group`` (a column, e.g. ``precision``), each value of it gets its own colour and
    its own front (a line per group, named in the legend); marker shapes then tell the methods
    apart.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    x_label, x_scale = _axis(x)
    xs = pd.to_numeric(table[x], errors="coerce").to_numpy(dtype=np.float64) * x_scale
    ys = pd.to_numeric(table[y], errors="coerce").to_numpy(dtype=np.float64)
    figure, axes = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    methods = table["method"].fillna("run").astype(str).to_numpy() if "method" in table else np.array(["run"] * len(xs))
    if group is not None:
        if group not in table:
            raise KeyError(f"sweep summary: no column {group!r} to group by; available: {sorted(table.columns)}")
        groups = table[group].fillna("").astype(str).replace("", "(none)").to_numpy()
        markers = dict(zip(dict.fromkeys(methods), "osD^v<>P*X"))
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for number, name in enumerate(dict.fromkeys(groups)):
            colour = colours[number % len(colours)]
            in_group = groups == name
            for method in dict.fromkeys(methods[in_group]):
                pick = in_group & (methods == method)
                label = name if len(markers) == 1 else f"{name}, {method}"
                axes.scatter(xs[pick], ys[pick], label=label, alpha=0.8, s=36, color=colour,
                             marker=markers.get(method, "o"))
            front = in_group & pareto_mask(np.where(in_group, xs, np.nan), ys)
            if front.sum() > 1:
                order = np.argsort(xs[front])
                axes.plot(xs[front][order], ys[front][order], "--", color=colour, linewidth=1,
                          label=f"{name} front")
    else:
        front = pareto_mask(xs, ys)
        for method in dict.fromkeys(methods):
            pick = methods == method
            axes.scatter(xs[pick], ys[pick], label=method, alpha=0.8, s=36)
        if front.sum() > 1:
            order = np.argsort(xs[front])
            axes.plot(xs[front][order], ys[front][order], "k--", linewidth=1, label="Pareto front")
    lambdas = table["lambda_cost"].to_numpy() if "lambda_cost" in table else np.full(len(xs), np.nan)
    labels: dict[tuple[float, float], list[str]] = {}
    for xi, yi, li in zip(xs, ys, lambdas):
        if np.isfinite(xi) and np.isfinite(yi) and li is not None and np.isfinite(float(li)):
            labels.setdefault((xi, yi), []).append(f"{float(li):g}")
    for (xi, yi), names in labels.items():
        axes.annotate("λ=" + ", ".join(names), (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=7)
    finite = xs[np.isfinite(xs) & (xs > 0)]
    if len(finite) > 1 and finite.max() / finite.min() > 20:
        axes.set_xscale("log")
    axes.set_xlabel(x_label)
    axes.set_ylabel(_axis(y)[0].replace("_", " "))
    axes.set_title(title or f"{_axis(y)[0].replace('_', ' ')} vs {x_label} ({int(np.isfinite(xs).sum())} runs)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    return save_figure(figure, path)


def summarize(root: str | Path, x: str = DEFAULT_X, y: str = DEFAULT_Y,
              group: str | None = None) -> tuple[Path, Path]:
    """Write ``sweep_summary.csv`` and ``pareto.png`` into ``root``; returns their paths.

    ``group`` (a column such as ``precision``): one front per value in the plot, and the
    CSV's ``pareto_in_group`` flags each group's own front.
    """
    root = Path(root)
    table = collect_results(root)
    if table.empty:
        raise FileNotFoundError(f"{root}: no search result.json found under it")
    for column in (x, y, *([group] if group else [])):
        if column not in table:
            raise KeyError(f"sweep summary: no column {column!r}; available: {sorted(table.columns)}")
    cost, accuracy = pd.to_numeric(table[x], errors="coerce"), pd.to_numeric(table[y], errors="coerce")
    table["pareto"] = pareto_mask(cost, accuracy)
    if group:
        table["pareto_in_group"] = False
        for _, index in table.groupby(table[group].fillna("").astype(str)).groups.items():
            table.loc[index, "pareto_in_group"] = pareto_mask(cost[index], accuracy[index])
    csv_path = root / "sweep_summary.csv"
    atomic_write_text(csv_path, table.to_csv(index=False))
    png_path = plot_pareto(table, x, y, root / "pareto.png", group=group or None)
    return csv_path, png_path


class SweepSummaryCallback(Callback):
    """Hydra callback: summarise a multirun's results when it ends."""

    def __init__(self, x: str = DEFAULT_X, y: str = DEFAULT_Y, group: str | None = None) -> None:
        self.x, self.y, self.group = x, y, group

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        root = Path(config.hydra.sweep.dir)
        try:
            csv_path, png_path = summarize(root, self.x, self.y, self.group)
        except FileNotFoundError as error:
            print(f"sweep summary: {error}", flush=True)
            return
        print(f"sweep summary: {csv_path} and {png_path}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m search.sweep", description=__doc__.splitlines()[0])
    parser.add_argument("root", help="a folder holding search results (any depth), e.g. a multirun folder")
    parser.add_argument("--x", default=DEFAULT_X, help="cost column (default: %(default)s)")
    parser.add_argument("--y", default=DEFAULT_Y, help="accuracy column (default: %(default)s)")
    parser.add_argument("--group", default=None,
                        help="one front per value of this column, e.g. precision (default: one front)")
    args = parser.parse_args(argv)
    try:
        csv_path, png_path = summarize(args.root, args.x, args.y, args.group)
    except (FileNotFoundError, KeyError) as error:
        parser.error(str(error))
    print(f"wrote {csv_path} and {png_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

