"""``dance-gen``: the Hydra entry point of dataset generation (the work is `generate.generate`).

::

    dance-gen n_samples=100000 out=data/dance workers=2      # generate, or finish, a dataset
    dance-gen space=small sampler=sobol                      # config groups: space, layers
    dance-gen describe=data/dance                            # describe a dataset instead

Bad settings, foreign data in ``out`` and other refusals print one line naming the key
and exit with status 2, before any work.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Sequence

import hydra
from omegaconf import DictConfig, OmegaConf

from dataset_gen.space import SpaceError
from dataset_gen.writer import DatasetError

__all__ = ["CONF_DIR", "load_config", "run", "main"]

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def load_config(overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Compose ``conf/gen.yaml`` with Hydra overrides, as ``dance-gen`` would, to plain values.

    Parameters
    ----------
    overrides : sequence of str
        Hydra overrides (``["space=small", "n_samples=100"]``).

    Returns
    -------
    dict
        The resolved config (``describe`` included), ready for `run` or, without
        ``describe``, for `dataset_gen.generate.generate`.
    """
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        config = compose(config_name="gen", overrides=list(overrides))
    return _plain(config)


def _plain(config: DictConfig) -> dict[str, Any]:
    values = OmegaConf.to_container(config, resolve=True)
    values.pop("hydra", None)
    return values


def run(config: dict[str, Any]) -> int:
    """Describe or generate as ``config`` says; print the result; return the exit status."""
    from dataset_gen.describe import describe_dataset
    from dataset_gen.generate import ConfigError, generate

    config = dict(config)
    describe = config.pop("describe", None)
    try:
        if describe:
            print(describe_dataset(describe))
            return 0
        result = generate(config)
    except (ConfigError, SpaceError, DatasetError, FileNotFoundError) as error:
        print(f"dance-gen: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ndance-gen: interrupted; the finished shards are kept. Run the same command again "
              f"to finish the dataset in {config.get('out')}.", file=sys.stderr)
        return 130
    print(result.summary())
    return 0


@hydra.main(config_path=str(CONF_DIR), config_name="gen", version_base="1.3")
def _hydra_main(config: DictConfig) -> None:
    status = run(_plain(config))
    if status == 130:
        # Interrupted: every finished shard is already on disk (written atomically). Leave at
        # once: a normal exit joins concurrent.futures' manager thread, which can block on
        # pool workers that were interrupted mid-task.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    if status:
        sys.exit(status)  # SystemExit passes through Hydra's error reporting


def main() -> None:
    """Console-script entry point (``dance-gen``)."""
    _hydra_main()


if __name__ == "__main__":
    main()
