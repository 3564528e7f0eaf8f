"""The ``scalesim`` adapter: the real SCALE-Sim 3.0.0, run pair by pair in its own environment.

SCALE-Sim fails under numpy 2 (this package's), so it lives in ``tools/.scalesim-venv``
(``make scalesim-env``) and runs there as one long-lived subprocess per adapter
(`dataset_gen/adapters/scalesim_worker.py`, JSON lines): importing it costs more than a
small layer, so no pair pays a fresh interpreter. A worker that dies or overruns
``timeout_s`` is killed and a new one serves the next pair.

How a pair becomes SCALE-Sim's input (docs/adapters.md, ``## scalesim``):

- config: ``ArrayHeight/Width = pe_rows/pe_cols``; ``Dataflow = ws | os | is``; buffer
  sizes in SCALE-Sim's 1-byte words, i.e. the accelerator's capacity in words
  (``kb * 8192 / word_bits``) over 1024, rounded down (at least 1 kB); ``InterfaceBandwidth
  = USER`` with ``dram_bw`` in words per cycle (rounded down) as the ofmap interface's
  ``Bandwidth`` and as the ifmap and filter interfaces' (which SCALE-Sim 3.0.0 takes from
  ``[layout] IfmapSRAMBankBandwidth`` / ``FilterSRAMBankBandwidth`` in USER mode), so its
  read buffers stall on our DRAM bandwidth; one bank per buffer, no custom layout;
- topology: SCALE-Sim has no padding, so the padded ifmap (``in + 2*pad``) as
  `dataset_gen.scalesim_io.save_topology` writes it; no groups, so one group's convolution
  (``in_c/groups`` channels, ``out_c/groups`` filters) is simulated and every cycle and
  count is multiplied by ``groups * batch`` (groups and images one after the other, as in
  our simulator); the layer is named ``L`` (a ``DP`` in the name would turn on SCALE-Sim's
  own depthwise mode).

Refused without running SCALE-Sim (an error row, not an infeasible one: the pair is not
known to be unmappable): the ``rs`` dataflow, which SCALE-Sim does not have; less than one
word per cycle of DRAM bandwidth; and a pair whose SCALE-Sim matrices would exceed
``max_matrix_entries`` (SCALE-Sim holds its operand and per-cycle demand matrices in
memory).

Result columns from SCALE-Sim's reports: ``total_cycles`` = COMPUTE_REPORT "Total Cycles
(incl. prefetch)" (first DRAM read to last DRAM write), ``compute_cycles`` = "Total
Cycles" - "Stall Cycles", ``stall_cycles`` = the difference; SRAM reads and writes and DRAM
reads and writes per operand from DETAILED_ACCESS_REPORT (words). SCALE-Sim never reads
partial sums back, so ``sram_ofmap_reads = dram_ofmap_reads = 0``. From our model, applied
to those counts: ``macs`` (on SCALE-Sim's output grid, which rounds up), ``rf_accesses``
(our dataflow's RF_ACCESSES_PER_MAC), every energy column, ``area_mm2``, ``latency_s`` and
``utilization`` (`dataset_gen.simulator.reference.derived_fields`, the simulator's own
function). The mapping columns describe SCALE-Sim's fixed mapping as our ``scalesim``
mapping does (kind ``scalesim``, order ``pck``, whole-layer tiles). SCALE-Sim has no
mapper: the run's ``mapping`` and ``objective`` settings do not change its results.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
import weakref
from pathlib import Path
from typing import Any, ClassVar, Mapping

from dataset_gen.adapters.base import AdapterError, PairwiseAdapter, as_python, native_precision_refusal
from dataset_gen.simulator import RESULT_DTYPES, energy
from dataset_gen.simulator.dataflows import DATAFLOW_CODES, RF_ACCESSES_PER_MAC
from dataset_gen.simulator.reference import derived_fields

__all__ = ["ScaleSimAdapter", "ScaleSimFailure", "SCALESIM_VERSION", "DEFAULT_PYTHON", "WORKER_SCRIPT",
           "scalesim_inputs", "refusal", "parse_report", "parse_reports", "results_from_reports"]

#: the SCALE-Sim release this adapter drives (the worker's must match)
SCALESIM_VERSION = "3.0.0"
ADAPTER_VERSION = 1
#: the interpreter used when ``python`` is null: ``make scalesim-env`` creates it
DEFAULT_PYTHON = Path(__file__).resolve().parents[2] / "tools" / ".scalesim-venv" / "bin" / "python"
WORKER_SCRIPT = Path(__file__).resolve().with_name("scalesim_worker.py")
#: the dataflows SCALE-Sim 3.0.0 models
SCALESIM_DATAFLOWS: tuple[str, ...] = ("ws", "os", "is")
#: seconds a starting worker may take to import SCALE-Sim before the adapter gives up
START_TIMEOUT_S = 120.0
_REPORT_FILES = ("COMPUTE_REPORT.csv", "BANDWIDTH_REPORT.csv", "DETAILED_ACCESS_REPORT.csv")
_LAYER_NAME = "L"  # never "DP": SCALE-Sim reads that as its depthwise mode

_CONFIG = """\
[general]
run_name = dance

[architecture_presets]
ArrayHeight = {pe_rows}
ArrayWidth = {pe_cols}
IfmapSramSzkB = {ifmap_kb}
FilterSramSzkB = {filter_kb}
OfmapSramSzkB = {ofmap_kb}
IfmapOffset = 0
FilterOffset = 10000000
OfmapOffset = 20000000
Bandwidth = {words_per_cycle}
Dataflow = {dataflow}
ReadRequestBuffer = 32
WriteRequestBuffer = 32

[layout]
IfmapCustomLayout = False
IfmapSRAMBankBandwidth = {words_per_cycle}
IfmapSRAMBankNum = 1
IfmapSRAMBankPort = 2
FilterCustomLayout = False
FilterSRAMBankBandwidth = {words_per_cycle}
FilterSRAMBankNum = 1
FilterSRAMBankPort = 2

[sparsity]
SparsitySupport = false
SparseRep = ellpack_block
OptimizedMapping = false
BlockSize = 8
RandomNumberGeneratorSeed = 40

[run_presets]
InterfaceBandwidth = USER
UseRamulatorTrace = False
"""
_TOPOLOGY = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"
             "{name}, {ifmap_h}, {ifmap_w}, {k_h}, {k_w}, {channels}, {filters}, {stride},\n")


class ScaleSimFailure(RuntimeError):
    """SCALE-Sim failed on one pair (it raised, its worker died, or its reports are unusable)."""


class ScaleSimRaised(ScaleSimFailure):
    """SCALE-Sim raised on a layer and its worker said so: the worker itself is fine."""


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _grid(pair: Mapping[str, Any]) -> dict[str, int]:
    """One group's GEMM on SCALE-Sim's output grid (it rounds the output size up)."""
    ifmap_h, ifmap_w = pair["in_h"] + 2 * pair["pad"], pair["in_w"] + 2 * pair["pad"]
    out_h = _ceil_div(ifmap_h - pair["k_h"], pair["stride"]) + 1
    out_w = _ceil_div(ifmap_w - pair["k_w"], pair["stride"]) + 1
    channels, filters = pair["in_c"] // pair["groups"], pair["out_c"] // pair["groups"]
    return {"ifmap_h": ifmap_h, "ifmap_w": ifmap_w, "out_h": out_h, "out_w": out_w, "channels": channels,
            "filters": filters, "m": out_h * out_w, "w": pair["k_h"] * pair["k_w"] * channels, "f": filters}


def _buffer_kb(kb: float, word_bits: int) -> int:
    # SCALE-Sim's words are 1 byte and its sizes whole kB: give it our capacity in words
    words = math.floor(kb * energy.BITS_PER_KB / word_bits)
    return max(1, words // 1024)


def matrix_entries(pair: Mapping[str, Any]) -> int:
    """About how many entries SCALE-Sim's matrices hold for one group of the pair.

    Its three operand matrices (``m x w``, ``w x f``, ``m x f``) plus its demand matrices:
    one row per cycle of every fold (``Sr``, ``Sc``, ``T`` as in
    `dataset_gen.simulator.systolic`), ``rows + 2*cols`` entries a row.
    """
    g = _grid(pair)
    m, w, f = g["m"], g["w"], g["f"]
    rows, cols = pair["pe_rows"], pair["pe_cols"]
    sr, sc, t = {"ws": (w, f, m), "os": (m, f, w), "is": (w, m, f)}[pair["dataflow"]]
    demand_rows = _ceil_div(sr, rows) * _ceil_div(sc, cols) * (2 * rows + cols + t)
    return m * w + w * f + m * f + demand_rows * (rows + 2 * cols)


def refusal(pair: Mapping[str, Any], max_matrix_entries: int | None = None) -> str:
    """Why SCALE-Sim cannot simulate ``pair`` ("" when it can)."""
    precision = native_precision_refusal(pair, f"SCALE-Sim {SCALESIM_VERSION}")
    if precision:
        return precision
    if pair["dataflow"] not in SCALESIM_DATAFLOWS:
        return (f"SCALE-Sim {SCALESIM_VERSION} has no {pair['dataflow']} dataflow (it models "
                f"{', '.join(SCALESIM_DATAFLOWS)} systolic arrays only)")
    words_per_cycle = pair["dram_bw"] * 8 / pair["word_bits"]
    if words_per_cycle < 1:
        return (f"dram_bw = {pair['dram_bw']} bytes/cycle is {words_per_cycle:g} words per cycle: "
                "SCALE-Sim's Bandwidth is a whole number of words per cycle, at least 1")
    if max_matrix_entries:
        entries = matrix_entries(pair)
        if entries > max_matrix_entries:
            return (f"SCALE-Sim would hold about {entries:.3g} matrix entries for this layer, more than "
                    f"max_matrix_entries = {max_matrix_entries:.3g} (conf/simulator/scalesim.yaml)")
    return ""


def scalesim_inputs(pair: Mapping[str, Any]) -> dict[str, str]:
    """The config, topology and layout file texts SCALE-Sim runs for one group of ``pair``.

    Parameters
    ----------
    pair : mapping
        The layer and accelerator fields (`dataset_gen.adapters.base.PAIR_FIELDS`); the
        dataflow must be one SCALE-Sim has (`refusal` says).

    Returns
    -------
    dict
        ``{"config": TEXT, "topology": TEXT, "layout": TEXT}``.
    """
    g = _grid(pair)
    config = _CONFIG.format(pe_rows=pair["pe_rows"], pe_cols=pair["pe_cols"], dataflow=pair["dataflow"],
                            ifmap_kb=_buffer_kb(pair["ifmap_kb"], pair["word_bits"]),
                            filter_kb=_buffer_kb(pair["filter_kb"], pair["word_bits"]),
                            ofmap_kb=_buffer_kb(pair["ofmap_kb"], pair["word_bits"]),
                            words_per_cycle=max(1, math.floor(pair["dram_bw"] * 8 / pair["word_bits"])))
    topology = _TOPOLOGY.format(name=_LAYER_NAME, ifmap_h=g["ifmap_h"], ifmap_w=g["ifmap_w"], k_h=pair["k_h"],
                                k_w=pair["k_w"], channels=g["channels"], filters=g["filters"], stride=pair["stride"])
    # SCALE-Sim 3.0.0 insists on a layout file even when custom layouts are off
    return {"config": config, "topology": topology, "layout": f"Layer name,\n{_LAYER_NAME},\n"}


def parse_report(text: str, name: str = "report") -> dict[str, float]:
    """One SCALE-Sim report CSV of one layer: column name -> value.

    SCALE-Sim writes a header line and one line per layer, each ending with a comma, with
    spaces after the commas. Exactly one layer (``LayerID`` 0) is expected.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 2:
        raise ScaleSimFailure(f"{name}: expected a header and one layer line, got {len(lines)} line(s)")
    header, values = ([field.strip() for field in line.split(",")] for line in lines)
    while header and header[-1] == "":
        header.pop()
    values = values[:len(header)]
    if len(values) != len(header):
        raise ScaleSimFailure(f"{name}: {len(header)} columns but {len(values)} values")
    try:
        parsed = {key: float(value) for key, value in zip(header, values)}
    except ValueError as error:
        raise ScaleSimFailure(f"{name}: a value is not a number ({error})") from None
    if parsed.get("LayerID") != 0:
        raise ScaleSimFailure(f"{name}: expected LayerID 0, got {parsed.get('LayerID')}")
    return parsed


def parse_reports(reports: Mapping[str, str]) -> dict[str, float]:
    """SCALE-Sim's three report CSVs of one layer (file name -> text), merged by column name."""
    merged: dict[str, float] = {}
    for name in _REPORT_FILES:
        if name not in reports:
            raise ScaleSimFailure(f"SCALE-Sim wrote no {name}")
        merged.update(parse_report(reports[name], name))
    return merged


# SCALE-Sim's report columns -> ours (counts in words)
_COUNT_COLUMNS = {
    "sram_ifmap_reads": "SRAM IFMAP Reads", "sram_filter_reads": "SRAM Filter Reads",
    "sram_ofmap_writes": "SRAM OFMAP Writes", "dram_ifmap_reads": "DRAM IFMAP Reads",
    "dram_filter_reads": "DRAM Filter Reads", "dram_ofmap_writes": "DRAM OFMAP Writes",
}


def results_from_reports(pair: Mapping[str, Any], values: Mapping[str, float]) -> dict[str, Any]:
    """Every result column of ``pair`` from SCALE-Sim's parsed reports of one group.

    Parameters
    ----------
    pair : mapping
        The layer and accelerator fields.
    values : mapping
        `parse_reports` of the run of one group of one image.

    Returns
    -------
    dict
        The result columns (`dataset_gen.simulator.RESULT_DTYPES`), cycles and counts
        multiplied by ``groups * batch``.
    """
    copies = int(pair["groups"]) * int(pair["batch"])
    g = _grid(pair)
    try:
        group_compute = int(values["Total Cycles"]) - int(values["Stall Cycles"])
        # "incl. prefetch" spans the first DRAM read to the last DRAM write: the layer's latency
        group_total = max(int(values["Total Cycles (incl. prefetch)"]), int(values["Total Cycles"]))
        counts = {column: int(values[name]) * copies for column, name in _COUNT_COLUMNS.items()}
    except KeyError as error:
        raise ScaleSimFailure(f"SCALE-Sim's reports have no column {error}") from None
    counts["dram_ofmap_reads"] = 0  # one tile per image and group: no partial sums leave the chip
    total, compute = group_total * copies, group_compute * copies
    macs = g["m"] * g["w"] * g["f"] * copies
    # Our access-counting rule (dataflows.py): a partial sum written on top of an earlier one
    # was read first. SCALE-Sim counts no such reads; its ws and is write every output once
    # per row fold, os once (plus its rows + cols slip per fold, not a real write).
    outputs = g["m"] * g["f"] * copies
    counts["sram_ofmap_reads"] = 0 if pair["dataflow"] == "os" else counts["sram_ofmap_writes"] - outputs
    # SCALE-Sim has no register-file model: each MAC takes both moving operands from a
    # neighbour PE (our rule for a systolic fold without blocking, dataflows.systolic_costs)
    counts["array_hops"] = 2 * macs
    rf_accesses = macs * int(RF_ACCESSES_PER_MAC[DATAFLOW_CODES[pair["dataflow"]]])
    area = float(energy.area_mm2(pair["pe_rows"], pair["pe_cols"], pair["rf_bytes"], pair["ifmap_kb"],
                                 pair["filter_kb"], pair["ofmap_kb"], pair["word_bits"]))
    derived = derived_fields(macs, rf_accesses, counts, total, pair["pe_rows"], pair["pe_cols"], pair["rf_bytes"],
                             pair["ifmap_kb"], pair["filter_kb"], pair["ofmap_kb"], pair["word_bits"],
                             pair["freq_mhz"], area)
    result: dict[str, Any] = {
        "feasible": True, "total_cycles": total, "compute_cycles": compute, "stall_cycles": total - compute,
        "area_mm2": area, "macs": macs, "rf_accesses": rf_accesses, **counts,
        "map_kind": "scalesim", "map_order": "pck", "map_tile_p": g["out_h"], "map_tile_q": g["out_w"],
        "map_tile_c": g["channels"],
        "map_tile_k": g["filters"],
    }
    result.update({name: float(value) for name, value in derived.items()})
    return {name: result[name] for name in RESULT_DTYPES}


class _Worker:
    """One SCALE-Sim worker subprocess and its pipes (see scalesim_worker.py)."""

    def __init__(self, python: Path) -> None:
        # stderr goes to a file: a pipe nobody reads would fill and block SCALE-Sim's prints
        self.log = tempfile.TemporaryFile(mode="a+b")  # noqa: SIM115 - lives as long as the worker
        self.cwd = tempfile.mkdtemp(prefix="dance-scalesim-")
        self.process = subprocess.Popen(
            [str(python), str(WORKER_SCRIPT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
            cwd=self.cwd, text=True, bufsize=1, env={**os.environ, "PYTHONNOUSERSITE": "1"})
        self._stop = weakref.finalize(self, _stop_process, self.process, self.log, self.cwd)
        self.hello: dict[str, Any] = {}
        self.next_id = 0

    def handshake(self, timeout_s: float) -> dict[str, Any]:
        """The worker's first line (``ready``, versions); `ScaleSimFailure` if none comes."""
        import selectors

        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout_s):
                raise ScaleSimFailure(f"the worker did not start within {timeout_s:g} s")
        self.hello = self._read()
        return self.hello

    def _read(self) -> dict[str, Any]:
        line = self.process.stdout.readline()
        if not line:
            status = self.process.wait(timeout=10)
            raise ScaleSimFailure(f"the worker exited with status {status}{self.stderr_tail()}")
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            raise ScaleSimFailure(f"the worker answered {line[:200]!r}, not a JSON line") from None

    def stderr_tail(self, size: int = 400) -> str:
        self.log.seek(0, os.SEEK_END)
        length = self.log.tell()
        self.log.seek(max(0, length - size))
        tail = self.log.read().decode(errors="replace").strip().replace("\n", " | ")
        return f" (its stderr ends: {tail})" if tail else ""

    def run(self, files: Mapping[str, str]) -> dict[str, str]:
        """SCALE-Sim's report texts for one layer's files."""
        self.next_id += 1
        self.log.truncate(0)  # keep only this pair's messages (the child appends)
        try:
            self.process.stdin.write(json.dumps({"id": self.next_id, **files}) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            raise ScaleSimFailure(f"the worker had exited (status {self.process.wait(timeout=10)})"
                                  f"{self.stderr_tail()}") from None
        answer = self._read()
        if answer.get("id") != self.next_id:
            raise ScaleSimFailure(f"the worker answered request {answer.get('id')}, expected {self.next_id}")
        if not answer.get("ok"):
            raise ScaleSimRaised(str(answer.get("error", "unknown error")))
        return answer["reports"]

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        self._stop()


def _stop_process(process: subprocess.Popen, log, cwd: str) -> None:
    """End a worker: end of input first (it exits), a kill if it is busy or stuck."""
    if process.poll() is None:
        try:
            process.stdin.close()
            process.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()
    for stream in (process.stdin, process.stdout):
        try:
            stream.close()
        except OSError:
            pass
    log.close()
    try:
        os.rmdir(cwd)
    except OSError:
        pass


class ScaleSimAdapter(PairwiseAdapter):
    """SCALE-Sim 3.0.0 in its own environment, one worker subprocess per adapter.

    Settings (``conf/simulator/scalesim.yaml``): ``python`` (SCALE-Sim's interpreter; null:
    ``tools/.scalesim-venv/bin/python``), ``timeout_s``, ``retries``,
    ``max_matrix_entries``; and ``mapping`` / ``objective``, which SCALE-Sim ignores (it has
    its one fixed mapping).
    """

    name: ClassVar[str] = "scalesim"
    provides: ClassVar[frozenset[str]] = frozenset(RESULT_DTYPES)

    def __init__(self, settings: Mapping[str, Any] | None = None, cache: Any = None) -> None:
        super().__init__(settings, cache=cache)
        self._worker: _Worker | None = None

    @property
    def version(self) -> str:
        return f"scalesim {SCALESIM_VERSION} / adapter {ADAPTER_VERSION}"

    @property
    def python(self) -> Path:
        """The interpreter that runs SCALE-Sim's worker."""
        given = self.settings.get("python")
        return Path(given).expanduser() if given else DEFAULT_PYTHON

    def check(self) -> None:
        """Start a worker (SCALE-Sim imported, version checked) and stop it again.

        Raises
        ------
        AdapterError
            The environment is missing, its SCALE-Sim does not import or is another release.
        """
        self._start_worker().stop()

    def _start_worker(self) -> _Worker:
        python = self.python
        if not (python.is_file() and os.access(python, os.X_OK)):
            if self.settings.get("python"):
                raise AdapterError(f"simulator scalesim: python = {str(python)!r} (conf/simulator/scalesim.yaml) "
                                   f"is not an executable file: point it at an interpreter with scalesim=="
                                   f"{SCALESIM_VERSION} and numpy<2, or set it to null and run `make scalesim-env`")
            raise AdapterError("simulator scalesim: SCALE-Sim's environment tools/.scalesim-venv is missing: "
                               "run `make scalesim-env`")
        worker = _Worker(python)
        try:
            hello = worker.handshake(START_TIMEOUT_S)
        except ScaleSimFailure as failure:
            worker.stop()
            raise AdapterError(f"simulator scalesim: {python} could not start SCALE-Sim's worker: {failure}") from None
        if not hello.get("ready"):
            worker.stop()
            raise AdapterError(f"simulator scalesim: {python} cannot run SCALE-Sim: {hello.get('error')} "
                               f"(`make scalesim-env` installs scalesim=={SCALESIM_VERSION} with numpy<2)")
        if hello.get("scalesim") != SCALESIM_VERSION:
            worker.stop()
            raise AdapterError(f"simulator scalesim: {python} has SCALE-Sim {hello.get('scalesim')}, this adapter "
                               f"drives {SCALESIM_VERSION} (tools/requirements-scalesim.txt)")
        return worker

    def simulate_pair(self, pair: Mapping[str, Any]) -> Mapping[str, Any]:
        pair = {key: as_python(value) for key, value in pair.items()}
        why = refusal(pair, self.settings.get("max_matrix_entries"))
        if why:
            raise ScaleSimFailure(why)
        if self._worker is None or not self._worker.alive():
            if self._worker is not None:
                self._worker.stop()
            self._worker = self._start_worker()
        try:
            reports = self._worker.run(scalesim_inputs(pair))
        except ScaleSimRaised:
            raise
        except BaseException:
            # a worker that died, spoke out of turn, overran timeout_s or was interrupted is
            # dead or still busy on this pair: the next pair gets a fresh one
            self._worker.stop()
            self._worker = None
            raise
        return results_from_reports(pair, parse_reports(reports))

    def _run_pair(self, pair: Mapping[str, Any]) -> dict[str, Any]:
        # what SCALE-Sim cannot express fails the same way every time: no retries, no worker
        why = refusal({key: as_python(value) for key, value in pair.items()}, self.settings.get("max_matrix_entries"))
        if why:
            return {"feasible": False, "error": f"{self.name}: {why}"}
        return super()._run_pair(pair)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        super().close()

