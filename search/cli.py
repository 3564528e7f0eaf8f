"""``dance-search``: the thin Hydra entry point of the co-search.

Composes ``conf/search.yaml`` and hands the resolved config to `search.app.run`, which does
the work; results go to the job's output folder (``out=DIR``; in a multirun
``DIR/<job number>``). Examples::

    dance-search evaluator=runs/eval/evaluator.pt out=runs/search        # co-search, digits
    dance-search evaluator=E search.lambda_cost=3 search.cost.metric=energy
    dance-search evaluator=E search.cost.limits.area_mm2=1.5             # a hard area limit
    dance-search evaluator=E hw.mode=generator                           # DANCE's generator
    dance-search evaluator=E network=tiny hw=small                       # other search spaces
    dance-search evaluator=E +experiment=cifar10 task.root=~/data/cifar-10-batches-py
    dance-search evaluator=E mode=compare                                # baselines side by side
    dance-search -m evaluator=E search.lambda_cost=0.3,1,3               # sweep + Pareto plot
    dance-search -m evaluator=E +hparams_search=optuna                   # Optuna over lambda, tau

An ``out`` that holds a run already is refused unless ``overwrite=true``
(`dataset_gen.common.run_dir`); every user error is one line and exit status 2.

The return value (for Hydra sweepers such as Optuna) is the tuple of ``sweep.objectives``
read from the result (default: test accuracy and simulated EDAP).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import hydra
from omegaconf import DictConfig, OmegaConf, read_write

from dataset_gen.common.config import CONFIG_PATH, HYDRA_VERSION_BASE, require_settings
from dataset_gen.common.errors import cli_errors
from dataset_gen.common.files import atomic_write_text
from dataset_gen.common.run_dir import RunDirGuard

__all__ = ["main", "objective_values", "run_dir_guard", "SEARCH_WRITES", "SWEEP_WRITES"]

# What one run writes into its folder (what overwrite=true removes first): the result, the
# resolved config, mode=compare's table and per-method folders, mode=export's files, and the
# Lightning loggers' folders (named after the training that logs there).
SEARCH_WRITES = ("config.yaml", "result.json", "layers.csv", "*.png", "compare.csv", "compare.md",
                 "search_layers.csv", "space", "cosearch", "sequential", "evolution", "random",
                 "search", "retrain", "sequential_nas", "generator")
# What a sweep writes into its own folder, beside its jobs' folders.
SWEEP_WRITES = ("sweep_summary.csv", "pareto.png", "optimization_results.yaml", "multirun.yaml")


def export_needs_no_evaluator(cfg: DictConfig) -> None:
    """``mode=export`` writes the inputs to train an evaluator for the search space, so it
    comes before there is one: an ``evaluator`` left at ``???`` becomes null there."""
    if cfg.get("mode") == "export" and OmegaConf.is_missing(cfg, "evaluator"):
        with read_write(cfg):
            cfg.evaluator = None


class _SearchRunDirGuard(RunDirGuard):
    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        export_needs_no_evaluator(config)
        super().on_run_start(config, **kwargs)

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        export_needs_no_evaluator(config)
        super().on_multirun_start(config, **kwargs)


def run_dir_guard() -> RunDirGuard:
    """The run-folder rule of ``dance-search`` (a Hydra callback, conf/search.yaml)."""
    return _SearchRunDirGuard("dance-search", SEARCH_WRITES, sweep_writes=SWEEP_WRITES)


def objective_values(result: Mapping[str, Any], objectives: Sequence[str]) -> float | tuple[float, ...]:
    """Dotted keys of a result (``test_accuracy``, ``simulated.edap``) as floats; NaN when
    missing or infeasible (Optuna then marks the trial failed rather than optimal)."""
    values = []
    for key in objectives:
        node: Any = result
        for part in str(key).split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        values.append(float(node) if isinstance(node, (int, float)) else float("nan"))
    return values[0] if len(values) == 1 else tuple(values)


def _search(cfg: DictConfig) -> Any:
    from hydra.core.hydra_config import HydraConfig

    from search.app import run

    export_needs_no_evaluator(cfg)
    require_settings(cfg)
    # Lightning prints through its own handler; Hydra's root handler would print it twice.
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).propagate = False
    out = Path(HydraConfig.get().runtime.output_dir)
    settings = OmegaConf.to_container(cfg, resolve=True)
    atomic_write_text(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    result = run(settings, out)  # type: ignore[arg-type]
    if "results" in result:  # mode=compare: the co-search's objectives
        result = result["results"]["cosearch"]
    return objective_values(result, list((settings.get("sweep") or {}).get("objectives") or ["test_accuracy"]))


# The error policy runs inside the task function: Hydra reports (exit 1, its own format)
# whatever escapes it, but lets SystemExit through.
@hydra.main(config_path=CONFIG_PATH, config_name="search", version_base=HYDRA_VERSION_BASE)
def _app(cfg: DictConfig) -> Any:
    with cli_errors("dance-search"):
        return _search(cfg)


def main() -> None:
    """Console script ``dance-search``."""
    _app()


if __name__ == "__main__":
    main()
