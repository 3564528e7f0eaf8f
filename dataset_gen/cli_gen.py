"""``dance-gen``: the Hydra entry point of dataset generation (the work is `generate.generate`).

::

    dance-gen n_samples=100000 out=data/dance workers=2      # generate, or finish, a dataset
    dance-gen space=small sampler=sobol                      # config groups: space, layers
    dance-gen describe=data/dance                            # describe a dataset instead

Bad settings, foreign data in ``out`` and other refusals print one line naming the key
and exit with status 2, before any work.
"""

from __future__ import annotations

from typing import Any, Sequence

import hydra
from omegaconf import DictConfig, OmegaConf

from dataset_gen.common.config import CONFIG_PATH, HYDRA_VERSION_BASE, compose_config
from dataset_gen.common.errors import cli_errors

__all__ = ["load_config", "run", "main"]


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
    return _plain(compose_config("gen", overrides))


def _plain(config: DictConfig) -> dict[str, Any]:
    values = OmegaConf.to_container(config, resolve=True)
    values.pop("hydra", None)
    return values


def run(config: dict[str, Any]) -> None:
    """Describe or generate as ``config`` says and print the result.

    Raises
    ------
    UserError, OSError
        A bad setting, foreign data in ``out``, an unusable ``out``: the caller's error
        policy (`dataset_gen.common.errors.cli_errors`) reports them.
    """
    from dataset_gen.describe import describe_dataset
    from dataset_gen.generate import generate

    config = dict(config)
    describe = config.pop("describe", None)
    if describe:
        print(describe_dataset(describe))
        return
    print(generate(config).summary())


# The error policy runs inside the task function: Hydra reports (exit 1, its own format)
# whatever escapes it, but lets SystemExit through. Ctrl-C keeps every finished shard (each
# is written atomically) and leaves at once (`cli_errors`).
@hydra.main(config_path=CONFIG_PATH, config_name="gen", version_base=HYDRA_VERSION_BASE)
def _hydra_main(config: DictConfig) -> None:
    out = config.get("out")
    with cli_errors("dance-gen", interrupted=f"The finished shards are kept; run the same command again "
                                             f"to finish the dataset in {out}."):
        run(_plain(config))


def main() -> None:
    """Console-script entry point (``dance-gen``)."""
    _hydra_main()


if __name__ == "__main__":
    main()
