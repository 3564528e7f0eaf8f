"""Active learning: build a dataset and an evaluator from a budget of simulated rows.

`run_active` is the whole job of ``dance-active`` without Hydra (config: ``conf/active.yaml``)::

    round 0   init_rows pairs of dance-gen's sampler (sobol by default), simulated; train
    round r   draw pool_rows unsimulated pairs; score them by the ensemble's calibrated
              uncertainty; simulate the batch_rows chosen (uncertain AND far apart); retrain
    until     budget_rows rows, or latency and energy within 10% on target_within10 of the
              validation set

Design decisions:

- **Selection** (`select_batch`, ``selection.rule = greedy``): the score of a pair is
  ``p_feasible * (total_cycles_std + energy_pj_std)`` (stds of the natural log: relative errors;
  weighted by the predicted feasibility because an infeasible pair has no latency or energy to
  learn). Pairs are taken in order of decreasing score, skipping any closer than
  ``selection.min_distance`` x (the pool's median pairwise distance) to a pair already chosen,
  in the standardised feature space of `evaluator.features` (log2 sizes, one-hot categories); if
  the pool runs out before ``batch_rows``, the best skipped pairs fill the batch. Greedy rather
  than k-means: one pass, deterministic, and it keeps the most uncertain pair of every region.
  ``selection.random_share`` draws that share of each batch at random from the pool instead
  (0 by default); ``selection.rule = random`` draws the whole batch at random (a control).
- **Training**: every round trains from scratch (seeded by ``seed`` and the round), with
  ``evaluator.train.train`` (dance-train's machinery: same model, data module, early stopping,
  calibration; no OOD set, no baselines, no plots). Not warm-started: the normalisation
  statistics change with the data, and a fresh ensemble keeps its members' spread honest. The
  analytic base is fitted to the simulator on round 0's ``init_rows`` space-filling rows only
  (``PairsDataModule(base_rows=init_rows)``): the later rows were chosen for being uncertain,
  and fitted on them the base leaves the space (ZigZag, 2,000 rows: the energy fit cut its loss
  by 16% instead of 35%, fell back to the unweighed parts, and the active evaluator held 60% of
  the validation energies within 10% against the uniform one's 78%).
- **Validation set**: ``val_rows`` uniform pairs of the space and layer mix (their own seed),
  simulated once (``out/_active/val.parquet``); every round's active and uniform evaluators are
  measured on it (share within 10% and Kendall tau of latency and energy, feasible rows).
- **Unseen layers** (``unseen_pairs`` > 0): the issue a slow simulator raises is accuracy on
  the layers a user will search, so every round's evaluators are also measured on real layers
  the run never draws: `evaluator.ood.ood_set` on the layers of the zoo networks
  (``unseen_networks``, default all) whose shapes are in neither the layer mix's pool nor
  ``pool_networks``' (AlexNet's convolutions and first FC layer with the default mix), on
  random accelerators of the space; simulated once (``out/_active/unseen.parquet``).
- **Uniform baseline**: ``budget_rows`` uniform pairs drawn once (their own seed); at a round
  with ``n`` rows the baseline trains on the first ``n`` of them (simulated as needed).
- **Resume**: ``out/_active/state.json`` is written last in a round and lists the finished
  rounds (rows, metrics, artifacts); every random draw derives from ``seed`` and the round
  index, so there is no RNG state to keep. A rerun drops what a half-written round left (its
  row file, run folders) and redoes it; a finished run does nothing. Another config in the same
  ``out`` is refused naming the differing key (``max_rounds``, ``threads``, ``progress`` and the
  paths are not part of a run's identity).
- **Data**: ``out/data/`` is rewritten after every round as an ordinary dance-gen dataset
  (``dataset_gen.writer``: shards of ``shard_rows``, manifest with checksums), its rows in the
  order they were simulated; its generation record holds an ``active`` block.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

import dataset_gen
from dataset_gen.adapters import ERROR_COLUMN, make_adapter, result_columns
from dataset_gen.common.errors import UserError
from dataset_gen.common.files import atomic_write_bytes, atomic_write_text, write_json
from dataset_gen.networks import NETWORKS
from dataset_gen.ranges import Space, parse_space
from dataset_gen.sampling import SAMPLERS, LayerMix, parse_layers, sample_pairs
from dataset_gen.space import ACCELERATOR_FIELDS, LAYER_FIELDS
from dataset_gen.writer import (
    CONFIG_FILE, FORMAT, frame_to_table, new_manifest, prepare_output, shard_schema, update_manifest,
    write_manifest, write_shard,
)

__all__ = ["ActiveConfigError", "run_active", "select_batch", "identity_record", "STATE_DIR"]

STATE_DIR = "_active"
STATE_FILE = "state.json"
INPUT_COLUMNS = list(LAYER_FIELDS) + list(ACCELERATOR_FIELDS)
# keys of the composed config that are not part of a run's identity (paths, speed, how far to go now)
_NOT_IDENTITY = ("out", "dataset", "max_rounds", "threads", "progress")
# min_steps = null: the optimiser steps every training takes at least. An external simulator's
# run holds a few thousand rows, and 300 steps left its evaluators undertrained
# (`dance-active simulator=zigzag budget_rows=2000`, last round, active / uniform: validation
# energy within 10% 67.6 / 77.6% with 300 steps, 72.6 / 76.8% with 3,000; unseen-layer energy
# 29.0 / 39.3% -> 44.1 / 40.3%); the builtin simulator's evaluator starts from an exact
# analytic base and gains nothing from 10x the training time.
MIN_STEPS_BUILTIN = 300
MIN_STEPS_EXTERNAL = 3000
_STREAMS = {"val": 1, "uniform": 2, "pool": 3, "unseen": 5}  # 4: the training seeds


class ActiveConfigError(UserError):
    """A dance-active setting with a bad value, or an out= holding another run; names the key."""


# --------------------------------------------------------------------------- config

def identity_record(config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that define a run (equal records: the same run, which may be resumed)."""
    record = {key: value for key, value in config.items() if key not in _NOT_IDENTITY}
    if isinstance(record.get("datamodule"), Mapping):
        record["datamodule"] = {k: v for k, v in record["datamodule"].items() if k != "path"}
    if isinstance(record.get("trainer"), Mapping):
        record["trainer"] = {k: v for k, v in record["trainer"].items() if k != "default_root_dir"}
    return json.loads(json.dumps(record, default=str))


def _differences(theirs: Any, ours: Any, prefix: str = "") -> list[str]:
    if isinstance(theirs, Mapping) and isinstance(ours, Mapping):
        found = []
        for key in sorted(set(theirs) | set(ours), key=str):
            found += _differences(theirs.get(key), ours.get(key), f"{prefix}{key}.")
        return found
    return [] if theirs == ours else [f"{prefix[:-1]} = {theirs!r} there, {ours!r} here"]


def _positive(config: Mapping, key: str, low: int = 1) -> int:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ActiveConfigError(f"{key} = {value!r}: expected an integer >= {low}")
    return value


def _check(config: Mapping[str, Any]) -> None:
    for key in ("init_rows", "batch_rows", "budget_rows", "val_rows", "pool_rows", "shard_rows", "unseen_pairs"):
        _positive(config, key, 0 if key == "unseen_pairs" else 1)
    if config["min_steps"] is not None:
        _positive(config, "min_steps", 0)
    networks = config["unseen_networks"]
    if networks is not None and (isinstance(networks, str) or not all(n in NETWORKS for n in networks)):
        raise ActiveConfigError(f"unseen_networks = {networks!r}: expected null or a list of zoo networks "
                                f"({', '.join(NETWORKS)})")
    sizes = config["unseen_input_sizes"]
    if isinstance(sizes, str) or not sizes or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                                      for v in sizes):
        raise ActiveConfigError(f"unseen_input_sizes = {sizes!r}: expected a list of positive integers")
    if config["init_rows"] > config["budget_rows"]:
        raise ActiveConfigError(f"init_rows = {config['init_rows']} exceeds budget_rows = {config['budget_rows']}")
    if config["pool_rows"] < config["batch_rows"]:
        raise ActiveConfigError(f"pool_rows = {config['pool_rows']}: expected at least batch_rows = "
                                f"{config['batch_rows']} candidates")
    if config["max_rounds"] is not None:
        _positive(config, "max_rounds")
    if config["sampler"] not in SAMPLERS:
        raise ActiveConfigError(f"sampler = {config['sampler']!r}: expected one of {list(SAMPLERS)}")
    target = config["target_within10"]
    if target is not None and (isinstance(target, bool) or not isinstance(target, (int, float))
                               or not 0 < target <= 1):
        raise ActiveConfigError(f"target_within10 = {target!r}: expected null or a share in (0, 1]")
    share = config["pool_network_share"]
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
        raise ActiveConfigError(f"pool_network_share = {share!r}: expected a share in [0, 1]")
    selection = config["selection"]
    if not isinstance(selection, Mapping) or selection.get("rule") not in ("greedy", "random"):
        raise ActiveConfigError(f"selection.rule = {(selection or {}).get('rule')!r}: expected greedy or random")
    share = selection.get("random_share")
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
        raise ActiveConfigError(f"selection.random_share = {share!r}: expected a share in [0, 1]")
    distance = selection.get("min_distance")
    if isinstance(distance, bool) or not isinstance(distance, (int, float)) or distance < 0:
        raise ActiveConfigError(f"selection.min_distance = {distance!r}: expected a number >= 0")
    ensemble = (config.get("model") or {}).get("ensemble", 1)
    if isinstance(ensemble, bool) or not isinstance(ensemble, int) or ensemble < 2:
        raise ActiveConfigError(f"model.ensemble = {ensemble!r}: active learning needs an ensemble of at least "
                                "2 members (their spread is the uncertainty)")
    if not isinstance(config.get("simulator"), Mapping) or not isinstance(config["simulator"].get("name"), str):
        raise ActiveConfigError(f"simulator = {config.get('simulator')!r}: expected a config of conf/simulator/")


def _seed(seed: int, stream: int, index: int = 0) -> int:
    """An independent seed for one stream (validation, uniform, pool) and round."""
    state = np.random.SeedSequence([int(seed), 0xAC7, stream, index]).generate_state(2, dtype=np.uint64)
    return int(state[0] >> np.uint64(1))


# --------------------------------------------------------------------------- files

def _write_parquet(path: Path, frame: pd.DataFrame) -> None:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    atomic_write_bytes(path, buffer.getvalue())


def _round_file(state_dir: Path, index: int) -> Path:
    return state_dir / "rows" / f"round-{index:03d}.parquet"


def write_dataset(directory: Path, frame: pd.DataFrame, generation: dict[str, Any], space: dict[str, Any],
                  config: Mapping[str, Any], shard_rows: int) -> None:
    """(Re)write ``directory`` as a dance-gen dataset of ``frame``'s rows (in order, new row ids)."""
    frame = frame.reset_index(drop=True).copy()
    frame["row_id"] = np.arange(len(frame), dtype=np.int64)
    generation = {**generation, "n_samples": len(frame), "shard_rows": shard_rows}
    prepare_output(directory, generation, True, {}, space)  # removes only dance-gen's files
    n_shards = math.ceil(len(frame) / shard_rows)
    manifest = new_manifest(generation, dict(config), space, dataset_gen.__version__, n_shards)
    write_manifest(directory, manifest)
    atomic_write_text(directory / CONFIG_FILE, json.dumps(dict(config), indent=2, default=str) + "\n")
    schema = shard_schema(result_columns())
    done = []
    for index in range(n_shards):
        chunk = frame.iloc[index * shard_rows:(index + 1) * shard_rows]
        failed = chunk[ERROR_COLUMN].to_numpy(dtype=object) != ""
        metadata = {"format": FORMAT, "simulator_version": generation["simulator_version"],
                    "simulator": generation["simulator"], "space_hash": generation["space_hash"],
                    "sampler": generation["sampler"], "seed": generation["seed"],
                    "package_version": dataset_gen.__version__, "generation": generation, "space": space,
                    "shard_index": index, "rows": len(chunk),
                    "infeasible": int(((~chunk["feasible"].to_numpy(dtype=bool)) & ~failed).sum()),
                    "errors": int(failed.sum())}
        _, sha256 = write_shard(directory, index, frame_to_table(chunk, schema, metadata))
        done.append({**metadata, "sha256": sha256})
    write_manifest(directory, update_manifest(manifest, done))


# --------------------------------------------------------------------------- selection

def _features(pairs: pd.DataFrame) -> np.ndarray:
    from evaluator.features import encode_accelerators, encode_layers

    x = np.concatenate([encode_layers(pairs).numpy(), encode_accelerators(pairs).numpy()], axis=1)
    spread = x.std(axis=0)
    keep = spread > 1e-9
    return (x[:, keep] - x[:, keep].mean(axis=0)) / spread[keep]


def uncertainty_scores(evaluator: Any, pairs: pd.DataFrame) -> np.ndarray:
    """``p_feasible * (total_cycles_std + energy_pj_std)`` of every pair (see the module doc)."""
    predicted = evaluator.predict(pairs.reset_index(drop=True), return_std=True)
    score = (predicted["total_cycles_std"].to_numpy() + predicted["energy_pj_std"].to_numpy())
    score = np.nan_to_num(score, nan=0.0) * predicted["p_feasible"].to_numpy()
    return score


def select_batch(scores: np.ndarray, features: np.ndarray, count: int, min_distance: float,
                 rng: np.random.Generator) -> np.ndarray:
    """Indices of ``count`` pairs: greedy by decreasing score, skipping pairs closer than
    ``min_distance`` x the median pairwise distance to a chosen one; then the best skipped.

    Parameters
    ----------
    scores : (n,) array
    features : (n, d) array, standardised
    count : int
    min_distance : float
        A fraction of the median distance between random pairs of the pool (0: no diversity).
    rng : numpy.random.Generator
        Draws the pairs the median is estimated from.
    """
    n = len(scores)
    count = min(count, n)
    order = np.argsort(-scores, kind="stable")
    if min_distance <= 0 or n < 2:
        return np.sort(order[:count])
    a, b = rng.integers(0, n, size=(2, min(4000, n * 4)))
    radius = min_distance * float(np.median(np.linalg.norm(features[a] - features[b], axis=1)))
    nearest = np.full(n, np.inf)
    chosen = np.zeros(n, dtype=bool)
    picked: list[int] = []
    for index in order:
        if len(picked) == count:
            break
        if nearest[index] < radius:
            continue
        picked.append(int(index))
        chosen[index] = True
        nearest = np.minimum(nearest, np.linalg.norm(features - features[index], axis=1))
    if len(picked) < count:
        picked += [int(i) for i in order if not chosen[i]][:count - len(picked)]
    return np.sort(np.array(picked, dtype=np.int64))


# --------------------------------------------------------------------------- the run

class _Run:
    def __init__(self, config: Mapping[str, Any], log: Callable[[str], Any]):
        self.config = dict(config)
        self.log = log
        self.out = Path(str(config["out"])).expanduser()
        self.state_dir = self.out / STATE_DIR
        self.space: Space = parse_space(config["space"], "space")
        self.layers: LayerMix = parse_layers(config["layers"], "layers")
        self.pool_layers: LayerMix = self.layers
        if config["pool_networks"]:
            self.pool_layers = parse_layers(
                {"mix": 1.0 - float(config["pool_network_share"]), "source": "networks",
                 "networks": list(config["pool_networks"]), "input_sizes": list(config["pool_input_sizes"]),
                 "batches": [1], "modules": []}, "pool_networks")
        self.adapter = make_adapter({**config["simulator"], "mapping": config["mapping"],
                                     "objective": config["objective"]})
        self.adapter.check()
        self.identity = identity_record(config)
        self.seed = int(config["seed"])
        self._uniform: pd.DataFrame | None = None
        steps = config["min_steps"]
        self.min_steps = int(steps) if steps is not None else (
            MIN_STEPS_BUILTIN if self.adapter.name == "builtin" else MIN_STEPS_EXTERNAL)

    def unseen_set(self) -> pd.DataFrame | None:
        """The unseen-layer set (`unseen_pairs`), simulated once: layers of zoo networks whose
        shapes the run can never draw (`evaluator.ood.ood_set`), on random accelerators; None
        when off or when every such layer is drawable."""
        if int(self.config["unseen_pairs"]) <= 0:
            return None
        from evaluator.ood import ood_set

        # every real layer the run may draw (the layer mix's pool, pool_networks' pool)
        mixes = (self.layers,) if self.pool_layers is self.layers else (self.layers, self.pool_layers)
        pools = [mix.pool for mix in mixes if mix.pool is not None and mix.mix < 1.0]
        drawable = pd.DataFrame(np.concatenate([pool.fields for pool in pools]) if pools
                                else np.zeros((0, len(LAYER_FIELDS)), dtype=np.int64), columns=list(LAYER_FIELDS))
        networks = self.config["unseen_networks"]
        frame = self.cached("unseen.parquet", lambda: ood_set(
            {"space": self.space.to_dict()}, drawable, int(self.config["unseen_pairs"]),
            _seed(self.seed, _STREAMS["unseen"]), list(NETWORKS) if networks is None else list(networks),
            [int(size) for size in self.config["unseen_input_sizes"]], adapter=self.adapter))
        if frame.empty:
            self.log(f"dance-active: no unseen layers to measure: every layer of "
                     f"{'the zoo' if networks is None else networks} can be drawn by this run")
            return None
        return frame

    # -- simulation and sampling
    def simulate(self, pairs: pd.DataFrame) -> pd.DataFrame:
        pairs = pairs.reset_index(drop=True)
        results = self.adapter.simulate(pairs[INPUT_COLUMNS]).reset_index(drop=True)
        return pd.concat([pairs, results], axis=1)

    def draw(self, layers: LayerMix, sampler: str, seed: int, rows: int) -> pd.DataFrame:
        return sample_pairs(self.space, layers, sampler, seed, rows, rows, 0)

    def cached(self, name: str, make: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        path = self.state_dir / name
        if path.is_file():
            return pd.read_parquet(path)
        frame = make()
        _write_parquet(path, frame)
        return frame

    def uniform_rows(self, count: int) -> pd.DataFrame:
        """The first ``count`` uniform baseline rows, simulating those not simulated yet."""
        path = self.state_dir / "uniform.parquet"
        have = pd.read_parquet(path) if path.is_file() else None
        if have is not None and len(have) >= count:
            return have.iloc[:count]
        pairs = self.draw(self.layers, "uniform", _seed(self.seed, _STREAMS["uniform"]), int(self.config["budget_rows"]))
        start = 0 if have is None else len(have)
        new = self.simulate(pairs.iloc[start:count])
        frame = new if have is None else pd.concat([have, new], ignore_index=True)
        _write_parquet(path, frame)
        return frame

    # -- training and measuring
    def generation(self, rounds: int) -> dict[str, Any]:
        return {"format": FORMAT, "simulator": self.adapter.identity(), "simulator_version": self.adapter.version,
                "space_hash": self.space.hash, "sampler": self.config["sampler"], "seed": self.seed,
                "mapping": self.config["mapping"], "objective": self.config["objective"],
                "layers": self.layers.to_dict(),
                "active": {"rounds": rounds, "init_rows": self.config["init_rows"],
                           "batch_rows": self.config["batch_rows"], "pool_rows": self.config["pool_rows"],
                           "pool_networks": list(self.config["pool_networks"]),
                           "selection": dict(self.config["selection"])}}

    def dataset_config(self) -> dict[str, Any]:
        """The manifest's config: the layer block names every zoo network in the rows (OOD sets skip them)."""
        layers = dict(self.config["layers"])
        if self.config["pool_networks"]:
            names = list(layers.get("networks") or []) if layers.get("source") == "networks" else []
            layers.update(source="networks",
                          networks=names + [n for n in self.config["pool_networks"] if n not in names])
        return {**{k: v for k, v in self.config.items() if k != "layers"}, "layers": layers}

    def fit(self, dataset: Path, run_dir: Path, seed: int, base_rows: int | None = None) -> Path:
        """Train an evaluator on ``dataset`` in ``run_dir``; ``base_rows``: fit its analytic base
        on the dataset's first rows only (`evaluator.data.PairsDataModule`)."""
        import lightning as L
        from hydra.utils import instantiate
        from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
        from omegaconf import OmegaConf

        from evaluator.model import SELECTION_MONITOR
        from evaluator.train import train
        from evaluator.validate import ValidationConfig

        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        callbacks = [EarlyStopping(monitor=SELECTION_MONITOR, mode="min", patience=int(self.config["patience"])),
                     ModelCheckpoint(dirpath=str(run_dir / "checkpoints"), monitor=SELECTION_MONITOR, mode="min",
                                     save_top_k=1, filename="best")]
        trainer_cfg = OmegaConf.create({**self.config["trainer"], "default_root_dir": str(run_dir)})
        trainer = instantiate(trainer_cfg, callbacks=callbacks, logger=False)
        L.seed_everything(seed, workers=True, verbose=False)
        model = instantiate(OmegaConf.create(self.config["model"]))
        datamodule = instantiate(OmegaConf.create({**self.config["datamodule"], "path": str(dataset),
                                                   "base_rows": base_rows}))
        validation = ValidationConfig(ood_pairs=0, baselines=(), plots=False, seed=seed)
        lines: list[str] = []
        train(model, datamodule, trainer, run_dir, seed=seed, validation=validation, config=self.config,
              log=lines.append, min_steps=self.min_steps, calibration=str(self.config["calibration"]))
        atomic_write_text(run_dir / "train.log", "\n".join(lines) + "\n")
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
        return run_dir / "evaluator.pt"

    @staticmethod
    def measure(artifact: Path, val: pd.DataFrame) -> dict[str, Any]:
        from evaluator.artifact import load
        from evaluator.metrics import kendall_tau, within

        usable = val[(val[ERROR_COLUMN] == "") & val["feasible"].astype(bool)].reset_index(drop=True)
        predicted = load(artifact).predict(usable[INPUT_COLUMNS])
        result: dict[str, Any] = {"n": len(usable)}
        for target, column in (("latency", "total_cycles"), ("energy", "energy_pj")):
            sim, pred = usable[column].to_numpy(float), predicted[column].to_numpy(float)
            result[target] = {"within_10pct": within(sim, pred, 0.10), "kendall_tau": kendall_tau(sim, pred)}
        return result

    # -- rounds
    def load_state(self) -> dict[str, Any] | None:
        path = self.state_dir / STATE_FILE
        if not path.is_file():
            if self.out.is_dir():
                known = {STATE_DIR, "data", "evaluator.pt", "curve.json", "learning_curve.png"}
                foreign = sorted(p.name for p in self.out.iterdir() if p.name not in known)
                if foreign:
                    raise ActiveConfigError(f"out = {str(self.out)!r} holds files dance-active did not write "
                                            f"({', '.join(foreign[:5])}): choose another out")
            return None
        state = json.loads(path.read_text(encoding="utf-8"))
        differences = _differences(state.get("config"), self.identity)
        if differences:
            raise ActiveConfigError(f"out = {str(self.out)!r} holds an active-learning run with other settings "
                                    f"({'; '.join(differences)}): run the same config to continue it, or choose "
                                    "another out")
        return state

    def finished(self, rounds: list[dict[str, Any]]) -> str | None:
        if not rounds:
            return None
        if rounds[-1]["rows"] >= int(self.config["budget_rows"]):
            return f"budget_rows = {self.config['budget_rows']} reached"
        target = self.config["target_within10"]
        active = rounds[-1]["active"]
        if target is not None and min(active["latency"]["within_10pct"], active["energy"]["within_10pct"]) >= target:
            return f"target_within10 = {target} reached"
        return None

    def next_rows(self, index: int, data: pd.DataFrame, artifact: Path | None) -> tuple[pd.DataFrame, dict]:
        """The pairs round ``index`` simulates (not yet simulated) and what the choice was."""
        if index == 0:
            pairs = self.draw(self.layers, str(self.config["sampler"]), self.seed, int(self.config["init_rows"]))
            return pairs, {"chosen_by": f"{self.config['sampler']} design"}
        from evaluator.artifact import load

        count = min(int(self.config["batch_rows"]), int(self.config["budget_rows"]) - len(data))
        pool = self.draw(self.pool_layers, "uniform", _seed(self.seed, _STREAMS["pool"], index),
                         int(self.config["pool_rows"]))
        seen = pd.MultiIndex.from_frame(data[INPUT_COLUMNS])
        keys = pd.MultiIndex.from_frame(pool[INPUT_COLUMNS])
        pool = pool[~keys.isin(seen) & ~keys.duplicated()].reset_index(drop=True)
        rng = np.random.default_rng(_seed(self.seed, _STREAMS["pool"], 10_000 + index))
        evaluator = load(artifact)
        scores = uncertainty_scores(evaluator, pool)
        selection = self.config["selection"]
        if selection["rule"] == "random":
            picked = np.sort(rng.choice(len(pool), size=min(count, len(pool)), replace=False))
        else:
            # a share of the batch drawn at random keeps the data close to the space's own
            # distribution; the rest is the greedy choice among the other candidates
            spread = rng.choice(len(pool), size=int(round(float(selection["random_share"]) * count)), replace=False)
            rest = np.setdiff1d(np.arange(len(pool)), spread)
            greedy = rest[select_batch(scores[rest], _features(pool)[rest], count - len(spread),
                                       float(selection["min_distance"]), rng)]
            picked = np.sort(np.concatenate([spread, greedy]))
        info = {"chosen_by": self.config["selection"]["rule"], "pool": len(pool),
                "score_chosen": float(scores[picked].mean()), "score_pool": float(scores.mean())}
        return pool.iloc[picked].reset_index(drop=True), info

    def run(self) -> dict[str, Any]:
        started = time.perf_counter()
        state = self.load_state()
        rounds: list[dict[str, Any]] = list(state["rounds"]) if state else []
        done = self.finished(rounds)
        if done:
            self.log(f"dance-active: nothing to do, the run in {self.out} is finished ({done}): "
                     f"{rounds[-1]['rows']} rows in {len(rounds)} rounds")
            return {"rounds": rounds, "finished": done, "new_rounds": 0}
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "rows").mkdir(exist_ok=True)
        # what a half-written round left: redone from scratch
        for path in (self.state_dir / "rows").glob("round-*.parquet"):
            if int(path.stem.split("-")[1]) >= len(rounds):
                path.unlink()
        for path in (self.state_dir / "runs").glob("*") if (self.state_dir / "runs").is_dir() else ():
            if int(path.name.split("-")[1]) >= len(rounds):
                shutil.rmtree(path)
        if state is None:
            write_json(self.state_dir / STATE_FILE, {"config": self.identity, "rounds": [], "finished": None})
        atomic_write_text(self.state_dir / "config.yaml", json.dumps(self.config, indent=2, default=str) + "\n")
        val = self.cached("val.parquet", lambda: self.simulate(self.draw(
            self.layers, "uniform", _seed(self.seed, _STREAMS["val"]), int(self.config["val_rows"]))))
        unseen = self.unseen_set()
        frames = [pd.read_parquet(_round_file(self.state_dir, i)) for i in range(len(rounds))]
        data = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=INPUT_COLUMNS)
        new_rounds = 0
        max_rounds = self.config["max_rounds"]
        while not done and (max_rounds is None or len(rounds) < max_rounds):
            index, round_started = len(rounds), time.perf_counter()
            artifact = self.out / rounds[-1]["artifact"] if rounds else None
            pairs, info = self.next_rows(index, data, artifact)
            new = self.simulate(pairs)
            _write_parquet(_round_file(self.state_dir, index), new)
            data = pd.concat([data, new], ignore_index=True) if len(data) else new
            write_dataset(self.out / "data", data, self.generation(index + 1), self.space.to_dict(),
                          self.dataset_config(), int(self.config["shard_rows"]))
            run_seed = _seed(self.seed, 4, index) % (1 << 31)  # numpy (Lightning) seeds are 32-bit
            # The base is fitted on round 0's space-filling rows (see the module docstring).
            active_pt = self.fit(self.out / "data", self.state_dir / "runs" / f"active-{index:03d}", run_seed,
                                 base_rows=int(self.config["init_rows"]))
            record: dict[str, Any] = {"round": index, "rows": len(data), "new_rows": len(new), **info,
                                      "artifact": str(active_pt.relative_to(self.out)),
                                      "active": self.measure(active_pt, val)}
            if unseen is not None:
                record["active_unseen"] = self.measure(active_pt, unseen)
            if self.config["uniform_baseline"]:
                uniform = self.uniform_rows(len(data))
                uniform_dir = self.state_dir / "uniform-data"
                write_dataset(uniform_dir, uniform, {**self.generation(index + 1), "sampler": "uniform"},
                              self.space.to_dict(), self.dataset_config(), int(self.config["shard_rows"]))
                uniform_pt = self.fit(uniform_dir, self.state_dir / "runs" / f"uniform-{index:03d}", run_seed)
                record["uniform"] = self.measure(uniform_pt, val)
                if unseen is not None:
                    record["uniform_unseen"] = self.measure(uniform_pt, unseen)
            record["seconds"] = round(time.perf_counter() - round_started, 1)
            shutil.copyfile(active_pt, self.out / ".evaluator.pt.tmp")
            (self.out / ".evaluator.pt.tmp").replace(self.out / "evaluator.pt")
            rounds.append(record)
            done = self.finished(rounds)
            write_curve(self.out, rounds, self.config)
            write_json(self.state_dir / STATE_FILE, {"config": self.identity, "rounds": rounds, "finished": done})
            new_rounds += 1
            if self.config["progress"]:
                self.log(_round_line(record))
        seconds = time.perf_counter() - started
        last = rounds[-1]
        self.log(f"dance-active: {len(rounds)} round(s) ({new_rounds} now, {seconds:.0f} s), {last['rows']} rows "
                 f"simulated by {self.adapter.name} {self.adapter.version}; "
                 + (f"finished: {done}" if done else f"stopped at max_rounds = {max_rounds}; run again to continue")
                 + f". Latency within 10% on {last['active']['n']} validation pairs: "
                 f"{100 * last['active']['latency']['within_10pct']:.1f}% (active)"
                 + (f" vs {100 * last['uniform']['latency']['within_10pct']:.1f}% (uniform)" if "uniform" in last else "")
                 + f". Wrote {self.out / 'data'}, {self.out / 'evaluator.pt'}, {self.out / 'curve.json'}, "
                 f"{self.out / 'learning_curve.png'}.")
        return {"rounds": rounds, "finished": done, "new_rounds": new_rounds}


def _round_line(record: Mapping[str, Any]) -> str:
    def part(name: str, label: str) -> str:
        m = record.get(name)
        return (f"{label} lat {100 * m['latency']['within_10pct']:.1f}% / en {100 * m['energy']['within_10pct']:.1f}% "
                f"(tau {m['latency']['kendall_tau']:.3f} / {m['energy']['kendall_tau']:.3f})") if m else ""
    parts = (part("active", "active"), part("uniform", "uniform"),
             part("active_unseen", "unseen layers: active"), part("uniform_unseen", "uniform"))
    return (f"round {record['round']}: {record['rows']} rows (+{record['new_rows']}, {record['chosen_by']}); "
            + "; ".join(p for p in parts if p) + f"; {record['seconds']:.0f} s")


def write_curve(out: Path, rounds: list[dict[str, Any]], config: Mapping[str, Any]) -> None:
    """``curve.json`` (rows vs validation metrics, active and uniform, and on the unseen layers
    when ``unseen_pairs`` > 0) and ``learning_curve.png``."""
    curve = {"validation": {"rows": config["val_rows"], "kind": "uniform pairs of the space, simulated once"},
             "rows": [r["rows"] for r in rounds],
             "active": [r["active"] for r in rounds],
             "uniform": [r.get("uniform") for r in rounds],
             "rounds": rounds}
    sets = [("active", "uniform", f"the {config['val_rows']}-pair validation set ({rounds[-1]['active']['n']} feasible)")]
    if "active_unseen" in rounds[-1]:
        curve["unseen"] = {"pairs": config["unseen_pairs"],
                           "kind": "layers of zoo networks the layer pool never draws, on random accelerators",
                           "active": [r.get("active_unseen") for r in rounds],
                           "uniform": [r.get("uniform_unseen") for r in rounds]}
        sets.append(("active_unseen", "uniform_unseen",
                     f"unseen real-network layers ({rounds[-1]['active_unseen']['n']} feasible pairs)"))
    write_json(out / "curve.json", curve)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, grid = plt.subplots(len(sets), 2, figsize=(10, 4 * len(sets)), squeeze=False)
    rows = curve["rows"]
    for axes, (active, uniform, title) in zip(grid, sets):
        for axis, metric, label in ((axes[0], "within_10pct", "share within 10%"), (axes[1], "kendall_tau", "Kendall tau")):
            for target, color in (("latency", "tab:blue"), ("energy", "tab:orange")):
                axis.plot(rows, [r[active][target][metric] for r in rounds], "o-", color=color,
                          label=f"{target}, active")
                if all(uniform in r for r in rounds):
                    axis.plot(rows, [r[uniform][target][metric] for r in rounds], "s--", color=color,
                              label=f"{target}, uniform")
            axis.set_xlabel("simulated rows")
            axis.set_ylabel(label)
            axis.set_title(title, fontsize=9)
            axis.grid(alpha=0.3)
            axis.legend(fontsize=8)
    fig.suptitle("dance-active: active against uniform sampling at equal rows")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(out / "learning_curve.png", buffer.getvalue())


def run_active(config: Mapping[str, Any], log: Callable[[str], Any] = print) -> dict[str, Any]:
    """Run (or continue) an active-learning run.

    Parameters
    ----------
    config : mapping
        ``conf/active.yaml`` composed and resolved to plain values.
    log : callable
        Receives one line per round and a closing summary.

    Returns
    -------
    dict
        ``rounds`` (one record per finished round: rows, chosen_by, scores, active and uniform
        validation metrics, artifact, seconds), ``finished`` (why the run is complete, or None)
        and ``new_rounds`` (rounds this call ran).

    Raises
    ------
    ActiveConfigError
        A bad setting, or an ``out`` holding another run (naming the differing key).
    """
    _check(config)
    return _Run(config, log).run()
