"""The loop-nest model (`evaluator.loopnest`, ZigZag's rules) against ZigZag's own figures.

For every feasible pair of a ZigZag dataset (a ``dance-gen simulator=zigzag`` directory, a
dance-active ``unseen.parquet``, or a fixture CSV such as ``tests/fixtures/zigzag_reference.csv``),
the model's dynamic energy (MAC + register file + buffers + DRAM) against ZigZag's (its total
less our leakage), its cycles against ZigZag's (``total_cycles``, ZigZag's ``latency_total2``
rounded up), and the time per pair:

    .venv/bin/python benchmarks/loopnest.py --data tests/fixtures/zigzag_reference.csv \\
        --max-orderings none --lpf-limit 6
    .venv/bin/python benchmarks/loopnest.py --data /tmp/zz/_active/unseen.parquet   # the adapter's defaults

The settings must be the data's (the fixture: LOMA unsampled, objective energy; dance-gen's
default: a sample of 100 orderings, objective edp).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and benchmarks/dataset_gen.py
# would shadow the dataset_gen package: drop the folder before importing.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from dataset_gen.adapters.zigzag import layer_sizes  # noqa: E402
from evaluator.data import read_split  # noqa: E402
from evaluator.loopnest import LoopNestCache, LoopNestSettings  # noqa: E402


def _frame(path: str) -> pd.DataFrame:
    frame = pd.read_csv(path) if path.endswith(".csv") else read_split(path, None)
    if "error" in frame.columns:
        frame = frame[frame["error"].isna() | (frame["error"].astype(str) == "")]
    return frame[frame["feasible"].astype(bool)].reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, action="append", help="a ZigZag dataset, parquet file or CSV")
    parser.add_argument("--lpf-limit", type=int, default=6)
    parser.add_argument("--max-orderings", default="100", help="an integer, or none (LOMA unsampled)")
    parser.add_argument("--energies", default="ours", choices=("ours", "zigzag"))
    parser.add_argument("--objective", default="edp", choices=("energy", "latency", "edp"),
                        help="the mapper's objective the data was made with")
    parser.add_argument("--rows", type=int, default=None, help="at most this many pairs per dataset")
    args = parser.parse_args()
    limit = None if args.max_orderings.lower() == "none" else int(args.max_orderings)
    settings = LoopNestSettings(args.lpf_limit, limit, args.energies, args.objective)
    print(f"loop-nest settings: {settings}")
    for path in args.data:
        frame = _frame(path)
        if args.rows is not None:
            frame = frame.iloc[:args.rows]
        pairs = [{**record, **layer_sizes(record)} for record in frame.to_dict("records")]
        start = time.perf_counter()
        costs = LoopNestCache(settings)(pairs)
        seconds = time.perf_counter() - start
        ratio = costs[:, 0] / (frame["energy_pj"] - frame["energy_leak_pj"]).to_numpy()
        cycles = np.ceil(costs[:, 1]) / frame["total_cycles"].to_numpy()
        print(f"{path}: {len(frame)} pairs, {1000 * seconds / max(len(frame), 1):.1f} ms per pair; "
              f"no loop nest: {int(np.isnan(ratio).sum())}")
        for name, values in (("dynamic energy", ratio), ("cycles", cycles)):
            off = np.abs(values - 1)
            print(f"  {name}: exact (1e-6) {100 * np.mean(off <= 1e-6):.1f}%, "
                  f"within 1%: {100 * np.mean(off <= 0.01):.1f}%, within 10%: {100 * np.mean(off <= 0.10):.1f}%, "
                  f"median ratio {np.nanmedian(values):.6f}")


if __name__ == "__main__":
    main()
