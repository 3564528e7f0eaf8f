"""`dance-demo`: the whole story on embedded defaults, from nothing to a verified co-design.

Runs the README's commands one after the other, each through its real entry point:
``dance-gen`` (a simulator dataset), ``dance-train`` (the evaluator, validated),
``dance-search`` (the co-search on scikit-learn's digits) and ``dance-sim --network``
(re-simulation of the result), then prints one closing summary.

    dance-demo                      # everything under runs/demo/
    dance-demo --out DIR --samples 20000 --quick   # a scaled-down run (tests use this)

Running it again is safe: ``dance-gen`` resumes (or reuses) its dataset, and the evaluator
and search runs replace the demo's own earlier ones (``overwrite=true`` on its own
``evaluator/`` and ``search/`` folders).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from dataset_gen.common.errors import UserError, cli_errors


def _command(name: str) -> str:
    """The console script installed beside this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise UserError(f"the command {name!r} is not installed; run `make install`")
    return found


def _run(step: str, argv: list[str]) -> float:
    print(f"\n=== {step}: {' '.join(Path(argv[0]).name if i == 0 else a for i, a in enumerate(argv))}",
          flush=True)
    start = time.perf_counter()
    completed = subprocess.run(argv, check=False)
    if completed.returncode != 0:
        raise UserError(f"{step} failed with exit code {completed.returncode} (its message is above)")
    return time.perf_counter() - start


def plan(out: Path, samples: int | None, quick: bool) -> list[tuple[str, list[str]]]:
    """The demo's stages: (name, command line) for dance-gen, -train, -search and dance-sim.

    Parameters
    ----------
    out : Path
        The folder that receives ``data/``, ``evaluator/`` and ``search/``.
    samples : int or None
        Dataset rows (None: conf/gen.yaml's ``n_samples``).
    quick : bool
        Two training epochs and the short search (``+experiment=fast``).

    Returns
    -------
    list of (str, list of str)
    """
    data, evaluator, search = out / "data", out / "evaluator", out / "search"
    gen = [_command("dance-gen"), f"out={data}"]
    if samples is not None:
        gen.append(f"n_samples={samples}")
    # overwrite=true: these are the demo's own folders, and a second demo replaces them.
    train = [_command("dance-train"), f"dataset={data}", f"out={evaluator}", "overwrite=true"]
    search_cmd = [_command("dance-search"), f"evaluator={evaluator / 'evaluator.pt'}", f"out={search}",
                  "overwrite=true"]
    if quick:
        train += ["trainer.max_epochs=2", "min_steps=0", "validation.ood_pairs=200", "validation.plots=true"]
        search_cmd += ["+experiment=fast"]
    simulate = [_command("dance-sim"), "--network", str(search / "result.json")]
    return [("generate the dataset", gen), ("train and validate the evaluator", train),
            ("co-search network and accelerator", search_cmd), ("re-simulate the result", simulate)]


def architecture_choices(architecture: dict) -> list[str]:
    """``["blocks.0=k3_e3", ...]``: each block's chosen candidate, from result.json (with its
    bits, ``blocks.0=k3_e3@4b``, when some block is not at 16 bits)."""
    blocks, names = architecture.get("blocks", []), architecture.get("candidates", [])
    bits = architecture.get("bits") or []
    if len(bits) == len(names) and any(b != 16 for b in bits):
        return [f"{block}={name}@{b}b" for block, name, b in zip(blocks, names, bits)]
    return [f"{block}={name}" for block, name in zip(blocks, names)]


def _summary(out: Path, seconds: dict[str, float]) -> str:
    manifest = json.loads((out / "data" / "_manifest.json").read_text())
    report = json.loads((out / "evaluator" / "report.json").read_text())
    result = json.loads((out / "search" / "result.json").read_text())
    rows = manifest.get("rows", manifest.get("n_rows"))
    test = report.get("test", report)
    ood = report.get("ood", {})

    def accuracy(split: dict, target: str) -> str:
        metrics = split.get(target, {})
        if not metrics:
            return "n/a"
        return (f"{metrics['within_10pct']:.1%} within 10%, Kendall tau {metrics['kendall_tau']:.3f}"
                f" (n={metrics['n']})")

    accelerator = result["accelerator"]
    layers = result["network"]
    lines = [
        "",
        "=== Summary",
        f"Dataset: {rows} simulated (layer, accelerator) rows in {out / 'data'} "
        f"({seconds['generate the dataset']:.0f} s).",
        f"Evaluator ({out / 'evaluator' / 'evaluator.pt'}, {seconds['train and validate the evaluator']:.0f} s): "
        f"latency {accuracy(test, 'latency')} on held-out pairs; "
        f"{accuracy(ood, 'latency')} on unseen real-network layers; "
        f"energy {accuracy(test, 'energy')} held out.",
        f"Searched network: {len(layers)} layers; blocks "
        + ", ".join(architecture_choices(result.get("architecture", {})))
        + "; accelerator: " + ", ".join(f"{key}={value}" for key, value in accelerator.items()) + ".",
    ]
    predicted, simulated = result["predicted"], result["simulated"]
    for key, unit, scale in (("latency_s", "ms", 1e3), ("energy_pj", "uJ", 1e-6), ("area_mm2", "mm2", 1.0)):
        p, s = predicted[key] * scale, simulated[key] * scale
        lines.append(f"  {key:<10} predicted {p:12.4f} {unit:<4} simulated {s:12.4f} {unit:<4} "
                     f"error {abs(p - s) / s:6.1%}")
    lines += [
        f"Test accuracy of the derived network (retrained from scratch): {result['test_accuracy']:.2%} "
        f"({seconds['co-search network and accelerator']:.0f} s for search, derivation, retraining and verification).",
        f"Reports and plots: {out / 'evaluator' / 'report.txt'}, {out / 'evaluator'}/parity_*.png, "
        f"{out / 'search' / 'result.json'}, " + ", ".join(str(p) for p in sorted((out / 'search').glob('*.png'))),
        f"Total: {sum(seconds.values()) / 60:.1f} minutes.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dance-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="where everything goes")
    parser.add_argument("--samples", type=int, default=None,
                        help="dataset rows (default: conf/gen.yaml's n_samples)")
    parser.add_argument("--quick", action="store_true",
                        help="a scaled-down run: 2 training epochs, a short search")
    args = parser.parse_args(argv)
    if args.samples is not None and args.samples < 1:
        parser.error(f"--samples = {args.samples}: expected an integer >= 1")
    seconds = {}
    with cli_errors("dance-demo"):
        for step, command in plan(args.out, args.samples, args.quick):
            seconds[step] = _run(step, command)
        print(_summary(args.out, seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
