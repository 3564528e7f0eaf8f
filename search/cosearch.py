"""The co-search itself, on a `search.context.SearchContext`:

1. `run_cosearch`: the Lightning co-search (`search.module.CoSearchModule`), in ``logits``
   or ``generator`` hardware mode (the generator pre-trained first), or plain NAS;
2. `derive`: the discrete design (feasibility checked by the simulator);
3. `finish`: re-simulation, retraining from scratch, ``result.json``, ``layers.csv`` and
   ``search.png`` (every method, baselines included, ends here);

and `run_search`, the three end to end (with ``search.refine_rounds > 0``, the evaluator is
refined by simulation where the search ended and the search continued, between 1 and 2:
`search.refine`). Settings are read by plain indexing: the defaults
live in ``conf/`` only.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import lightning as L
import numpy as np

from dataset_gen.common.cpus import usable_cpus
from dataset_gen.space import Accelerator, SpaceError
from search.context import SearchContext
from search.cost import HardwareCost, figures
from search.data import ClassifierDataModule, CoSearchDataModule
from search.derive import (DERIVE_ACCELERATOR, DerivedDesign, first_feasible, one_hot_architecture,
                           predicted_ranking, ranked_accelerators)
from search.generator import pretrain_generator
from search.hardware import AcceleratorLogits, HardwareGenerator
from search.module import CoSearchModule
from search.plots import plot_result
from search.quant import FLOAT_BITS
from search.refine import check_refine, refine_loop, refine_rounds
from search.supernet import ChildNet, Supernet
from search.training import make_trainer, train_classifier
from search.verify import verify_design, write_result

__all__ = ["CoSearchOutcome", "run_cosearch", "resume_cosearch", "design_of", "derive", "retrain", "finish", "run_search",
           "summary_line", "loader_workers"]

log = logging.getLogger("search")

# Expected here, so noise: the frozen evaluator is in eval mode on purpose, and small tasks
# have fewer batches per epoch than Lightning's default logging interval.
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")
warnings.filterwarnings("ignore", message=r".*is smaller than the logging interval.*")
warnings.filterwarnings("ignore", message=r".*does not have many workers which may be a bottleneck.*")
warnings.filterwarnings("ignore", message=r".*LeafSpec.*is deprecated")  # inside Lightning 2.6, not ours


@dataclass
class CoSearchOutcome:
    """A finished co-search: its module (the learned distributions) and its time."""

    module: CoSearchModule
    seconds: float  # supernet search (and generator pre-training) wall-clock time
    generator_report: dict[str, Any] | None = None


def loader_workers(requested: int) -> int:
    """DataLoader worker processes for ``task.num_workers``.

    0 loads in the training process (the tasks are in-memory tensors, where workers only
    add start-up time); a positive count is capped at the CPUs this process may use.
    """
    return usable_cpus(requested) if requested else 0


def _hardware(context: SearchContext, log_dir: Path | None) -> tuple[Any, dict[str, Any] | None]:
    hw = context.settings["hw"]
    space = context.space
    if hw["mode"] == "logits":
        # hw.init: null means a uniform start, a meaningful value
        index = context.hw_space.index_of(hw["init"]) if hw["init"] else None
        return AcceleratorLogits(context.hw_space, index, float(hw["init_bias"])), None
    if hw["mode"] == "generator":
        g = hw["generator"]
        generator = HardwareGenerator(context.hw_space, space.num_blocks, space.num_candidates,
                                      hidden=int(g["hidden"]), layers=int(g["layers"]))
        report = pretrain_generator(
            generator, context.deploy_space, context.hw_space, context.layer_table, context.simulator, context.spec,
            archs=int(g["archs"]), epochs=int(g["epochs"]), accelerators=g["accelerators"], lr=float(g["lr"]),
            soft_fraction=float(g["soft_fraction"]), seed=context.seed, trainer=context.settings["trainer"],
            log_dir=log_dir)
        log.info("generator pre-trained on %d architectures x %d accelerators: field accuracy %.2f, "
                 "median regret %.3f", report["archs"], report["accelerators"], report["field_accuracy"],
                 report["median_regret"])
        return generator, report
    raise SpaceError(f"hw.mode = {hw['mode']!r}: expected logits or generator")


def run_cosearch(context: SearchContext, lambda_cost: float | None = None, hardware_aware: bool = True,
                 name: str = "cosearch", log_dir: Path | None = None) -> CoSearchOutcome:
    """Run the Lightning co-search (or, with ``hardware_aware=False``, plain NAS).

    Parameters
    ----------
    context : SearchContext
    lambda_cost : float, optional
        Overrides ``search.lambda_cost``.
    hardware_aware : bool
        False: no accelerator parameters and no cost (the sequential baseline's first half).
    name : str
        Logger run name.
    log_dir : Path, optional
        Logger folder (the context's output folder by default).

    Returns
    -------
    CoSearchOutcome
    """
    search = context.settings["search"]
    L.seed_everything(context.seed, workers=True, verbose=False)
    log_dir = context.out_dir if log_dir is None else log_dir
    started = time.perf_counter()
    supernet = Supernet(context.space)
    hardware, generator_report, cost = None, None, None
    if hardware_aware:
        hardware, generator_report = _hardware(context, log_dir)
        cost = HardwareCost(context.evaluator, context.layer_table, context.space.num_blocks,
                            context.space.num_candidates, context.hw_space, context.spec)
        lam = float(search["lambda_cost"] if lambda_cost is None else lambda_cost)
    else:
        lam = 0.0
    module = CoSearchModule(
        supernet, hardware, cost, lambda_cost=lam,
        epochs=int(search["epochs"]), warmup_epochs=int(search["warmup_epochs"]),
        weight_optim=search["weight_optim"], arch_optim=search["arch_optim"],
        temperature=search["temperature"], gumbel_samples=int(search["gumbel_samples"]),
        hard=bool(search["hard"]), arch_sampling=search["arch_sampling"], weight_sampling=search["weight_sampling"],
        finetune_generator=bool(context.settings["hw"]["generator"]["finetune"]),
    )
    task = context.settings["task"]
    datamodule = CoSearchDataModule(context.data, batch_size=int(task["batch_size"]),
                                    val_fraction=float(task["val_fraction"]), seed=context.seed,
                                    num_workers=loader_workers(int(task["num_workers"])))
    trainer = make_trainer(context.settings["trainer"], int(search["epochs"]), log_dir, name=name)
    trainer.fit(module, datamodule=datamodule)
    return CoSearchOutcome(module, time.perf_counter() - started, generator_report)


def resume_cosearch(context: SearchContext, module: CoSearchModule, epochs: int, name: str, log_dir: Path) -> None:
    """Fit a co-search ``module`` for ``epochs`` more epochs, from its current state (its
    schedules as the caller set them: `search.refine.prepare_continuation`)."""
    task = context.settings["task"]
    datamodule = CoSearchDataModule(context.data, batch_size=int(task["batch_size"]),
                                    val_fraction=float(task["val_fraction"]), seed=context.seed,
                                    num_workers=loader_workers(int(task["num_workers"])))
    make_trainer(context.settings["trainer"], epochs, log_dir, name=name).fit(module, datamodule=datamodule)


def design_of(context: SearchContext, choice: Any, accelerator_index: tuple[int, ...], rank: int = 0,
              precision: Any = None) -> DerivedDesign:
    """A `DerivedDesign` of a discrete architecture, precision choice (one index into
    ``network.precision`` per block; None: the first) and accelerator index (feasibility simulated)."""
    precision = context.space.check_precision(precision)
    layers = context.network_layers(choice, precision)
    table = context.simulator.table(layers, [context.hw_space.accelerator(accelerator_index)])
    return DerivedDesign(tuple(int(c) for c in choice), tuple(context.space.describe(choice)), tuple(layers),
                         context.hw_space.accelerator(accelerator_index), tuple(accelerator_index), rank,
                         bool(table.feasible.all()), precision, tuple(context.space.bits_of(precision)))


def derive(context: SearchContext, module: CoSearchModule) -> DerivedDesign:
    """The discrete design of a finished co-search (see `search.derive`)."""
    choice = module.derive_architecture()
    precision = module.derive_precision()
    arch = one_hot_architecture(choice, context.space.num_candidates)
    probs = module.accelerator_probabilities(arch if isinstance(module.hardware, HardwareGenerator) else None)
    tries = int(context.settings["verify"]["repair_tries"])
    how = context.settings["search"].get("derive_accelerator", "probable")
    if how not in DERIVE_ACCELERATOR:
        raise SpaceError(f"search.derive_accelerator = {how!r}: expected one of {list(DERIVE_ACCELERATOR)}")
    layers = context.network_layers(choice, precision)
    if how == "predicted":
        ranked = predicted_ranking(layers, context.hw_space, context.evaluator, context.spec, probs)[:max(tries, 1)]
    else:
        ranked = ranked_accelerators(context.hw_space, probs, limit=max(tries, 1))
    index, rank, _ = first_feasible(layers, context.hw_space, ranked, context.simulator)
    return design_of(context, choice, index, rank, precision)


def retrain(context: SearchContext, choice: Any, name: str = "retrain", log_dir: Path | None = None,
            precision: Any = None) -> dict[str, float]:
    """Train the derived network from scratch on the whole training split, quantisation-aware at
    its precision (one index into ``network.precision`` per block; None: the first), and test
    that quantised network; returns the test accuracy and loss."""
    settings = context.settings
    config = settings["retrain"]
    L.seed_everything(context.seed, workers=True, verbose=False)
    net = ChildNet(context.space, choice, precision)
    datamodule = ClassifierDataModule(context.data, batch_size=int(settings["task"]["batch_size"]),
                                      seed=context.seed)
    optim = {key: config[key] for key in ("lr", "momentum", "weight_decay", "label_smoothing")}
    return train_classifier(net, datamodule, int(config["epochs"]), optim, settings["trainer"],
                            log_dir if log_dir is not None else context.out_dir, name=name,
                            quiet=not bool(settings["trainer"]["enable_progress_bar"]))


def finish(context: SearchContext, design: DerivedDesign, method: str, search_seconds: float,
           out_dir: Path | None = None, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Verify by simulation, retrain, and write ``result.json``; returns the result dict."""
    out_dir = context.out_dir if out_dir is None else Path(out_dir)
    started = time.perf_counter()
    summary, per_layer = verify_design(design.layers, design.accelerator, context.evaluator, context.simulator,
                                       context.spec, others=context.verifiers)
    verify_seconds = time.perf_counter() - started
    precision = context.space.check_precision(design.precision or None)
    accuracy = retrain(context, design.choice, log_dir=out_dir, precision=precision)
    settings = context.settings
    search = settings["search"]
    result: dict[str, Any] = {
        "method": method,
        "architecture": {"choice": list(design.choice), "candidates": list(design.candidates),
                         "blocks": [b.name for b in context.space.blocks],
                         # per block: the chosen precision (index into network.precision) and its bits
                         "precision_choice": list(precision), "bits": context.space.bits_of(precision),
                         "fixed_bits": context.space.fixed_bits},
        **summary,
        "test_accuracy": accuracy["accuracy"],
        "test_loss": accuracy["loss"],
        "accelerator_rank": design.accelerator_rank,
        "accelerator_text": _accelerator_text(design.accelerator),
        "reference": {**figures(context.spec.reference["latency_s"], context.spec.reference["energy_pj"],
                                context.spec.reference["area_mm2"]),
                      "accelerator": context.hw_space.accelerator(context.reference_index).to_dict()},
        "search": {"lambda_cost": float(search["lambda_cost"]), "metric": context.spec.metric,
                   "limits": dict(context.spec.limits), "epochs": int(search["epochs"]),
                   "temperature": dict(search["temperature"]), "hw_mode": settings["hw"]["mode"],
                   "precision": list(context.space.precision), "fixed_bits": context.space.fixed_bits,
                   "derive_accelerator": settings["search"].get("derive_accelerator", "probable"),
                   "seconds": search_seconds},
        "deploy": {"resolution": context.resolution, "batch": context.batch,
                   "in_channels": context.deploy_space.in_channels},
        # quantisation-aware at the derived bits (search.quant); 16 bits and more train in float
        "retrain": {"epochs": int(settings["retrain"]["epochs"]), "seconds": accuracy["seconds"],
                    "quantised": any(b < FLOAT_BITS for b in (*context.space.bits_of(precision),
                                                             context.space.fixed_bits))},
        # summary["simulator"]: the identity of the main verifier (the evaluator's simulator)
        "verify": {"seconds": verify_seconds, "simulators": list(context.verifiers)},
        "evaluator": {"path": str(settings["evaluator"]),
                      "simulator": getattr(context.evaluator, "simulator", None),
                      "simulator_version": getattr(context.evaluator, "simulator_version", None),
                      "space_hash": getattr(context.evaluator, "space_hash", None)},
        "data": context.data.describe(),
        "coverage": context.coverage,
        "seed": context.seed,
        **dict(extra or {}),
    }
    path = write_result(out_dir, design.layers, design.accelerator, result, per_layer)
    plot_result(result, per_layer, out_dir / "search.png", candidates=context.space.candidates)
    # the returned dict mirrors result.json (network and accelerator first), plus its path
    return {"network": [{"name": layer.name, **layer.to_dict()} for layer in design.layers],
            "accelerator": design.accelerator.to_dict(), **result, "path": str(path)}


def summary_line(result: Mapping[str, Any]) -> str:
    """The one-paragraph summary printed at the end of a run."""
    accelerator = result.get("accelerator_text", "")
    bits = result["architecture"].get("bits") or []
    precision_text = f" at {'/'.join(str(b) for b in bits)} bits" if len(set(bits)) > 1 or any(
        b != 16 for b in bits) else ""
    text = (f"{result['method']}: searched in {result['search']['seconds']:.1f} s; "
            f"network {'/'.join(result['architecture']['candidates'])}{precision_text}{accelerator}; ")
    main = (result.get("simulator") or {}).get("name", "simulator")
    # the evaluator's simulator first, then each further one, side by side
    columns = [(main, result["simulated"], result["relative_error"])]
    columns += [(name, by, by.get("relative_error") or {}) for name, by in (result.get("simulated_by") or {}).items()]
    for index, (name, sim, err) in enumerate(columns):
        lat = sim.get("latency_s")
        if lat is None or not np.isfinite(lat):
            text += f"simulated by {name}: INFEASIBLE on the derived accelerator; "
        else:
            text += (f"simulated by {name}: latency {lat * 1e3:.3f} ms, energy {sim['energy_pj'] / 1e6:.3f} uJ, "
                     f"area {sim['area_mm2']:.3f} mm^2 (evaluator error {err['latency_s']:+.1%} latency, "
                     f"{err['energy_pj']:+.1%} energy{_sigma_text(result) if index == 0 else ''}); ")
    warnings = (result.get("uncertainty") or {}).get("warnings") or []
    if warnings:  # each one was logged in full when the design was verified
        text += f"{len(warnings)} verification warning(s) (result.json: uncertainty.warnings); "
    text += f"test accuracy {result['test_accuracy']:.2%}; wrote {result.get('path', '')}"
    return text


def _sigma_text(result: Mapping[str, Any]) -> str:
    """The predicted uncertainty next to the evaluator's error ('' for a single-network evaluator)."""
    sigma = (result.get("uncertainty") or {}).get("sigma")
    if not sigma:
        return ""
    return (f"; its predicted sigma {sigma['latency_s']:.1%} latency, {sigma['energy_pj']:.1%} energy, "
            f"2-sigma band {'held' if _within(result) else 'MISSED'}")


def _within(result: Mapping[str, Any]) -> bool:
    """Whether the simulated latency and energy lie inside the predicted 2-sigma bands."""
    within = (result.get("uncertainty") or {}).get("within_2sigma") or {}
    return all(within.get(key) is not False for key in ("latency_s", "energy_pj"))


def _accelerator_text(accelerator: Accelerator) -> str:
    a = accelerator
    kind = "" if a.pe_kind == "fixed" else f" {a.pe_kind} PEs,"
    return (f" on {a.pe_rows}x{a.pe_cols} {a.dataflow},{kind} RF {a.rf_bytes} B, buffers "
            f"{a.ifmap_kb:g}/{a.filter_kb:g}/{a.ofmap_kb:g} KiB")


def run_search(context: SearchContext, out_dir: Path | None = None, lambda_cost: float | None = None) -> dict[str, Any]:
    """The co-search end to end: search, derive, verify, retrain, write."""
    out_dir = context.out_dir if out_dir is None else Path(out_dir)
    check_refine(context.settings)
    outcome = run_cosearch(context, lambda_cost=lambda_cost, log_dir=out_dir)
    extra: dict[str, Any] = {}
    seconds = outcome.seconds
    if refine_rounds(context.settings) > 0:  # search.refine_rounds: close the loop (search.refine)
        started = time.perf_counter()
        evaluator, extra["refine"] = refine_loop(context, outcome.module, out_dir, derive, resume_cosearch)
        context = dataclasses.replace(context, evaluator=evaluator)  # derive, verify with the refined one
        seconds += time.perf_counter() - started
        extra["refine"]["seconds"] = time.perf_counter() - started
    design = derive(context, outcome.module)
    if outcome.generator_report is not None:
        extra["generator"] = outcome.generator_report
    probs = outcome.module.accelerator_probabilities()
    extra["accelerator_probabilities"] = {field: [float(p) for p in value] for field, value in probs.items()}
    extra["architecture_probabilities"] = outcome.module.supernet.arch_probs().detach().numpy().round(4).tolist()
    # (blocks, precisions) over network.precision
    extra["precision_probabilities"] = outcome.module.supernet.bits_probs().detach().numpy().round(4).tolist()
    return finish(context, design, "cosearch", seconds, out_dir, extra)
