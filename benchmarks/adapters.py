"""Benchmark: dance-gen's rows per second with each simulator adapter, by workers and backend.

    python benchmarks/adapters.py                                  # builtin, command, zigzag
    python benchmarks/adapters.py --adapters zigzag --rows 200 --workers 1 2 --backends local ray
    python benchmarks/adapters.py --adapters scalesim              # needs `make scalesim-env`

Each run is a real ``dance-gen`` (`dataset_gen.generate.generate`) into a fresh folder, on
the default space and layer mix (scalesim: ws/os/is only and small random layers, since
SCALE-Sim takes minutes on real layers), with the adapter's default settings and shard size.
It prints rows/s and the speed-up of more workers over one. Wall time includes starting the
pool (and Ray, and each worker's tool), as a user would see it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

# This folder holds benchmarks named like the packages: drop it from the import path.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.append(str(_HERE.parent))

from omegaconf import OmegaConf  # noqa: E402

from dataset_gen.common.config import compose_config  # noqa: E402
from dataset_gen.generate import generate  # noqa: E402

EXAMPLE_COMMAND = f"[{sys.executable},{_HERE.parent / 'examples' / 'adapters' / 'builtin_over_protocol.py'}]"
OVERRIDES = {
    "builtin": ["simulator=builtin"],
    "command": ["simulator=command", f"simulator.command={EXAMPLE_COMMAND}"],
    "zigzag": ["simulator=zigzag"],
    "scalesim": ["simulator=scalesim", "space=small", "layers=random", "space.accelerator.dataflow=[ws,os,is]"],
}
DEFAULT_ROWS = {"builtin": 100000, "command": 2000, "zigzag": 200, "scalesim": 40}


def measure(adapter: str, rows: int, workers: int, backend: str) -> tuple[float, int]:
    """Wall seconds and error rows of one dance-gen run."""
    with tempfile.TemporaryDirectory(prefix="dance-adapter-bench-") as folder:
        config = compose_config("gen", [*OVERRIDES[adapter], f"n_samples={rows}", f"workers={workers}",
                                        f"backend={backend}", f"out={folder}/data", "progress=false"])
        values = OmegaConf.to_container(config, resolve=True)
        values.pop("describe", None)
        started = time.perf_counter()
        result = generate(values)
        return time.perf_counter() - started, result.errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapters", nargs="+", default=["builtin", "command", "zigzag"], choices=sorted(OVERRIDES))
    parser.add_argument("--rows", type=int, default=None, help="rows per run (default: per adapter)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--backends", nargs="+", default=["local"], choices=["local", "ray"])
    args = parser.parse_args(argv)
    print(f"{'adapter':<9} {'backend':<7} {'workers':>7} {'rows':>7} {'seconds':>8} {'rows/s':>9} {'speed-up':>8} errors")
    for adapter in args.adapters:
        rows = args.rows or DEFAULT_ROWS[adapter]
        for backend in args.backends:
            single = None
            for workers in args.workers:
                seconds, errors = measure(adapter, rows, workers, backend)
                single = single or seconds
                print(f"{adapter:<9} {backend:<7} {workers:>7} {rows:>7} {seconds:>8.1f} {rows / seconds:>9,.1f} "
                      f"{single / seconds:>7.2f}x {errors}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
