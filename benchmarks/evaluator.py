"""Throughput of the learned evaluator against the simulator, on the same pairs.

Prints batched predictions per second of `Evaluator.predict` (and of its stages: encoding,
the analytic pair features, the network), of ``predict(..., return_std=True)`` (the deep
ensemble's calibrated uncertainty), of the differentiable forward + backward pass the
co-search runs, and of `simulate_batch` (fast engine, mapping search) on the same pairs,
with the speed-up. Pairs are drawn from the default design space and layer mix
(conf/space/dance.yaml, conf/layers/mixed.yaml) unless ``--data`` names a dataset.

Usage::

    python benchmarks/evaluator.py [--artifact runs/ev/evaluator.pt] [--data DIR]
                                   [--pairs N] [--batch B] [--repeats R] [--threads T]
                                   [--ensemble K]

Without ``--artifact`` the default network (conf/model/mlp.yaml, with ``--ensemble K``
members instead of its ``ensemble`` if given) with untrained weights is timed: its speed does
not depend on the weights. On machines that set OPENBLAS_CORETYPE,
unset it for this command
(``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python ...``: that setting works around old
OpenBLAS builds and slows a current numpy; tests and CI leave it alone).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

# Run as a script, this file's folder comes first on sys.path and benchmarks/dataset_gen.py
# would shadow the dataset_gen package: drop the folder before importing.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402

from dataset_gen.simulator import simulate_batch  # noqa: E402
from dataset_gen.space import ACCELERATOR_FIELDS, LAYER_FIELDS  # noqa: E402

CONF = Path(__file__).resolve().parents[1] / "conf"


def default_pairs(count: int, seed: int) -> pd.DataFrame:
    """Pairs from the default space and layer mix, as ``dance-gen`` would draw them."""
    import yaml

    from dataset_gen.ranges import parse_space
    from dataset_gen.sampling import parse_layers, sample_pairs

    space = parse_space(yaml.safe_load((CONF / "space" / "dance.yaml").read_text()))
    layers = parse_layers(yaml.safe_load((CONF / "layers" / "mixed.yaml").read_text()))
    return sample_pairs(space, layers, "uniform", seed, count, count, 0)


def load_evaluator(artifact: str | None, ensemble: int | None = None):
    """The artifact's evaluator, or the default network untrained (same cost), with ``ensemble``
    members (default: the config's)."""
    import evaluator
    from evaluator.network import EvaluatorNetwork
    from evaluator.predictor import Evaluator

    if artifact:
        return evaluator.load(artifact)
    import yaml

    config = yaml.safe_load((CONF / "model" / "mlp.yaml").read_text())
    shape = {key: config[key] for key in ("depth", "width", "activation", "norm", "dropout", "residual",
                                          "area_depth", "area_width", "decompose", "linear_skip",
                                          "analytic_base", "layer_inputs", "ensemble")}
    if ensemble is not None:
        shape["ensemble"] = ensemble
    return Evaluator(EvaluatorNetwork(**shape))


def best_time(fn, repeats: int) -> float:
    """Least wall time of ``repeats`` calls (the others lost time to the machine, not to us)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifact", default=None, help="an evaluator artifact (default: untrained default net)")
    parser.add_argument("--data", default=None, help="take pairs from this dataset instead of sampling")
    parser.add_argument("--pairs", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=8192, help="pairs per forward pass")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ensemble", type=int, default=None,
                        help="members of the untrained default network (default: conf/model/mlp.yaml's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from evaluator.features import encode_accelerators, encode_layers, pair_features

    if args.data:
        from dataset_gen.reader import read_dataset

        pairs = read_dataset(args.data, columns=[*LAYER_FIELDS, *ACCELERATOR_FIELDS])
        pairs = pairs.sample(n=min(args.pairs, len(pairs)), random_state=args.seed).reset_index(drop=True)
    else:
        pairs = default_pairs(args.pairs, args.seed)
    pairs = pairs[[*LAYER_FIELDS, *ACCELERATOR_FIELDS]]
    model = load_evaluator(args.artifact, args.ensemble)
    n = len(pairs)

    model.predict(pairs.head(256), pairs.head(256))  # warm up
    simulate_batch(pairs.head(256))
    predict_s = best_time(lambda: model.predict(pairs, pairs, batch_size=args.batch), args.repeats)
    uncertain = model.ensemble > 1
    std_s = best_time(lambda: model.predict(pairs, pairs, batch_size=args.batch, return_std=True),
                      args.repeats) if uncertain else float("nan")
    simulate_s = best_time(lambda: simulate_batch(pairs), args.repeats)

    layer_x, acc_x = encode_layers(pairs), encode_accelerators(pairs)
    encode_s = best_time(lambda: (encode_layers(pairs), encode_accelerators(pairs)), args.repeats)
    with torch.no_grad():
        features_s = best_time(lambda: [pair_features(layer_x[i:i + args.batch], acc_x[i:i + args.batch])
                                        for i in range(0, n, args.batch)], args.repeats)
        pair_x = torch.cat([pair_features(layer_x[i:i + args.batch], acc_x[i:i + args.batch])
                            for i in range(0, n, args.batch)])
        network_s = best_time(lambda: [model.network.forward_normalised(layer_x[i:i + args.batch], acc_x[i:i + args.batch],
                                                                        pair_x[i:i + args.batch])
                                       for i in range(0, n, args.batch)], args.repeats)

    def forward_backward() -> None:
        for i in range(0, n, args.batch):
            acc = acc_x[i:i + args.batch].clone().requires_grad_(True)
            out = model(layer_x[i:i + args.batch], acc)
            (out["log_latency_s"].sum() + out["log_energy_pj"].sum()).backward()

    gradient_s = best_time(forward_backward, args.repeats)

    rate = lambda seconds: n / seconds  # noqa: E731
    print(f"{n} pairs ({'dataset ' + args.data if args.data else 'default space and layer mix'}), "
          f"batches of {args.batch}, torch threads {torch.get_num_threads()}, best of {args.repeats}, "
          f"{model.ensemble}-member evaluator")
    print(f"  simulator (simulate_batch, fast engine): {rate(simulate_s):>10,.0f} pairs/s  ({simulate_s:.2f} s)")
    print(f"  evaluator.predict:                       {rate(predict_s):>10,.0f} pairs/s  ({predict_s:.2f} s)"
          f"  speed-up x{simulate_s / predict_s:.1f}")
    if uncertain:
        print(f"  evaluator.predict(return_std=True):      {rate(std_s):>10,.0f} pairs/s  ({std_s:.2f} s)")
    print(f"    encoding                               {rate(encode_s):>10,.0f} pairs/s")
    print(f"    analytic pair features                 {rate(features_s):>10,.0f} pairs/s")
    print(f"    network (given the features, {model.ensemble} member(s)) {rate(network_s):>8,.0f} pairs/s")
    print(f"  forward + backward w.r.t. the encoding:  {rate(gradient_s):>10,.0f} pairs/s  "
          f"(the simulator has no gradient)")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
