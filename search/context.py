"""What every search method needs, built once per run: `SearchContext` and `build_context`.

`build_context` takes the resolved ``dance-search`` config as a plain dict and loads the
task's data, the network space (at the training data's and at the deployment's input
channels), the accelerator space, the layer table at the deployment resolution, the frozen
evaluator, the simulator, and the cost specification with its reference: the uniform
architecture on the reference accelerator, simulated once, the same for every method so
that ``lambda_cost`` means the same in the co-search and the baselines (every block at
``network.fixed_bits``: the same for every precision setting, `reference_table`).

The simulator is the one the evaluator imitates (`verifier_config`: the adapter its
training data records, with the recorded settings; ``verify.mapping`` / ``verify.objective``
override those two). One run has one ground truth: the cost reference, the feasibility
checks of derivation and repair, the simulator-in-the-loop baselines and the final
verification all use it, so that every number of a run, and every method of a comparison,
is measured by the same rules the evaluator learned. For ``builtin`` this is the vectorised
engine as before; for a slow external tool it makes the baselines (which simulate many
pairs) slow too, bounded by their budget. ``verify.simulators`` adds simulators that
re-simulate the final design only, side by side (``simulated_by`` in result.json).

Every setting is read by plain indexing: the defaults live in ``conf/`` only, so a key
missing from the config is a ``KeyError`` rather than a silent second default.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from dataset_gen.adapters import make_adapter
from dataset_gen.adapters.registry import load_simulator_config
from dataset_gen.reader import simulator_identity
from dataset_gen.space import SpaceError
from evaluator import load as load_artifact
from search.cost import CostSpec
from search.coverage import coverage_report
from search.coverage import describe as describe_coverage
from search.data import ImageData, load_data
from search.generator import row_weights
from search.hardware import AcceleratorSpace
from search.module import ARCH_SAMPLING, SCHEDULES, WEIGHT_SAMPLING
from search.network_space import NetworkSpace
from search.simulated import SimulatorCache, network_totals

__all__ = ["SearchContext", "build_context", "build_spaces", "build_verifiers", "check_settings", "load_evaluator",
           "reference_figures", "reference_table", "verifier_config"]

log = logging.getLogger("search")


def load_evaluator(path: str | Path | None) -> Any:
    """The frozen evaluator of an artifact file (`evaluator.load`).

    Raises
    ------
    SpaceError
        No path given (``evaluator=???`` in the config).
    """
    if path in (None, "", "???"):
        raise SpaceError("evaluator: required, the path of a trained evaluator artifact "
                         "(dance-train writes <out>/evaluator.pt): dance-search evaluator=FILE")
    return load_artifact(path)


@dataclass
class SearchContext:
    """Everything a method needs, built once per run (the methods of ``mode=compare`` share it)."""

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
    # further simulators of the final verification (verify.simulators), by name
    verifiers: dict[str, SimulatorCache] = field(default_factory=dict)

    @property
    def resolution(self) -> int:
        return int(self.settings["search"]["deploy"]["resolution"])

    @property
    def batch(self) -> int:
        return int(self.settings["search"]["deploy"]["batch"])

    @property
    def seed(self) -> int:
        return int(self.settings["seed"])

    def network_layers(self, choice: Any, precision: Any = None) -> list:
        """The deployed layers of a discrete architecture at a precision choice (one index into
        ``network.precision`` per block; None: the first precision everywhere)."""
        return self.deploy_space.network_layers(choice, self.resolution, self.batch, precision)


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


def reference_table(deploy_space: NetworkSpace, settings: Mapping[str, Any]) -> pd.DataFrame:
    """The layer table of the cost reference: every block at ``network.fixed_bits`` (the
    network's full precision), whatever ``network.precision`` lists, so that a fixed 8-bit, a
    fixed 16-bit and a 4/8/16-bit search share one reference and ``lambda_cost`` means the same
    in all of them (with the default ``[16]`` and 16 it is the search's own table)."""
    full = dataclasses.replace(deploy_space, precision=(deploy_space.fixed_bits,))
    deploy = settings["search"]["deploy"]
    return full.layer_table(int(deploy["resolution"]), int(deploy["batch"]))


def verifier_config(evaluator: Any, verify: Mapping[str, Any]) -> dict[str, Any]:
    """The config (``{"name": ..., **settings}``) of the simulator the evaluator imitates.

    The adapter and settings its training data records (`Evaluator.simulator`; ``builtin``
    for artifacts older than adapters), with ``verify.mapping`` and ``verify.objective``
    replacing the recorded mapping and objective when they are set (null: the recorded ones).
    """
    identity = simulator_identity(getattr(evaluator, "dataset_metadata", None))
    config = {"name": identity["name"], **identity["settings"]}
    for key in ("mapping", "objective"):
        if verify[key] is not None:
            config[key] = verify[key]
    return config


def build_verifiers(main: SimulatorCache, entries: Any) -> dict[str, SimulatorCache]:
    """The further simulators of ``verify.simulators``, by name, each checked before any work.

    Parameters
    ----------
    main : SimulatorCache
        The main verifier: a further simulator's config without a ``mapping`` or ``objective``
        gets the main one's (every adapter is given them, as in dance-gen).
    entries : list of str or mapping
        Names of ``conf/simulator/`` or config mappings ``{"name": ..., **settings}``.

    Returns
    -------
    dict of str to SimulatorCache
        Keyed by adapter name (``name_2``, ``name_3``... when a name repeats).

    Raises
    ------
    dataset_gen.adapters.AdapterError
        An unknown simulator, or one whose tool cannot run here (naming it).
    """
    if entries is None:
        entries = []
    if isinstance(entries, (str, Mapping)):
        entries = [entries]
    verifiers: dict[str, SimulatorCache] = {}
    for entry in entries:
        config = load_simulator_config(entry)
        for key in ("mapping", "objective"):
            if key not in config and main.adapter.settings.get(key) is not None:
                config[key] = main.adapter.settings[key]
        adapter = make_adapter(config)
        adapter.check()  # fail now, naming it, not after the search
        name, number = adapter.name, 2
        while name in verifiers:
            name, number = f"{adapter.name}_{number}", number + 1
        verifiers[name] = SimulatorCache(adapter=adapter)
    return verifiers


def build_spaces(settings: Mapping[str, Any]) -> tuple[ImageData, NetworkSpace, NetworkSpace, AcceleratorSpace,
                                                       pd.DataFrame]:
    """The data, the network space (training and deployment channels), the accelerator
    space and the layer table at the deployment resolution."""
    task = settings["task"]
    data = load_data(task["name"], root=task["root"], limit_train=task["limit_train"],
                     limit_test=task["limit_test"], test_fraction=task["test_fraction"],
                     augment=task["augment"], seed=int(settings["seed"]))
    space = NetworkSpace.from_config(settings["network"], data.channels, data.num_classes)
    deploy = settings["search"]["deploy"]
    # in_channels: null means "the data's channels", a meaningful value, not a default
    deploy_space = dataclasses.replace(space, in_channels=int(deploy["in_channels"] or data.channels))
    hw_space = AcceleratorSpace.from_config(settings["hw"]["choices"])
    layer_table = deploy_space.layer_table(int(deploy["resolution"]), int(deploy["batch"]))
    return data, space, deploy_space, hw_space, layer_table


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_settings(settings: Mapping[str, Any]) -> None:
    """Refuse bad search settings before any work, naming the key and what it allows.

    Raises
    ------
    SpaceError
        A value out of its range or not among its choices.
    KeyError
        A key missing from the config (its default lives in ``conf/``).
    """
    search, hw = settings["search"], settings["hw"]

    def integer(key: str, value: Any, low: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise SpaceError(f"{key} = {value!r}: expected an integer >= {low}")

    integer("search.epochs", search["epochs"], 1)
    integer("search.warmup_epochs", search["warmup_epochs"], 0)
    if search["warmup_epochs"] >= search["epochs"]:
        raise SpaceError(f"search.warmup_epochs = {search['warmup_epochs']}: must be smaller than "
                         f"search.epochs = {search['epochs']} (else no architecture step ever runs)")
    integer("search.gumbel_samples", search["gumbel_samples"], 1)
    lam = search["lambda_cost"]
    if not _number(lam) or lam < 0:
        raise SpaceError(f"search.lambda_cost = {lam!r}: expected a number >= 0")
    for key, allowed in (("arch_sampling", ARCH_SAMPLING), ("weight_sampling", WEIGHT_SAMPLING)):
        if search[key] not in allowed:
            raise SpaceError(f"search.{key} = {search[key]!r}: expected one of {list(allowed)}")
    temperature = search["temperature"]
    if temperature["schedule"] not in SCHEDULES:
        raise SpaceError(f"search.temperature.schedule = {temperature['schedule']!r}: expected one of "
                         f"{list(SCHEDULES)}")
    for key in ("initial", "final"):
        value = temperature[key]
        if not _number(value) or not value > 0:
            raise SpaceError(f"search.temperature.{key} = {value!r}: expected a positive number")
    if hw["mode"] not in ("logits", "generator"):
        raise SpaceError(f"hw.mode = {hw['mode']!r}: expected logits or generator")
    precision = settings["network"]["precision"]
    if hw["mode"] == "generator" and isinstance(precision, (list, tuple)) and len(precision) > 1:
        raise SpaceError(f"hw.mode = generator with network.precision = {list(precision)}: the generator sees "
                         "architectures only, not precisions; use hw.mode=logits for a precision search, or a "
                         "single network.precision with the generator")
    integer("retrain.epochs", settings["retrain"]["epochs"], 1)


def build_context(settings: Mapping[str, Any], out_dir: str | Path, evaluator: Any = None) -> SearchContext:
    """Load data, spaces, evaluator and simulators, and simulate the cost reference.

    Parameters
    ----------
    settings : mapping
        The resolved ``dance-search`` config (``search``, ``hw``, ``evaluator``, ``verify``...).
    out_dir : path-like
        Where results go.
    evaluator : Evaluator, optional
        An already loaded evaluator (else ``settings["evaluator"]`` is loaded).

    Returns
    -------
    SearchContext
    """
    started = time.perf_counter()
    settings = json.loads(json.dumps(settings, default=str))  # a private, plain copy
    check_settings(settings)
    data, space, deploy_space, hw_space, layer_table = build_spaces(settings)
    hw, cost = settings["hw"], settings["search"]["cost"]
    evaluator = evaluator if evaluator is not None else load_evaluator(settings["evaluator"])
    verify = settings["verify"]
    adapter = make_adapter(verifier_config(evaluator, verify))
    adapter.check()  # the evaluator's simulator must run here: the search verifies with it
    simulator = SimulatorCache(adapter=adapter)
    verifiers = build_verifiers(simulator, verify["simulators"])
    # hw.reference: null means "the middle choice of every field", a meaningful value
    reference_index = hw_space.index_of(hw["reference"]) if hw["reference"] else hw_space.middle()
    spec = CostSpec(metric=cost["metric"], limits=dict(cost["limits"] or {}), limit_weight=float(cost["limit_weight"]),
                    feasibility_weight=float(cost["feasibility_weight"]), scale=cost["scale"])
    spec = spec.with_reference(reference_figures(reference_table(deploy_space, settings), deploy_space, hw_space,
                                                 reference_index, simulator))
    context = SearchContext(settings, data, space, deploy_space, hw_space, layer_table, evaluator, simulator, spec,
                            reference_index, Path(out_dir), verifiers=verifiers)
    context.coverage = coverage_report(getattr(evaluator, "dataset_metadata", None), hw_space, layer_table)
    message = describe_coverage(context.coverage)
    if message:
        log.warning(message)
        print(f"warning: {message}", flush=True)
    context.timings["setup_s"] = time.perf_counter() - started
    return context
