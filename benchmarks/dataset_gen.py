"""Throughput of dance-gen end to end: sampling, simulation with mapping search, Parquet.

Generates the same dataset (the default config of ``conf/gen.yaml``: the DANCE space, half
random shapes and half real-network layers) once per worker count and prints rows per
second, the time 1,000,000 rows would take, and whether every run wrote the same bytes.
The goal: 1,000,000 rows in under 5 minutes on 2 cores.

Usage::

    python benchmarks/dataset_gen.py                       # 1,000,000 rows, workers 1 and 2
    python benchmarks/dataset_gen.py --rows 50000          # a shorter run
    python benchmarks/dataset_gen.py --rows 50000 --workers 2 sampler=sobol space=small

Trailing arguments are dance-gen overrides. On machines that set OPENBLAS_CORETYPE, unset
it for this command only
(``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python ...``: that setting works around old
OpenBLAS builds and slows a current numpy; tests and CI leave it alone).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# dataset_gen package: drop the folder before importing.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

from dataset_gen.cli_gen import load_config  # noqa: E402
from dataset_gen.generate import generate  # noqa: E402


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(out.glob("part-*.parquet"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per run (default 1,000,000)")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts (default 1,2)")
    parser.add_argument("--progress", action="store_true", help="show the progress bar")
    parser.add_argument("overrides", nargs="*", help="dance-gen overrides, e.g. sampler=sobol")
    args = parser.parse_args()
    worker_counts = [int(value) for value in args.workers.split(",")]

    print(f"dance-gen benchmark: {args.rows:,} rows, overrides {args.overrides or 'none'}")
    outputs = []
    with tempfile.TemporaryDirectory(prefix="dance-gen-bench-") as scratch:
        for workers in worker_counts:
            out = Path(scratch) / f"workers{workers}"
            config = load_config([f"n_samples={args.rows}", f"workers={workers}", f"out={out}",
                                  f"progress={str(args.progress).lower()}", *args.overrides])
            started = time.perf_counter()
            result = generate(config)
            wall = time.perf_counter() - started
            per_million = 1_000_000 / result.rows_per_second
            print(f"  workers={workers}: {result.rows_per_second:,.0f} rows/s ({wall:.1f} s wall, "
                  f"{result.infeasible_fraction:.1%} infeasible); 1,000,000 rows would take "
                  f"{per_million / 60:.1f} min")
            outputs.append(out)
        identical = all(shard_bytes(outputs[0]) == shard_bytes(out) for out in outputs[1:])
        print(f"  every run wrote the same bytes: {'yes' if identical else 'NO'}")


if __name__ == "__main__":
    main()
