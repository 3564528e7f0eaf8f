"""``dance-active``: the thin Hydra entry point of active learning (conf/active.yaml).

It composes the config, applies the error policy (`dataset_gen.common.errors`: a user error
is one line ``dance-active: error: ...`` and exit status 2) and hands plain values to
`evaluator.active.run_active`, which does the work::

    dance-active out=runs/active budget_rows=5000
    dance-active simulator=zigzag out=runs/active-zz init_rows=500 batch_rows=250 budget_rows=1500
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from dataset_gen.common.config import CONFIG_PATH, HYDRA_VERSION_BASE, require_settings
from dataset_gen.common.cpus import usable_cpus
from dataset_gen.common.errors import cli_errors

__all__ = ["main"]


def _active(cfg: DictConfig) -> None:
    import logging
    import warnings

    import torch

    from evaluator.active import run_active

    require_settings(cfg)
    torch.set_num_threads(usable_cpus(cfg.get("threads")))
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated")
    warnings.filterwarnings("ignore", message=".*is smaller than the logging interval")
    run_active(OmegaConf.to_container(cfg, resolve=True), log=print)  # type: ignore[arg-type]


@hydra.main(config_path=CONFIG_PATH, config_name="active", version_base=HYDRA_VERSION_BASE)
def _active_app(cfg: DictConfig) -> None:
    with cli_errors("dance-active", interrupted="Run the same command again to continue from the last "
                                               "finished round."):
        _active(cfg)


def main() -> None:
    """Console script ``dance-active``."""
    _active_app()
