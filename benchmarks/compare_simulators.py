"""Compare a dataset's simulator with the builtin one, pair by pair.

    python benchmarks/compare_simulators.py DATASET [--pairs 600] [--seed 0]

DATASET is a dance-gen dataset made by another adapter (``dance-gen simulator=zigzag``...).
A sample of its feasible, error-free rows is simulated again by the builtin simulator with
the dataset's mapping and objective, and the ratio other / builtin of every figure both give
(cycles, energy and its parts) is printed: median, p10 and p90, overall and per dataflow.
That is where two simulators disagree on purpose or by mistake, and what an evaluator with
the builtin analytic prior has to learn when it imitates the other one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# This folder holds benchmarks named like the packages: drop it from the import path.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.append(str(_HERE.parent))

import numpy as np  # noqa: E402

from dataset_gen.adapters import make_adapter  # noqa: E402
from dataset_gen.reader import read_dataset, simulator_identity  # noqa: E402
from dataset_gen.space import ACCELERATOR_FIELDS, LAYER_FIELDS  # noqa: E402

FIGURES = ("total_cycles", "energy_pj", "energy_mac_pj", "energy_rf_pj", "energy_array_pj", "energy_sram_pj",
           "energy_dram_pj", "energy_leak_pj")


def _quantiles(ratio: np.ndarray) -> str:
    p10, median, p90 = np.quantile(ratio, [0.1, 0.5, 0.9])
    return f"median {median:6.3f}  p10 {p10:6.3f}  p90 {p90:6.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--pairs", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    frame = read_dataset(args.dataset)
    identity = simulator_identity(frame.attrs["dance_gen"])
    usable = frame[frame["feasible"] & (frame["error"] == "")] if "error" in frame else frame[frame["feasible"]]
    sample = usable.sample(min(args.pairs, len(usable)), random_state=args.seed)
    settings = identity["settings"]
    builtin = make_adapter({"name": "builtin", "mapping": settings.get("mapping", "search"),
                            "objective": settings.get("objective", "latency")})
    ours = builtin.simulate(sample[list(LAYER_FIELDS + ACCELERATOR_FIELDS)])
    both = ours["feasible"].to_numpy(dtype=bool)
    sample, ours = sample[both], ours[both]
    print(f"{identity['name']} {identity['version']} / builtin on {len(sample)} pairs feasible in both "
          f"({int((~both).sum())} feasible only in {identity['name']})")
    for figure in FIGURES:
        ratio = sample[figure].to_numpy(dtype=float) / ours[figure].to_numpy(dtype=float)
        print(f"  {figure:<16} {_quantiles(ratio[np.isfinite(ratio)])}")
    for dataflow in sorted(sample["dataflow"].unique()):
        chosen = (sample["dataflow"] == dataflow).to_numpy()
        latency = sample["total_cycles"].to_numpy(dtype=float)[chosen] / ours["total_cycles"].to_numpy(dtype=float)[chosen]
        energy = sample["energy_pj"].to_numpy(dtype=float)[chosen] / ours["energy_pj"].to_numpy(dtype=float)[chosen]
        print(f"  {dataflow:<3} ({chosen.sum():4d} pairs) cycles {_quantiles(latency)} | energy {_quantiles(energy)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
