"""How well the evaluator's analytic base fits a dataset's simulator, before and after `fit_base`.

    .venv/bin/python benchmarks/base_fit.py --data D [--data D2 ...] [--fit-on D0] [--parts]

For each dance-gen dataset ``D`` (any simulator: builtin, zigzag, scalesim, command), prints
what `evaluator.network.fit_base` chooses on all its feasible rows (latency: the builtin
estimate or the roofline; the mapping objective the builtin estimate follows; the energy
parts' weights) and, for total cycles and energy, the share of feasible rows whose base
estimate lies within 10% of the simulator's figure: the builtin estimate as it is (the
fastest mapping), its least-energy and least-EDP mappings, the roofline with the parts
unweighed, and the fitted base; last, the simulator's register-file, buffer and DRAM energy over the builtin
estimate's (p10, median, p90), and the share of rows whose DRAM energy lies within 10% of the
builtin estimate's, the compulsory traffic's and the least-traffic mapping's. No network is trained; the figures are what the network starts from.

``--data`` also takes a Parquet file of simulated pairs (e.g. dance-active's
``_active/unseen.parquet``: real layers no training row has). ``--fit-on D0`` fits the base
on D0's feasible rows and scores every ``--data`` with that fit (how a trained evaluator's
base meets unseen layers). ``--parts`` adds, per energy part, the fitted base's energy within
10% with that part replaced by the simulator's own figure, and with only that part estimated
(every other part the simulator's): which part's per-pair estimate limits the base.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and benchmarks/dataset_gen.py
# would shadow the dataset_gen package: drop the folder before importing.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from dataset_gen.reader import read_dataset, read_metadata, simulator_identity  # noqa: E402
from dataset_gen.simulator.energy import DRAM_PJ_PER_BIT  # noqa: E402
from evaluator.data import encode_frame, usable  # noqa: E402
from evaluator.features import ACCEL_FEATURES, PAIR_FEATURES  # noqa: E402
from evaluator.network import (  # noqa: E402
    BASE_OBJECTIVES,
    ENERGY_PARTS,
    TARGET_MATRIX_COLUMNS,
    analytic_base,
    base_parts,
    fit_base,
)


def within_10pct(base: torch.Tensor, targets: torch.Tensor, column: int) -> float:
    error = (base[:, column].double() - targets[:, column].double()).numpy()
    error = error[np.isfinite(error)]
    return float(np.mean(np.abs(np.expm1(error)) <= 0.10))


def _feasible_rows(path: Path) -> pd.DataFrame:
    """A dataset's (or a Parquet file of simulated pairs') feasible rows without an error."""
    frame = pd.read_parquet(path) if path.is_file() else read_dataset(path)
    keep = usable(frame) & frame["feasible"].to_numpy(dtype=bool)
    if "error" in frame:
        keep &= (frame["error"].fillna("") == "").to_numpy(dtype=bool)
    return frame[keep].reset_index(drop=True)


def part_substitution(chunk: dict, frame: pd.DataFrame, scales: torch.Tensor, roofline: torch.Tensor) -> dict:
    """Energy within 10% of the fitted base with each part replaced by the simulator's figure
    (``true``), and with only that part estimated, the others the simulator's (``only``)."""
    with torch.no_grad():
        _, _, parts = base_parts(chunk["pair_x"].double(), chunk["acc_x"].double(), bool(float(roofline) > 0.5))
    estimated = np.stack([np.exp(part.numpy()) for part in parts], axis=1) * scales.double().numpy()
    simulated = frame[[f"energy_{part}_pj" for part in ENERGY_PARTS]].to_numpy(dtype=float)
    energy = frame["energy_pj"].to_numpy(dtype=float)

    def share(total: np.ndarray) -> float:
        return float(np.mean(np.abs(total / energy - 1.0) <= 0.10))

    return {part: {"true": share(estimated.sum(axis=1) - estimated[:, i] + simulated[:, i]),
                   "only": share(energy - simulated[:, i] + estimated[:, i])}
            for i, part in enumerate(ENERGY_PARTS)}


def dram_shares(chunk: dict) -> dict[str, float]:
    """Shares of rows whose simulated DRAM energy lies within 10% of the DRAM energy of the
    builtin estimate's traffic (the fastest mapping's), of the compulsory traffic (every
    operand once) and of the least-traffic mapping's (``est_least_dram_cycles``)."""
    pair_x, acc_x = chunk["pair_x"].double(), chunk["acc_x"].double()
    to_pj = (acc_x[:, ACCEL_FEATURES.index("log2_dram_bw")] + torch.log2(torch.tensor(8 * DRAM_PJ_PER_BIT))) * np.log(2)
    column = TARGET_MATRIX_COLUMNS.index("energy_dram_pj")
    logs = {"builtin estimate": pair_x[:, PAIR_FEATURES.index("log2_est_dram_pj")] * np.log(2),
            "compulsory": pair_x[:, PAIR_FEATURES.index("log2_dram_bound_cycles")] * np.log(2) + to_pj,
            "least-traffic mapping": pair_x[:, PAIR_FEATURES.index("log2_est_least_dram_cycles")] * np.log(2) + to_pj}
    return {name: within_10pct(value[:, None].expand(-1, column + 1), chunk["targets"], column)
            for name, value in logs.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path, action="append",
                        help="a dance-gen dataset or a Parquet file of simulated pairs (repeatable)")
    parser.add_argument("--fit-on", type=Path, default=None, metavar="D0",
                        help="fit the base on this dataset's rows and score every --data with it")
    parser.add_argument("--parts", action="store_true", help="the per-part substitution table")
    args = parser.parse_args(argv)
    fixed = fit_base([encode_frame(_feasible_rows(args.fit_on))]) if args.fit_on is not None else None
    for path in args.data:
        frame = _feasible_rows(path)
        chunk = encode_frame(frame)
        fit = fixed if fixed is not None else fit_base([chunk])
        source = ""
        if not path.is_file():  # a dataset records its simulator
            identity = simulator_identity(read_metadata(path))
            settings = ", ".join(f"{key} {value}" for key, value in sorted((identity.get("settings") or {}).items()))
            source = f" of {identity.get('name')} {identity.get('version')} ({settings})"
        print(f"{path}: {len(frame)} feasible rows{source}" + (f", base fitted on {args.fit_on}" if fixed else ""))
        weights = ", ".join(f"{part} {w:.3g}" for part, w in zip(ENERGY_PARTS, fit["base_energy_scales"].tolist()))
        rooflined = float(fit["base_roofline"]) > 0.5
        objective = BASE_OBJECTIVES[int(round(float(fit["base_objective"])))]
        print(f"  fit: latency {'roofline' if rooflined else 'builtin'}; objective {objective}; "
              f"energy weights {weights}")
        print(f"  {'base':<34} {'cycles <=10%':>12} {'energy <=10%':>12}")
        bases = {"builtin estimate": (0.0, None, 0.0), "builtin, least-energy mapping": (0.0, None, 1.0),
                 "builtin, least-EDP mapping": (0.0, None, 2.0), "roofline, parts unweighed": (1.0, None, 0.0),
                 "fitted": (fit["base_roofline"], fit["base_energy_scales"], fit["base_objective"])}
        with torch.no_grad():
            for name, (roofline, scales, chosen) in bases.items():
                base = analytic_base(chunk["pair_x"], chunk["acc_x"], roofline, scales, chosen)
                print(f"  {name:<34} {100 * within_10pct(base, chunk['targets'], 0):>11.1f}% "
                      f"{100 * within_10pct(base, chunk['targets'], 1):>11.1f}%")
        # the simulator's energy parts over the builtin estimate's (p10 / median / p90)
        builtin = analytic_base(chunk["pair_x"], chunk["acc_x"]).double().numpy()
        for part in ("rf", "sram", "dram"):
            column = TARGET_MATRIX_COLUMNS.index(f"energy_{part}_pj")
            ratio = np.exp(chunk["targets"][:, column].double().numpy() - builtin[:, column])
            ratio = ratio[np.isfinite(ratio)]
            low, mid, high = np.percentile(ratio, [10, 50, 90]) if ratio.size else (np.nan,) * 3
            print(f"  {part} energy over the builtin estimate's: p10 {low:.2f}, median {mid:.2f}, p90 {high:.2f}")
        print("  simulator's DRAM energy <=10% of the traffic's: "
              + ", ".join(f"{name} {100 * share:.1f}%" for name, share in dram_shares(chunk).items()))
        if args.parts:
            table = part_substitution(chunk, frame, fit["base_energy_scales"], fit["base_roofline"])
            print("  fitted base's energy <=10% with one part the simulator's / only that part estimated:")
            for part, entry in table.items():
                print(f"    {part:<6} {100 * entry['true']:5.1f}% / {100 * entry['only']:5.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
