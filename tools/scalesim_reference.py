"""Run SCALE-Sim v3 over reference layers and write the validation fixture.

Regenerates ``tests/fixtures/scalesim_reference.csv``: one row per (layer, PE array,
dataflow) with SCALE-Sim's compute-report cycles and detailed-access-report SRAM counts, and
the wall and CPU time SCALE-Sim took for that layer on this machine. The simulator's
``scalesim`` mapping and ``dataset_gen.simulator.systolic.systolic_fold`` are tested against
it.

SCALE-Sim is not a dependency of the product (it needs numpy < 2): it lives in its own
virtual environment, ``tools/.scalesim-venv`` (see ``tools/README.md``). This script may be
started with any Python 3; if ``scalesim`` cannot be imported it re-runs itself with that
environment's interpreter. Usage::

    python tools/scalesim_reference.py                 # all cases, about 6 CPU-minutes
    python tools/scalesim_reference.py --list          # the cases, with a rough time estimate
    python tools/scalesim_reference.py --only 'fc|stride2' --out /tmp/part.csv

SCALE-Sim runs in its bandwidth-estimation mode (``InterfaceBandwidth = CALC``), in which
its read buffers never stall, with buffers large enough to hold the whole layer, so that its
"Total Cycles" is the compute time alone (the fixture's ``stall_cycles`` column records
that it is 0). Its own quirks are documented in ``dataset_gen/simulator/systolic.py``.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_PYTHON = REPO / "tools" / ".scalesim-venv" / "bin" / "python"
DEFAULT_OUT = REPO / "tests" / "fixtures" / "scalesim_reference.csv"
_REEXEC_FLAG = "SCALESIM_REFERENCE_REEXEC"

COLUMNS = (
    "case", "dataflow", "pe_rows", "pe_cols", "ifmap_h", "ifmap_w", "filter_h", "filter_w",
    "channels", "num_filters", "stride", "ofmap_h", "ofmap_w", "total_cycles", "stall_cycles",
    "sram_ifmap_reads", "sram_filter_reads", "sram_ofmap_writes", "scalesim_seconds",
    "scalesim_cpu_seconds", "scalesim_version",
)

DATAFLOWS = ("ws", "os", "is")
ALL_ARRAYS = ((8, 8), (16, 16), (32, 32), (128, 128), (12, 20), (1, 16), (16, 1), (7, 33))
# Real layers fold thousands of times on the smallest arrays (SCALE-Sim then takes from tens of
# seconds to minutes per layer), so they run on these; the odd shapes cover every array.
WIDE_ARRAYS = ((16, 16), (32, 32), (128, 128), (12, 20), (7, 33))

# (case, ifmap_h, ifmap_w, filter_h, filter_w, channels, num_filters, stride, arrays).
# A "_s" suffix marks a real layer scaled down (spatial size or channels, as noted) so that
# the whole table regenerates in minutes: SCALE-Sim steps one Python iteration per cycle.
CASES: tuple[tuple, ...] = (
    # ResNet-18 (He et al. 2016), inputs as SCALE-Sim takes them: already padded.
    ("resnet18_conv1_s", 48, 48, 7, 7, 3, 64, 2, WIDE_ARRAYS),      # 230x230 -> 48x48 input
    ("resnet18_l1_conv_s", 12, 12, 3, 3, 64, 64, 1, WIDE_ARRAYS),   # 58x58 -> 12x12 input
    ("resnet18_l2_down_s", 14, 14, 1, 1, 64, 128, 2, WIDE_ARRAYS),  # 28x28 -> 14x14 input
    ("resnet18_l4_conv_s", 9, 9, 3, 3, 128, 128, 1, WIDE_ARRAYS),   # 512 -> 128 channels
    ("resnet18_fc", 1, 1, 1, 1, 512, 1000, 1, ((32, 32), (128, 128), (12, 20))),
    # MobileNet-v2 (Sandler et al. 2018) pointwise layers, full size.
    ("mobilenetv2_pw_expand", 14, 14, 1, 1, 64, 384, 1, WIDE_ARRAYS),
    ("mobilenetv2_pw_project", 7, 7, 1, 1, 960, 160, 1, WIDE_ARRAYS),
    # VGG-16 (Simonyan & Zisserman 2015).
    ("vgg16_conv1_2_s", 14, 14, 3, 3, 64, 64, 1, WIDE_ARRAYS),      # 226x226 -> 14x14 input
    ("vgg16_conv5_1_s", 12, 12, 3, 3, 64, 128, 1, WIDE_ARRAYS),     # 16x16x512 -> 12x12x64 in,
                                                                     # 512 -> 128 filters
    # AlexNet (Krizhevsky et al. 2012) conv1, stride 4: scaled, and full size on one array.
    ("alexnet_conv1_s", 63, 63, 11, 11, 3, 96, 4, WIDE_ARRAYS),     # 227x227 -> 63x63 input
    ("alexnet_conv1", 227, 227, 11, 11, 3, 96, 4, ((128, 128),)),
    # Odd shapes.
    ("prime_sizes", 11, 7, 3, 5, 5, 13, 1, ALL_ARRAYS),
    ("input_1x1", 1, 1, 1, 1, 37, 19, 1, ALL_ARRAYS),
    ("kernel_eq_input", 7, 7, 7, 7, 5, 11, 1, ALL_ARRAYS),
    ("kernel_eq_input_rect", 5, 9, 5, 9, 3, 4, 1, ALL_ARRAYS),
    ("stride2_exact", 15, 15, 3, 3, 6, 10, 2, ALL_ARRAYS),
    ("stride2_partial", 16, 16, 3, 3, 6, 10, 2, ALL_ARRAYS),        # (16-3)/2 not whole
    ("stride3_exact", 17, 17, 5, 5, 4, 9, 3, ALL_ARRAYS),
    ("stride3_partial", 20, 19, 4, 4, 3, 8, 3, ALL_ARRAYS),         # (20-4)/3, (19-4)/3
    ("single_channel", 12, 12, 3, 3, 1, 8, 1, ALL_ARRAYS),
    ("single_filter", 9, 9, 3, 3, 16, 1, 1, ALL_ARRAYS),
    ("single_mac", 1, 1, 1, 1, 1, 1, 1, ALL_ARRAYS),
    ("row_input_1d", 1, 31, 1, 3, 2, 5, 1, ALL_ARRAYS),
    ("wide_kernel_1x7", 8, 23, 1, 7, 3, 6, 2, ALL_ARRAYS),
)

_CONFIG = """\
[general]
run_name = reference

[architecture_presets]
ArrayHeight = {rows}
ArrayWidth = {cols}
IfmapSramSzkB = {ifmap_kb}
FilterSramSzkB = {filter_kb}
OfmapSramSzkB = {ofmap_kb}
IfmapOffset = 0
FilterOffset = 10000000
OfmapOffset = 20000000
Bandwidth = 10
Dataflow = {dataflow}
ReadRequestBuffer = 32
WriteRequestBuffer = 32

[layout]
IfmapCustomLayout = False
IfmapSRAMBankBandwidth = 10
IfmapSRAMBankNum = 10
IfmapSRAMBankPort = 2
FilterCustomLayout = False
FilterSRAMBankBandwidth = 10
FilterSRAMBankNum = 10
FilterSRAMBankPort = 2

[sparsity]
SparsitySupport = false
SparseRep = ellpack_block
OptimizedMapping = false
BlockSize = 8
RandomNumberGeneratorSeed = 40

[run_presets]
InterfaceBandwidth = CALC
UseRamulatorTrace = False
"""

_TOPOLOGY_HEADER = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, "
                    "Channels, Num Filter, Strides,\n")


def expand_cases(pattern: str = "") -> list[dict]:
    """One dict per (layer, array, dataflow) run, in fixture order, filtered by ``pattern``."""
    runs = []
    for case, in_h, in_w, k_h, k_w, channels, filters, stride, arrays in CASES:
        if pattern and not re.search(pattern, case):
            continue
        for rows, cols in arrays:
            for dataflow in DATAFLOWS:
                runs.append(dict(case=case, dataflow=dataflow, pe_rows=rows, pe_cols=cols,
                                 ifmap_h=in_h, ifmap_w=in_w, filter_h=k_h, filter_w=k_w,
                                 channels=channels, num_filters=filters, stride=stride))
    return runs


def _gemm(run: dict) -> tuple[int, int, int]:
    out_h = -(-(run["ifmap_h"] - run["filter_h"]) // run["stride"]) + 1
    out_w = -(-(run["ifmap_w"] - run["filter_w"]) // run["stride"]) + 1
    return out_h * out_w, run["filter_h"] * run["filter_w"] * run["channels"], run["num_filters"]


def estimate_seconds(run: dict) -> float:
    """Rough SCALE-Sim CPU time: it steps its demand matrices one row (cycle) at a time,
    handling ``rows + 2*cols`` requests per row in Python, after building the ``m x w``
    ifmap operand matrix.

    Least-squares fit to the fixture's ``scalesim_cpu_seconds`` on this machine: about 68 us
    per row, 0.4 us per request and 1.4 us per ifmap-matrix entry.
    """
    m, w, f = _gemm(run)
    rows, cols = run["pe_rows"], run["pe_cols"]
    sr, sc, t = {"ws": (w, f, m), "os": (m, f, w), "is": (w, m, f)}[run["dataflow"]]
    extra = 0 if run["dataflow"] == "os" else rows
    demand_rows = math.ceil(sr / rows) * math.ceil(sc / cols) * (rows + cols + t - 2 + extra)
    return demand_rows * (68e-6 + 0.4e-6 * (rows + 2 * cols)) + 1.4e-6 * m * w


def _buffer_kb(words: int) -> int:
    # SCALE-Sim stores one byte per word; a buffer that holds the whole operand never has
    # to drain mid-layer, so the ofmap write buffer cannot stall.
    return max(64, 2 * math.ceil(words / 1024) + 1)


def run_scalesim(run: dict, workdir: str) -> dict:
    """Run SCALE-Sim on one layer and return the fixture row."""
    from scalesim.scale_sim import scalesim  # the SCALE-Sim venv's package

    m, w, f = _gemm(run)
    ifmap_words = run["ifmap_h"] * run["ifmap_w"] * run["channels"]
    config = _CONFIG.format(rows=run["pe_rows"], cols=run["pe_cols"], dataflow=run["dataflow"],
                            ifmap_kb=_buffer_kb(max(ifmap_words, m * w)),
                            filter_kb=_buffer_kb(w * f), ofmap_kb=_buffer_kb(m * f))
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "layer.cfg").write_text(config)
        # The layer is named "L": SCALE-Sim treats any name containing "DP" as depthwise.
        (tmp_path / "layer_topology.csv").write_text(
            _TOPOLOGY_HEADER + "L, {ifmap_h}, {ifmap_w}, {filter_h}, {filter_w}, {channels}, "
            "{num_filters}, {stride},\n".format(**run))
        # SCALE-Sim v3 insists on a layout file even when custom layouts are off.
        (tmp_path / "layer_layout.csv").write_text("Layer name,\nL,\n")
        sim = scalesim(save_disk_space=True, verbose=False, config=str(tmp_path / "layer.cfg"),
                       topology=str(tmp_path / "layer_topology.csv"),
                       layout=str(tmp_path / "layer_layout.csv"))
        start, start_cpu = time.perf_counter(), time.process_time()
        sim.run_scale(top_path=str(tmp_path / "out"))
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
        ofmap_h, ofmap_w = sim.topo.get_layer_ofmap_dims(0)
        reports = tmp_path / "out" / "reference"
        compute = _read_report(reports / "COMPUTE_REPORT.csv")
        access = _read_report(reports / "DETAILED_ACCESS_REPORT.csv")
    return dict(run, ofmap_h=int(ofmap_h), ofmap_w=int(ofmap_w),
                total_cycles=int(compute["Total Cycles"]),
                stall_cycles=int(compute["Stall Cycles"]),
                sram_ifmap_reads=int(access["SRAM IFMAP Reads"]),
                sram_filter_reads=int(access["SRAM Filter Reads"]),
                sram_ofmap_writes=int(access["SRAM OFMAP Writes"]),
                scalesim_seconds=round(seconds, 4), scalesim_cpu_seconds=round(cpu_seconds, 4),
                scalesim_version=_scalesim_version())


def _read_report(path: Path) -> dict[str, str]:
    with open(path, newline="") as handle:
        header, values = list(csv.reader(handle))[:2]
    return {key.strip(): value.strip() for key, value in zip(header, values) if key.strip()}


def _scalesim_version() -> str:
    from importlib.metadata import version

    return version("scalesim")


def write_csv_atomic(rows: list[dict], out: Path) -> None:
    """Write the fixture under a temporary name, then rename it into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=out.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, out)
    except BaseException:
        os.unlink(tmp)
        raise


def _ensure_scalesim() -> None:
    try:
        import scalesim  # noqa: F401
        import numpy
    except ImportError:
        pass
    else:
        if int(numpy.__version__.split(".")[0]) < 2:
            return
    if os.environ.get(_REEXEC_FLAG) or not VENV_PYTHON.exists():
        sys.exit(f"scalesim_reference: this needs scalesim==3.0.0 with numpy<2; create "
                 f"{VENV_PYTHON.parent.parent} as tools/README.md says")
    os.environ[_REEXEC_FLAG] = "1"
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), __file__, *sys.argv[1:]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"CSV to write (default: {DEFAULT_OUT.relative_to(REPO)})")
    parser.add_argument("--only", default="", metavar="REGEX",
                        help="run only the cases whose name matches REGEX")
    parser.add_argument("--list", action="store_true",
                        help="list the runs with a rough time estimate, run nothing")
    args = parser.parse_args(argv)

    runs = expand_cases(args.only)
    if not runs:
        parser.error(f"--only {args.only!r} matches no case; cases: "
                     + ", ".join(case[0] for case in CASES))
    if args.list:
        total = 0.0
        for run in runs:
            estimate = estimate_seconds(run)
            total += estimate
            print(f"{run['case']:<24} {run['dataflow']} {run['pe_rows']:>3}x{run['pe_cols']:<3}"
                  f" ~{estimate:7.2f} s")
        print(f"{len(runs)} runs, about {total / 60:.1f} CPU-minutes")
        return 0

    _ensure_scalesim()
    workdir = REPO / "tools" / ".scalesim-work"
    workdir.mkdir(parents=True, exist_ok=True)
    rows, start = [], time.perf_counter()
    for index, run in enumerate(runs, 1):
        row = run_scalesim(run, str(workdir))
        rows.append(row)
        print(f"[{index:>3}/{len(runs)}] {row['case']:<24} {row['dataflow']} "
              f"{row['pe_rows']:>3}x{row['pe_cols']:<3} cycles {row['total_cycles']:>8} "
              f"stalls {row['stall_cycles']}  {row['scalesim_seconds']:7.3f} s "
              f"(cpu {row['scalesim_cpu_seconds']:.3f} s)", flush=True)
    write_csv_atomic(rows, args.out)
    elapsed = time.perf_counter() - start
    seconds = sorted(row["scalesim_seconds"] for row in rows)
    cpu_seconds = sorted(row["scalesim_cpu_seconds"] for row in rows)
    print(f"Wrote {len(rows)} SCALE-Sim {rows[0]['scalesim_version']} runs to {args.out} in "
          f"{elapsed / 60:.1f} min; SCALE-Sim per layer: median {seconds[len(seconds) // 2]:.3f} s"
          f" wall ({cpu_seconds[len(cpu_seconds) // 2]:.3f} s cpu), max {seconds[-1]:.2f} s wall "
          f"({cpu_seconds[-1]:.2f} s cpu); stall cycles all zero: "
          f"{all(row['stall_cycles'] == 0 for row in rows)}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
