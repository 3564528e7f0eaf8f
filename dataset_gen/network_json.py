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

A layer object needs ``in_h, in_w, in_c, out_c``; the other layer fields take `Layer`'s
defaults, ``name`` is optional, and keys outside the schema are ignored (a writer may store
derived figures beside a layer). ``accelerator`` is optional on reading; its missing fields
take `Accelerator`'s defaults. The co-search writes its ``result.json`` in this format, so
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
from dataset_gen.space import (
    LAYER_FIELDS, Accelerator, Layer, SpaceError, accelerator_from_mapping, layer_from_mapping,
)

__all__ = ["NetworkDesign", "network_to_dict", "network_from_dict", "load_network", "save_network"]


@dataclass(frozen=True)
class NetworkDesign:
    """A network's layers, the accelerator they run on (if any) and the file's other keys."""

    layers: tuple[Layer, ...]
    accelerator: Accelerator | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


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


def network_from_dict(document: Any, source: str = "network JSON") -> NetworkDesign:
    """Validate a parsed network JSON document.

    Parameters
    ----------
    document : dict
        The parsed JSON.
    source : str
        Where it came from (a file name), for error messages.

    Returns
    -------
    NetworkDesign

    Raises
    ------
    SpaceError
        Naming the source, the layer's index (``network[3]``) and the field.
    """
    if not isinstance(document, dict):
        raise SpaceError(f"{source}: top level is a {type(document).__name__}, expected an object "
                         '{"network": [...], "accelerator": {...}}')
    entries = document.get("network")
    if not isinstance(entries, list) or not entries:
        raise SpaceError(f"{source}: key 'network' must be a non-empty list of layer objects "
                         f"with {list(LAYER_FIELDS)} (in_h, in_w, in_c, out_c required)")
    layers = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise SpaceError(f"{source}: network[{index}] is a {type(entry).__name__}, expected an object")
        for key in LAYER_FIELDS:
            # JSON has no integers distinct from floats for some writers; refuse 2.5, accept 2.0
            value = entry.get(key)
            if isinstance(value, float) and (math.isnan(value) or not value.is_integer()):
                raise SpaceError(f"{source}: network[{index}]: layer.{key} = {value!r}: expected an integer")
        layers.append(layer_from_mapping(entry, where=f" in {source}: network[{index}]"))
    accelerator = None
    if document.get("accelerator") is not None:
        values = document["accelerator"]
        if not isinstance(values, dict):
            raise SpaceError(f"{source}: key 'accelerator' must be an object of accelerator fields")
        accelerator = accelerator_from_mapping(values, where=f" in {source}: accelerator")
    extra = {key: value for key, value in document.items() if key not in ("network", "accelerator")}
    return NetworkDesign(tuple(layers), accelerator, extra)


def load_network(path: str | os.PathLike) -> NetworkDesign:
    """Read a network JSON file.

    Parameters
    ----------
    path : path-like
        The JSON file (format in the module docstring).

    Returns
    -------
    NetworkDesign

    Raises
    ------
    SpaceError
        For a missing file, invalid JSON (with its line and column) or an invalid layer or
        accelerator.
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
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise SpaceError(f"network file {str(path)!r} is not valid JSON: {error.msg} "
                         f"at line {error.lineno}, column {error.colno}") from None
    return network_from_dict(document, source=str(path))


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
