"""Read and write SCALE-Sim's files: topology CSVs (layers) and .cfg files (accelerators).

Topology CSV, one conv layer per row after a header line::

    Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,
    Conv1, 224, 224, 7, 7, 3, 64, 2,

As SCALE-Sim reads it: the IFMAP sizes are the (already padded) input, so every layer gets
``pad = 0``; a trailing comma, spaces or tabs around fields, blank lines and a trailing
``#`` comment are allowed; a ninth field is the width stride (it must equal the height
stride: the layer schema has one stride). A layer whose name contains ``DP`` is SCALE-Sim's
depthwise convolution: each of its ``Channels`` channels is convolved with ``Num Filter``
filters of one channel, i.e. ``groups = in_c = Channels`` and ``out_c = Channels * Num
Filter``.

Config (.cfg), an INI file whose ``[architecture_presets]`` section gives the accelerator:

=================  =====================  ==============================================
key                Accelerator field      note
=================  =====================  ==============================================
ArrayHeight        pe_rows
ArrayWidth         pe_cols
IfmapSramSzkB      ifmap_kb               also SCALE-Sim v1's ``IfmapSramSz``
FilterSramSzkB     filter_kb              also ``FilterSramSz``
OfmapSramSzkB      ofmap_kb               also ``OfmapSramSz``
Dataflow           dataflow               os, ws, is (and our rs)
Bandwidth          dram_bw                SCALE-Sim counts words per cycle: dram_bw =
                                          Bandwidth * word_bits / 8 bytes per cycle; a
                                          list (one per memory bank) takes its minimum,
                                          as SCALE-Sim's ``get_min_dram_bandwidth``
RfBytes            rf_bytes               our extension (SCALE-Sim has no register file)
WordBits           word_bits              our extension
FreqMHz            freq_mhz               our extension
=================  =====================  ==============================================

Keys are case-insensitive. SCALE-Sim's other keys of the section (``IfmapOffset``,
``FilterOffset``, ``OfmapOffset``, ``MemoryBanks``, ``ReadRequestBuffer``,
``WriteRequestBuffer``) and other sections (``[general]``, ``[run_presets]``,
``[sparsity]``...) are accepted and ignored. Any other key of ``[architecture_presets]``
(a misspelling such as ``ArrayHieght``), a key given twice, or both spellings of one
buffer size is an error naming the key, its line and the closest known key;
``lenient=True`` (``dance-sim --lenient``) turns these into warnings
(`dataset_gen.keys.InputWarning`): an unknown key is ignored, the last of repeated keys
wins. A missing key takes `Accelerator`'s default: `read_scalesim_config` returns only
the fields the file gives, so that a caller can say which were defaulted.
"""

from __future__ import annotations

import configparser
import csv
import io
import os
import re
from pathlib import Path
from typing import Iterable, Sequence

from dataset_gen.common.files import atomic_write_text
from dataset_gen.keys import check_keys, complain
from dataset_gen.space import (
    ACCELERATOR_LIMITS, DATAFLOWS, LAYER_LIMITS, WORD_BITS, Accelerator, Layer, SpaceError,
)

__all__ = [
    "TOPOLOGY_HEADER", "load_topology", "save_topology", "read_scalesim_config", "load_scalesim_config",
    "save_scalesim_config", "CFG_KEY_NAMES",
]

TOPOLOGY_HEADER: tuple[str, ...] = (
    "Layer name", "IFMAP Height", "IFMAP Width", "Filter Height", "Filter Width",
    "Channels", "Num Filter", "Strides",
)
# Topology column -> the layer field whose validity limits apply to it
_COLUMN_FIELDS: tuple[str, ...] = ("in_h", "in_w", "k_h", "k_w", "in_c", "out_c", "stride")
_DEPTHWISE_MARK = "DP"  # SCALE-Sim v2's topology_utils: a name containing "DP" is depthwise

_ARCH_SECTION = "architecture_presets"
# cfg key (lower case, configparser folds case) -> accelerator field; first match wins
_CFG_KEYS: dict[str, tuple[str, ...]] = {
    "pe_rows": ("arrayheight",),
    "pe_cols": ("arraywidth",),
    "ifmap_kb": ("ifmapsramszkb", "ifmapsramsz"),
    "filter_kb": ("filtersramszkb", "filtersramsz"),
    "ofmap_kb": ("ofmapsramszkb", "ofmapsramsz"),
    "dataflow": ("dataflow",),
    "rf_bytes": ("rfbytes",),
    "word_bits": ("wordbits",),
    "freq_mhz": ("freqmhz",),
}
_KEY_SPELLING = {"arrayheight": "ArrayHeight", "arraywidth": "ArrayWidth",
                 "ifmapsramszkb": "IfmapSramSzkB", "filtersramszkb": "FilterSramSzkB",
                 "ofmapsramszkb": "OfmapSramSzkB", "ifmapsramsz": "IfmapSramSz",
                 "filtersramsz": "FilterSramSz", "ofmapsramsz": "OfmapSramSz",
                 "rfbytes": "RfBytes", "wordbits": "WordBits", "freqmhz": "FreqMHz",
                 "dataflow": "Dataflow", "bandwidth": "Bandwidth", "ifmapoffset": "IfmapOffset",
                 "filteroffset": "FilterOffset", "ofmapoffset": "OfmapOffset", "memorybanks": "MemoryBanks",
                 "readrequestbuffer": "ReadRequestBuffer", "writerequestbuffer": "WriteRequestBuffer"}
# SCALE-Sim keys of [architecture_presets] that say nothing about our accelerator
_IGNORED_KEYS = ("ifmapoffset", "filteroffset", "ofmapoffset", "memorybanks", "readrequestbuffer",
                 "writerequestbuffer")
_KNOWN_KEYS = (*(key for keys in _CFG_KEYS.values() for key in keys), "bandwidth", *_IGNORED_KEYS)
# accelerator field -> the .cfg key that gives it (dram_bw: Bandwidth), for messages
CFG_KEY_NAMES: dict[str, str] = {**{field: _KEY_SPELLING[keys[0]] for field, keys in _CFG_KEYS.items()},
                                 "dram_bw": "Bandwidth"}


def _read_text(path: str | os.PathLike, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8-sig")  # -sig: spreadsheets add a BOM
    except FileNotFoundError:
        raise SpaceError(f"{what} file {str(path)!r} not found") from None
    except IsADirectoryError:
        raise SpaceError(f"{what} file {str(path)!r} is a directory, expected a file") from None
    except UnicodeDecodeError as error:
        raise SpaceError(f"{what} file {str(path)!r} is not UTF-8 text: {error}") from None


def _is_header(fields: Sequence[str]) -> bool:
    return len(fields) > 1 and not re.fullmatch(r"[+-]?\d+", fields[1].strip())


def load_topology(path: str | os.PathLike) -> list[Layer]:
    """Read a SCALE-Sim topology CSV into layers (``pad = 0``, ``batch = 1``).

    Parameters
    ----------
    path : path-like
        The CSV file (format in the module docstring).

    Returns
    -------
    list of Layer
        One per row, in file order, named by the ``Layer name`` column.

    Raises
    ------
    SpaceError
        For a missing file, an empty topology, or a malformed row: the message names the
        file, the row (and its line), the column and the allowed range.
    """
    text = _read_text(path, "topology")
    layers: list[Layer] = []
    row_number = 0
    for line_number, line in enumerate(text.splitlines(), start=1):
        content = line.split("#", 1)[0].strip()
        if not content:
            continue
        fields = [field.strip() for field in next(csv.reader([content]))]
        while fields and fields[-1] == "":  # SCALE-Sim rows end with a comma
            fields.pop()
        if row_number == 0 and _is_header(fields):  # SCALE-Sim skips its first line
            continue
        row_number += 1
        where = f"{path}, row {row_number} (line {line_number})"
        layers.append(_topology_row(fields, where))
    if not layers:
        raise SpaceError(f"topology file {str(path)!r} has no layer rows; expected a header line "
                         f"({', '.join(TOPOLOGY_HEADER)}) and one row per layer")
    return layers


def _topology_row(fields: list[str], where: str) -> Layer:
    if len(fields) not in (8, 9):
        raise SpaceError(f"{where}: {len(fields)} fields, expected 8 ({', '.join(TOPOLOGY_HEADER)}) "
                         "or 9 (with a separate width stride)")
    name = fields[0]
    if not name:
        raise SpaceError(f"{where}: field 'Layer name' is empty: expected a name")
    where = f"{where} (layer {name!r})"
    values: dict[str, int] = {}
    for column, field, raw in zip(TOPOLOGY_HEADER[1:], _COLUMN_FIELDS, fields[1:8]):
        low, high = LAYER_LIMITS[field]
        if not re.fullmatch(r"[+-]?\d+", raw) or not low <= int(raw) <= high:
            raise SpaceError(f"{where}: field {column!r} = {raw!r}: expected an integer in [{low}, {high}]")
        values[field] = int(raw)
    if len(fields) == 9 and (not re.fullmatch(r"[+-]?\d+", fields[8]) or int(fields[8]) != values["stride"]):
        raise SpaceError(f"{where}: field 'Stride width' = {fields[8]!r}: expected {values['stride']}, "
                         "the height stride (the layer schema has one stride)")
    for kernel, size, k_column, size_column in (("k_h", "in_h", "Filter Height", "IFMAP Height"),
                                                ("k_w", "in_w", "Filter Width", "IFMAP Width")):
        if values[kernel] > values[size]:
            raise SpaceError(f"{where}: field {k_column!r} = {values[kernel]}: expected an integer in "
                             f"[1, {values[size]}] (at most {size_column}; SCALE-Sim does not pad)")
    groups = 1
    if _DEPTHWISE_MARK in name:
        groups = values["in_c"]
        values["out_c"] *= values["in_c"]
    try:
        return Layer(**values, pad=0, groups=groups, name=name)
    except SpaceError as error:
        raise SpaceError(f"{where}: {error}") from None


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def save_topology(path: str | os.PathLike, layers: Iterable[Layer]) -> Path:
    """Write layers as a SCALE-Sim topology CSV, atomically.

    SCALE-Sim has no padding: a padded layer is written with its padded input size
    (``in_h + 2*pad``), which gives the same output size and MACs. Depthwise-style layers
    (one input channel per group) are written with SCALE-Sim's ``DP`` name marker so that
    `load_topology` reads them back as grouped layers.

    Parameters
    ----------
    path : path-like
        Destination CSV.
    layers : iterable of Layer
        Layers to write; unnamed ones are called ``layer<i>``.

    Returns
    -------
    Path
        The destination.

    Raises
    ------
    SpaceError
        For a layer SCALE-Sim cannot express: ``batch > 1``, or groups with more than one
        input channel each.
    """
    buffer = io.StringIO()
    buffer.write(", ".join(TOPOLOGY_HEADER) + ",\n")
    count = 0
    for index, layer in enumerate(layers):
        name = layer.name or f"layer{index}"
        if "," in name or "#" in name or "\n" in name:
            raise SpaceError(f"layer {name!r}: name must not contain ',', '#' or a newline in a topology CSV")
        if layer.batch != 1:
            raise SpaceError(f"layer {name!r}: batch = {layer.batch}: SCALE-Sim topologies have no batch; "
                             "expected batch = 1")
        channels, filters = layer.in_c, layer.out_c
        if layer.groups > 1:
            if layer.in_c_per_group != 1:
                raise SpaceError(f"layer {name!r}: groups = {layer.groups} with {layer.in_c_per_group} "
                                 "input channels per group: SCALE-Sim expresses only groups = 1 or "
                                 "depthwise-style groups (one input channel each)")
            filters = layer.out_c_per_group
            if _DEPTHWISE_MARK not in name:
                name = f"{name}_{_DEPTHWISE_MARK}"
        elif _DEPTHWISE_MARK in name:
            raise SpaceError(f"layer {name!r}: a name containing {_DEPTHWISE_MARK!r} marks a depthwise "
                             "layer in SCALE-Sim, but this layer has groups = 1; rename it")
        row = (name, layer.in_h + 2 * layer.pad, layer.in_w + 2 * layer.pad, layer.k_h, layer.k_w,
               channels, filters, layer.stride)
        buffer.write(", ".join(str(value) for value in row) + ",\n")
        count += 1
    if count == 0:
        raise SpaceError(f"topology {str(path)!r}: no layers to write; expected at least one")
    return atomic_write_text(path, buffer.getvalue())


def _cfg_number(path, key: str, raw: str, field: str) -> float:
    """A numeric cfg value, checked against the accelerator field's range (message names both)."""
    integer = field in ("pe_rows", "pe_cols", "rf_bytes", "word_bits")
    if field == "word_bits":
        expected = f"one of {list(WORD_BITS)}"
    else:
        low, high = ACCELERATOR_LIMITS[field]
        expected = f"{'an integer' if integer else 'a number'} in [{_format_number(low)}, {_format_number(high)}]"
    message = f"{path}, [{_ARCH_SECTION}] {key} = {raw!r} (accelerator.{field}): expected {expected}"
    try:
        value = float(raw)
    except ValueError:
        raise SpaceError(message) from None
    if integer and not value.is_integer():
        raise SpaceError(message)
    if field == "word_bits" and value not in WORD_BITS or field != "word_bits" and not low <= value <= high:
        raise SpaceError(message)
    return int(value) if integer else value


def _parse_cfg(path, text: str, lenient: bool) -> configparser.ConfigParser:
    """The .cfg as configparser reads it; a key or section given twice is refused (SCALE-Sim's
    own parser refuses it too) unless ``lenient``, where the last one wins."""
    for strict in (True, False):
        parser = configparser.ConfigParser(inline_comment_prefixes=("#", ";"), strict=strict,
                                           interpolation=None)
        try:
            parser.read_string(text, source=str(path))
            return parser
        except (configparser.DuplicateOptionError, configparser.DuplicateSectionError) as error:
            what = (f"[{error.section}] key {_spelling(text, error.option)!r}"
                    if isinstance(error, configparser.DuplicateOptionError) else f"section [{error.section}]")
            complain(f"{path}, line {error.lineno}: {what} is given twice", lenient,
                     consequence="the last value is used")
        except configparser.Error as error:
            raise SpaceError(f"config file {str(path)!r} is not a valid .cfg (INI) file: "
                             f"{str(error).splitlines()[0]}") from None
    raise AssertionError("unreachable: the non-strict parse accepts repeated keys")


def _spelling(text: str, key: str) -> str:
    """A key as the file writes it (configparser folds keys to lower case)."""
    for line in text.splitlines():
        match = re.match(r"\s*([^:=\s][^:=]*?)\s*[:=]", line)
        if match and match.group(1).lower() == key:
            return match.group(1)
    return key


def read_scalesim_config(path: str | os.PathLike, word_bits: int | None = None, lenient: bool = False,
                         default_word_bits: int | None = None) -> dict[str, object]:
    """The accelerator fields a SCALE-Sim .cfg gives, checked (missing keys are left out).

    Parameters
    ----------
    path : path-like
        The .cfg file (keys in the module docstring).
    word_bits : int, optional
        Word width to use instead of the file's ``WordBits`` (or the default): SCALE-Sim's
        ``Bandwidth`` is in words per cycle, so the word width converts it to ``dram_bw``
        in bytes per cycle.
    lenient : bool
        Warn about (`dataset_gen.keys.InputWarning`) unknown or repeated keys instead of
        refusing them.
    default_word_bits : int, optional
        The word width ``Bandwidth`` is converted with when neither ``word_bits`` nor the
        file gives one (e.g. another source's); `Accelerator`'s default otherwise.

    Returns
    -------
    dict
        Accelerator field -> value, for the fields the file (or ``word_bits``) gives.

    Raises
    ------
    SpaceError
        For a missing or unparsable file, a missing ``[architecture_presets]`` section, an
        unknown or repeated key, or a value outside its range (named with the file and key).
    """
    text = _read_text(path, "config")
    parser = _parse_cfg(path, text, lenient)
    if not parser.has_section(_ARCH_SECTION):
        raise SpaceError(f"config file {str(path)!r} has no [{_ARCH_SECTION}] section; expected "
                         "one with ArrayHeight, ArrayWidth, IfmapSramSzkB, FilterSramSzkB, "
                         "OfmapSramSzkB, Dataflow, Bandwidth")
    section = parser[_ARCH_SECTION]
    known = [_KEY_SPELLING[key] for key in _KNOWN_KEYS]
    check_keys(f"{path}, [{_ARCH_SECTION}]",
               [_spelling(text, key) for key in section if key not in _KNOWN_KEYS], known, lenient)
    values: dict[str, object] = {}
    for field, keys in _CFG_KEYS.items():
        given = [key for key in keys if key in section and section[key].strip() != ""]
        if len(given) > 1:
            complain(f"{path}, [{_ARCH_SECTION}]: both {' and '.join(_KEY_SPELLING[key] for key in given)} "
                     f"give accelerator.{field}; keep one", lenient, consequence=f"{_KEY_SPELLING[given[0]]} is used")
        if not given:
            continue
        key = given[0]
        raw = section[key].strip().strip('"').strip("'")
        if field == "dataflow":
            raw = raw.lower()
            if raw not in DATAFLOWS:
                raise SpaceError(f"{path}, [{_ARCH_SECTION}] Dataflow = {section[key].strip()!r}: "
                                 f"expected one of {list(DATAFLOWS)}")
            values[field] = raw
        else:
            values[field] = _cfg_number(path, _KEY_SPELLING[key], raw, field)
    if word_bits is not None:
        if word_bits not in WORD_BITS:
            raise SpaceError(f"accelerator.word_bits = {word_bits!r}: expected one of {list(WORD_BITS)}")
        values["word_bits"] = word_bits
    bits = values.get("word_bits", default_word_bits or Accelerator.word_bits)
    if bits not in WORD_BITS:
        raise SpaceError(f"{path}, [{_ARCH_SECTION}] WordBits = {bits!r}: expected one of {list(WORD_BITS)}")
    if "bandwidth" in section and section["bandwidth"].strip():
        raw = section["bandwidth"].strip()
        try:
            per_bank = [float(part) for part in raw.split(",") if part.strip()]
            if not per_bank:
                raise ValueError
        except ValueError:
            raise SpaceError(f"{path}, [{_ARCH_SECTION}] Bandwidth = {raw!r}: expected a number of words "
                             "per cycle (or a comma-separated list, one per memory bank)") from None
        values["dram_bw"] = min(per_bank) * bits / 8  # words per cycle -> bytes per cycle
    return values


def load_scalesim_config(path: str | os.PathLike, word_bits: int | None = None,
                         lenient: bool = False) -> Accelerator:
    """Read the ``[architecture_presets]`` section of a SCALE-Sim .cfg into an `Accelerator`.

    Parameters
    ----------
    path : path-like
        The .cfg file (keys in the module docstring).
    word_bits : int, optional
        Word width to use instead of the file's ``WordBits`` (see `read_scalesim_config`).
    lenient : bool
        Warn about unknown or repeated keys instead of refusing them.

    Returns
    -------
    Accelerator
        The file's fields; the missing ones take `Accelerator`'s defaults.

    Raises
    ------
    SpaceError
        As `read_scalesim_config`, or for an accelerator outside the design space.
    """
    values = read_scalesim_config(path, word_bits=word_bits, lenient=lenient)
    try:
        return Accelerator(**values)
    except SpaceError as error:
        raise SpaceError(f"{path}, [{_ARCH_SECTION}]: {error}") from None


def save_scalesim_config(path: str | os.PathLike, accelerator: Accelerator, run_name: str = "dance") -> Path:
    """Write an accelerator as a SCALE-Sim .cfg, atomically.

    The file runs in SCALE-Sim as long as the accelerator fits its model (dataflow ``os``,
    ``ws`` or ``is``, whole-KiB buffers, a whole number of words per cycle); our extension
    keys (``RfBytes``, ``WordBits``, ``FreqMHz``) make `load_scalesim_config` read back the
    same accelerator.

    Parameters
    ----------
    path : path-like
        Destination .cfg.
    accelerator : Accelerator
        The accelerator to write.
    run_name : str
        SCALE-Sim's ``[general] run_name``.

    Returns
    -------
    Path
        The destination.
    """
    words_per_cycle = accelerator.dram_bw * 8 / accelerator.word_bits
    lines = [
        "[general]",
        f"run_name = {run_name}",
        "",
        f"[{_ARCH_SECTION}]",
        f"ArrayHeight : {accelerator.pe_rows}",
        f"ArrayWidth : {accelerator.pe_cols}",
        f"IfmapSramSzkB : {_format_number(accelerator.ifmap_kb)}",
        f"FilterSramSzkB : {_format_number(accelerator.filter_kb)}",
        f"OfmapSramSzkB : {_format_number(accelerator.ofmap_kb)}",
        "IfmapOffset : 0",
        "FilterOffset : 10000000",
        "OfmapOffset : 20000000",
        f"Dataflow : {accelerator.dataflow}",
        "# SCALE-Sim's Bandwidth is in words per cycle",
        f"Bandwidth : {_format_number(words_per_cycle)}",
        "MemoryBanks : 1",
        "# not SCALE-Sim keys: the rest of the DANCE accelerator (SCALE-Sim ignores them)",
        f"RfBytes : {accelerator.rf_bytes}",
        f"WordBits : {accelerator.word_bits}",
        f"FreqMHz : {_format_number(accelerator.freq_mhz)}",
        "",
        "[run_presets]",
        "InterfaceBandwidth : USER",
        "",
    ]
    return atomic_write_text(path, "\n".join(lines))
