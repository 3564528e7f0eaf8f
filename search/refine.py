"""Closing the loop: refine the evaluator where the co-search ended (``search.refine_rounds``).

DANCE trains its evaluator once and trusts it for the whole search. With
``search.refine_rounds = N`` (0, the default, leaves the search exactly as it was) the
co-search first runs its ``search.epochs`` as always; then each of the N rounds

1. derives the discrete design where the search stands (`search.cosearch.derive`);
2. simulates the design's distinct layers, with the simulator the evaluator imitates (the
   run's main verifier, `SearchContext.simulator`), on the derived accelerator and on its
   neighbourhood (`neighbourhood`: every accelerator of the search's hardware space that
   differs from it in one field by one step of that field's choices);
3. fine-tunes a copy of the evaluator on those rows plus a replay sample (`replay_rows`),
   so that it does not forget the rest of the space: ``search.refine.replay_rows`` rows of
   the evaluator's own training split when its dataset path is known and readable (the
   ``dataset`` of the dance-train config the artifact records), else the search's candidate
   layers on accelerators drawn at random from the search's hardware space, simulated too.
   Fine-tuning reuses the evaluator's training loss (`evaluator.model.EvaluatorModule`, its
   recorded hyperparameters: loss, loss weights) and normalisation; ``search.refine.steps``
   AdamW steps at ``search.refine.lr`` on batches of ``search.refine.batch_size`` rows, half
   from the round's rows and half from the replay sample. The calibration is kept as it was;
4. continues the search (`search.cosearch.resume_cosearch`) with the refined evaluator in the
   cost for ``search.refine.epochs`` epochs, from where it stopped (same supernet weights, architecture and accelerator
   parameters), at the final temperature, without warm-up, the weights at the learning rate
   of the search's last epoch.

After the last round the run derives, verifies (with the refined evaluator) and reports as
always; ``result.json``'s ``refine`` block holds, per round, the rows simulated, the
fine-tuning loss before and after (on the round's rows and on the replay sample), and the
derived design's predicted-vs-simulated error before and after the round (network latency
and energy, and the mean absolute log error over its layers). The refined evaluator is saved
as ``out/evaluator_refined.pt`` (`evaluator.save`; ``evaluator.load`` reads it).
"""

from __future__ import annotations

import copy
import inspect
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from dataset_gen.space import LAYER_FIELDS, SpaceError
from evaluator import save as save_evaluator
from evaluator.data import drop_error_rows, encode_frame, read_split
from evaluator.model import EvaluatorModule
from evaluator.predictor import Evaluator
from search.hardware import AcceleratorSpace

__all__ = ["ARTIFACT", "check_refine", "refine_rounds", "neighbourhood", "simulate_rows", "replay_rows",
           "fine_tune", "design_error", "prepare_continuation", "refine_loop"]

ARTIFACT = "evaluator_refined.pt"
MAX_ROUNDS = 100

log = logging.getLogger("search")


def refine_rounds(settings: Mapping[str, Any]) -> int:
    """``search.refine_rounds``; a config from before the key (e.g. a saved run's) means 0
    (the one setting not read by plain indexing: its absence is today's search)."""
    return settings["search"].get("refine_rounds", 0)


def check_refine(settings: Mapping[str, Any]) -> None:
    """Refuse bad ``search.refine_rounds`` / ``search.refine.*`` values, naming the key and the range.

    Raises
    ------
    SpaceError
    """
    rounds = refine_rounds(settings)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or not 0 <= rounds <= MAX_ROUNDS:
        raise SpaceError(f"search.refine_rounds = {rounds!r}: expected an integer from 0 (no refinement) "
                         f"to {MAX_ROUNDS}")
    if rounds == 0:
        return
    refine = settings["search"]["refine"]
    for key, low in (("epochs", 0), ("steps", 1), ("batch_size", 2), ("replay_rows", 0)):
        value = refine[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise SpaceError(f"search.refine.{key} = {value!r}: expected an integer >= {low}")
    lr = refine["lr"]
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise SpaceError(f"search.refine.lr = {lr!r}: expected a positive number")


def neighbourhood(space: AcceleratorSpace, index: Sequence[int]) -> list[tuple[int, ...]]:
    """``index`` and every index of ``space`` that differs from it in one field by one step."""
    index = space.check_index(index)
    result = [index]
    for position, size in enumerate(space.sizes):
        for step in (-1, 1):
            value = index[position] + step
            if 0 <= value < size:
                result.append(index[:position] + (value,) + index[position + 1:])
    return result


def simulate_rows(simulator: Any, layers: pd.DataFrame, accelerators: Sequence[Any]) -> pd.DataFrame:
    """Every (layer, accelerator) pair simulated by ``simulator`` (a `SimulatorCache`'s adapter):
    the pairs' input columns and the simulator's result columns, rows it failed on left out."""
    layers = layers[list(LAYER_FIELDS)].drop_duplicates().reset_index(drop=True)
    parts = [layers.assign(**accelerator.to_dict()) for accelerator in accelerators]
    pairs = pd.concat(parts, ignore_index=True)
    started = time.perf_counter()
    results = simulator.adapter.simulate(pairs).reset_index(drop=True)
    simulator.seconds += time.perf_counter() - started
    results = results.drop(columns=[c for c in results.columns if c in pairs.columns])
    frame, _ = drop_error_rows(pd.concat([pairs, results], axis=1))
    return frame


def _dataset_path(evaluator: Any) -> str | None:
    config = (getattr(evaluator, "extra", None) or {}).get("config") or {}
    path = config.get("dataset") if isinstance(config, Mapping) else None
    return str(path) if path and Path(str(path)).is_dir() else None


def replay_rows(context: Any, count: int, seed: int) -> tuple[pd.DataFrame, str]:
    """``count`` rows that keep the fine-tuned evaluator honest elsewhere, and where they came from.

    The evaluator's own training split when its dataset is known and readable; else the
    search's candidate layers on accelerators of the search space drawn at random (seeded),
    simulated by the run's simulator.
    """
    if count == 0:
        return pd.DataFrame(), "none"
    path = _dataset_path(context.evaluator)
    if path is not None:
        try:
            split = (context.evaluator.extra.get("split") or {})
            frame = read_split(path, "train", fractions=split.get("fractions", (0.8, 0.1, 0.1)),
                               salt=int(split.get("salt", 0)), max_rows=count, seed=seed)
            if len(frame):
                return frame.reset_index(drop=True), f"dataset {path} (train split)"
        except Exception as error:  # noqa: BLE001 - any unreadable dataset: fall back, saying why
            log.warning("refine: cannot read the evaluator's dataset %s (%s); replaying simulated random "
                        "accelerators instead", path, error)
    layers = context.layer_table[list(LAYER_FIELDS)].drop_duplicates().reset_index(drop=True)
    per_accelerator = max(len(layers), 1)
    accelerators = math.ceil(count / per_accelerator)
    indices = context.hw_space.enumerate(limit=accelerators, seed=seed)
    frame = simulate_rows(context.simulator, layers, [context.hw_space.accelerator(i) for i in indices])
    if len(frame) > count:
        frame = frame.sample(n=count, random_state=seed).reset_index(drop=True)
    return frame, f"{len(indices)} random accelerators of the search space x its {len(layers)} candidate layers"


def _training_module(evaluator: Evaluator) -> EvaluatorModule:
    """An `EvaluatorModule` with the evaluator's recorded loss settings, holding a trainable copy of its network."""
    hparams = dict((evaluator.extra or {}).get("hparams") or {})
    accepted = set(inspect.signature(EvaluatorModule.__init__).parameters) - {"self"}
    kwargs = {key: value for key, value in hparams.items() if key in accepted}
    # the module's own network is replaced at once: build the smallest one
    kwargs.update(depth=1, width=8, ensemble=1)
    module = EvaluatorModule(**kwargs)
    module.network = copy.deepcopy(evaluator.network).requires_grad_(True)
    return module


@torch.no_grad()
def _loss(module: EvaluatorModule, tensors: Mapping[str, torch.Tensor] | None) -> float | None:
    if tensors is None:
        return None
    module.eval()
    total, _ = module._losses(dict(tensors))
    return float(total)


def _take(tensors: Mapping[str, torch.Tensor], rows: torch.Tensor) -> dict[str, torch.Tensor]:
    return {key: value[rows] for key, value in tensors.items()}


def fine_tune(evaluator: Evaluator, rows: pd.DataFrame, replay: pd.DataFrame, steps: int, lr: float,
              batch_size: int, seed: int) -> tuple[Evaluator, dict[str, Any]]:
    """A fine-tuned copy of ``evaluator`` (the original is left as it was) and the losses.

    Each step's batch is ``batch_size // 2`` rows of ``rows`` and as many of ``replay`` (all of
    ``batch_size`` from ``rows`` without a replay sample), drawn with replacement (seeded); the
    loss is the evaluator's training loss (`EvaluatorModule`), AdamW at a constant ``lr`` with
    the recorded weight decay.

    Returns
    -------
    (Evaluator, dict)
        The refined evaluator (frozen, same metadata and calibration; ``extra["refined"]``
        says how) and ``{"loss_before", "loss_after"}`` (``rows``), ``{"replay_loss_before",
        "replay_loss_after"}``, ``steps``, ``lr``, ``seconds``.
    """
    started = time.perf_counter()
    module = _training_module(evaluator)
    new = encode_frame(rows)
    old = encode_frame(replay) if len(replay) else None
    report: dict[str, Any] = {"loss_before": _loss(module, new), "replay_loss_before": _loss(module, old)}
    generator = torch.Generator().manual_seed(int(seed))
    optimizer = torch.optim.AdamW(module.network.parameters(), lr=float(lr),
                                  weight_decay=float(module.hparams.weight_decay))
    half = batch_size // 2 if old is not None else batch_size
    module.train()
    for _ in range(int(steps)):
        batch = _take(new, torch.randint(len(rows), (half,), generator=generator))
        if old is not None:
            extra = _take(old, torch.randint(len(replay), (batch_size - half,), generator=generator))
            batch = {key: torch.cat([batch[key], extra[key]]) for key in batch}
        loss, _ = module._losses(batch, bootstrap=bool(module.hparams.bootstrap))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    report.update(loss_after=_loss(module, new), replay_loss_after=_loss(module, old), steps=int(steps), lr=float(lr),
                  batch_size=int(batch_size), seconds=time.perf_counter() - started)
    history = list((evaluator.extra or {}).get("refined") or [])
    history.append({"rows": len(rows), "replay_rows": len(replay), "steps": int(steps), "lr": float(lr)})
    refined = Evaluator(module.network.cpu(), dataset_metadata=evaluator.dataset_metadata, metrics=evaluator.metrics,
                        extra={**evaluator.extra, "refined": history}, calibration=evaluator.calibration)
    return refined, report


def design_error(evaluator: Any, layers: Sequence[Any], accelerator: Any, simulated: pd.DataFrame) -> dict[str, Any]:
    """The evaluator's error on a design against its simulated rows (``simulate_rows`` of its layers on it).

    Returns
    -------
    dict
        ``relative_error`` of the network's latency and energy (``(predicted - simulated) /
        simulated``, NaN if a layer is infeasible), and ``layer_abs_log_error``: the mean over
        the design's feasible layers of ``|ln(predicted / simulated)|`` for latency and energy.
    """
    frame = pd.DataFrame([layer.to_dict() for layer in layers])
    predicted = evaluator.predict(frame, accelerator)
    key = list(LAYER_FIELDS)
    truth = frame[key].merge(simulated[[*key, "latency_s", "energy_pj", "feasible"]].drop_duplicates(key),
                             on=key, how="left")
    feasible = truth["feasible"].fillna(False).astype(bool).to_numpy()
    result: dict[str, Any] = {"relative_error": {}, "layer_abs_log_error": {}}
    for figure in ("latency_s", "energy_pj"):
        p, s = predicted[figure].to_numpy(dtype=float), truth[figure].to_numpy(dtype=float)
        result["relative_error"][figure] = float((p.sum() - s.sum()) / s.sum()) if feasible.all() else math.nan
        result["layer_abs_log_error"][figure] = (float(np.mean(np.abs(np.log(p[feasible] / s[feasible]))))
                                                 if feasible.any() else math.nan)
    return result


def prepare_continuation(module: Any, settings: Mapping[str, Any], epochs: int) -> None:
    """Set a finished search ``module`` up to continue ``epochs`` more epochs where it stopped:
    final temperature, no warm-up, the weights at the learning rate of the search's last
    (cosine) epoch. The fit itself is the caller's (`search.cosearch.resume_cosearch`)."""
    search = settings["search"]
    total = int(search["epochs"])
    final = float(module.temperature["final"])
    module.temperature = {"initial": final, "final": final, "schedule": "constant"}
    module.warmup_epochs = 0
    module.epochs = epochs
    last = 0.5 * (1 + math.cos(math.pi * (total - 1) / total)) if total > 1 else 1.0
    module.weight_optim = {**module.weight_optim, "lr": float(search["weight_optim"]["lr"]) * last}


def refine_loop(context: Any, module: Any, out_dir: Path, derive: Callable[[Any, Any], Any],
                resume: Callable[[Any, Any, int, str, Path], None]) -> tuple[Any, dict[str, Any]]:
    """The ``search.refine_rounds`` rounds after a finished co-search (see the module docstring).

    ``derive(context, module)`` gives the design where the search stands and
    ``resume(context, module, epochs, name, log_dir)`` fits ``module`` for more epochs
    (`search.cosearch.derive` and `search.cosearch.resume_cosearch`: passed in, so that this
    module does not import the co-search that calls it).

    Returns
    -------
    (Evaluator, dict)
        The refined evaluator (swapped into ``module``'s cost too) and the ``refine`` block
        of result.json.
    """
    search = context.settings["search"]
    settings = search["refine"]
    rounds = refine_rounds(context.settings)
    evaluator = context.evaluator
    replay, replay_source = replay_rows(context, int(settings["replay_rows"]), seed=context.seed)
    block: dict[str, Any] = {"rounds": [], "replay_rows": len(replay), "replay_source": replay_source,
                             "neighbourhood": "the derived accelerator and every accelerator of the search space "
                                              "one step away in one field",
                             "epochs_per_round": int(settings["epochs"]), "simulator": context.simulator.identity}
    for number in range(1, rounds + 1):
        started = time.perf_counter()
        design = derive(context, module)
        indices = neighbourhood(context.hw_space, design.accelerator_index)
        layers = pd.DataFrame([layer.to_dict() for layer in design.layers])
        rows = simulate_rows(context.simulator, layers, [context.hw_space.accelerator(i) for i in indices])
        own = simulate_rows(context.simulator, layers, [design.accelerator])
        before = design_error(evaluator, design.layers, design.accelerator, own)
        evaluator, losses = fine_tune(evaluator, rows, replay, int(settings["steps"]), float(settings["lr"]),
                                      int(settings["batch_size"]), seed=context.seed + number)
        after = design_error(evaluator, design.layers, design.accelerator, own)
        module.cost.evaluator = evaluator  # the search continues with the refined evaluator
        record = {"round": number, "architecture": list(design.candidates),
                  "accelerator": design.accelerator.to_dict(), "accelerators": len(indices), "rows": len(rows),
                  "fine_tune": losses, "design_error_before": before, "design_error_after": after}
        log.info("refine round %d: %d rows on %d accelerators; loss %.4g -> %.4g; design latency error %+.1f%% -> "
                 "%+.1f%%, energy %+.1f%% -> %+.1f%%", number, len(rows), len(indices), losses["loss_before"],
                 losses["loss_after"], 100 * before["relative_error"]["latency_s"],
                 100 * after["relative_error"]["latency_s"], 100 * before["relative_error"]["energy_pj"],
                 100 * after["relative_error"]["energy_pj"])
        if int(settings["epochs"]) > 0:
            prepare_continuation(module, context.settings, int(settings["epochs"]))
            resume(context, module, int(settings["epochs"]), f"refine_{number}", out_dir)
        record["seconds"] = time.perf_counter() - started
        block["rounds"].append(record)
    block["artifact"] = str(save_evaluator(evaluator, Path(out_dir) / ARTIFACT))
    return evaluator, block
