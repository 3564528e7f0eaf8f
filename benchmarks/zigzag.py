"""Speed and mapping quality of the ``zigzag`` adapter at several mapper efforts.

Draws real-network layer x accelerator pairs from ``dance-gen simulator=zigzag``'s space (the
default one on fixed-precision PEs, ``layers.mix=0``: every layer from resnet18 / resnet50 /
mobilenet_v2 / vgg16) and takes its objective (``edp``; ``objective=...`` overrides it), runs
ZigZag on each at every effort (``max_orderings``: how many of LOMA's loop orderings are
evaluated; ``all`` = LOMA as ZigZag runs it, at ``lpf_limit``), and prints, per effort, the
pairs per CPU-second of one core and the quality gap against the highest effort measured:
median and p90 of the ratios energy / best-effort energy and latency / best-effort latency
over the pairs feasible at both (1.0 = the same mapping cost; > 1 = a worse mapping found).
Last, ZigZag's latency and energy at the highest effort against our simulator's (``builtin``).

    .venv/bin/python benchmarks/zigzag.py --pairs 30 --efforts 30,100,300,all

CPU time (``time.process_time``) is reported, not wall time: on a shared machine it is the
figure that does not depend on the other users' load.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:1] = [str(ROOT)]  # run as a script: import the package, not benchmarks/ siblings

import numpy as np  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from dataset_gen.adapters.zigzag import ZigZagAdapter  # noqa: E402
from dataset_gen.common.config import compose_config  # noqa: E402
from dataset_gen.generate import parse_config  # noqa: E402
from dataset_gen.sampling import sample_pairs  # noqa: E402
from dataset_gen.simulator import simulate_batch  # noqa: E402
from dataset_gen.space import ACCELERATOR_FIELDS, LAYER_FIELDS  # noqa: E402


def draw_pairs(count: int, seed: int, overrides: list[str]):
    """``count`` pairs of real-network layers and accelerators of ``dance-gen simulator=zigzag``'s
    space (the default one on fixed-precision PEs, which ZigZag models) and its objective."""
    config = compose_config("gen", ["simulator=zigzag", "layers.mix=0", f"n_samples={count}", f"shard_rows={count}",
                                    f"seed={seed}", *overrides])
    settings = parse_config(OmegaConf.to_container(config, resolve=True))
    pairs = sample_pairs(settings.space, settings.layers, settings.sampler, seed, count, count, 0)
    return pairs, settings.objective


def run(pairs, effort: str, lpf_limit: int, objective: str):
    """Results of every pair at one effort, and the CPU seconds they took."""
    adapter = ZigZagAdapter({"lpf_limit": lpf_limit, "max_orderings": None if effort == "all" else int(effort),
                             "energies": "ours", "mapping": "search", "objective": objective})
    records = pairs[list(LAYER_FIELDS + ACCELERATOR_FIELDS)].to_dict("records")
    start = time.process_time()
    results = [adapter.simulate_pair(record) for record in records]
    return results, time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--efforts", default="30,100,300,all",
                        help="comma-separated max_orderings values, lowest first; 'all' = unsampled LOMA")
    parser.add_argument("--lpf-limit", type=int, default=6, help="LOMA's lpf_limit (ZigZag's API default: 6)")
    parser.add_argument("overrides", nargs="*", help="dance-gen overrides (e.g. objective=energy)")
    args = parser.parse_args()
    pairs, objective = draw_pairs(args.pairs, args.seed, args.overrides)
    print(f"{len(pairs)} pairs (real-network layers, default space; dataflows "
          f"{dict(pairs['dataflow'].value_counts())}), objective {objective}, lpf_limit {args.lpf_limit}")
    efforts = args.efforts.split(",")
    measured = {effort: run(pairs, effort, args.lpf_limit, objective) for effort in efforts}
    best_results, _ = measured[efforts[-1]]
    print(f"{'max_orderings':>13} {'pairs/s':>8} {'s/pair':>7} {'feasible':>8} "
          f"{'E med':>7} {'E p90':>7} {'L med':>7} {'L p90':>7} {'worse>1%':>8}")
    for effort in efforts:
        results, seconds = measured[effort]
        both = [(r, b) for r, b in zip(results, best_results) if r["feasible"] and b["feasible"]]
        energy = np.array([r["energy_pj"] / b["energy_pj"] for r, b in both])
        latency = np.array([r["total_cycles"] / b["total_cycles"] for r, b in both])
        worse = np.mean((energy > 1.01) | (latency > 1.01)) if both else float("nan")
        print(f"{effort:>13} {len(pairs) / seconds:8.2f} {seconds / len(pairs):7.3f} "
              f"{sum(r['feasible'] for r in results):8d} "
              f"{np.median(energy):7.4f} {np.quantile(energy, 0.9):7.4f} "
              f"{np.median(latency):7.4f} {np.quantile(latency, 0.9):7.4f} {worse:8.1%}")
    # where ZigZag's best mapping lands against our simulator (same pairs, same objective)
    ours = simulate_batch(pairs, objective=objective).to_dict("records")
    both = [(r, o) for r, o in zip(best_results, ours) if r["feasible"] and o["feasible"]]
    for field, label in (("total_cycles", "latency"), ("energy_pj", "energy")):
        ratio = np.array([r[field] / o[field] for r, o in both])
        print(f"ZigZag ({efforts[-1]}) / builtin {label}: median {np.median(ratio):.3f}, "
              f"p10 {np.quantile(ratio, 0.1):.3f}, p90 {np.quantile(ratio, 0.9):.3f} ({len(both)} pairs feasible in both; "
              f"feasible: zigzag {sum(r['feasible'] for r in best_results)}, builtin {sum(o['feasible'] for o in ours)})")


if __name__ == "__main__":
    main()
