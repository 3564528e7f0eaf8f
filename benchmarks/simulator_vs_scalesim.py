"""Per-layer speed of our fast engine against SCALE-Sim v3 on the same layers.

SCALE-Sim's CPU seconds per layer were measured on this machine by
``tools/scalesim_reference.py`` and are stored in ``tests/fixtures/scalesim_reference.csv``
(column ``scalesim_cpu_seconds``); this script times our fast engine on every row of that
table, both with SCALE-Sim's fixed mapping (the same work SCALE-Sim does) and with our
mapping search (more work: ~100 candidate mappings per pair), and prints the speed-up.

Our time per layer is the CPU time of ``simulate_batch`` on ``--copies`` copies of that one
layer, divided by the copies: the dataset generator's way of running it (batched).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/simulator_vs_scalesim.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:1] = [str(ROOT)]  # run as a script: import the package, not benchmarks/ siblings

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from dataset_gen.simulator import simulate_batch  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "scalesim_reference.csv"


def layer_pairs(row: pd.Series, copies: int) -> pd.DataFrame:
    pair = {"in_h": row.ifmap_h, "in_w": row.ifmap_w, "in_c": row.channels, "out_c": row.num_filters,
            "k_h": row.filter_h, "k_w": row.filter_w, "stride": row.stride, "pad": 0,
            "pe_rows": row.pe_rows, "pe_cols": row.pe_cols, "dataflow": row.dataflow}
    return pd.DataFrame([pair] * copies)


def seconds_per_layer(pairs: pd.DataFrame, mapping: str, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        simulate_batch(pairs, mapping=mapping)
        best = min(best, time.process_time() - start)
    return best / len(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=256, help="pairs per timed batch")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    table = pd.read_csv(FIXTURE)
    rows = []
    for _, row in table.iterrows():
        pairs = layer_pairs(row, args.copies)
        rows.append({"case": row.case, "dataflow": row.dataflow, "array": f"{row.pe_rows}x{row.pe_cols}",
                     "scalesim_s": row.scalesim_cpu_seconds,
                     "ours_scalesim_mapping_s": seconds_per_layer(pairs, "scalesim", args.repeats),
                     "ours_search_s": seconds_per_layer(pairs, "search", args.repeats)})
    frame = pd.DataFrame(rows)
    print(f"{len(frame)} layer x array x dataflow cases from {FIXTURE.relative_to(ROOT)}; "
          f"SCALE-Sim 3.0.0 CPU seconds per layer: median {frame.scalesim_s.median():.3f}, "
          f"min {frame.scalesim_s.min():.4f}, max {frame.scalesim_s.max():.2f}")
    # The speed-up grows with the layer: SCALE-Sim steps every cycle, we do not.
    real = frame.case.str.match(r"(resnet|mobilenet|vgg|alexnet)")
    for subset, name in ((np.ones(len(frame), dtype=bool), "all cases"),
                         (real.to_numpy(), "real-network layers"), (~real.to_numpy(), "odd small shapes")):
        part = frame[subset]
        for column, label in (("ours_scalesim_mapping_s", "SCALE-Sim's mapping"),
                              ("ours_search_s", "mapping search")):
            ratio = part.scalesim_s / part[column]
            print(f"{name:<20} ({len(part):3d}) {label:<20}: median {part[column].median() * 1e6:6.1f} us/layer; "
                  f"speed-up median {np.median(ratio):>9,.0f}x, min {ratio.min():>7,.0f}x, "
                  f">= 10,000x on {np.mean(ratio >= 1e4):4.0%} of cases")
    slowest = frame.assign(ratio=frame.scalesim_s / frame.ours_search_s).nsmallest(5, "ratio")
    print("Smallest speed-ups with mapping search (SCALE-Sim is fastest on the tiniest layers):")
    print(slowest[["case", "dataflow", "array", "scalesim_s", "ours_search_s", "ratio"]].to_string(index=False))


if __name__ == "__main__":
    main()
