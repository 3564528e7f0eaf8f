"""The network JSON format: a list of layers plus (optionally) the accelerator they run on.

::

    {
      "network": [
        {"name": "conv1", "in_h": 224, "in_w": 224, "in_c": 3, "out_c": 64,
         "k_h": 7, "k_w": 7, "stride": 2, "pad": 3, "groups": 1, "batch": 1},
        ...
      ],
      "accelerator": {"pe_rows": 16, "pe_cols": 16, "dataflow": "ws", ...},
      "...": "any other keys (the co-search's result.json adds its predictions, accuracy, ...)"
    }

A layer object needs ``in_h, in_w, in_c, out_c``; the other layer fields take the
defaults of `dataset_gen.space.LAYER_DEFAULTS`, ``name`` is optional, and the derived
figures ``out_h``, ``out_w`` and ``macs`` may stand beside them (they are checked against
the layer's fields). ``accelerator`` is optional on reading; its missing fields take
`Accelerator`'s defaults (`NetworkDesign` records which fields the file gave, so that
``dance-sim`` can say which ones were defaulted). Any other key in a layer or in the
accelerator, a key repeated in one object, or a top-level key that looks like a
misspelled ``network`` or ``accelerator`` is an error naming it and the closest known
key; ``lenient=True`` (``dance-sim --lenient``) turns these into warnings
(`dataset_gen.keys.InputWarning`) and ignores the key (a repeated key: the last value
wins). Other top-level keys are kept in ``extra``: the co-search writes its
``result.json`` in this format, with its predictions beside the network, so
``dance-sim --network result.json`` re-simulates a search result.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from dataset_gen.common.files import atomic_write_text
from dataset_gen.keys import check_keys, closest, complain
from dataset_gen.space import (
    ACCELERATOR_FIELDS, LAYER_DEFAULTS, LAYER_FIELDS, PRECISION_FIELDS, Accelerator, Layer, SpaceError,
    accelerator_from_mapping, layer_from_mapping,
)

__all__ = ["NetworkDesign", "network_to_dict", "network_from_dict", "load_network", "save_network",
           "DERIVED_LAYER_KEYS"]

# Figures a writer may store beside a layer's fields; they are checked, never used.
DERIVED_LAYER_KEYS: tuple[str, ...] = ("out_h", "out_w", "macs")
_LAYER_KEYS: tuple[str, ...] = (*LAYER_FIELDS, "name", *DERIVED_LAYER_KEYS)
_RESERVED: tuple[str, ...] = ("network", "accelerator")
_NEAR_MISS = 0.85  # difflib ratio: 'networks', 'accelarator' are near-misses; 'evaluator' is not


@dataclass(frozen=True)
class NetworkDesign:
    """A network's layers, the accelerator they run on (if any) and the file's other keys.

    ``accelerator_given`` names the accelerator fields the file gave (the others took
    `Accelerator`'s defaults); ``layers_defaulted`` counts, per optional layer field, the
    layers that left it out (they took `LAYER_DEFAULTS`).
    """

    layers: tuple[Layer, ...]
    accelerator: Accelerator | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    accelerator_given: tuple[str, ...] = ()
    layers_defaulted: Mapping[str, int] = field(default_factory=dict)


def network_to_dict(layers: Iterable[Layer], accelerator: Accelerator | None = None,
                    extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON-ready dict of a network (and accelerator, and extra keys).

    Parameters
    ----------
    layers : iterable of Layer
        The network, in execution order.
    accelerator : Accelerator, optional
        Written under ``"accelerator"`` when given.
    extra : mapping, optional
        Other top-level keys (must be JSON-serialisable; may not be ``network`` or
        ``accelerator``).

    Returns
    -------
    dict
    """
    extra = dict(extra or {})
    clash = sorted({"network", "accelerator"} & set(extra))
    if clash:
        raise SpaceError(f"extra keys {clash}: reserved for the layers and the accelerator")
    document: dict[str, Any] = {
        "network": [{"name": layer.name, **layer.to_dict()} for layer in layers],
    }
    if accelerator is not None:
        document["accelerator"] = accelerator.to_dict()
    document.update(extra)
    return document


def _check_derived(layer: Layer, entry: Mapping[str, Any], where: str, lenient: bool) -> None:
    """A stated ``out_h``/``out_w``/``macs`` that the fields do not give betrays a misread layer."""
    for key in DERIVED_LAYER_KEYS:
        if key in entry and entry[key] != getattr(layer, key):
            complain(f"{where}: {key} = {entry[key]!r} but the layer's fields give {getattr(layer, key)} "
                     f"(check {', '.join(LAYER_FIELDS[4:8])})", lenient, consequence="the fields are used")


def network_from_dict(document: Any, source: str = "network JSON", lenient: bool = False) -> NetworkDesign:
    """Validate a parsed network JSON document.

    Parameters
    ----------
    document : dict
        The parsed JSON.
    source : str
        Where it came from (a file name), for error messages.
    lenient : bool
        Warn about (`dataset_gen.keys.InputWarning`) and ignore unknown keys and wrong
        derived figures instead of refusing them.

    Returns
    -------
    NetworkDesign

    Raises
    ------
    SpaceError
        Naming the source, the layer's index (``network[3]``) and the field or key.
    """
    if not isinstance(document, dict):
        raise SpaceError(f"{source}: top level is a {type(document).__name__}, expected an object "
                         '{"network": [...], "accelerator": {...}}')
    for key in document:
        # other top-level keys are the writer's own (the co-search's predictions...); only a
        # near-miss of a reserved key would silently drop the layers or the accelerator
        hint = closest(key, _RESERVED, cutoff=_NEAR_MISS) if key not in _RESERVED else ""
        if hint:
            complain(f"{source}: top-level key {key!r}{hint}", lenient, consequence="kept as an extra key")
    entries = document.get("network")
    if not isinstance(entries, list) or not entries:
        raise SpaceError(f"{source}: key 'network' must be a non-empty list of layer objects "
                         f"with {list(LAYER_FIELDS)} (in_h, in_w, in_c, out_c required)")
    layers = []
    # layers without a precision run at the word width, as every file meant before layers had one
    defaulted = {key: 0 for key in LAYER_DEFAULTS if key not in PRECISION_FIELDS}
    for index, entry in enumerate(entries):
        where = f"{source}: network[{index}]"
        if not isinstance(entry, dict):
            raise SpaceError(f"{where} is a {type(entry).__name__}, expected an object")
        check_keys(where, entry, _LAYER_KEYS, lenient)
        for key in LAYER_FIELDS:
            # JSON has no integers distinct from floats for some writers; refuse 2.5, accept 2.0
            value = entry.get(key)
            if isinstance(value, float) and (math.isnan(value) or not value.is_integer()):
                raise SpaceError(f"{where}: layer.{key} = {value!r}: expected an integer")
        for key in defaulted:
            defaulted[key] += key not in entry
        layer = layer_from_mapping({key: entry[key] for key in (*LAYER_FIELDS, "name") if key in entry},
                                   where=f" in {where}")
        _check_derived(layer, entry, where, lenient)
        layers.append(layer)
    accelerator = None
    given: tuple[str, ...] = ()
    if document.get("accelerator") is not None:
        values = document["accelerator"]
        if not isinstance(values, dict):
            raise SpaceError(f"{source}: key 'accelerator' must be an object of accelerator fields")
        check_keys(f"{source}: accelerator", values, ACCELERATOR_FIELDS, lenient)
        accelerator = accelerator_from_mapping(values, where=f" in {source}: accelerator")
        given = tuple(key for key in ACCELERATOR_FIELDS if key in values)
    extra = {key: value for key, value in document.items() if key not in ("network", "accelerator")}
    return NetworkDesign(tuple(layers), accelerator, extra, given,
                         {key: count for key, count in defaulted.items() if count})


def _refuse_repeated_keys(source: str, lenient: bool):
    """A ``json.loads`` hook: a key twice in one object is an error (JSON keeps the last silently)."""
    def build(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                complain(f"{source}: key {key!r} appears twice in one object", lenient,
                         consequence="the last value is used")
            seen[key] = value
        return seen
    return build


def load_network(path: str | os.PathLike, lenient: bool = False) -> NetworkDesign:
    """Read a network JSON file.

    Parameters
    ----------
    path : path-like
        The JSON file (format in the module docstring).
    lenient : bool
        Warn about unknown or repeated keys instead of refusing them (`network_from_dict`).

    Returns
    -------
    NetworkDesign

    Raises
    ------
    SpaceError
        For a missing file, invalid JSON (with its line and column), an unknown or repeated
        key, or an invalid layer or accelerator.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpaceError(f"network file {str(path)!r} not found") from None
    except IsADirectoryError:
        raise SpaceError(f"network file {str(path)!r} is a directory, expected a JSON file") from None
    except UnicodeDecodeError as error:
        raise SpaceError(f"network file {str(path)!r} is not UTF-8 text: {error}") from None
    try:
        document = json.loads(text, object_pairs_hook=_refuse_repeated_keys(str(path), lenient))
    except json.JSONDecodeError as error:
        raise SpaceError(f"network file {str(path)!r} is not valid JSON: {error.msg} "
                         f"at line {error.lineno}, column {error.colno}") from None
    return network_from_dict(document, source=str(path), lenient=lenient)


def save_network(path: str | os.PathLike, layers: Iterable[Layer], accelerator: Accelerator | None = None,
                 extra: Mapping[str, Any] | None = None) -> Path:
    """Write a network JSON file atomically (temporary name, then rename).

    Parameters
    ----------
    path : path-like
        Destination.
    layers, accelerator, extra
        As in `network_to_dict`.

    Returns
    -------
    Path
        The destination.
    """
    document = network_to_dict(layers, accelerator, extra)
    try:
        # one line per layer: a 50-layer network stays readable and diffable
        parts = []
        for key, value in document.items():
            if key == "network":
                rows = ",\n".join(f"    {json.dumps(entry, allow_nan=False)}" for entry in value)
                parts.append(f'  "network": [\n{rows}\n  ]')
            else:
                nested = json.dumps(value, indent=2, allow_nan=False).replace("\n", "\n  ")
                parts.append(f"  {json.dumps(key)}: {nested}")
    except (TypeError, ValueError) as error:
        raise SpaceError(f"network {str(path)!r}: extra keys are not JSON-serialisable: {error}") from None
    return atomic_write_text(path, "{\n" + ",\n".join(parts) + "\n}\n")
