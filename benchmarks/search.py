"""Benchmark the co-search: time per search epoch and the evaluator's share of it.

    python benchmarks/search.py --evaluator FILE [--epochs 4] [hydra overrides...]

Runs the default ``dance-search`` configuration (or the overrides given) three ways, on
the same data and seed, without retraining or verification:

1. the co-search (architecture steps with the evaluator's cost);
2. the same search hardware-unaware (architecture steps without any cost);
3. the evaluator's cost alone, forward and backward, as in one architecture step.

It prints the mean epoch time of (1) and (2) over the epochs after warm-up, and the
evaluator's share of a co-search epoch measured two ways: (1 - 2) / 1, and
(3 x steps per epoch) / 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

# This file is named like the package it measures: drop its folder from the import path so
# that `import search` finds the package (installed, or the repository root when run there).
_HERE = Path(__file__).resolve().parent
ROOT = _HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from search.hardware import sample_choices  # noqa: E402
from search.context import build_context  # noqa: E402
from search.cosearch import run_cosearch  # noqa: E402
from search.training import use_threads  # noqa: E402


class EpochTimer(L.Callback):
    """Wall-clock time of every training epoch."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer, module) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, module) -> None:
        self.times.append(time.perf_counter() - self._start)


def _epoch_times(context, hardware_aware: bool) -> tuple[list[float], int]:
    timer = EpochTimer()
    trainer_settings = dict(context.settings["trainer"])
    trainer_settings.update(callbacks=[timer], enable_progress_bar=False, logger=False)
    context.settings["trainer"] = trainer_settings
    outcome = run_cosearch(context, hardware_aware=hardware_aware, name="benchmark")
    steps = outcome.module.trainer.num_training_batches
    return timer.times, int(steps)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluator", required=True, help="a trained evaluator artifact")
    parser.add_argument("--epochs", type=int, default=4, help="search epochs per run (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=1, help="epochs of weights only (default: %(default)s)")
    parser.add_argument("overrides", nargs="*", help="dance-search config overrides")
    args = parser.parse_args()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="search", overrides=[
            f"evaluator={args.evaluator}", f"search.epochs={args.epochs}",
            f"search.warmup_epochs={args.warmup}", "out=unused", *args.overrides])
    settings = OmegaConf.to_container(cfg, resolve=True)
    use_threads(settings["threads"])
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        context = build_context(settings, out)
        setup = time.perf_counter() - started
        aware, steps = _epoch_times(context, True)
        unaware, _ = _epoch_times(context, False)

        # The evaluator's cost alone, as in one architecture step (forward + backward).
        from search.cost import HardwareCost
        from search.hardware import AcceleratorLogits
        from search.supernet import Supernet

        supernet = Supernet(context.space)
        hardware = AcceleratorLogits(context.hw_space)
        cost = HardwareCost(context.evaluator, context.layer_table, context.space.num_blocks,
                            context.space.num_candidates, context.hw_space, context.spec)
        samples = int(settings["search"]["gumbel_samples"])
        repeats = 50
        started = time.perf_counter()
        for _ in range(repeats):
            probs = sample_choices(hardware(), 1.0, samples)
            out_terms = cost(supernet.arch_probs(), probs)
            (out_terms["cost"] + out_terms["penalty"]).backward()
        per_step = (time.perf_counter() - started) / repeats

    measured = aware[args.warmup:] or aware
    plain = unaware[args.warmup:] or unaware
    epoch = sum(measured) / len(measured)
    epoch_plain = sum(plain) / len(plain)
    print(f"co-search configuration: space {settings['network']['candidates']}, "
          f"{context.space.num_blocks} blocks, {context.hw_space.size} accelerators, layer table "
          f"{len(context.layer_table)} rows, {samples} Gumbel samples, {steps} steps per epoch, "
          f"{torch.get_num_threads()} torch threads")
    print(f"setup (data, evaluator, reference simulation): {setup:.2f} s")
    print(f"search epoch, co-search (after warm-up):      {epoch:.3f} s")
    print(f"search epoch, hardware-unaware NAS:           {epoch_plain:.3f} s")
    print(f"evaluator cost per architecture step (fwd+bwd): {per_step * 1e3:.2f} ms")
    print(f"evaluator share of a co-search epoch: {(epoch - epoch_plain) / epoch:.1%} (difference of the runs), "
          f"{per_step * steps / epoch:.1%} (isolated cost x {steps} steps)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    raise SystemExit(main())
