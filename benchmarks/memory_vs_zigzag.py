"""The builtin simulator's memory model against ZigZag, on real-network layers.

    .venv/bin/python benchmarks/memory_vs_zigzag.py [--fixture PATH] [--json PATH] [--worst 6] [--against PATH]

Reads ``tests/fixtures/zigzag_reference.csv`` (ZigZag 3.9.1's figures, LOMA unsampled,
objective energy, our per-access energies; made by ``tools/zigzag_reference.py``), simulates
the same pairs with the builtin simulator *now* (``simulate_batch(pairs, mapping="search",
objective="energy")``) and prints, ratio = ours / ZigZag:

- on the ``grid`` pairs (12 layers x 12 accelerators), per dataflow and overall: DRAM words
  (all, and per operand: ifmap reads, filter reads, ofmap reads + writes) as median / p10 /
  p90 and the count and share of pairs where ours exceeds ZigZag's by more than 5% and 20%;
  energy (total, MAC, register file, SRAM, DRAM), register-file accesses, SRAM accesses and
  latency as median / p10 / p90;
- per grid layer, Kendall's tau-b between our energy and ZigZag's across its accelerators,
  and the same for latency (``total_cycles``): does our simulator rank accelerators as ZigZag
  does? Also our energy without its array transfers (ZigZag has none), and with ZigZag's DRAM
  energy in place of ours (the rest of the model, the two mappers' DRAM traffic taken out);
- ``rf_sweep``: for each (layer, accelerator) series, each tool's energy at every
  ``rf_bytes``, and how many series get cheaper from 4 B to 64 B;
- ``precision``: for each (layer, accelerator) series at (w_bits, a_bits) = 16/16, 8/8, 4/8,
  8/4, 4/4 on fixed-precision MACs, each tool's energy relative to its own 16/16 energy (what
  lowering precision saves), our DRAM words over ZigZag's, and Kendall's tau of the two tools'
  energies across the five precisions;
- the pairs feasible in one tool only; the grid pairs where our DRAM traffic exceeds
  ZigZag's most, with both tools' mappings.

``--against`` compares the fixture with a second ZigZag fixture of the same grid (ZigZag at
another LOMA effort): per-layer tau of their energies, and DRAM words over each other's
(`reference_agreement`): the ceiling of any other mapper's ranking agreement.

Pairs infeasible in either tool (or a ZigZag error row) are left out of every ratio and
counted. ``--json`` writes every number. The functions (`compare`, `kendall_tau_b`, ...) are
importable: ``tests/dataset_gen/test_zigzag_reference.py`` loads this file by path.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

# This folder holds benchmarks named like the packages: drop it from the import path.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.append(str(_HERE.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from dataset_gen.common.files import write_json  # noqa: E402
from dataset_gen.simulator import simulate_batch  # noqa: E402
from dataset_gen.space import ACCELERATOR_FIELDS, LAYER_FIELDS  # noqa: E402

ROOT = _HERE.parent
FIXTURE = ROOT / "tests" / "fixtures" / "zigzag_reference.csv"

DRAM_OPERANDS: dict[str, tuple[str, ...]] = {
    "total": ("dram_ifmap_reads", "dram_filter_reads", "dram_ofmap_reads", "dram_ofmap_writes"),
    "ifmap": ("dram_ifmap_reads",),
    "filter": ("dram_filter_reads",),
    "ofmap": ("dram_ofmap_reads", "dram_ofmap_writes"),
}
SRAM_OPERANDS: dict[str, tuple[str, ...]] = {
    "total": ("sram_ifmap_reads", "sram_filter_reads", "sram_ofmap_reads", "sram_ofmap_writes"),
    "ifmap": ("sram_ifmap_reads",),
    "filter": ("sram_filter_reads",),
    "ofmap": ("sram_ofmap_reads", "sram_ofmap_writes"),
}
ENERGY_PARTS: dict[str, str] = {"total": "energy_pj", "mac": "energy_mac_pj", "rf": "energy_rf_pj",
                                "sram": "energy_sram_pj", "dram": "energy_dram_pj"}
#: energy parts of our simulator that ZigZag's model lacks (reported as a share of our total
#: when the simulator has them; they are in both totals' comparison all the same)
OURS_ONLY_ENERGY = ("array",)
#: "ours moves more than ZigZag" thresholds on the DRAM ratio
OVER = (1.05, 1.20)
DATAFLOW_GROUPS = ("all", "ws", "os")


def load_fixture(path: str | Path = FIXTURE) -> pd.DataFrame:
    """The fixture as a frame (``error`` and ``map_order`` as strings, "" when empty)."""
    frame = pd.read_csv(path, dtype={"error": "str", "map_order": "str"})
    for column in ("error", "map_order"):
        frame[column] = frame[column].fillna("")
    frame["feasible"] = frame["feasible"].astype(bool)
    return frame


def simulate_ours(fixture: pd.DataFrame) -> pd.DataFrame:
    """The builtin simulator's results on the fixture's pairs (same index)."""
    # the fixture's pairs are at the word width on fixed MACs: its precision and PE-kind
    # columns are absent and take their defaults
    fields = [f for f in LAYER_FIELDS + ACCELERATOR_FIELDS if f in fixture.columns]
    return simulate_batch(fixture[fields], mapping="search", objective="energy")


def kendall_tau_b(x: Any, y: Any) -> float:
    """Kendall's tau-b of two equal-length sequences (NaN with fewer than 2 untied pairs)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) != len(y):
        raise ValueError("kendall_tau_b: x and y differ in length")
    upper = np.triu_indices(len(x), k=1)
    dx = np.sign(x[:, None] - x[None, :])[upper]
    dy = np.sign(y[:, None] - y[None, :])[upper]
    denominator = np.sqrt(float(np.count_nonzero(dx)) * float(np.count_nonzero(dy)))
    return float(np.sum(dx * dy) / denominator) if denominator > 0 else float("nan")


def quantiles(ratio: Any) -> dict[str, float]:
    """Median, p10, p90 and count of the finite ratios."""
    ratio = np.asarray(ratio, dtype=float)
    ratio = ratio[np.isfinite(ratio)]
    if not len(ratio):
        return {"median": float("nan"), "p10": float("nan"), "p90": float("nan"), "n": 0}
    p10, median, p90 = np.quantile(ratio, [0.1, 0.5, 0.9])
    return {"median": float(median), "p10": float(p10), "p90": float(p90), "n": len(ratio)}


def _sum(frame: pd.DataFrame, columns: tuple[str, ...]) -> np.ndarray:
    return frame[list(columns)].to_numpy(dtype=float).sum(axis=1)


def _ratio(ours: np.ndarray, zigzag: np.ndarray) -> np.ndarray:
    """ours / zigzag; NaN where ZigZag's figure is 0 (left out by `quantiles`)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(zigzag > 0, ours / np.where(zigzag > 0, zigzag, 1.0), np.nan)


def _excess(ratio: np.ndarray) -> dict[str, Any]:
    stats: dict[str, Any] = quantiles(ratio)
    finite = ratio[np.isfinite(ratio)]
    for limit in OVER:
        count = int(np.sum(finite > limit))
        stats[f"over_{limit:.2f}"] = count
        stats[f"over_{limit:.2f}_share"] = count / len(finite) if len(finite) else float("nan")
    stats["under_0.95"] = int(np.sum(finite < 0.95))
    return stats


def _group_stats(zz: pd.DataFrame, ours: pd.DataFrame) -> dict[str, Any]:
    dram = {name: _excess(_ratio(_sum(ours, cols), _sum(zz, cols))) for name, cols in DRAM_OPERANDS.items()}
    sram = {name: quantiles(_ratio(_sum(ours, cols), _sum(zz, cols))) for name, cols in SRAM_OPERANDS.items()}
    energy = {name: quantiles(_ratio(ours[col].to_numpy(float), zz[col].to_numpy(float)))
              for name, col in ENERGY_PARTS.items()}
    # energy parts only our simulator has (none in ZigZag's model): their share of our total
    ours_only = {name: quantiles(ours[f"energy_{name}_pj"].to_numpy(float) / ours["energy_pj"].to_numpy(float))
                 for name in OURS_ONLY_ENERGY if f"energy_{name}_pj" in ours}
    return {
        "n": len(zz), "dram_words": dram, "energy": energy, "ours_only_energy_share": ours_only,
        "rf_accesses": quantiles(_ratio(ours["rf_accesses"].to_numpy(float), zz["rf_accesses"].to_numpy(float))),
        "sram_accesses": sram,
        "latency": quantiles(_ratio(ours["total_cycles"].to_numpy(float), zz["total_cycles"].to_numpy(float))),
    }


def _series_values(values: pd.Series) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in values.to_numpy(dtype=float)]


def compare(fixture: pd.DataFrame, ours: pd.DataFrame | None = None, worst: int = 6) -> dict[str, Any]:
    """Every summary number of the comparison, as a JSON-able dict.

    Parameters
    ----------
    fixture : DataFrame
        `load_fixture`'s frame (ZigZag's figures and the pairs).
    ours : DataFrame, optional
        The builtin simulator's results on those pairs (same index); simulated now if None.
    worst : int
        How many grid pairs with the largest DRAM ratio to describe.
    """
    fixture = fixture.reset_index(drop=True)
    ours = simulate_ours(fixture) if ours is None else ours.reset_index(drop=True)
    zz_ok = fixture["feasible"].to_numpy(bool) & (fixture["error"] == "").to_numpy(bool)
    our_ok = ours["feasible"].to_numpy(bool)
    errors = (fixture["error"] != "").to_numpy(bool)
    both = zz_ok & our_ok
    grid = (fixture["set"] == "grid").to_numpy(bool)
    sweep = (fixture["set"] == "rf_sweep").to_numpy(bool)

    def cases(mask: np.ndarray) -> list[dict[str, str]]:
        return [{"case": case, "set": kind} for case, kind in zip(fixture.loc[mask, "case"], fixture.loc[mask, "set"])]

    summary: dict[str, Any] = {
        "fixture": {"pairs": len(fixture), "grid": int(grid.sum()), "rf_sweep": int(sweep.sum()),
                    "zigzag_version": str(fixture["zigzag_version"].iloc[0]) if "zigzag_version" in fixture else ""},
        "feasibility": {
            "zigzag_feasible": int(zz_ok.sum()), "ours_feasible": int(our_ok.sum()), "both": int(both.sum()),
            "grid_both": int((both & grid).sum()), "zigzag_errors": int(errors.sum()),
            "zigzag_only": cases(zz_ok & ~our_ok), "ours_only": cases(our_ok & ~zz_ok & ~errors),
            "excluded_from_ratios": int((grid & ~both).sum()),
        },
    }

    # ratios on the grid, per dataflow
    groups = {}
    for group in DATAFLOW_GROUPS:
        mask = grid & both & ((fixture["dataflow"] == group).to_numpy(bool) if group != "all" else True)
        groups[group] = _group_stats(fixture[mask], ours[mask])
    summary["grid"] = groups

    # per-layer rank agreement across the grid's accelerators
    tau: dict[str, Any] = {}
    layer_key = fixture["network"] + "/" + fixture["layer_name"]
    # energy_without_array: ours less the array transfers, which ZigZag does not model;
    # energy_with_zigzag_dram: ours with ZigZag's DRAM energy in place of ours (same per-bit
    # energy: its DRAM traffic): how the rest of the two models ranks once the two mappers'
    # DRAM traffic is taken out of the comparison
    ranked = {"energy": (ours["energy_pj"], "energy_pj"), "latency": (ours["total_cycles"], "total_cycles"),
              "energy_without_array": (ours["energy_pj"] - ours["energy_array_pj"], "energy_pj"),
              "energy_with_zigzag_dram": (ours["energy_pj"] - ours["energy_dram_pj"] + fixture["energy_dram_pj"],
                                          "energy_pj")}
    for name, (our_values, column) in ranked.items():
        per_layer = {}
        for layer in pd.unique(layer_key[grid]):
            mask = grid & both & (layer_key == layer).to_numpy(bool)
            per_layer[layer] = (kendall_tau_b(our_values[mask], fixture.loc[mask, column])
                                if mask.sum() >= 3 else float("nan"))
        values = np.array([v for v in per_layer.values() if np.isfinite(v)])
        tau[name] = {"per_layer": per_layer, "median": float(np.median(values)) if len(values) else float("nan"),
                     "min": float(values.min()) if len(values) else float("nan")}
    summary["tau"] = tau

    # register-file sweep
    series = []
    for (layer, accelerator), rows in fixture[sweep].groupby([layer_key[sweep], fixture.loc[sweep, "accelerator_id"]],
                                                            sort=False):
        rows = rows.sort_values("rf_bytes")
        index = rows.index
        ours_energy = ours.loc[index, "energy_pj"].where(ours.loc[index, "feasible"])
        zz_energy = rows["energy_pj"].where(zz_ok[index])
        entry = {"layer": layer, "accelerator_id": accelerator, "dataflow": str(rows["dataflow"].iloc[0]),
                 "rf_bytes": [int(v) for v in rows["rf_bytes"]],
                 "ours_energy_pj": _series_values(ours_energy), "zigzag_energy_pj": _series_values(zz_energy),
                 "ours_rf_accesses": [int(v) for v in ours.loc[index, "rf_accesses"]],
                 "zigzag_rf_accesses": [int(v) for v in rows["rf_accesses"]]}
        for tool in ("ours", "zigzag"):
            energies = entry[f"{tool}_energy_pj"]
            first, last = energies[0], energies[-1]
            entry[f"{tool}_falls"] = None if first is None or last is None else bool(last < first)
        series.append(entry)
    summary["rf_sweep"] = {
        "series": series, "series_count": len(series),
        "ours_falls_count": sum(1 for s in series if s["ours_falls"]),
        "zigzag_falls_count": sum(1 for s in series if s["zigzag_falls"]),
    }

    # precision sweep: what lowering precision saves in each tool
    precision = (fixture["set"] == "precision").to_numpy(bool) if "w_bits" in fixture else np.zeros(len(fixture), bool)
    precision_series = []
    for (layer, accelerator), rows in fixture[precision].groupby(
            [layer_key[precision], fixture.loc[precision, "accelerator_id"]], sort=False):
        index = rows.index
        ok = both[index]
        labels = [f"{int(w)}/{int(a)}" for w, a in zip(rows["w_bits"], rows["a_bits"])]
        ours_energy = ours.loc[index, "energy_pj"].to_numpy(float)
        zz_energy = rows["energy_pj"].to_numpy(float)
        base = labels.index("16/16")
        dram = _ratio(_sum(ours.loc[index], DRAM_OPERANDS["total"]), _sum(rows, DRAM_OPERANDS["total"]))
        precision_series.append({
            "layer": layer, "accelerator_id": accelerator, "precisions": labels,
            "ours_relative_energy": [float(v / ours_energy[base]) if ok[i] else None for i, v in enumerate(ours_energy)],
            "zigzag_relative_energy": [float(v / zz_energy[base]) if ok[i] else None for i, v in enumerate(zz_energy)],
            "dram_ratio": [float(v) if ok[i] else None for i, v in enumerate(dram)],
            "energy_tau": kendall_tau_b(ours_energy[ok], zz_energy[ok]) if ok.sum() >= 3 else float("nan"),
        })
    by_precision: dict[str, Any] = {}
    for entry in precision_series:
        for i, label in enumerate(entry["precisions"]):
            slot = by_precision.setdefault(label, {"ours": [], "zigzag": [], "dram_ratio": []})
            for key, source in (("ours", "ours_relative_energy"), ("zigzag", "zigzag_relative_energy"),
                                ("dram_ratio", "dram_ratio")):
                if entry[source][i] is not None:
                    slot[key].append(entry[source][i])
    taus = np.array([e["energy_tau"] for e in precision_series if np.isfinite(e["energy_tau"])])
    summary["precision"] = {
        "series": precision_series, "series_count": len(precision_series),
        "median": {label: {key: float(np.median(values)) if values else float("nan") for key, values in slot.items()}
                   for label, slot in by_precision.items()},
        "energy_tau_median": float(np.median(taus)) if len(taus) else float("nan"),
    }

    # the grid pairs where ours moves the most DRAM words over ZigZag's, with both mappings
    mask = grid & both
    ratio = _ratio(_sum(ours, DRAM_OPERANDS["total"]), _sum(fixture, DRAM_OPERANDS["total"]))
    order = [i for i in np.argsort(-np.where(mask & np.isfinite(ratio), ratio, -np.inf)) if mask[i]][:worst]
    summary["worst_dram"] = [{
        "case": fixture.loc[i, "case"], "ratio": float(ratio[i]),
        "ours": {name: int(_sum(ours.loc[[i]], cols)[0]) for name, cols in DRAM_OPERANDS.items()},
        "zigzag": {name: int(_sum(fixture.loc[[i]], cols)[0]) for name, cols in DRAM_OPERANDS.items()},
        "ours_mapping": {"order": str(ours.loc[i, "map_order"]),
                         **{f"tile_{dim}": int(ours.loc[i, f"map_tile_{dim}"]) for dim in "pqck"
                            if f"map_tile_{dim}" in ours}},
        "zigzag_map_order": fixture.loc[i, "map_order"],
    } for i in order]
    return summary


def _q(stats: dict[str, float]) -> str:
    return f"{stats['median']:7.3f} {stats['p10']:7.3f} {stats['p90']:7.3f}"


def report(summary: dict[str, Any]) -> str:
    """The printed report of `compare`'s summary."""
    lines = []
    fixture, feasibility = summary["fixture"], summary["feasibility"]
    lines.append(f"ZigZag {fixture['zigzag_version']} fixture: {fixture['pairs']} pairs ({fixture['grid']} grid, "
                 f"{fixture['rf_sweep']} rf_sweep); feasible: ZigZag {feasibility['zigzag_feasible']}, ours "
                 f"{feasibility['ours_feasible']}, both {feasibility['both']} ({feasibility['grid_both']} grid); "
                 f"ZigZag error rows {feasibility['zigzag_errors']}")
    lines.append(f"Ratios = ours / ZigZag on the grid pairs feasible in both "
                 f"({feasibility['excluded_from_ratios']} grid pairs excluded)")
    for group in DATAFLOW_GROUPS:
        stats = summary["grid"][group]
        lines.append("")
        lines.append(f"== {group} ({stats['n']} pairs) ==")
        lines.append(f"{'':<22}{'median':>7} {'p10':>7} {'p90':>7}   {'>1.05x':>11} {'>1.20x':>11} {'<0.95x':>7}")
        for name, dram in stats["dram_words"].items():
            lines.append(f"{'DRAM words ' + name:<22}{_q(dram)}   "
                         f"{dram['over_1.05']:>3} ({dram['over_1.05_share']:5.1%}) "
                         f"{dram['over_1.20']:>3} ({dram['over_1.20_share']:5.1%}) {dram['under_0.95']:>7}")
        for name, energy in stats["energy"].items():
            lines.append(f"{'energy ' + name:<22}{_q(energy)}")
        for name, share in stats["ours_only_energy_share"].items():
            lines.append(f"{name + ' E share (ours)':<22}{_q(share)}   (of our total; ZigZag has no such part)")
        lines.append(f"{'RF accesses':<22}{_q(stats['rf_accesses'])}")
        for name, sram in stats["sram_accesses"].items():
            lines.append(f"{'SRAM accesses ' + name:<22}{_q(sram)}")
        lines.append(f"{'latency (cycles)':<22}{_q(stats['latency'])}")
    lines.append("")
    lines.append("== Kendall tau-b per grid layer, ours vs ZigZag across its accelerators ==")
    lines.append(f"{'layer':<36} {'energy':>7} {'latency':>8}")
    for layer, energy_tau in summary["tau"]["energy"]["per_layer"].items():
        lines.append(f"{layer:<36} {energy_tau:7.3f} {summary['tau']['latency']['per_layer'][layer]:8.3f}")
    lines.append(f"{'median':<36} {summary['tau']['energy']['median']:7.3f} {summary['tau']['latency']['median']:8.3f}")
    lines.append(f"energy tau median without our array-transfer energy (ZigZag has none): "
                 f"{summary['tau']['energy_without_array']['median']:.3f}")
    lines.append(f"energy tau median with ZigZag's DRAM energy in ours (the mappers' DRAM traffic taken out): "
                 f"{summary['tau']['energy_with_zigzag_dram']['median']:.3f}")
    lines.append("")
    sweep = summary["rf_sweep"]
    lines.append("== rf_sweep: energy (uJ) at rf_bytes " + "/".join(str(v) for v in sweep["series"][0]["rf_bytes"])
                 + " ==" if sweep["series"] else "== rf_sweep: no series ==")

    def fmt(values: list[float | None]) -> str:
        return " ".join(f"{v / 1e6:9.2f}" if v is not None else f"{'infeas.':>9}" for v in values)

    for entry in sweep["series"]:
        lines.append(f"{entry['layer']} on {entry['accelerator_id']}:")
        lines.append(f"   ours   {fmt(entry['ours_energy_pj'])}   falls 4->64 B: {entry['ours_falls']}")
        lines.append(f"   ZigZag {fmt(entry['zigzag_energy_pj'])}   falls 4->64 B: {entry['zigzag_falls']}")
    lines.append(f"series cheaper at 64 B than at 4 B: ours {sweep['ours_falls_count']}/{sweep['series_count']}, "
                 f"ZigZag {sweep['zigzag_falls_count']}/{sweep['series_count']}")
    lines.append("")
    precision = summary["precision"]
    lines.append(f"== precision: energy relative to 16/16 bits (medians over {precision['series_count']} series), "
                 "and our DRAM words / ZigZag's ==")
    lines.append(f"{'w/a bits':<10}{'ours':>8}{'ZigZag':>8}{'DRAM ratio':>12}")
    for label, medians in precision["median"].items():
        lines.append(f"{label:<10}{medians['ours']:8.3f}{medians['zigzag']:8.3f}{medians['dram_ratio']:12.3f}")
    lines.append(f"Kendall tau of the two tools' energies across the precisions, median over series: "
                 f"{precision['energy_tau_median']:.3f}")
    lines.append("")
    lines.append("== feasibility disagreements ==")
    for kind, label in (("zigzag_only", "feasible in ZigZag only"), ("ours_only", "feasible in ours only")):
        listed = feasibility[kind]
        lines.append(f"{label}: {len(listed)}")
        lines.extend(f"   {item['case']} ({item['set']})" for item in listed)
    lines.append("")
    lines.append("== grid pairs where our DRAM words exceed ZigZag's most ==")
    for item in summary["worst_dram"]:
        ours_words, zz_words, mapping = item["ours"], item["zigzag"], item["ours_mapping"]
        lines.append(f"{item['case']}: x{item['ratio']:.2f}  ours ifmap/filter/ofmap {ours_words['ifmap']}/"
                     f"{ours_words['filter']}/{ours_words['ofmap']}  ZigZag {zz_words['ifmap']}/{zz_words['filter']}/"
                     f"{zz_words['ofmap']}")
        tiles = {key[5:]: value for key, value in mapping.items() if key.startswith("tile_")}
        lines.append(f"   ours: order {mapping['order']} (outer to inner) tiles {'/'.join(tiles)} "
                     f"{'/'.join(str(value) for value in tiles.values())};  ZigZag (innermost first): "
                     f"{item['zigzag_map_order']}")
    return "\n".join(lines)


def reference_agreement(first: pd.DataFrame, second: pd.DataFrame) -> dict[str, Any]:
    """ZigZag against itself: two fixtures of the same grid (e.g. two LOMA efforts).

    On the grid cases feasible in both: per layer, Kendall's tau-b of the two fixtures'
    energies (and latencies) across the accelerators, and how often one fixture's DRAM words
    exceed the other's by more than 5%. It is the ceiling a simulator with a mapper of its
    own can expect against one of them: a ranking agreement no better than the reference's
    with itself at another search effort is mapper noise, not a modelling error.
    """
    a, b = (frame[frame["set"] == "grid"].set_index("case") for frame in (first, second))
    cases = a.index.intersection(b.index)
    a, b = a.loc[cases], b.loc[cases]
    both = (a["feasible"].astype(bool) & b["feasible"].astype(bool) & (a["error"].fillna("") == "")
            & (b["error"].fillna("") == "")).to_numpy(bool)
    a, b = a[both], b[both]
    layer_key = (a["network"] + "/" + a["layer_name"]).to_numpy()
    tau: dict[str, Any] = {}
    for column, name in (("energy_pj", "energy"), ("total_cycles", "latency")):
        per_layer = {layer: kendall_tau_b(a.loc[layer_key == layer, column], b.loc[layer_key == layer, column])
                     for layer in pd.unique(layer_key) if (layer_key == layer).sum() >= 3}
        values = np.array([v for v in per_layer.values() if np.isfinite(v)])
        tau[name] = {"per_layer": per_layer, "median": float(np.median(values)) if len(values) else float("nan")}
    words_a, words_b = _sum(a, DRAM_OPERANDS["total"]), _sum(b, DRAM_OPERANDS["total"])
    ratio = _ratio(words_a, words_b)
    return {"pairs": int(both.sum()), "tau": tau,
            "first_dram_over_105": int((ratio > 1.05).sum()), "second_dram_over_105": int((ratio < 1 / 1.05).sum())}


def agreement_report(agreement: dict[str, Any], first: str, second: str) -> str:
    lines = [f"== ZigZag against itself: {first} vs {second} ({agreement['pairs']} grid pairs feasible in both) ==",
             f"{'layer':<36} {'energy':>7} {'latency':>8}"]
    for layer, value in agreement["tau"]["energy"]["per_layer"].items():
        lines.append(f"{layer:<36} {value:7.3f} {agreement['tau']['latency']['per_layer'][layer]:8.3f}")
    lines.append(f"{'median':<36} {agreement['tau']['energy']['median']:7.3f} "
                 f"{agreement['tau']['latency']['median']:8.3f}")
    lines.append(f"DRAM words over the other's by more than 5%: {first} on {agreement['first_dram_over_105']} "
                 f"pairs, {second} on {agreement['second_dram_over_105']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixture", type=Path, default=FIXTURE, help="the ZigZag fixture (tools/zigzag_reference.py)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write every summary number here")
    parser.add_argument("--worst", type=int, default=6, help="how many worst DRAM-ratio pairs to describe")
    parser.add_argument("--against", type=Path, default=None, metavar="FIXTURE",
                        help="also compare the fixture with another ZigZag fixture of the same grid "
                             "(e.g. tests/fixtures/zigzag_reference_lpf8.csv: ZigZag at another search effort)")
    args = parser.parse_args(argv)
    summary = compare(load_fixture(args.fixture), worst=args.worst)
    print(report(summary))
    if args.against is not None:
        summary["against"] = reference_agreement(load_fixture(args.fixture), load_fixture(args.against))
        print()
        print(agreement_report(summary["against"], args.fixture.name, args.against.name))
    if args.json is not None:
        write_json(args.json, summary)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
