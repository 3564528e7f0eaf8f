"""Benchmark: what a shared machine costs each command (idle against one busy neighbour).

    python benchmarks/shared_machine.py                  # the demo's stages, scaled down
    python benchmarks/shared_machine.py --samples 100000 --full --competitors 1

Runs the stages of ``dance-demo`` (dance-gen, dance-train, dance-search, dance-sim, through
their installed console scripts, each into a fresh folder) twice: on an idle machine, then
beside ``--competitors`` processes that each keep one CPU busy (a Python busy loop, as
another user's job would). It prints every stage's wall time in both runs and their ratio.
The goal: with one competing busy process no command takes more than 2.5x its idle time,
which holds when a command sizes its threads and workers by the CPUs actually free
(`dataset_gen.common.cpus.usable_cpus`) instead of the machine's core count.

The machine must be otherwise idle for the first run to mean "idle": the script prints the
runnable-task count it found before starting.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# This folder holds benchmarks named like the packages (dataset_gen.py, search.py): drop it
# from the import path so that `import dataset_gen` finds the package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.append(str(_HERE.parent))

GOAL_RATIO = 2.5
_BUSY_LOOP = "while True:\n    pass\n"


def _stages(out: Path, samples: int, quick: bool) -> list[tuple[str, list[str]]]:
    from search.demo import plan

    return plan(out, samples, quick)


def _run_stages(stages: list[tuple[str, list[str]]]) -> dict[str, float]:
    seconds = {}
    for name, argv in stages:
        start = time.perf_counter()
        completed = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                   stdin=subprocess.DEVNULL)
        seconds[name] = time.perf_counter() - start
        if completed.returncode != 0:
            raise SystemExit(f"{name} failed (exit {completed.returncode}):\n{completed.stderr[-2000:]}")
    return seconds


def _measure(samples: int, quick: bool, competitors: int) -> dict[str, float]:
    busy = [subprocess.Popen([sys.executable, "-c", _BUSY_LOOP]) for _ in range(competitors)]
    try:
        time.sleep(1.0 if busy else 0.0)  # let the neighbours reach the run queue
        with tempfile.TemporaryDirectory(prefix="dance-shared-") as folder:
            return _run_stages(_stages(Path(folder), samples, quick))
    finally:
        for process in busy:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20000, help="dataset rows (default 20000)")
    parser.add_argument("--full", action="store_true", help="the demo's full training and search, not --quick")
    parser.add_argument("--competitors", type=int, default=1, help="busy neighbour processes (default 1)")
    args = parser.parse_args(argv)

    from dataset_gen.common.cpus import allowed_cpus, busy_elsewhere

    print(f"CPUs allowed: {allowed_cpus()}; runnable tasks elsewhere now: {busy_elsewhere()}", flush=True)
    idle = _measure(args.samples, not args.full, 0)
    loaded = _measure(args.samples, not args.full, args.competitors)
    width = max(len(name) for name in idle)
    print(f"\n{'stage':<{width}}  {'idle s':>8}  {'busy s':>8}  ratio  (goal <= {GOAL_RATIO}x, "
          f"{args.competitors} busy neighbour(s))")
    worst = 0.0
    for name, seconds in idle.items():
        ratio = loaded[name] / seconds
        worst = max(worst, ratio)
        print(f"{name:<{width}}  {seconds:8.1f}  {loaded[name]:8.1f}  {ratio:5.2f}x")
    total_idle, total_busy = sum(idle.values()), sum(loaded.values())
    print(f"{'total':<{width}}  {total_idle:8.1f}  {total_busy:8.1f}  {total_busy / total_idle:5.2f}x")
    print(f"worst stage {worst:.2f}x: goal {'met' if worst <= GOAL_RATIO else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
