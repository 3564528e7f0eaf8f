"""Adapters by name, built from their configs (``conf/simulator/NAME.yaml``)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Mapping

from dataset_gen.adapters.base import AdapterError, SimulatorAdapter

__all__ = ["ADAPTERS", "make_adapter", "adapter_class", "adapter_version", "load_simulator_config"]

#: name -> "module:class"; imported on use, so an adapter's optional tool is only needed
#: when that adapter is chosen
ADAPTERS: dict[str, str] = {
    "builtin": "dataset_gen.adapters.builtin:BuiltinAdapter",
    "zigzag": "dataset_gen.adapters.zigzag:ZigZagAdapter",
    "scalesim": "dataset_gen.adapters.scalesim:ScaleSimAdapter",
    "command": "dataset_gen.adapters.command:CommandAdapter",
}


def adapter_class(name: str) -> type[SimulatorAdapter]:
    """The adapter class registered under ``name`` (`AdapterError` naming the choices)."""
    if name not in ADAPTERS:
        raise AdapterError(f"simulator.name = {name!r}: expected one of {sorted(ADAPTERS)}")
    module, _, attribute = ADAPTERS[name].partition(":")
    return getattr(importlib.import_module(module), attribute)


def make_adapter(config: Mapping[str, Any], cache: str | Path | None = None) -> SimulatorAdapter:
    """Build the adapter a ``simulator`` config describes.

    Parameters
    ----------
    config : mapping
        ``{"name": NAME, **settings}`` (``conf/simulator/NAME.yaml``).
    cache : path-like, optional
        The run's result cache (`dataset_gen.adapters.cache.ResultCache`), used by
        adapters of slow tools.

    Returns
    -------
    SimulatorAdapter
    """
    if not isinstance(config, Mapping) or "name" not in config:
        raise AdapterError(f"simulator = {config!r}: expected a mapping with a name (conf/simulator/)")
    settings = {key: value for key, value in config.items() if key != "name"}
    cls = adapter_class(str(config["name"]))
    if cache is not None and getattr(cls, "uses_cache", False):
        from dataset_gen.adapters.cache import ResultCache

        return cls(settings, cache=ResultCache(cache))  # type: ignore[call-arg]
    return cls(settings)


def adapter_version(identity: Mapping[str, Any]) -> str:
    """The version the installed adapter of a recorded identity has now (to compare with the
    recorded one); for an adapter whose tool is not installed, `AdapterError` says so."""
    return make_adapter({"name": identity["name"], **(identity.get("settings") or {})}).version


def load_simulator_config(name_or_mapping: str | Mapping[str, Any]) -> dict[str, Any]:
    """A simulator config as `make_adapter` takes it, from a name or as given.

    Parameters
    ----------
    name_or_mapping : str or mapping
        A name of ``conf/simulator/`` (``"zigzag"``: that file, as ``dance-gen
        simulator=zigzag`` composes it) or a config mapping ``{"name": NAME, **settings}``
        (used as it is, so a caller can set any adapter's settings inline).

    Returns
    -------
    dict
        ``{"name": NAME, **settings}``, plain values.

    Raises
    ------
    AdapterError
        No ``conf/simulator/NAME.yaml``, or a mapping without a name (naming the choices).
    """
    from omegaconf import OmegaConf

    from dataset_gen.common.config import config_dir

    if isinstance(name_or_mapping, Mapping):
        config = dict(name_or_mapping)
    else:
        folder = config_dir() / "simulator"
        path = folder / f"{name_or_mapping}.yaml"
        if not isinstance(name_or_mapping, str) or not path.is_file():
            names = sorted(file.stem for file in folder.glob("*.yaml"))
            raise AdapterError(f"simulator {name_or_mapping!r}: no conf/simulator/{name_or_mapping}.yaml; "
                               f"expected one of {names} or a mapping with a name")
        config = OmegaConf.to_container(OmegaConf.load(path), resolve=True)  # type: ignore[assignment]
        config = dict(config or {})
        config.setdefault("name", name_or_mapping)  # the file's own name, when it does not repeat it
    if not isinstance(config.get("name"), str):
        raise AdapterError(f"simulator = {name_or_mapping!r}: expected a mapping with a name (conf/simulator/)")
    return config
