"""``dance-search``: the thin Hydra entry point of the co-search.

Composes ``conf/search.yaml`` and hands the resolved config to `search.run.run`, which does
the work; results go to the job's output folder (``out=DIR``; in a multirun
``DIR/<job number>``). Examples::

    dance-search evaluator=runs/eval/evaluator.pt out=runs/search        # co-search, digits
    dance-search evaluator=E search.lambda_cost=3 search.cost.metric=energy
    dance-search evaluator=E search.cost.limits.area_mm2=1.5             # a hard area limit
    dance-search evaluator=E hw.mode=generator                           # DANCE's generator
    dance-search evaluator=E +experiment=cifar10 data.root=~/data/cifar-10-batches-py
    dance-search evaluator=E mode=compare                                # baselines side by side
    dance-search -m evaluator=E search.lambda_cost=0.3,1,3               # sweep + Pareto plot
    dance-search -m evaluator=E +hparams_search=optuna                   # Optuna over lambda, tau

(``data=digits|cifar10`` is short for ``search/data=...`` and ``data.KEY=V`` for
``search.data.KEY=V``.)

The return value (for Hydra sweepers such as Optuna) is the tuple of ``sweep.objectives``
read from the result (default: test accuracy and simulated EDAP).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import hydra
from omegaconf import DictConfig, OmegaConf

from dataset_gen.common.files import atomic_write_text

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

__all__ = ["main", "objective_values"]


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors caused by the user's input: reported as one line, without a traceback."""
    from dataset_gen.space import SpaceError

    errors: list[type[BaseException]] = [SpaceError, FileNotFoundError]
    try:
        from evaluator.artifact import EvaluatorLoadError

        errors.append(EvaluatorLoadError)
    except ImportError:  # pragma: no cover - the evaluator package always has it
        pass
    return tuple(errors)


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


def _data_options() -> set[str]:
    return {path.stem for path in (CONF_DIR / "search" / "data").glob("*.yaml")}


def _rewrite_arguments(argv: list[str]) -> list[str]:
    """Short forms: ``data=NAME`` -> ``search/data=NAME`` (a task of conf/search/data) and
    ``data.KEY=V`` -> ``search.data.KEY=V``, so that ``data.root=DIR`` reads naturally."""
    options = _data_options()
    out = []
    for argument in argv:
        if argument.startswith("data=") and argument[len("data="):] in options:
            argument = "search/data=" + argument[len("data="):]
        elif argument.startswith("data."):
            argument = "search." + argument
        out.append(argument)
    return out


@hydra.main(config_path=str(CONF_DIR), config_name="search", version_base="1.3")
def _app(cfg: DictConfig) -> Any:
    from hydra.core.hydra_config import HydraConfig

    from search.run import run

    # Lightning prints through its own handler; Hydra's root handler would print it twice.
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).propagate = False
    out = Path(HydraConfig.get().runtime.output_dir)
    settings = OmegaConf.to_container(cfg, resolve=True)
    atomic_write_text(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    try:
        result = run(settings, out)  # type: ignore[arg-type]
    except _user_errors() as error:
        raise SystemExit(f"dance-search: {error}") from None
    if "results" in result:  # mode=compare: the co-search's objectives
        result = result["results"]["cosearch"]
    return objective_values(result, list((settings.get("sweep") or {}).get("objectives") or ["test_accuracy"]))


def main() -> None:
    """Console script ``dance-search``."""
    sys.argv[1:] = _rewrite_arguments(sys.argv[1:])
    _app()


if __name__ == "__main__":
    main()
