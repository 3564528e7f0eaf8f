"""The co-search pipeline, importable and testable without Hydra.

`run` takes the resolved ``dance-search`` config as a plain dict and an output folder:

1. `build_context`: data, network space, accelerator space, the layer table at the
   deployment resolution, the frozen evaluator, the simulator and the cost specification
   (with its reference, simulated once: the uniform architecture on the reference
   accelerator, the same for every method so that ``lambda_cost`` means the same);
2. `run_cosearch`: the Lightning co-search (`search.module.CoSearchModule`), in ``logits``
   or ``generator`` hardware mode (the generator pre-trained first);
3. `derive`: the discrete design (feasibility checked by the simulator);
4. `finish`: re-simulation, retraining from scratch, ``result.json``, ``layers.csv`` and
   ``search.png``.

``mode`` picks what runs: ``search`` (the co-search), the baselines ``sequential``,
``evolution`` and ``random`` (`search.baselines`), or ``compare`` (all of them, same
lambda and budget, with a comparison table: `search.compare`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import lightning as L
import numpy as np
import pandas as pd
import torch

from dataset_gen.simulator import SIMULATOR_VERSION
from dataset_gen.space import Accelerator, SpaceError
from search.cost import CostSpec, HardwareCost, figures
from search.coverage import coverage_report
from search.coverage import describe as describe_coverage
from search.data import ClassifierDataModule, CoSearchDataModule, ImageData, load_data
from search.derive import DerivedDesign, first_feasible, one_hot_architecture, ranked_accelerators
from search.generator import pretrain_generator, row_weights
from search.hardware import AcceleratorLogits, AcceleratorSpace, HardwareGenerator
from search.module import CoSearchModule
from search.network_space import NetworkSpace
from search.plots import plot_result
from search.simulated import SimulatorCache, network_totals
from search.supernet import ChildNet, Supernet
from search.training import make_trainer, train_classifier
from search.verify import verify_design, write_result

__all__ = ["SearchContext", "build_context", "run_cosearch", "derive", "finish", "run", "MODES", "load_evaluator"]

MODES: tuple[str, ...] = ("search", "sequential", "evolution", "random", "compare", "export")
log = logging.getLogger("search")

# Expected here, so noise: the frozen evaluator is in eval mode on purpose, and small tasks
# have fewer batches per epoch than Lightning's default logging interval.
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")
warnings.filterwarnings("ignore", message=r".*is smaller than the logging interval.*")
warnings.filterwarnings("ignore", message=r".*does not have many workers which may be a bottleneck.*")


def load_evaluator(path: str | Path) -> Any:
    """The frozen evaluator of an artifact file (``evaluator.load``)."""
    if path in (None, "", "???"):
        raise SpaceError("evaluator: required, the path of a trained evaluator artifact "
                         "(dance-train writes <out>/evaluator.pt): dance-search evaluator=FILE")
    import evaluator

    loader = getattr(evaluator, "load", None)
    if loader is None:  # the package's top-level re-export is optional; the artifact module is not
        from evaluator.artifact import load as loader
    return loader(path)


@dataclass
class SearchContext:
    """Everything a method needs, built once per run (methods of `compare` share it)."""

    settings: dict[str, Any]
    data: ImageData
    space: NetworkSpace  # at the training data's channels
    deploy_space: NetworkSpace  # at the deployment's input channels
    hw_space: AcceleratorSpace
    layer_table: pd.DataFrame
    evaluator: Any
    simulator: SimulatorCache
    spec: CostSpec
    reference_index: tuple[int, ...]
    out_dir: Path
    timings: dict[str, float] = field(default_factory=dict)
    coverage: dict[str, Any] = field(default_factory=dict)

    @property
    def resolution(self) -> int:
        return int(self.settings["search"]["deploy"]["resolution"])

    @property
    def batch(self) -> int:
        return int(self.settings["search"]["deploy"].get("batch", 1))

    def network_layers(self, choice: Any) -> list:
        return self.deploy_space.network_layers(choice, self.resolution, self.batch)


def _section(settings: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    node: Any = settings
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            raise SpaceError(f"config: missing section {'.'.join(keys)}")
        node = node[key]
    return dict(node or {})


def reference_figures(layer_table: pd.DataFrame, space: NetworkSpace, hw_space: AcceleratorSpace,
                      index: tuple[int, ...], simulator: SimulatorCache) -> dict[str, float]:
    """Simulated expected latency and energy of the uniform architecture (every allowed
    candidate equally likely, the search's starting point) on the reference accelerator."""
    mask = np.array([block.allowed for block in space.blocks], dtype=np.float64)
    uniform = mask / mask.sum(axis=1, keepdims=True)
    table = simulator.table(layer_table, [hw_space.accelerator(index)])
    totals = network_totals(table, row_weights(layer_table, uniform[None]))
    if not np.isfinite(totals["latency_s"][0, 0]):
        bad = layer_table.loc[~table.feasible[0], "name"].tolist()
        raise SpaceError(f"hw.reference = {hw_space.accelerator(index).to_dict()}: cannot map layer(s) {bad[:5]} "
                         "at the deployment resolution; pick a reference accelerator (hw.reference) with larger "
                         "buffers or register files")
    return {"latency_s": float(totals["latency_s"][0, 0]), "energy_pj": float(totals["energy_pj"][0, 0]),
            "area_mm2": float(totals["area_mm2"][0])}


def _spaces(settings: Mapping[str, Any]) -> tuple[ImageData, NetworkSpace, NetworkSpace, AcceleratorSpace, pd.DataFrame]:
    """The data, the network space (training and deployment channels), the accelerator
    space and the layer table at the deployment resolution."""
    data_cfg = _section(settings, "search", "data")
    data = load_data(data_cfg.get("name", "digits"), root=data_cfg.get("root"), limit_train=data_cfg.get("limit_train"),
                     limit_test=data_cfg.get("limit_test"), test_fraction=data_cfg.get("test_fraction") or 0.2,
                     augment=data_cfg.get("augment"), seed=int(settings.get("seed", 0)))
    space = NetworkSpace.from_config(_section(settings, "search", "space"), data.channels, data.num_classes)
    deploy = _section(settings, "search", "deploy")
    deploy_space = dataclasses.replace(space, in_channels=int(deploy.get("in_channels") or data.channels))
    hw_space = AcceleratorSpace.from_config(_section(settings, "hw").get("choices") or {})
    layer_table = deploy_space.layer_table(int(deploy.get("resolution", 224)), int(deploy.get("batch", 1)))
    return data, space, deploy_space, hw_space, layer_table


def export_search_space(settings: Mapping[str, Any], out_dir: str | Path) -> dict[str, Any]:
    """``mode=export``: the search's layers and accelerator space as dance-gen inputs."""
    from search.export import export_space

    _, space, _, hw_space, layer_table = _spaces(settings)
    paths = export_space(hw_space, layer_table, out_dir)
    out = Path(out_dir).resolve()
    print(f"Exported the search space: {len(layer_table)} candidate layers ({space.num_blocks} blocks x "
          f"{space.num_candidates} candidates at the deployment resolution) to {paths['layers']}, and the "
          f"{hw_space.size} accelerators with layer ranges to {paths['space']}. Simulate a training set for an "
          f"evaluator of this search with\n  dance-gen --config-dir {out} space=search "
          f"layers.source={Path(paths['layers']).resolve()} layers.mix=0.3 out=DATA\nthen dance-train data=DATA.",
          flush=True)
    return {key: str(value) for key, value in paths.items()}


def check_settings(settings: Mapping[str, Any]) -> None:
    """Refuse bad search settings before any work, naming the key and what it allows."""
    from search.module import ARCH_SAMPLING, SCHEDULES, WEIGHT_SAMPLING

    search = _section(settings, "search")
    hw = _section(settings, "hw")

    def integer(key: str, value: Any, low: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise SpaceError(f"{key} = {value!r}: expected an integer >= {low}")

    integer("search.epochs", search.get("epochs"), 1)
    integer("search.warmup_epochs", search.get("warmup_epochs", 0), 0)
    if search.get("warmup_epochs", 0) >= search["epochs"]:
        raise SpaceError(f"search.warmup_epochs = {search.get('warmup_epochs')}: must be smaller than "
                         f"search.epochs = {search['epochs']} (else no architecture step ever runs)")
    integer("search.gumbel_samples", search.get("gumbel_samples", 2), 1)
    lam = search.get("lambda_cost", 1.0)
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or lam < 0:
        raise SpaceError(f"search.lambda_cost = {lam!r}: expected a number >= 0")
    for key, allowed in (("arch_sampling", ARCH_SAMPLING), ("weight_sampling", WEIGHT_SAMPLING)):
        if search.get(key, allowed[0]) not in allowed:
            raise SpaceError(f"search.{key} = {search.get(key)!r}: expected one of {list(allowed)}")
    temperature = dict(search.get("temperature") or {})
    if temperature.get("schedule", "exponential") not in SCHEDULES:
        raise SpaceError(f"search.temperature.schedule = {temperature.get('schedule')!r}: expected one of {list(SCHEDULES)}")
    for key in ("initial", "final"):
        value = temperature.get(key, 1.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise SpaceError(f"search.temperature.{key} = {value!r}: expected a positive number")
    if hw.get("mode", "logits") not in ("logits", "generator"):
        raise SpaceError(f"hw.mode = {hw.get('mode')!r}: expected logits or generator")
    retrain = dict(settings.get("retrain") or {})
    integer("retrain.epochs", retrain.get("epochs", 30), 1)


def build_context(settings: Mapping[str, Any], out_dir: str | Path, evaluator: Any = None) -> SearchContext:
    """Load data, spaces, evaluator and simulator, and simulate the cost reference.

    Parameters
    ----------
    settings : mapping
        The resolved ``dance-search`` config (``data``, ``search``, ``hw``, ``evaluator``...).
    out_dir : path-like
        Where results go.
    evaluator : Evaluator, optional
        An already loaded evaluator (else ``settings["evaluator"]`` is loaded).
    """
    started = time.perf_counter()
    settings = json.loads(json.dumps(settings, default=str))  # a private, plain copy
    check_settings(settings)
    data, space, deploy_space, hw_space, layer_table = _spaces(settings)
    search = _section(settings, "search")
    hw = _section(settings, "hw")
    evaluator = evaluator if evaluator is not None else load_evaluator(settings.get("evaluator"))
    verify = dict(settings.get("verify") or {})
    simulator = SimulatorCache(mapping=verify.get("mapping", "search"), objective=verify.get("objective", "latency"))
    reference_index = hw_space.index_of(hw["reference"]) if hw.get("reference") else hw_space.middle()
    cost_cfg = dict(search.get("cost") or {})
    spec = CostSpec(metric=cost_cfg.get("metric", "edp"), limits=dict(cost_cfg.get("limits") or {}),
                    limit_weight=float(cost_cfg.get("limit_weight", 10.0)),
                    feasibility_weight=float(cost_cfg.get("feasibility_weight", 1.0)),
                    scale=cost_cfg.get("scale", "ratio"))
    spec = spec.with_reference(reference_figures(layer_table, deploy_space, hw_space, reference_index, simulator))
    context = SearchContext(settings, data, space, deploy_space, hw_space, layer_table, evaluator, simulator, spec,
                            reference_index, Path(out_dir))
    context.coverage = coverage_report(getattr(evaluator, "dataset_metadata", None), hw_space, layer_table)
    message = describe_coverage(context.coverage)
    if message:
        log.warning(message)
        print(f"warning: {message}", flush=True)
    context.timings["setup_s"] = time.perf_counter() - started
    return context


# ----------------------------------------------------------------------------- co-search


@dataclass
class CoSearchOutcome:
    module: CoSearchModule
    seconds: float  # supernet search (and generator pre-training) wall-clock time
    generator_report: dict[str, Any] | None = None


def _hardware(context: SearchContext, log_dir: Path | None) -> tuple[Any, dict[str, Any] | None]:
    hw = context.settings["hw"]
    mode = hw.get("mode", "logits")
    space = context.space
    if mode == "logits":
        init = hw.get("init")
        index = context.hw_space.index_of(init) if init else None
        return AcceleratorLogits(context.hw_space, index, float(hw.get("init_bias", 0.0))), None
    if mode == "generator":
        g = dict(hw.get("generator") or {})
        generator = HardwareGenerator(context.hw_space, space.num_blocks, space.num_candidates,
                                      hidden=int(g.get("hidden", 64)), layers=int(g.get("layers", 2)))
        report = pretrain_generator(
            generator, context.deploy_space, context.hw_space, context.layer_table, context.simulator, context.spec,
            archs=int(g.get("archs", 512)), epochs=int(g.get("epochs", 40)), accelerators=g.get("accelerators", 512),
            lr=float(g.get("lr", 3e-3)), soft_fraction=float(g.get("soft_fraction", 0.5)),
            seed=int(context.settings.get("seed", 0)), trainer=context.settings.get("trainer"), log_dir=log_dir)
        log.info("generator pre-trained on %d architectures x %d accelerators: field accuracy %.2f, "
                 "median regret %.3f", report["archs"], report["accelerators"], report["field_accuracy"],
                 report["median_regret"])
        return generator, report
    raise SpaceError(f"hw.mode = {mode!r}: expected logits or generator")


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
    """
    search = context.settings["search"]
    seed = int(context.settings.get("seed", 0))
    L.seed_everything(seed, workers=True, verbose=False)
    log_dir = context.out_dir if log_dir is None else log_dir
    started = time.perf_counter()
    supernet = Supernet(context.space)
    hardware, generator_report, cost = None, None, None
    if hardware_aware:
        hardware, generator_report = _hardware(context, log_dir)
        cost = HardwareCost(context.evaluator, context.layer_table, context.space.num_blocks,
                            context.space.num_candidates, context.hw_space, context.spec)
    module = CoSearchModule(
        supernet, hardware, cost,
        lambda_cost=float(search.get("lambda_cost", 1.0) if lambda_cost is None else lambda_cost) if hardware_aware else 0.0,
        epochs=int(search["epochs"]), warmup_epochs=int(search.get("warmup_epochs", 0)),
        weight_optim=search.get("weight_optim"), arch_optim=search.get("arch_optim"),
        temperature=search.get("temperature"), gumbel_samples=int(search.get("gumbel_samples", 2)),
        hard=bool(search.get("hard", False)), arch_sampling=search.get("arch_sampling", "two_path"),
        weight_sampling=search.get("weight_sampling", "single_path"),
        finetune_generator=bool((context.settings["hw"].get("generator") or {}).get("finetune", False)),
    )
    data_cfg = context.settings["search"]["data"]
    datamodule = CoSearchDataModule(context.data, batch_size=int(data_cfg.get("batch_size", 64)),
                                    val_fraction=float(data_cfg.get("val_fraction", 0.5)), seed=seed,
                                    num_workers=int(data_cfg.get("num_workers", 0)))
    trainer = make_trainer(context.settings.get("trainer"), int(search["epochs"]), log_dir, name=name)
    trainer.fit(module, datamodule=datamodule)
    return CoSearchOutcome(module, time.perf_counter() - started, generator_report)


# ----------------------------------------------------------------------------- derivation


def design_of(context: SearchContext, choice: Any, accelerator_index: tuple[int, ...], rank: int = 0) -> DerivedDesign:
    """A `DerivedDesign` of a discrete architecture and accelerator index (feasibility simulated)."""
    layers = context.network_layers(choice)
    table = context.simulator.table(layers, [context.hw_space.accelerator(accelerator_index)])
    return DerivedDesign(tuple(int(c) for c in choice), tuple(context.space.describe(choice)), tuple(layers),
                         context.hw_space.accelerator(accelerator_index), tuple(accelerator_index), rank,
                         bool(table.feasible.all()))


def derive(context: SearchContext, module: CoSearchModule) -> DerivedDesign:
    """The discrete design of a finished co-search (see `search.derive`)."""
    choice = module.derive_architecture()
    arch = one_hot_architecture(choice, context.space.num_candidates)
    probs = module.accelerator_probabilities(arch if isinstance(module.hardware, HardwareGenerator) else None)
    tries = int((context.settings.get("verify") or {}).get("repair_tries", 64))
    ranked = ranked_accelerators(context.hw_space, probs, limit=max(tries, 1))
    index, rank, _ = first_feasible(context.network_layers(choice), context.hw_space, ranked, context.simulator)
    return design_of(context, choice, index, rank)


# ----------------------------------------------------------------------------- results


def retrain(context: SearchContext, choice: Any, name: str = "retrain", log_dir: Path | None = None) -> dict[str, float]:
    """Train the derived network from scratch on the whole training split; test accuracy."""
    settings = context.settings
    retrain_cfg = dict(settings.get("retrain") or {})
    seed = int(settings.get("seed", 0))
    L.seed_everything(seed, workers=True, verbose=False)
    net = ChildNet(context.space, choice)
    datamodule = ClassifierDataModule(context.data, batch_size=int(settings["search"]["data"].get("batch_size", 64)), seed=seed)
    optim = {k: retrain_cfg[k] for k in ("lr", "momentum", "weight_decay", "label_smoothing") if k in retrain_cfg}
    return train_classifier(net, datamodule, int(retrain_cfg.get("epochs", 30)), optim, settings.get("trainer"),
                            log_dir if log_dir is not None else context.out_dir, name=name,
                            quiet=not bool((settings.get("trainer") or {}).get("enable_progress_bar", True)))


def finish(context: SearchContext, design: DerivedDesign, method: str, search_seconds: float,
           out_dir: Path | None = None, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Verify by simulation, retrain, and write ``result.json``; returns the result dict."""
    out_dir = context.out_dir if out_dir is None else Path(out_dir)
    started = time.perf_counter()
    summary, per_layer = verify_design(design.layers, design.accelerator, context.evaluator, context.simulator,
                                       context.spec)
    verify_seconds = time.perf_counter() - started
    accuracy = retrain(context, design.choice, log_dir=out_dir)
    settings = context.settings
    search = settings["search"]
    result: dict[str, Any] = {
        "method": method,
        "architecture": {"choice": list(design.choice), "candidates": list(design.candidates),
                         "blocks": [b.name for b in context.space.blocks]},
        **summary,
        "test_accuracy": accuracy["accuracy"],
        "test_loss": accuracy["loss"],
        "accelerator_rank": design.accelerator_rank,
        "accelerator_text": _accelerator_text(design.accelerator),
        "reference": {**figures(context.spec.reference["latency_s"], context.spec.reference["energy_pj"],
                                context.spec.reference["area_mm2"]),
                      "accelerator": context.hw_space.accelerator(context.reference_index).to_dict()},
        "search": {"lambda_cost": float(search.get("lambda_cost", 1.0)), "metric": context.spec.metric,
                   "limits": dict(context.spec.limits), "epochs": int(search["epochs"]),
                   "temperature": dict(search.get("temperature") or {}), "hw_mode": settings["hw"].get("mode", "logits"),
                   "seconds": search_seconds},
        "deploy": {"resolution": context.resolution, "batch": context.batch,
                   "in_channels": context.deploy_space.in_channels},
        "retrain": {"epochs": int((settings.get("retrain") or {}).get("epochs", 30)), "seconds": accuracy["seconds"]},
        "simulator": {"version": SIMULATOR_VERSION, "mapping": context.simulator.mapping,
                      "objective": context.simulator.objective, "verify_seconds": verify_seconds},
        "evaluator": {"path": str(settings.get("evaluator")),
                      "simulator_version": getattr(context.evaluator, "simulator_version", None),
                      "space_hash": getattr(context.evaluator, "space_hash", None)},
        "data": context.data.describe(),
        "coverage": context.coverage,
        "seed": int(settings.get("seed", 0)),
        **dict(extra or {}),
    }
    path = write_result(out_dir, design.layers, design.accelerator, result, per_layer)
    plot_result(result, per_layer, out_dir / "search.png", candidates=context.space.candidates)
    # the returned dict mirrors result.json (network and accelerator first), plus its path
    return {"network": [{"name": layer.name, **layer.to_dict()} for layer in design.layers],
            "accelerator": design.accelerator.to_dict(), **result, "path": str(path)}


def summary_line(result: Mapping[str, Any]) -> str:
    """The one-paragraph summary printed at the end of a run."""
    sim, err = result["simulated"], result["relative_error"]
    accelerator = result.get("accelerator_text", "")
    lat = sim.get("latency_s")
    text = (f"{result['method']}: searched in {result['search']['seconds']:.1f} s; "
            f"network {'/'.join(result['architecture']['candidates'])}{accelerator}; ")
    if lat is None or not np.isfinite(lat):
        text += "simulated: INFEASIBLE on the derived accelerator; "
    else:
        text += (f"simulated latency {lat * 1e3:.3f} ms, energy {sim['energy_pj'] / 1e6:.3f} uJ, "
                 f"area {sim['area_mm2']:.3f} mm^2 (evaluator error {err['latency_s']:+.1%} latency, "
                 f"{err['energy_pj']:+.1%} energy); ")
    text += f"test accuracy {result['test_accuracy']:.2%}; wrote {result.get('path', '')}"
    return text


def _accelerator_text(accelerator: Accelerator) -> str:
    a = accelerator
    return (f" on {a.pe_rows}x{a.pe_cols} {a.dataflow}, RF {a.rf_bytes} B, buffers "
            f"{a.ifmap_kb:g}/{a.filter_kb:g}/{a.ofmap_kb:g} KiB")


def run_search(context: SearchContext, out_dir: Path | None = None, lambda_cost: float | None = None) -> dict[str, Any]:
    """The co-search end to end: search, derive, verify, retrain, write."""
    out_dir = context.out_dir if out_dir is None else Path(out_dir)
    outcome = run_cosearch(context, lambda_cost=lambda_cost, log_dir=out_dir)
    design = derive(context, outcome.module)
    extra: dict[str, Any] = {}
    if outcome.generator_report is not None:
        extra["generator"] = outcome.generator_report
    probs = outcome.module.accelerator_probabilities()
    extra["accelerator_probabilities"] = {field: [float(p) for p in value] for field, value in probs.items()}
    extra["architecture_probabilities"] = outcome.module.supernet.arch_probs().detach().numpy().round(4).tolist()
    return finish(context, design, "cosearch", outcome.seconds, out_dir, extra)


def run(settings: Mapping[str, Any], out_dir: str | Path, evaluator: Any = None) -> dict[str, Any]:
    """What ``dance-search`` runs: the mode's method(s), results written under ``out_dir``.

    Returns
    -------
    dict
        The result (``mode=compare``: ``{"compare": rows, "results": {...}}``).
    """
    mode = settings.get("mode", "search")
    if mode not in MODES:
        raise SpaceError(f"mode = {mode!r}: expected one of {list(MODES)}")
    threads = settings.get("threads")
    if threads:
        torch.set_num_threads(int(threads))
    if mode == "export":
        return export_search_space(settings, out_dir)
    context = build_context(settings, out_dir, evaluator)
    if mode == "search":
        result = run_search(context)
    elif mode == "compare":
        from search.compare import compare

        return compare(context)
    else:
        from search import baselines

        result = baselines.run_baseline(context, mode)
    print(summary_line(result), flush=True)
    return result
