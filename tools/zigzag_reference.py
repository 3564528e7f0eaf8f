"""Run ZigZag over real-network layer x accelerator pairs and write the memory cross-check fixture.

Regenerates ``tests/fixtures/zigzag_reference.csv``: one row per (layer, accelerator) pair
with ZigZag's figures (cycles, energy and its parts, register-file, SRAM and DRAM access
counts in words, its temporal loop order), obtained through the product's ``zigzag`` adapter
(``dataset_gen/adapters/zigzag.py``, docs/adapters.md) with LOMA unsampled
(``max_orderings: None``, ``lpf_limit: 6``), ``objective: energy`` and our per-access
energies (``energies: ours``). The fixture holds ZigZag's numbers only: the builtin
simulator's are computed live by ``benchmarks/memory_vs_zigzag.py`` and by
``tests/dataset_gen/test_zigzag_reference.py``, so the comparison follows the simulator as it
changes. Usage::

    .venv/bin/python tools/zigzag_reference.py --workers 2     # all 184 pairs, ~5 min on 2 cores
    .venv/bin/python tools/zigzag_reference.py --list          # the pairs and a time estimate
    .venv/bin/python tools/zigzag_reference.py --only 'mobilenet|/os' --out /tmp/part.csv

Two sets of pairs, fixed (the accelerators are drawn once with ``SEED``):

- ``grid``: 12 real-network layers (``LAYERS``: early large convs, 3x3 and 5x5 mid convs, 1x1
  convs including a stride-2 downsample, a depthwise conv, a late small-spatial conv, a fully
  connected layer) x 12 accelerators of the default space (``conf/space/dance.yaml``), 6
  weight-stationary and 6 output-stationary, whose buffer sizes (8..512 KB) and register
  files (4..64 B) are stratified so that small and large ones all occur (`grid_accelerators`);
- ``rf_sweep``: 4 of those layers x 2 mid-size accelerators (one ``ws``, one ``os``) x
  ``rf_bytes`` in 4, 8, 16, 32, 64: how each tool's energy responds to the register file.

Unsampled LOMA took 2.9 CPU-s per pair (median; 0.05 s for the FC layer's few loops, at most
3.8 s), 7.9 CPU-minutes for the 184 pairs: the committed fixture took 5.1 minutes of wall time
with ``--workers 2`` on the shared 2-core development machine (another test job running), well
inside the ~15 minute budget, so ``max_orderings`` stays ``None`` (LOMA as ZigZag runs it; 300
would be the fallback). The ``zigzag_seconds`` / ``zigzag_cpu_seconds`` columns record each
pair's time (``--list`` estimates from them).
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from dataset_gen.common.files import atomic_write_text  # noqa: E402
from dataset_gen.networks import get_network  # noqa: E402
from dataset_gen.space import ACCELERATOR_FIELDS, LAYER_FIELDS  # noqa: E402

DEFAULT_OUT = REPO / "tests" / "fixtures" / "zigzag_reference.csv"

#: the adapter's settings: LOMA unsampled, energy objective, our per-access energies
ZIGZAG_SETTINGS = {"name": "zigzag", "mapping": "search", "objective": "energy", "max_orderings": None,
                   "lpf_limit": 6, "energies": "ours", "timeout_s": 600, "retries": 0}

#: (network, torchvision module name): the grid's layers
LAYERS: tuple[tuple[str, str], ...] = (
    ("resnet18", "conv1"),                     # 7x7 stride 2 on 224x224x3: early large conv
    ("vgg16", "features.2"),                   # 3x3 64 -> 64 on 224x224: the largest early conv
    ("alexnet", "features.0"),                 # 11x11 stride 4 on 224x224x3
    ("alexnet", "features.3"),                 # 5x5 64 -> 192 on 27x27
    ("resnet18", "layer1.0.conv1"),            # 3x3 64 -> 64 on 56x56: mid conv
    ("vgg16", "features.10"),                  # 3x3 128 -> 256 on 56x56
    ("resnet50", "layer1.0.conv1"),            # 1x1 64 -> 64 on 56x56
    ("resnet50", "layer3.1.conv1"),            # 1x1 1024 -> 256 on 14x14
    ("resnet18", "layer2.0.downsample.0"),     # 1x1 stride 2 64 -> 128, 56x56 -> 28x28
    ("mobilenet_v2", "features.3.conv.1.0"),   # depthwise 3x3 on 56x56x144
    ("resnet18", "layer4.1.conv1"),            # 3x3 512 -> 512 on 7x7: late small-spatial conv
    ("alexnet", "classifier.6"),               # fully connected 4096 -> 1000
)

#: the rf_sweep's layers (a subset of LAYERS): 3x3 mid, 1x1, depthwise, late small-spatial
RF_SWEEP_LAYERS: tuple[tuple[str, str], ...] = (
    ("resnet18", "layer1.0.conv1"),
    ("resnet50", "layer1.0.conv1"),
    ("mobilenet_v2", "features.3.conv.1.0"),
    ("resnet18", "layer4.1.conv1"),
)
RF_SWEEP_BYTES: tuple[int, ...] = (4, 8, 16, 32, 64)
#: the precision sweep: the rf_sweep's layers and accelerators (16-byte register files) at these
#: (w_bits, a_bits), fixed-precision MACs: storage and traffic at the operands' widths
PRECISIONS: tuple[tuple[int, int], ...] = ((16, 16), (8, 8), (4, 8), (8, 4), (4, 4))
PRECISION_RF_BYTES = 16

SEED = 2024
ACCELERATORS_PER_DATAFLOW = 6
# conf/space/dance.yaml's accelerator ranges (dram_bw, word_bits and freq_mhz are fixed there)
PE_RANGE = (8, 24)
RF_LEVELS = (4, 8, 16, 32, 64)
KB_LEVELS = (8, 16, 32, 64, 128, 256, 512)
FIXED = {"dram_bw": 16.0, "word_bits": 16, "freq_mhz": 500.0}
# the register file must hold what our simulator needs for ws and os: 2 words per PE
MIN_RF_WORDS = 2

RESULT_COLUMNS = (
    "feasible", "total_cycles", "compute_cycles", "stall_cycles", "energy_pj", "energy_mac_pj", "energy_rf_pj",
    "energy_sram_pj", "energy_dram_pj", "energy_leak_pj", "macs", "rf_accesses", "sram_ifmap_reads",
    "sram_filter_reads", "sram_ofmap_reads", "sram_ofmap_writes", "dram_ifmap_reads", "dram_filter_reads",
    "dram_ofmap_reads", "dram_ofmap_writes", "map_order", "error",
)
# The pair fields the fixture holds: every pair runs on fixed-precision MACs (the adapter models
# no other), so the PE kind is left to its default.
PAIR_FIELDS = tuple(f for f in LAYER_FIELDS + ACCELERATOR_FIELDS if f != "pe_kind")
COLUMNS = (("case", "set", "network", "layer_name", "accelerator_id") + PAIR_FIELDS
           + RESULT_COLUMNS + ("zigzag_seconds", "zigzag_cpu_seconds", "zigzag_version"))
#: --list's estimate for a pair the committed fixture does not hold (CPU seconds, measured median)
DEFAULT_ESTIMATE_S = 2.9


def _layer(network: str, name: str) -> dict:
    for layer in get_network(network):
        if layer.name == name:
            return layer.to_dict()
    raise KeyError(f"{network} has no layer {name!r}")


def grid_accelerators(seed: int = SEED) -> list[dict]:
    """The grid's 12 accelerators: 6 ``ws`` then 6 ``os``, ids ``ws1``..``ws6``, ``os1``..``os6``.

    Per dataflow, each buffer size takes 6 different values of the 7 powers of two 8..512 KB
    (so every buffer is small, 8 or 16 KB, and large, 256 or 512 KB, somewhere), the register
    file every size 4..64 B once plus one more, the array 8..24 x 8..24 uniformly; all
    shuffled with ``seed``. A register file too small for our simulator's 2 words per PE is
    drawn again (none at 16-bit words, where the smallest, 4 B, holds 2).
    """
    rng = np.random.default_rng(seed)
    accelerators = []
    count = ACCELERATORS_PER_DATAFLOW
    for dataflow in ("ws", "os"):
        kbs = {field: rng.permutation(KB_LEVELS)[:count] for field in ("ifmap_kb", "filter_kb", "ofmap_kb")}
        rfs = list(rng.permutation(RF_LEVELS)) + [int(rng.choice(RF_LEVELS))]
        for index in range(count):
            rf = int(rfs[index])
            while rf * 8 // FIXED["word_bits"] < MIN_RF_WORDS:
                rf = int(rng.choice(RF_LEVELS))
            accelerators.append({
                "accelerator_id": f"{dataflow}{index + 1}",
                "pe_rows": int(rng.integers(PE_RANGE[0], PE_RANGE[1] + 1)),
                "pe_cols": int(rng.integers(PE_RANGE[0], PE_RANGE[1] + 1)),
                "dataflow": dataflow, "rf_bytes": rf,
                **{field: float(values[index]) for field, values in kbs.items()}, **FIXED,
            })
    return accelerators


def sweep_accelerators() -> list[dict]:
    """The rf_sweep's two mid-size accelerators (their ``rf_bytes`` is swept)."""
    return [
        {"accelerator_id": "ws_mid", "pe_rows": 16, "pe_cols": 16, "dataflow": "ws", "ifmap_kb": 64.0,
         "filter_kb": 64.0, "ofmap_kb": 32.0, **FIXED},
        {"accelerator_id": "os_mid", "pe_rows": 16, "pe_cols": 16, "dataflow": "os", "ifmap_kb": 64.0,
         "filter_kb": 32.0, "ofmap_kb": 64.0, **FIXED},
    ]


def expand_cases(pattern: str = "") -> list[dict]:
    """Every pair, in fixture order (grid, rf_sweep, precision), filtered by ``pattern`` on the case."""
    cases = []
    for network, name in LAYERS:
        layer = _layer(network, name)
        for accelerator in grid_accelerators():
            cases.append({"case": f"{network}/{name}/{accelerator['accelerator_id']}", "set": "grid",
                          "network": network, "layer_name": name, **layer, **accelerator})
    for network, name in RF_SWEEP_LAYERS:
        layer = _layer(network, name)
        for accelerator in sweep_accelerators():
            for rf in RF_SWEEP_BYTES:
                cases.append({"case": f"{network}/{name}/{accelerator['accelerator_id']}_rf{rf}", "set": "rf_sweep",
                              "network": network, "layer_name": name, **layer, **accelerator, "rf_bytes": rf})
    for network, name in RF_SWEEP_LAYERS:
        layer = _layer(network, name)
        for accelerator in sweep_accelerators():
            for w_bits, a_bits in PRECISIONS:
                cases.append({"case": f"{network}/{name}/{accelerator['accelerator_id']}_w{w_bits}a{a_bits}",
                              "set": "precision", "network": network, "layer_name": name, **layer, **accelerator,
                              "rf_bytes": PRECISION_RF_BYTES, "w_bits": w_bits, "a_bits": a_bits})
    return [case for case in cases if not pattern or re.search(pattern, case["case"])]


def _zigzag_version() -> str:
    from importlib.metadata import version

    return version("zigzag-dse")


_ADAPTER = []


def _init_worker(settings: dict | None = None) -> None:
    from dataset_gen.adapters import make_adapter

    adapter = make_adapter(settings or ZIGZAG_SETTINGS)
    adapter.check()  # imports ZigZag now, so that the first pair's time is ZigZag's alone
    _ADAPTER[:] = [adapter]


def run_case(case: dict) -> dict:
    """ZigZag on one pair through the adapter: the fixture row (with the time it took)."""
    if not _ADAPTER:
        _init_worker()
    pairs = pd.DataFrame([{field: case[field] for field in PAIR_FIELDS}])
    start, start_cpu = time.perf_counter(), time.process_time()
    result = _ADAPTER[0].simulate(pairs).iloc[0]
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
    row = dict(case)
    for column in RESULT_COLUMNS:
        value = result[column]
        row[column] = value.item() if hasattr(value, "item") else value
    row.update(zigzag_seconds=round(seconds, 3), zigzag_cpu_seconds=round(cpu_seconds, 3),
               zigzag_version=_zigzag_version())
    return row


def write_fixture(rows: list[dict], out: Path) -> None:
    """Write the rows as the fixture CSV, atomically (a hidden temporary name, then a rename)."""
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, lineterminator="\n")
    atomic_write_text(out, buffer.getvalue())


def _estimates(cases: list[dict]) -> list[float]:
    known = {}
    if DEFAULT_OUT.exists():
        fixture = pd.read_csv(DEFAULT_OUT)
        known = dict(zip(fixture["case"], fixture["zigzag_cpu_seconds"]))
    return [float(known.get(case["case"], DEFAULT_ESTIMATE_S)) for case in cases]


def _progress(index: int, total: int, row: dict) -> str:
    if row["error"]:
        what = f"ERROR {row['error']}"
    elif not row["feasible"]:
        what = "infeasible"
    else:
        dram = sum(row[f"dram_{name}"] for name in ("ifmap_reads", "filter_reads", "ofmap_reads", "ofmap_writes"))
        what = (f"energy {row['energy_pj'] / 1e6:10.2f} uJ  cycles {row['total_cycles']:>10}  "
                f"DRAM {dram:>10} words")
    return f"[{index:>3}/{total}] {row['case']:<50} {what}  {row['zigzag_seconds']:6.2f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"CSV to write (default: {DEFAULT_OUT.relative_to(REPO)})")
    parser.add_argument("--only", default="", metavar="REGEX", help="run only the cases whose name matches REGEX")
    parser.add_argument("--list", action="store_true", help="list the cases with a time estimate, run nothing")
    parser.add_argument("--workers", type=int, default=1, help="ZigZag processes at once (default 1)")
    parser.add_argument("--lpf-limit", type=int, default=ZIGZAG_SETTINGS["lpf_limit"],
                        help="LOMA's loop-prime-factor limit (the fixture: 6; larger searches finer tilings)")
    parser.add_argument("--max-orderings", type=int, default=None,
                        help="LOMA orderings sampled per pair (the fixture: all); for --lpf-limit above 6")
    args = parser.parse_args(argv)
    settings = {**ZIGZAG_SETTINGS, "lpf_limit": args.lpf_limit, "max_orderings": args.max_orderings}
    if args.workers < 1:
        parser.error("--workers must be >= 1")

    cases = expand_cases(args.only)
    if not cases:
        parser.error(f"--only {args.only!r} matches no case")
    if args.list:
        estimates = _estimates(cases)
        for case, estimate in zip(cases, estimates):
            print(f"{case['case']:<50} {case['set']:<8} {case['dataflow']} {case['pe_rows']:>2}x{case['pe_cols']:<2} "
                  f"rf {case['rf_bytes']:>2} B  buffers {case['ifmap_kb']:g}/{case['filter_kb']:g}/"
                  f"{case['ofmap_kb']:g} KB  ~{estimate:5.2f} s")
        total = sum(estimates)
        print(f"{len(cases)} cases, about {total / 60:.1f} CPU-minutes "
              f"(~{total / 60 / min(args.workers, len(cases)):.1f} min with {args.workers} worker(s))")
        return 0

    rows: list[dict | None] = [None] * len(cases)
    start = time.perf_counter()
    if args.workers == 1:
        _init_worker(settings)
        for index, case in enumerate(cases):
            rows[index] = run_case(case)
            print(_progress(index + 1, len(cases), rows[index]), flush=True)
    else:
        context = multiprocessing.get_context("spawn")
        with context.Pool(args.workers, initializer=_init_worker, initargs=(settings,)) as pool:
            finished = pool.imap_unordered(_indexed_case, list(enumerate(cases)), chunksize=1)
            for done, (index, row) in enumerate(finished, 1):
                rows[index] = row
                print(_progress(done, len(cases), row), flush=True)
    write_fixture(rows, args.out)
    elapsed = time.perf_counter() - start
    frame = pd.DataFrame(rows)
    cpu = frame["zigzag_cpu_seconds"]
    print(f"Wrote {len(frame)} ZigZag {frame['zigzag_version'].iloc[0]} pairs to {args.out} in {elapsed / 60:.1f} min "
          f"wall ({args.workers} worker(s)); ZigZag per pair: median {cpu.median():.2f} s cpu, max {cpu.max():.2f} s; "
          f"feasible {int(frame['feasible'].sum())}, infeasible {int((~frame['feasible'] & (frame['error'] == '')).sum())}, "
          f"errors {int((frame['error'] != '').sum())}.")
    return 0


def _indexed_case(item: tuple[int, dict]) -> tuple[int, dict]:
    index, case = item
    return index, run_case(case)


if __name__ == "__main__":
    sys.exit(main())
