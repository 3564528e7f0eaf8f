"""How well the evaluator's analytic base fits a dataset's simulator, before and after `fit_base`.

    .venv/bin/python benchmarks/base_fit.py --data D [--data D2 ...]

For each dance-gen dataset ``D`` (any simulator: builtin, zigzag, scalesim, command), prints
what `evaluator.network.fit_base` chooses on all its feasible rows (latency: the builtin
estimate or the roofline; the energy parts' weights) and, for total cycles and energy, the
share of feasible rows whose base estimate lies within 10% of the simulator's figure: the
builtin estimate as it is, the roofline with the parts unweighed, and the fitted base; last,
the simulator's register-file, buffer and DRAM energy over the builtin estimate's (p10,
median, p90). No network is trained; the figures are what the network starts from.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and benchmarks/dataset_gen.py
# would shadow the dataset_gen package: drop the folder before importing.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dataset_gen.reader import read_dataset, read_metadata, simulator_identity  # noqa: E402
from evaluator.data import encode_frame, usable  # noqa: E402
from evaluator.network import ENERGY_PARTS, TARGET_MATRIX_COLUMNS, analytic_base, fit_base  # noqa: E402


def within_10pct(base: torch.Tensor, targets: torch.Tensor, column: int) -> float:
    error = (base[:, column].double() - targets[:, column].double()).numpy()
    error = error[np.isfinite(error)]
    return float(np.mean(np.abs(np.expm1(error)) <= 0.10))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, type=Path, action="append", help="a dance-gen dataset (repeatable)")
    args = parser.parse_args(argv)
    for path in args.data:
        frame = read_dataset(path)
        frame = frame[usable(frame) & frame["feasible"].to_numpy(dtype=bool)].reset_index(drop=True)
        chunk = encode_frame(frame)
        fit = fit_base([chunk])
        identity = simulator_identity(read_metadata(path))
        settings = ", ".join(f"{key} {value}" for key, value in sorted((identity.get("settings") or {}).items()))
        print(f"{path}: {len(frame)} feasible rows of {identity.get('name')} {identity.get('version')} ({settings})")
        weights = ", ".join(f"{part} {w:.3g}" for part, w in zip(ENERGY_PARTS, fit["base_energy_scales"].tolist()))
        print(f"  fit: latency {'roofline' if float(fit['base_roofline']) else 'builtin'}; energy weights {weights}")
        print(f"  {'base':<34} {'cycles <=10%':>12} {'energy <=10%':>12}")
        bases = {"builtin estimate": (0.0, None), "roofline, parts unweighed": (1.0, None),
                 "fitted": (fit["base_roofline"], fit["base_energy_scales"])}
        with torch.no_grad():
            for name, (roofline, scales) in bases.items():
                base = analytic_base(chunk["pair_x"], chunk["acc_x"], roofline, scales)
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
