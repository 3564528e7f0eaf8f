"""``dance-sim``: simulate a network (or layers) on an accelerator from the command line.

Sources of layers (exactly one)::

    dance-sim --topology T.csv [--config C.cfg]     # SCALE-Sim files, SCALE-Sim semantics
    dance-sim --network FILE.json                   # network JSON (e.g. a co-search result.json)
    dance-sim --model resnet18 [--input-size 224]   # a zoo network
    dance-sim --layer 56,56,64,64,3,3,1,1           # one or more single layers

The accelerator is built field by field: `Accelerator()`'s defaults, replaced by the
fields the network JSON's accelerator gives, replaced by those ``--config`` gives, replaced
by the accelerator flags. With ``--topology`` the default mapping is ``scalesim``
(SCALE-Sim's own numbers: ifmap sizes as given, no padding); everywhere else it is
``search`` (our mapper).

Input files are read strictly: an unknown key (``ArrayHieght``, ``"strides"``) or a key
given twice in ``--config`` or ``--network`` is an error naming it and the closest known
key; ``--lenient`` turns these into warnings. A field a given file leaves to its default
(no ``Dataflow`` line, a layer without ``pad``) is reported on stderr as a
``dance-sim: note:`` line. Bad input ends with one line ``dance-sim: error: ...`` on stderr
and exit status 2 (the project's error policy, `dataset_gen.common.errors`).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import warnings
from typing import Any, Sequence

import pandas as pd

from dataset_gen import __version__
from dataset_gen.common.errors import EXIT_USER_ERROR, UserError, user_error_message
from dataset_gen.keys import InputWarning
from dataset_gen.network_json import load_network
from dataset_gen.networks import NETWORKS, get_network
from dataset_gen.scalesim_io import CFG_KEY_NAMES, load_topology, read_scalesim_config
from dataset_gen.space import (
    ACCELERATOR_FIELDS, LAYER_DEFAULTS, LAYER_FIELDS, LAYER_LIMITS, Accelerator, Layer, SpaceError,
)

__all__ = ["main", "build_parser", "parse_layer_spec", "simulate_network", "format_table", "format_json_lines"]

LAYER_SPEC_HELP = (f"{','.join(LAYER_FIELDS[:4])}[,{','.join(LAYER_DEFAULTS)}] (values in this order; "
                   f"omitted trailing fields take their defaults {','.join(map(str, LAYER_DEFAULTS.values()))}) "
                   "or key=value pairs such as in_h=56,in_w=56,in_c=64,out_c=64,k_h=3,k_w=3,pad=1[,name=conv]")
# (flag, field, type, help): the accelerator flags, one per Accelerator field
_ACCELERATOR_FLAGS: tuple[tuple[str, str, type, str], ...] = (
    ("--pe-rows", "pe_rows", int, "PE array rows"),
    ("--pe-cols", "pe_cols", int, "PE array columns"),
    ("--dataflow", "dataflow", str, "ws, os, is or rs"),
    ("--rf-bytes", "rf_bytes", int, "register file per PE, bytes"),
    ("--ifmap-kb", "ifmap_kb", float, "ifmap buffer, KiB"),
    ("--filter-kb", "filter_kb", float, "filter buffer, KiB"),
    ("--ofmap-kb", "ofmap_kb", float, "ofmap buffer, KiB"),
    ("--dram-bw", "dram_bw", float, "DRAM bandwidth, bytes per cycle"),
    ("--word-bits", "word_bits", int, "word width: 8, 16 or 32"),
    ("--freq-mhz", "freq_mhz", float, "clock, MHz"),
    ("--pe-kind", "pe_kind", str, "fixed (one MAC per PE per cycle at word_bits) or scalable (Bit Fusion-style "
                                  "lanes for narrower layers)"),
)


# Accelerator fields whose default is what every file meant before they existed (a
# fixed-precision PE): a file that leaves them out gets no note. (Layers without a precision
# get none either: dataset_gen.network_json does not count them as defaulted.)
_QUIET_DEFAULTS = ("pe_kind",)


class UsageError(UserError):
    """Bad command-line input: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of argparse's usage + message
        raise UsageError(f"{message} (see dance-sim --help)")


def build_parser() -> argparse.ArgumentParser:
    """The ``dance-sim`` argument parser."""
    defaults = Accelerator()
    parser = _Parser(
        prog="dance-sim",
        description="Simulate DNN layers on a spatial accelerator (cycle-level; latency, energy, area).",
        epilog="Accelerator precedence: defaults < network JSON < --config < flags. "
               "With --topology the mapping defaults to 'scalesim' (SCALE-Sim's numbers), else 'search'.",
    )
    source = parser.add_argument_group("layers (exactly one source)").add_mutually_exclusive_group(required=True)
    source.add_argument("--topology", metavar="CSV", help="SCALE-Sim topology CSV (ifmap sizes as given, no padding)")
    source.add_argument("--network", metavar="JSON", help="network JSON file (layers and optionally the accelerator)")
    source.add_argument("--model", metavar="NAME", help=f"zoo network: {', '.join(NETWORKS)}")
    source.add_argument("--layer", metavar="SPEC", action="append",
                        help=f"a single layer (repeatable): {LAYER_SPEC_HELP}")
    source.add_argument("--list-models", action="store_true", help="list the zoo networks and exit")
    parser.add_argument("--config", metavar="CFG", help="SCALE-Sim .cfg with the accelerator ([architecture_presets])")
    parser.add_argument("--input-size", type=int, metavar="PIXELS", help="--model input height = width (default 224)")
    parser.add_argument("--num-classes", type=int, metavar="N", help="--model classifier outputs (default 1000)")
    parser.add_argument("--batch", type=int, metavar="N",
                        help="batch for every layer (default: the source's, 1 for --model)")
    parser.add_argument("--w-bits", type=int, metavar="BITS",
                        help="weight precision of every layer: 2, 4, 8, 16 or 32; 0: the word width "
                             "(default: the source's; a source without one runs at the word width)")
    parser.add_argument("--a-bits", type=int, metavar="BITS",
                        help="activation precision of every layer, as --w-bits")
    hardware = parser.add_argument_group("accelerator (override the config or JSON)")
    for flag, field, kind, text in _ACCELERATOR_FLAGS:
        hardware.add_argument(flag, dest=field, type=kind, metavar=field.upper(),
                              help=f"{text} (default {getattr(defaults, field)})")
    parser.add_argument("--mapping", choices=("search", "scalesim"),
                        help="'search': our mapper; 'scalesim': SCALE-Sim's fixed mapping "
                             "(default: scalesim for --topology, search otherwise)")
    parser.add_argument("--objective", choices=("latency", "energy", "edp"), default="latency",
                        help="what the mapper minimises (default latency)")
    parser.add_argument("--engine", choices=("fast", "reference"), default="fast",
                        help="simulator engine; both give identical numbers (default fast)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per layer per line")
    parser.add_argument("--lenient", action="store_true",
                        help="accept unknown or repeated keys in --config and --network files with a "
                             "warning on stderr (default: refuse them, naming the key)")
    parser.add_argument("--version", action="version", version=f"dance-sim {__version__}")
    return parser


def parse_layer_spec(spec: str, name: str = "") -> Layer:
    """Parse a ``--layer`` value into a `Layer`.

    Parameters
    ----------
    spec : str
        Either 4 to 10 comma-separated integers in `LAYER_FIELDS` order, or comma-separated
        ``field=value`` pairs (``name=`` allowed).
    name : str
        Name to use when the spec gives none.

    Returns
    -------
    Layer

    Raises
    ------
    SpaceError
        Naming the spec, the field and the allowed range.
    """
    parts = [part.strip() for part in spec.split(",")]
    where = f"--layer {spec!r}"
    values: dict[str, Any] = {}
    if any("=" in part for part in parts):
        for part in parts:
            key, sep, value = (text.strip() for text in part.partition("="))
            if not sep:
                raise SpaceError(f"{where}: {part!r} is not field=value; expected {LAYER_SPEC_HELP}")
            if key == "name":
                name = value
                continue
            if key not in LAYER_FIELDS:
                raise SpaceError(f"{where}: unknown field {key!r}; expected one of {list(LAYER_FIELDS)} or name")
            values[key] = value
        missing = [field for field in LAYER_FIELDS[:4] if field not in values]
        if missing:
            raise SpaceError(f"{where}: missing field(s) {missing}; expected {LAYER_SPEC_HELP}")
    else:
        if not 4 <= len(parts) <= len(LAYER_FIELDS):
            raise SpaceError(f"{where}: {len(parts)} values; expected {LAYER_SPEC_HELP}")
        values = dict(zip(LAYER_FIELDS, parts))
    numbers = {}
    for field, value in values.items():
        low, high = LAYER_LIMITS[field]
        try:
            numbers[field] = int(value)
        except ValueError:
            raise SpaceError(f"{where}: layer.{field} = {value!r}: expected an integer in [{low}, {high}]") from None
    try:
        return Layer(**numbers, name=name)
    except SpaceError as error:
        raise SpaceError(f"{where}: {error}") from None


def _with_batch(layers: Sequence[Layer], batch: int | None, w_bits: int | None = None,
                a_bits: int | None = None) -> list[Layer]:
    """The layers with the flags' batch and precision (those given)."""
    given = {field: value for field, value in (("batch", batch), ("w_bits", w_bits), ("a_bits", a_bits))
             if value is not None}
    if not given:
        return list(layers)
    return [Layer(**{**layer.to_dict(), **given}, name=layer.name) for layer in layers]


def _defaulted_note(source: str, given: Sequence[str], fields: Sequence[str], values: dict[str, Any],
                    key_names: dict[str, str] | None = None) -> str | None:
    """``SOURCE gives no K1, K2: using f1 = v1, f2 = v2 (defaults)`` for the fields it left out."""
    missing = [field for field in fields if field not in given and field not in _QUIET_DEFAULTS]
    if not missing:
        return None
    keys = ", ".join((key_names or {}).get(field, field) for field in missing)
    return (f"{source} gives no {keys}: using {', '.join(f'{field} = {values[field]}' for field in missing)} "
            "(dance-sim's defaults)")


def _layers_and_accelerator(args: argparse.Namespace) -> tuple[list[Layer], Accelerator, str, list[str]]:
    """Read the chosen source; returns its layers, the accelerator, the default mapping and
    notes on the fields that the given files left to their defaults."""
    if args.model is None and (args.input_size is not None or args.num_classes is not None):
        raise UsageError("--input-size and --num-classes apply only with --model")
    defaults = Accelerator().to_dict()
    given: dict[str, Any] = {}  # accelerator fields given by the JSON, then the cfg, then the flags
    notes: list[str] = []
    default_mapping = "search"
    if args.topology is not None:
        layers, default_mapping = load_topology(args.topology), "scalesim"
    elif args.network is not None:
        design = load_network(args.network, lenient=args.lenient)
        layers = list(design.layers)
        if design.layers_defaulted:
            count = len(layers)
            notes.append(f"{args.network}: layers leave out " + ", ".join(
                f"{field} ({omitted} of {count})" for field, omitted in design.layers_defaulted.items())
                + ": using " + ", ".join(f"{field} = {LAYER_DEFAULTS[field]}" for field in design.layers_defaulted))
        if design.accelerator is not None:
            given.update({field: getattr(design.accelerator, field) for field in design.accelerator_given})
    elif args.model is not None:
        layers = get_network(args.model, input_size=224 if args.input_size is None else args.input_size,
                             batch=1 if args.batch is None else args.batch,
                             num_classes=1000 if args.num_classes is None else args.num_classes)
    else:
        layers = [parse_layer_spec(spec, name=f"layer{index}" if len(args.layer) > 1 else "layer")
                  for index, spec in enumerate(args.layer)]
    flags = {field: getattr(args, field) for field in ACCELERATOR_FIELDS if getattr(args, field) is not None}
    if args.config is not None:
        # SCALE-Sim's Bandwidth counts words: convert it with the word width in force
        from_config = read_scalesim_config(args.config, word_bits=args.word_bits, lenient=args.lenient,
                                           default_word_bits=given.get("word_bits"))
        given.update(from_config)
        notes.append(_defaulted_note(f"{args.config}, [architecture_presets]", [*given, *flags],
                                     ACCELERATOR_FIELDS, defaults, CFG_KEY_NAMES))
    elif args.network is not None and design.accelerator is not None:
        notes.append(_defaulted_note(f"{args.network}: accelerator", [*given, *flags], ACCELERATOR_FIELDS,
                                     defaults))
    accelerator = Accelerator(**{**defaults, **given, **flags})
    return _with_batch(layers, args.batch, args.w_bits, args.a_bits), accelerator, default_mapping, [note for note in notes if note]


def simulate_network(layers: Sequence[Layer], accelerator: Accelerator, mapping: str = "search",
                     objective: str = "latency", engine: str = "fast") -> pd.DataFrame:
    """Simulate every layer of a network on one accelerator.

    Parameters
    ----------
    layers : sequence of Layer
        The network.
    accelerator : Accelerator
        The hardware.
    mapping : {"search", "scalesim"}
        Our mapper, or SCALE-Sim's fixed mapping.
    objective : {"latency", "energy", "edp"}
        What the mapper minimises.
    engine : {"fast", "reference"}
        Simulator engine (identical results).

    Returns
    -------
    pandas.DataFrame
        One row per layer: ``layer`` (its name), the `LAYER_FIELDS`, the
        `ACCELERATOR_FIELDS`, then the simulator's `RESULT_FIELDS` (docs/simulator.md).
    """
    from dataset_gen.simulator import simulate_batch

    pairs = pd.DataFrame([{**layer.to_dict(), **accelerator.to_dict()} for layer in layers])
    results = simulate_batch(pairs, mapping=mapping, objective=objective, engine=engine)
    names = pd.DataFrame({"layer": [layer.name or f"layer{index}" for index, layer in enumerate(layers)]})
    return pd.concat([names, pairs, results], axis=1)


def _plain(value: Any) -> Any:
    """A JSON-safe Python value: numpy scalars unwrapped, NaN as null."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def format_json_lines(results: pd.DataFrame) -> str:
    """One JSON object per layer per line: the layer, the accelerator and the results.

    Infeasible layers have ``feasible: false``, counts -1 and ``null`` for NaN figures.
    """
    lines = []
    for record in results.to_dict(orient="records"):
        lines.append(json.dumps({key: _plain(value) for key, value in record.items()}))
    return "\n".join(lines)


def _bits(row: Any, word_bits: int) -> str:
    """``"8/8"``: the layer's weight / activation bits (0 shown as the word width)."""
    return f"{int(row.w_bits) or word_bits}/{int(row.a_bits) or word_bits}"


def _shape(row: Any) -> tuple[str, str, str]:
    out_h = (row.in_h + 2 * row.pad - row.k_h) // row.stride + 1
    out_w = (row.in_w + 2 * row.pad - row.k_w) // row.stride + 1
    kernel = f"{row.k_h}x{row.k_w}/{row.stride}" + (f" p{row.pad}" if row.pad else "")
    if row.groups > 1:
        kernel += f" g{row.groups}"
    batch = f"{row.batch}x" if row.batch > 1 else ""
    return (f"{batch}{row.in_h}x{row.in_w}x{row.in_c}", kernel, f"{batch}{out_h}x{out_w}x{row.out_c}")


def _macs(count: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if count >= scale:
            return f"{count / scale:.2f}{suffix}"
    return f"{int(count)}"


def format_table(results: pd.DataFrame, accelerator: Accelerator, mapping: str, objective: str) -> str:
    """A readable, aligned table: one row per layer, a network total and the accelerator.

    Parameters
    ----------
    results : pandas.DataFrame
        From `simulate_network`.
    accelerator : Accelerator
        The simulated hardware (for the summary lines).
    mapping, objective : str
        As simulated (for the summary lines).

    Returns
    -------
    str
    """
    from dataset_gen.simulator import SIMULATOR_VERSION

    header = ("layer", "input", "kernel", "output", "bits w/a", "MACs", "total_cycles", "compute_cycles",
              "stall_cycles", "latency_us", "energy_uJ", "util_%", "mapping (order rows x cols/c/k)")
    rows = []
    for row in results.itertuples(index=False):
        shape = (*_shape(row), _bits(row, accelerator.word_bits))
        if not row.feasible:
            layer_macs = Layer(**{field: getattr(row, field) for field in LAYER_FIELDS}).macs
            rows.append((row.layer, *shape, _macs(layer_macs), "infeasible",
                         "-", "-", "-", "-", "-", "no mapping fits the buffers / register file"))
            continue
        mapping_text = ("scalesim" if row.map_kind == "scalesim"
                        else f"{row.map_order} {row.map_tile_p}x{row.map_tile_q}/{row.map_tile_c}/{row.map_tile_k}")
        rows.append((row.layer, *shape, _macs(row.macs), str(row.total_cycles), str(row.compute_cycles),
                     str(row.stall_cycles), f"{row.latency_s * 1e6:.2f}", f"{row.energy_pj / 1e6:.3f}",
                     f"{row.utilization * 100:.1f}", mapping_text))
    feasible = results[results["feasible"]]
    count = len(results)
    label = f"TOTAL ({count} layers)" if len(feasible) == count else f"TOTAL ({len(feasible)} of {count} feasible)"
    total_cycles = int(feasible["total_cycles"].sum())
    macs = int(feasible["macs"].sum())
    utilization = f"{macs / (total_cycles * accelerator.num_pes) * 100:.1f}" if total_cycles else "-"
    total = (label, "", "", "", "", _macs(macs), str(total_cycles), str(int(feasible["compute_cycles"].sum())),
             str(int(feasible["stall_cycles"].sum())), f"{feasible['latency_s'].sum() * 1e6:.2f}",
             f"{feasible['energy_pj'].sum() / 1e6:.3f}", utilization, "")
    left = {0, 1, 2, 3, 4, 12}  # text columns left-aligned, numbers right-aligned
    widths = [max(len(str(line[column])) for line in [header, total, *rows]) for column in range(len(header))]

    def render(line):
        cells = [str(cell).ljust(width) if column in left else str(cell).rjust(width)
                 for column, (cell, width) in enumerate(zip(line, widths))]
        return "  ".join(cells).rstrip()

    rule = "-" * len(render(header))
    energy = {part: feasible[f"energy_{part}_pj"].sum() for part in ("mac", "rf", "array", "sram", "dram", "leak")}
    energy_total = sum(energy.values())
    split = ", ".join(f"{part.upper()} {value / energy_total * 100:.1f}%" for part, value in energy.items()) \
        if energy_total > 0 else "-"
    area = results["area_mm2"].iloc[0] if len(results) else float("nan")
    lines = [render(header), rule, *(render(row) for row in rows), rule, render(total), "",
             f"accelerator: {accelerator.pe_rows}x{accelerator.pe_cols} PEs, dataflow {accelerator.dataflow}, "
             f"RF {accelerator.rf_bytes} B/PE, SRAM ifmap/filter/ofmap "
             f"{accelerator.ifmap_kb:g}/{accelerator.filter_kb:g}/{accelerator.ofmap_kb:g} KiB, "
             f"DRAM {accelerator.dram_bw:g} B/cycle, {accelerator.word_bits}-bit words, "
             f"{'precision-scalable' if accelerator.pe_kind == 'scalable' else 'fixed-precision'} MACs, "
             f"{accelerator.freq_mhz:g} MHz; area {area:.3f} mm2",
             f"energy split: {split}",
             f"mapping: {mapping}, objective: {objective}, simulator {SIMULATOR_VERSION}"]
    if len(feasible) < count:
        lines.append(f"warning: {count - len(feasible)} layer(s) have no feasible mapping on this "
                     "accelerator; the total covers the others")
    return "\n".join(lines)


def _join_negative_values(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """Glue ``--layer -5,8,8,8`` into ``--layer=-5,8,8,8``.

    argparse takes a value starting with ``-`` for an option unless it is a plain negative
    number, so a negative size in a layer spec would otherwise be reported as a missing
    value instead of as the out-of-range field it is.
    """
    takes_value = {option for action in parser._actions if action.nargs is None and action.option_strings
                   and not isinstance(action, argparse._StoreConstAction) for option in action.option_strings}
    joined: list[str] = []
    tokens = list(argv)
    index = 0
    while index < len(tokens):
        token = tokens[index]
        following = tokens[index + 1] if index + 1 < len(tokens) else ""
        if token in takes_value and re.match(r"-\d", following):
            joined.append(f"{token}={following}")
            index += 2
        else:
            joined.append(token)
            index += 1
    return joined


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``dance-sim``; returns the exit status (0 ok, 2 bad input).

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; ``sys.argv[1:]`` when omitted.
    """
    try:
        parser = build_parser()
        args = parser.parse_args(_join_negative_values(parser, sys.argv[1:] if argv is None else argv))
        if args.list_models:
            print("\n".join(NETWORKS))
            return 0
        with warnings.catch_warnings(record=True) as lenient_warnings:
            warnings.simplefilter("always", InputWarning)
            layers, accelerator, default_mapping, notes = _layers_and_accelerator(args)
        for warning in lenient_warnings:
            if issubclass(warning.category, InputWarning):
                print(f"dance-sim: warning: {warning.message}", file=sys.stderr)
            else:
                warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
        for note in notes:
            print(f"dance-sim: note: {note}", file=sys.stderr)
        mapping = args.mapping or default_mapping
        results = simulate_network(layers, accelerator, mapping=mapping, objective=args.objective,
                                   engine=args.engine)
    except SystemExit as exit_:  # --help / --version print and stop
        return int(exit_.code or 0)
    except Exception as error:  # noqa: BLE001 - sorted into user errors and bugs right here
        message = user_error_message(error)
        if message is None:
            raise  # a bug: keep the traceback
        print(f"dance-sim: error: {' '.join(message.split())}", file=sys.stderr)  # always one line
        return EXIT_USER_ERROR
    print(format_json_lines(results) if args.json else format_table(results, accelerator, mapping, args.objective))
    return 0


if __name__ == "__main__":
    sys.exit(main())
