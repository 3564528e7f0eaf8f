"""The co-search and its baselines side by side, with the same lambda, metric and budget.

``dance-search mode=compare evaluator=FILE`` runs, in one process and on one shared context (data, spaces, simulator
cache, reference): the co-search, the sequential baseline and the simulator-in-the-loop
baseline(s) (``compare.methods``), the latter with the co-search's measured search time as
their wall-clock budget. Each method writes ``<out>/<method>/result.json``; the table goes
to ``<out>/compare.csv`` and ``<out>/compare.md`` and is printed.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import pandas as pd

from dataset_gen.common.files import atomic_write_text
from dataset_gen.space import SpaceError
from search.baselines import BASELINES, run_baseline
from search.context import SearchContext
from search.cosearch import run_search, summary_line

__all__ = ["compare", "comparison_table", "markdown_table", "COMPARE_METHODS"]

COMPARE_METHODS: tuple[str, ...] = ("cosearch", *BASELINES)


def comparison_table(results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per method: accuracy, simulated cost, search time."""
    rows = []
    for method, result in results.items():
        sim = result["simulated"]
        rows.append({
            "method": method,
            "test_accuracy": result["test_accuracy"],
            "latency_ms": _scaled(sim.get("latency_s"), 1e3),
            "energy_uj": _scaled(sim.get("energy_pj"), 1e-6),
            "area_mm2": sim.get("area_mm2"),
            "edap": sim.get("edap"),
            f"cost_{result['cost']['metric']}_vs_reference": result["cost"].get("normalised_simulated"),
            "feasible": result["feasible"],
            "search_s": result["search"]["seconds"],
            "evaluations": result.get("evaluations", result.get("exhaustive", {}).get("accelerators")),
            "network": "/".join(result["architecture"]["candidates"]),
            "bits": "/".join(str(b) for b in result["architecture"].get("bits") or []),
            "accelerator": result.get("accelerator_text", "").replace(" on ", "", 1),
        })
    return pd.DataFrame(rows)


def _bits_text(row: Any) -> str:
    """`` at 4/8/16 bits`` for a design whose blocks are not all at 16 bits ('' otherwise)."""
    bits = str(row.get("bits") or "")
    return f" at {bits} bits" if bits and set(bits.split("/")) != {"16"} else ""


def _scaled(value: Any, factor: float) -> float:
    return float(value) * factor if value is not None and math.isfinite(float(value)) else math.nan


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of `comparison_table` (numbers rounded for reading)."""
    columns = [c for c in table.columns if c not in ("network", "bits", "accelerator")]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for _, row in table.iterrows():
        cells = []
        for column in columns:
            value = row[column]
            if column == "test_accuracy":
                cells.append(f"{value:.2%}")
            elif isinstance(value, float):
                cells.append(f"{value:.4g}" if math.isfinite(value) else "n/a")
            else:
                cells.append(str(value))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.extend(f"- {row['method']}: {row['network']}{_bits_text(row)} on {row['accelerator']}"
                 for _, row in table.iterrows())
    return "\n".join(lines) + "\n"


def compare(context: SearchContext, methods: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the methods on one context and write the comparison table.

    Parameters
    ----------
    context : SearchContext
    methods : sequence of str, optional
        ``cosearch`` plus any baselines (default: ``compare.methods``).

    Returns
    -------
    dict
        ``table`` (list of row dicts), ``results`` (per method), ``csv`` and ``markdown`` paths.
    """
    settings = context.settings
    methods = list(methods or settings["compare"]["methods"])
    unknown = [m for m in methods if m not in COMPARE_METHODS]
    if unknown or "cosearch" not in methods:
        raise SpaceError(f"compare.methods = {methods}: expected 'cosearch' plus any of {list(COMPARE_METHODS[1:])}")
    out = context.out_dir
    results: dict[str, dict[str, Any]] = {"cosearch": run_search(context, out / "cosearch")}
    print(summary_line(results["cosearch"]), flush=True)
    # The budget of the simulator-in-the-loop baselines: the co-search's own search time,
    # unless the config fixes one (``baselines.budget_s``) for compare too.
    budget = float(results["cosearch"]["search"]["seconds"])
    if settings["compare"]["use_configured_budget"]:
        budget = float(settings["baselines"]["budget_s"])
    for method in methods:
        if method != "cosearch":
            results[method] = run_baseline(context, method, out / method, budget_s=budget)
            print(summary_line(results[method]), flush=True)
    table = comparison_table(results)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / "compare.csv", out / "compare.md"
    atomic_write_text(csv_path, table.to_csv(index=False))
    text = markdown_table(table)
    atomic_write_text(md_path, text)
    lam = settings["search"]["lambda_cost"]
    print(f"\nComparison (lambda_cost = {lam}, metric {context.spec.metric}, budget {budget:.0f} s):\n{text}", flush=True)
    return {"table": table.to_dict("records"), "results": results, "csv": str(csv_path), "markdown": str(md_path)}

