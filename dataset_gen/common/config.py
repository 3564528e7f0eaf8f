"""Where every command finds its Hydra configs, and the resolvers they use.

The repository keeps the configs in its top-level ``conf/`` folder; ``pyproject.toml`` maps
that folder to the package ``dance_conf``, so a wheel or a plain ``pip install .`` ships
them and an editable install finds them in place. Every command names them the same way,
``pkg://dance_conf`` (`CONFIG_PATH`), never by a path relative to its own source file,
which would not exist outside the repository.

Importing this module registers the OmegaConf resolver ``${usable_cpus:}`` (and
``${usable_cpus:N}``): `dataset_gen.common.cpus.usable_cpus`, so a config can size a pool
by the CPUs that are free rather than by a number written for another machine.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, OmegaConf

from dataset_gen.common.cpus import usable_cpus
from dataset_gen.common.errors import UserError

__all__ = ["CONFIG_MODULE", "CONFIG_PATH", "HYDRA_VERSION_BASE", "MissingSettingError", "config_dir",
           "compose_config", "require_settings", "register_resolvers"]

CONFIG_MODULE = "dance_conf"
CONFIG_PATH = f"pkg://{CONFIG_MODULE}"
HYDRA_VERSION_BASE = "1.3"


def config_dir() -> Path:
    """The folder holding the installed configs (``conf/`` itself in an editable install).

    Returns
    -------
    Path
        The folder of the ``dance_conf`` package.
    """
    return Path(str(importlib.resources.files(CONFIG_MODULE)))


def compose_config(config_name: str, overrides: Sequence[str] = (), *,
                   return_hydra_config: bool = False) -> DictConfig:
    """Compose a command's config as its console script would, without running it.

    Parameters
    ----------
    config_name : str
        ``gen``, ``train``, ``validate`` or ``search``.
    overrides : sequence of str
        Hydra overrides (``["space=small", "n_samples=100"]``).
    return_hydra_config : bool
        Keep the ``hydra`` node (launcher, sweeper, run directory).

    Returns
    -------
    DictConfig
        The composed, unresolved config.
    """
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module=CONFIG_MODULE, version_base=HYDRA_VERSION_BASE):
        return compose(config_name=config_name, overrides=list(overrides),
                       return_hydra_config=return_hydra_config)


class MissingSettingError(UserError):
    """A setting marked ``???`` in the config was not given on the command line."""


def _missing_keys(node: object, prefix: str = "") -> list[str]:
    """Dotted keys whose value is ``???``, read without resolving any interpolation."""
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return [prefix] if node == "???" else []
    return [key for name, child in items for key in _missing_keys(child, f"{prefix}{name}" if not prefix
                                                                        else f"{prefix}.{name}")]


def require_settings(config: DictConfig) -> None:
    """Refuse a config with settings still at ``???``, naming all of them, before any work.

    OmegaConf would only fail where one is first read: deep inside the work, or as an
    interpolation error naming another key (``datamodule.path: ${dataset}``). Hydra's own
    node (``hydra.*``) is not the user's to fill and is skipped.

    Raises
    ------
    MissingSettingError
        Naming every missing key and how to give it.
    """
    values = OmegaConf.to_container(config, resolve=False)
    values.pop("hydra", None)  # type: ignore[union-attr]
    missing = _missing_keys(values)
    if missing:
        keys = ", ".join(repr(key) for key in missing)
        example = " ".join(f"{key}=..." for key in missing)
        plural = len(missing) > 1
        raise MissingSettingError(f"the setting{'s' if plural else ''} {keys} {'are' if plural else 'is'} "
                                  f"required; give {'them' if plural else 'it'} on the command line ({example})")


def register_resolvers() -> None:
    """Register ``${usable_cpus:}`` (idempotent: every command imports this module)."""
    OmegaConf.register_new_resolver("usable_cpus", lambda requested=None: usable_cpus(requested),
                                    replace=True)


register_resolvers()
