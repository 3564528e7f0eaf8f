"""The ``zigzag`` adapter: ZigZag (KU Leuven's DSE framework, PyPI ``zigzag-dse==3.9.1``) as a
ground truth: its hardware model, its LOMA temporal mapper and its analytical cost model.

Each pair becomes three ZigZag inputs, built in memory (no YAML files):

- the hardware (`hardware_description`): a ``pe_rows x pe_cols`` MAC array (``D1`` = rows,
  ``D2`` = columns), a per-PE register file of ``rf_bytes`` holding the operands our dataflow
  keeps in the PE, three buffers (``ifmap_kb``, ``filter_kb``, ``ofmap_kb``) broadcasting to
  the whole array, and DRAM with one port of ``dram_bw`` bytes per cycle;
- the workload (`workload_description`): ZigZag's grouped convolution
  ``O[b][g][k][oy][ox] += W[g][k][c][fy][fx] * I[b][g][c][iy][ix]`` with our stride,
  padding, groups and batch (a fully connected layer is a 1x1 convolution on a 1x1 input);
- the mapping (`mapping_description`): our dataflow as a fixed spatial unrolling; the
  temporal mapping is LOMA's search (``mapping: search``) or one fixed loop order
  (``mapping: scalesim``, SCALE-Sim's schedule: one pass per fold, the streamed dimension
  innermost), minimising dance-gen's ``objective``.

docs/adapters.md (``## zigzag``) gives the mapping tables and what differs from our
simulator on purpose. ZigZag is imported only when a pair is simulated (or by `check`), so
this module imports without it.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import math
from typing import Any, ClassVar, Mapping

import numpy as np

from dataset_gen.adapters.base import AdapterError, PairwiseAdapter, native_precision_refusal
from dataset_gen.simulator import energy as ours

__all__ = ["ZigZagAdapter", "ADAPTER_REVISION", "DATAFLOW_UNROLLING", "RF_OPERANDS", "hardware_description",
           "workload_description", "mapping_description", "fixed_temporal_ordering"]

#: bumped whenever a change here changes results (part of `ZigZagAdapter.version`)
ADAPTER_REVISION = 3  # 3: a port per operand and direction on chip; 2: energy_array_pj (0: ZigZag has none)
_PACKAGE = "zigzag-dse"
_INSTALL_HINT = "pip install '.[zigzag]' (zigzag-dse==3.9.1 and six)"

#: ZigZag's operand names for ours: I1 = ifmap (layer operand I), I2 = filter (W), O = ofmap
_MEMORY_OPERAND = {"I": "I1", "W": "I2", "O": "O"}

#: Our dataflows as ZigZag spatial unrollings: for each array dimension (D1 = the
#: ``pe_rows`` rows, D2 = the ``pe_cols`` columns) the layer dimensions unrolled on it, in
#: the order they take the dimension's PEs (a dimension of the layer takes
#: ``min(its size, PEs left)``, the next one the quotient left; ZigZag's "mixed" unrolling).
#: - ws (TPU-like, SCALE-Sim's ws): the filter window ``C x FY x FX`` down the rows, filters
#:   ``K`` across the columns; weights stay in the PEs.
#: - os: output pixels ``OX x OY`` down the rows, filters ``K`` across; partial sums stay.
#: - is: the window ``C x FY x FX`` down the rows, output pixels ``OX x OY`` across; inputs
#:   stay (SCALE-Sim's is; filters stream).
#: - rs (Eyeriss): filter rows ``FY`` down the rows, then as many input channels ``C`` as
#:   whole PE sets fit (our ``v = pe_rows // hs`` sets); output rows ``OY`` across.
DATAFLOW_UNROLLING: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ws": (("C", "FY", "FX"), ("K",)),
    "os": (("OX", "OY"), ("K",)),
    "is": (("C", "FY", "FX"), ("OX", "OY")),
    "rs": (("FY", "C"), ("OY",)),
}

#: The operands each dataflow keeps in the per-PE register file (the stationary operand and
#: the partial sum, as our simulator's RF rule; rs keeps all three, as Eyeriss). The other
#: operands go from their buffer to the MACs directly.
RF_OPERANDS: dict[str, tuple[str, ...]] = {
    "ws": ("W", "O"),
    "os": ("O", "I"),
    "is": ("I", "O"),
    "rs": ("I", "W", "O"),
}

#: The loop ZigZag streams innermost under ``mapping: scalesim`` (SCALE-Sim streams the
#: dimension that is not unrolled: pixels for ws, the window for os, filters for is).
_STREAMED = {"ws": ("OX", "OY", "B"), "os": ("FX", "FY", "C"), "is": ("K",), "rs": ("OX", "FX")}

_HUGE_BITS = 1 << 50  # DRAM: holds any layer
_OBJECTIVE_STAGES = {"latency": "MinimalLatencyStage", "energy": "MinimalEnergyStage", "edp": "MinimalEDPStage"}
_ENERGIES = ("ours", "zigzag")

# ZigZag's own per-access energies (``energies: zigzag``), from the example designs shipped
# with zigzag-dse 3.9.1 (zigzag/inputs/hardware/), per bit so that they scale with word_bits:
# the MAC of every example (0.04 pJ, 8 bit), eyeriss_like.yaml's rf_64B_A (read / write
# 1.0 / 1.5 pJ per 8-bit access), tpu_like.yaml's sram_2MB (416.16 / 378.4 pJ per 2048-bit
# access; the examples have no SRAM of other sizes, so every buffer gets it) and every
# example's dram (700 / 750 pJ per 64-bit access). ZigZag charges per access of a port's
# maximum width, hence these widths.
_ZZ_MAC_PJ_8BIT = 0.04
_ZZ_RF_PJ_PER_BIT = (1.0 / 8, 1.5 / 8)
_ZZ_SRAM_PJ_PER_BIT = (416.16 / 2048, 378.4 / 2048)
_ZZ_DRAM_PJ_PER_BIT = (700.0 / 64, 750.0 / 64)


def _zigzag_version() -> str:
    try:
        return importlib.metadata.version(_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise AdapterError(f"simulator zigzag: the Python package {_PACKAGE} is not installed; "
                           f"{_INSTALL_HINT}") from None


def _unrolling(names: tuple[str, ...], sizes: Mapping[str, int], pes: int) -> list[str]:
    """Greedy mixed unrolling of ``names`` over ``pes`` PEs (``"DIM, factor"`` strings)."""
    entries, left = [], pes
    for name in names:
        factor = min(sizes.get(name, 1), left)
        if factor > 1:
            entries.append(f"{name}, {factor}")
            left //= factor
    return entries or [f"{names[0]}, 1"]


def _port(name: str, kind: str, bandwidth: int, allocation: list[str], bandwidth_min: int | None = None) -> dict:
    return {"name": name, "type": kind, "bandwidth_min": bandwidth_min or bandwidth, "bandwidth_max": bandwidth,
            "allocation": allocation}


def _memory(size_bits: int, operands: list[str], read_pj_per_word: float, write_pj_per_word: float,
            word_bits: int, bandwidth_words: int, served: list[str], double_buffered: bool,
            one_port_bits: int | None = None) -> dict:
    """One ZigZag memory: a read port and a write port ``bandwidth_words`` words wide for each
    operand and direction (accessed a word at a time, so ZigZag's per-access cost is the
    per-word cost times the width), or one read-write port of ``one_port_bits`` (DRAM).

    Separate on-chip ports: ZigZag time-shares a port between the transfers allocated to it,
    each taking at least one cycle per transfer period, so a register file whose operands (or
    whose partial sums' two directions) shared a port stalled every cycle (latency about
    twice the compute on most pairs) where our simulator, which models no on-chip bandwidth
    limit, has none. With a port per stream only DRAM's one port limits ZigZag's latency.
    """
    streams = [(op, direction) for op in operands for direction in (("tl", "th") if op == "O" else ("tl",))]
    fills = [(op, direction) for op in operands for direction in (("fh", "fl") if op == "O" else ("fh",))]
    if one_port_bits is not None:
        allocation = [f"{op}, {direction}" for op, direction in streams + fills]
        ports = [_port("rw_port_1", "read_write", one_port_bits, allocation)]
        width_words = one_port_bits / word_bits
    else:
        width = bandwidth_words * word_bits
        ports = ([_port(f"r_port_{i}", "read", width, [f"{op}, {d}"], word_bits) for i, (op, d) in enumerate(streams, 1)]
                 + [_port(f"w_port_{i}", "write", width, [f"{op}, {d}"], word_bits) for i, (op, d) in enumerate(fills, 1)])
        width_words = bandwidth_words
    return {"size": int(size_bits), "r_cost": float(read_pj_per_word * width_words),
            "w_cost": float(write_pj_per_word * width_words), "area": 0.0, "latency": 1,
            "operands": operands, "ports": ports, "served_dimensions": served,
            "force_double_buffering": double_buffered}


def hardware_description(accelerator: Mapping[str, Any], energies: str = "ours") -> dict[str, Any]:
    """ZigZag's hardware description (its accelerator YAML, as a dict) of our accelerator.

    Parameters
    ----------
    accelerator : mapping
        Our accelerator fields (`dataset_gen.space.ACCELERATOR_FIELDS`).
    energies : {"ours", "zigzag"}
        Per-access energies: our simulator's (`dataset_gen.simulator.energy`), or ZigZag's
        example designs' (see ``_ZZ_*``).

    Returns
    -------
    dict
        Validated by ZigZag's ``AcceleratorValidator`` before use.
    """
    rows, cols = int(accelerator["pe_rows"]), int(accelerator["pe_cols"])
    bits = int(accelerator["word_bits"])
    dataflow = str(accelerator["dataflow"])
    pes = rows * cols
    if energies == "ours":
        mac_pj = float(ours.mac_energy_pj(bits))
        rf = float(ours.rf_energy_per_access_pj(accelerator["rf_bytes"], bits))
        rf_pj = (rf, rf)
        sram_pj = {kb: (float(ours.sram_energy_per_word_pj(accelerator[kb], bits)),) * 2
                   for kb in ("ifmap_kb", "filter_kb", "ofmap_kb")}
        dram = ours.DRAM_PJ_PER_BIT * bits
        dram_pj = (dram, dram)
    else:
        mac_pj = _ZZ_MAC_PJ_8BIT * (bits / 8) ** 2  # a multiplier grows with the square of its width
        rf_pj = tuple(cost * bits for cost in _ZZ_RF_PJ_PER_BIT)
        sram_pj = {kb: tuple(cost * bits for cost in _ZZ_SRAM_PJ_PER_BIT) for kb in ("ifmap_kb", "filter_kb", "ofmap_kb")}
        dram_pj = tuple(cost * bits for cost in _ZZ_DRAM_PJ_PER_BIT)
    rf_operands = [_MEMORY_OPERAND[op] for op in RF_OPERANDS[dataflow]]
    # Buffer ports a word per PE and cycle wide, register-file ports a word per cycle (each
    # operand and direction has its own, `_memory`): our simulator has no on-chip bandwidth
    # limit, only DRAM's.
    memories = {
        "rf": _memory(int(accelerator["rf_bytes"]) * 8, rf_operands, *rf_pj, bits, 1, [], False),
        "ifmap_buffer": _memory(int(accelerator["ifmap_kb"] * ours.BITS_PER_KB), ["I1"], *sram_pj["ifmap_kb"], bits,
                                pes, ["D1", "D2"], True),
        "filter_buffer": _memory(int(accelerator["filter_kb"] * ours.BITS_PER_KB), ["I2"], *sram_pj["filter_kb"],
                                 bits, pes, ["D1", "D2"], True),
        "ofmap_buffer": _memory(int(accelerator["ofmap_kb"] * ours.BITS_PER_KB), ["O"], *sram_pj["ofmap_kb"], bits,
                                pes, ["D1", "D2"], True),
        "dram": _memory(_HUGE_BITS, ["I1", "I2", "O"], *dram_pj, bits, 0, ["D1", "D2"], False,
                        one_port_bits=max(1, round(float(accelerator["dram_bw"]) * 8))),
    }
    return {"name": f"dance_{dataflow}_{rows}x{cols}", "memories": memories,
            "operational_array": {"unit_energy": mac_pj, "unit_area": 0.0, "dimensions": ["D1", "D2"],
                                  "sizes": [rows, cols]}}


def layer_sizes(layer: Mapping[str, Any]) -> dict[str, int]:
    """ZigZag's loop sizes of our layer (``B, G, K, C, OY, OX, FY, FX``)."""
    out_h = (int(layer["in_h"]) + 2 * int(layer["pad"]) - int(layer["k_h"])) // int(layer["stride"]) + 1
    out_w = (int(layer["in_w"]) + 2 * int(layer["pad"]) - int(layer["k_w"])) // int(layer["stride"]) + 1
    groups = int(layer["groups"])
    return {"B": int(layer["batch"]), "G": groups, "K": int(layer["out_c"]) // groups,
            "C": int(layer["in_c"]) // groups, "OY": out_h, "OX": out_w, "FY": int(layer["k_h"]),
            "FX": int(layer["k_w"])}


def operand_bits(layer: Mapping[str, Any], word_bits: int) -> dict[str, int]:
    """ZigZag's operand precisions of our layer: weights ``w_bits``; inputs, partial sums and
    outputs ``a_bits`` (0: the word width), as our simulator stores and moves them."""
    w = int(layer.get("w_bits", 0)) or int(word_bits)
    a = int(layer.get("a_bits", 0)) or int(word_bits)
    return {"I": a, "W": w, "O": a, "O_final": a}


def workload_description(layer: Mapping[str, Any], word_bits: int) -> list[dict[str, Any]]:
    """ZigZag's workload (its workload YAML, as a list of one layer) of our layer.

    Operands at the layer's precision (`operand_bits`; at the word width by default), as in
    our simulator: partial sums at the activations' width.
    """
    sizes = layer_sizes(layer)
    stride, pad = int(layer["stride"]), int(layer["pad"])
    return [{
        "id": 0, "name": "layer", "operator_type": "Conv",
        "equation": "O[b][g][k][oy][ox]+=W[g][k][c][fy][fx]*I[b][g][c][iy][ix]",
        "dimension_relations": [f"ix={stride}*ox+1*fx", f"iy={stride}*oy+1*fy"],
        "loop_dims": list(sizes), "loop_sizes": list(sizes.values()),
        "operand_precision": operand_bits(layer, word_bits),
        "operand_source": {"I": 0, "W": 0},
        "pr_loop_dims": ["IX", "IY"], "pr_loop_sizes": [int(layer["in_w"]), int(layer["in_h"])],
        "padding": [[pad, pad], [pad, pad]],
    }]


def fixed_temporal_ordering(layer: Mapping[str, Any], accelerator: Mapping[str, Any]) -> list[list[Any]]:
    """SCALE-Sim's schedule as a complete ZigZag temporal ordering (innermost first): the
    streamed dimension innermost, then the folds of the unrolled dimensions, groups and
    batch outermost. Each loop runs the dimension's size over its spatial unrolling."""
    sizes = layer_sizes(layer)
    dataflow = str(accelerator["dataflow"])
    unrolled: dict[str, int] = {}
    for names, pes in zip(DATAFLOW_UNROLLING[dataflow], (int(accelerator["pe_rows"]), int(accelerator["pe_cols"]))):
        for entry in _unrolling(names, sizes, pes):
            name, factor = entry.split(", ")
            unrolled[name] = unrolled.get(name, 1) * int(factor)
    order = list(_STREAMED[dataflow]) + [dim for dim in ("OX", "OY", "FX", "FY", "C", "K", "B", "G")
                                         if dim not in _STREAMED[dataflow]]
    ordering = []
    for dim in order:
        loops = math.ceil(sizes[dim] / unrolled.get(dim, 1))
        if loops > 1:
            ordering.append([dim, loops])
    return ordering


def mapping_description(layer: Mapping[str, Any], accelerator: Mapping[str, Any],
                        fixed: bool = False) -> list[dict[str, Any]]:
    """ZigZag's mapping (its mapping YAML, as a list): our dataflow's spatial unrolling, and
    with ``fixed`` SCALE-Sim's temporal ordering (`fixed_temporal_ordering`)."""
    sizes = layer_sizes(layer)
    rows_dims, cols_dims = DATAFLOW_UNROLLING[str(accelerator["dataflow"])]
    entry: dict[str, Any] = {
        "name": "default",
        "spatial_mapping": {"D1": _unrolling(rows_dims, sizes, int(accelerator["pe_rows"])),
                            "D2": _unrolling(cols_dims, sizes, int(accelerator["pe_cols"]))},
        "memory_operand_links": {"O": "O", "W": "I2", "I": "I1"},
    }
    if fixed:
        entry["temporal_ordering"] = fixed_temporal_ordering(layer, accelerator)
    return [entry]


#: seed of the sample of LOMA's loop orderings (`max_orderings`): fixed, so equal pairs give
#: equal results in every run and worker
_SAMPLE_SEED = 0
_SAMPLED_STAGE: list[type] = []


def _sampled_loma_stage() -> type:
    """ZigZag's temporal-mapping stage with one more effort knob, ``max_orderings``.

    LOMA evaluates every permutation of a layer's loop prime factors, and its ``lpf_limit``
    cannot go below the number of temporal loops (ZigZag raises it), so a convolution with
    six temporal loops always costs 6! = 720 cost-model evaluations (~10 ms each here).
    With ``max_orderings = n``, n of LOMA's orderings, drawn uniformly with a fixed seed,
    are evaluated instead; if none of them fits the memories, every ordering is tried, so
    feasibility is LOMA's. ``max_orderings = None`` is LOMA unchanged.
    """
    if _SAMPLED_STAGE:
        return _SAMPLED_STAGE[0]
    from zigzag.opt.loma.engine import LomaEngine, NoValidLoopOrderingFoundException
    from zigzag.opt.loma.memory_allocator import (MemoryAllocator, MemoryHierarchyTooSmallException,
                                                  MemoryTooSmallException)
    from zigzag.stages.mapping.temporal_mapping_generator_stage import TemporalMappingGeneratorStage

    class SampledLomaStage(TemporalMappingGeneratorStage):
        def generate_temporal_mappings(self):
            limit = self.kwargs.get("max_orderings")
            if limit is None or not self.layer.temporal_ordering.is_empty():
                yield from super().generate_temporal_mappings()
                return
            engine = LomaEngine(accelerator=self.accelerator, layer=self.layer, spatial_mapping=self.spatial_mapping,
                                mapping_type=self.mapping_type, **self.kwargs)
            # LomaEngine.run's set-up, then its loop over a sample of the orderings
            engine.temporal_loop_dim_size = engine.get_temporal_loops()
            engine.update_min_lpf_factor(engine.temporal_loop_dim_size)
            engine.get_prime_factors()
            total = engine.nb_permutations
            rng = np.random.default_rng(_SAMPLE_SEED)
            chosen = (set(range(total)) if total <= limit
                      else set(rng.choice(total, size=limit, replace=False).tolist()))
            for attempt in ("sample", "all"):
                yielded = False
                for index, ordering in enumerate(engine.ordering_generator()):
                    if attempt == "sample" and index not in chosen:
                        continue
                    allocator = MemoryAllocator(self.accelerator, self.layer, self.spatial_mapping, ordering,
                                                self.mapping_type)
                    try:
                        mapping = allocator.run()
                    except (MemoryHierarchyTooSmallException, MemoryTooSmallException):
                        continue
                    yielded = True
                    yield mapping
                if yielded:
                    return
                if len(chosen) == total:
                    break  # the sample was every ordering: none fits
            raise NoValidLoopOrderingFoundException(f"no loop ordering of {self.layer} fits the memories")

    _SAMPLED_STAGE.append(SampledLomaStage)
    return SampledLomaStage


@contextlib.contextmanager
def _quiet():
    """Silence ZigZag's loggers (they log every spatial mapping and warn about greedy
    unrollings) for the duration of one pair. Nothing is written to disk: the stages that
    save results (ZigZag's save and visualisation stages) are not part of our pipeline, and
    LOMA's progress bar is off."""
    logger = logging.getLogger("zigzag")
    previous = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(previous)


class ZigZagAdapter(PairwiseAdapter):
    """ZigZag 3.9.1's mapper and cost model on our (layer, accelerator) pairs.

    Settings (``conf/simulator/zigzag.yaml``, plus dance-gen's ``mapping`` and
    ``objective``): ``lpf_limit`` (LOMA's effort: the number of loop prime factors it
    permutes), ``energies`` (``ours`` | ``zigzag``), ``timeout_s``, ``retries``.
    """

    name: ClassVar[str] = "zigzag"
    provides: ClassVar[frozenset[str]] = frozenset({
        "feasible", "total_cycles", "compute_cycles", "stall_cycles", "latency_s", "energy_pj", "energy_mac_pj",
        "energy_rf_pj", "energy_array_pj", "energy_sram_pj", "energy_dram_pj", "energy_leak_pj", "area_mm2",
        "utilization", "macs",
        "rf_accesses", "sram_ifmap_reads", "sram_filter_reads", "sram_ofmap_reads", "sram_ofmap_writes",
        "dram_ifmap_reads", "dram_filter_reads", "dram_ofmap_reads", "dram_ofmap_writes", "map_kind", "map_order",
    })

    def __init__(self, settings: Mapping[str, Any] | None = None, cache: Any = None) -> None:
        super().__init__(settings, cache)
        self.lpf_limit = int(self.settings.get("lpf_limit", 6))
        max_orderings = self.settings.get("max_orderings")
        self.max_orderings = None if max_orderings is None else int(max_orderings)
        if self.max_orderings is not None and self.max_orderings < 1:
            raise AdapterError(f"simulator zigzag: max_orderings = {max_orderings!r}: expected null or an integer >= 1")
        self.energies = str(self.settings.get("energies", "ours"))
        self.mapping = str(self.settings.get("mapping", "search"))
        self.objective = str(self.settings.get("objective", "latency"))
        if self.energies not in _ENERGIES:
            raise AdapterError(f"simulator zigzag: energies = {self.energies!r}: expected one of {list(_ENERGIES)}")
        if self.objective not in _OBJECTIVE_STAGES:
            raise AdapterError(f"simulator zigzag: objective = {self.objective!r}: expected one of "
                               f"{list(_OBJECTIVE_STAGES)}")
        if self.mapping not in ("search", "scalesim"):
            raise AdapterError(f"simulator zigzag: mapping = {self.mapping!r}: expected search or scalesim")
        if not 1 <= self.lpf_limit <= 12:
            raise AdapterError(f"simulator zigzag: lpf_limit = {self.lpf_limit}: expected an integer in [1, 12]")

    @property
    def version(self) -> str:
        return f"{_PACKAGE} {_zigzag_version()} / adapter {ADAPTER_REVISION}"

    def check(self) -> None:
        _zigzag_version()
        try:
            import zigzag.api  # noqa: F401
        except ImportError as error:
            raise AdapterError(f"simulator zigzag: cannot import zigzag ({error}); {_INSTALL_HINT}") from None

    def evaluate(self, pair: Mapping[str, Any]):
        """ZigZag's best cost-model evaluation (a ``CostModelEvaluation``) of one pair, or
        None when no temporal mapping fits the memories."""
        from zigzag.mapping.temporal_mapping import TemporalMappingType
        from zigzag.opt.loma.engine import NoValidLoopOrderingFoundException
        from zigzag.parser.accelerator_factory import AcceleratorFactory
        from zigzag.parser.accelerator_validator import AcceleratorValidator
        from zigzag.parser.mapping_validator import MappingValidator
        from zigzag.parser.workload_factory import WorkloadFactory
        from zigzag.parser.workload_validator import WorkloadValidator
        from zigzag.opt.loma.memory_allocator import MemoryHierarchyTooSmallException, MemoryTooSmallException
        from zigzag.stages.evaluation.cost_model_evaluation import CostModelStage
        from zigzag.stages.main import MainStage
        from zigzag.stages.mapping.spatial_mapping_generation import SpatialMappingGeneratorStage
        from zigzag.stages.results import reduce_stages

        with _quiet():
            validator = AcceleratorValidator(hardware_description(pair, self.energies))
            if not validator.validate():
                raise ValueError(f"ZigZag refused the hardware description: {validator.validator.errors}")
            accelerator = AcceleratorFactory(validator.normalized_data).create()
            workload_validator = WorkloadValidator(workload_description(pair, int(pair["word_bits"])))
            mapping_validator = MappingValidator(mapping_description(pair, pair, fixed=self.mapping == "scalesim"))
            if not (workload_validator.validate() and mapping_validator.validate()):
                raise ValueError("ZigZag refused the workload or mapping description")
            workload = WorkloadFactory(workload_validator.normalized_data, mapping_validator.normalized_data).create()
            layer = next(iter(workload.topological_sort()))
            reduce = getattr(reduce_stages, _OBJECTIVE_STAGES[self.objective])
            stages = [reduce, SpatialMappingGeneratorStage, reduce, _sampled_loma_stage(), CostModelStage]
            try:
                answers = MainStage(stages, accelerator=accelerator, layer=layer, loma_lpf_limit=self.lpf_limit,
                                    max_orderings=self.max_orderings,
                                    loma_show_progress_bar=False, nb_mappings_generated=1,
                                    enable_mix_spatial_mapping_generation=False,
                                    access_same_data_considered_as_no_access=True,
                                    temporal_mapping_type=TemporalMappingType.UNEVEN).run()
            except (NoValidLoopOrderingFoundException, MemoryHierarchyTooSmallException, MemoryTooSmallException):
                return None
        return answers[0][0]

    def simulate_pair(self, pair: Mapping[str, Any]) -> dict[str, Any]:
        if pair.get("pe_kind", "fixed") != "fixed":
            raise ValueError(native_precision_refusal(pair, "this ZigZag adapter"))
        area = float(ours.area_mm2(pair["pe_rows"], pair["pe_cols"], pair["rf_bytes"], pair["ifmap_kb"],
                                   pair["filter_kb"], pair["ofmap_kb"], pair["word_bits"]))
        if max(operand_bits(pair, pair["word_bits"]).values()) > int(pair["word_bits"]):
            return {"feasible": False, "area_mm2": area}  # wider than the MACs: as our simulator
        cme = self.evaluate(pair)
        if cme is None:
            return {"feasible": False, "area_mm2": area}
        return _results(cme, pair, area, self.mapping)


def _loop_order(cme: Any) -> str:
    """The temporal loops, innermost first, as ``"OY56 FX3 K4"`` (the filter operand's view;
    every operand sees the same order, cut into its own memory levels)."""
    from zigzag.datatypes import LayerOperand

    levels = cme.temporal_mapping.mapping_dic_origin[LayerOperand("W")]
    return " ".join(f"{dim}{int(size) if float(size).is_integer() else size}" for level in levels for dim, size in level)


def _results(cme: Any, pair: Mapping[str, Any], area: float, mapping: str) -> dict[str, Any]:
    """Our result columns from ZigZag's cost-model evaluation."""
    from zigzag.datatypes import LayerOperand
    from zigzag.mapping.data_movement import DataDirection

    precision = operand_bits(pair, pair["word_bits"])
    width = {}
    accesses: dict[tuple[str, str], dict[str, int]] = {}  # (operand, level name) -> direction -> words
    energies: dict[str, float] = {"rf": 0.0, "buffer": 0.0, "dram": 0.0}
    for operand in ("I", "W", "O"):
        layer_op = LayerOperand(operand)
        levels = cme.accelerator.memory_hierarchy.get_memory_levels(cme.memory_operand_links.layer_to_mem_op(layer_op))
        for level, counts, energy in zip(levels, cme.memory_word_access[layer_op], cme.mem_energy_breakdown[layer_op]):
            name = level.memory_instance.name
            kind = "rf" if name == "rf" else "dram" if name == "dram" else "buffer"
            energies[kind] += float(energy)
            mem_op = cme.memory_operand_links.layer_to_mem_op(layer_op)
            words = {}
            for direction in DataDirection:
                bandwidth = level.get_max_bandwidth(mem_op, direction) or 0
                words[direction.name] = int(round(counts.get(direction) * bandwidth / precision[operand]))
            accesses[(operand, kind)] = words
            width[(operand, kind)] = level
    macs = int(cme.layer.total_mac_count)
    cycles = int(math.ceil(cme.latency_total2))
    compute = int(math.ceil(cme.ideal_temporal_cycle))
    leak = float(ours.leakage_energy_pj(area, cycles, pair["freq_mhz"]))
    mac_energy = float(cme.mac_energy)
    total = float(ours.total_energy_pj(mac_energy, energies["rf"], energies["buffer"], energies["dram"], leak))

    def get(operand: str, kind: str, direction: str) -> int:
        return accesses.get((operand, kind), {}).get(direction, 0)

    rf_accesses = sum(sum(words.values()) for (operand, kind), words in accesses.items() if kind == "rf")
    return {
        "feasible": True, "total_cycles": cycles, "compute_cycles": compute, "stall_cycles": cycles - compute,
        "latency_s": float(ours.latency_seconds(cycles, pair["freq_mhz"])), "energy_pj": total,
        "energy_mac_pj": mac_energy, "energy_rf_pj": energies["rf"], "energy_array_pj": 0.0,
        "energy_sram_pj": energies["buffer"],
        "energy_dram_pj": energies["dram"], "energy_leak_pj": leak, "area_mm2": area,
        "utilization": macs / (cycles * int(pair["pe_rows"]) * int(pair["pe_cols"])), "macs": macs,
        "rf_accesses": rf_accesses,
        "sram_ifmap_reads": get("I", "buffer", "RD_OUT_TO_LOW"),
        "sram_filter_reads": get("W", "buffer", "RD_OUT_TO_LOW"),
        "sram_ofmap_reads": get("O", "buffer", "RD_OUT_TO_LOW"),
        "sram_ofmap_writes": get("O", "buffer", "WR_IN_BY_LOW"),
        "dram_ifmap_reads": get("I", "dram", "RD_OUT_TO_LOW"),
        "dram_filter_reads": get("W", "dram", "RD_OUT_TO_LOW"),
        "dram_ofmap_reads": get("O", "dram", "RD_OUT_TO_LOW"),
        "dram_ofmap_writes": get("O", "dram", "WR_IN_BY_LOW"),
        "map_kind": f"zigzag-{mapping}", "map_order": _loop_order(cme),
    }
