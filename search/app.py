"""What ``dance-search`` runs: the ``mode``'s method(s) on one context, importable and
testable without Hydra.

``mode`` picks it: ``search`` (the co-search, `search.cosearch`), the baselines
``sequential``, ``evolution`` and ``random`` (`search.baselines`), ``compare`` (all of them,
same lambda and budget, with a comparison table: `search.compare`), or ``export`` (the
search space as dance-gen inputs: `search.export`). This is the only module that knows the
modes; the library below it (`search.context`, `search.cosearch`) knows none of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from dataset_gen.space import SpaceError
from search.baselines import BASELINES, run_baseline
from search.compare import compare
from search.context import build_context, build_spaces
from search.cosearch import run_search, summary_line
from search.export import export_space
from search.refine import check_refine
from search.training import use_threads

__all__ = ["MODES", "run", "export_search_space"]

MODES: tuple[str, ...] = ("search", *BASELINES, "compare", "export")


def export_search_space(settings: Mapping[str, Any], out_dir: str | Path) -> dict[str, str]:
    """``mode=export``: the search's layers and accelerator space as dance-gen inputs."""
    _, space, _, hw_space, layer_table = build_spaces(settings)
    paths = export_space(hw_space, layer_table, out_dir)
    out = Path(out_dir).resolve()
    print(f"Exported the search space: {len(layer_table)} candidate layers ({space.num_blocks} blocks x "
          f"{space.num_candidates} candidates at the deployment resolution) to {paths['layers']}, and the "
          f"{hw_space.size} accelerators with layer ranges to {paths['space']}. Simulate a training set for an "
          f"evaluator of this search with\n  dance-gen --config-dir {out} space=search "
          f"layers.source={Path(paths['layers']).resolve()} layers.mix=0.3 out=DATA\nthen dance-train dataset=DATA.",
          flush=True)
    return {key: str(value) for key, value in paths.items()}


def run(settings: Mapping[str, Any], out_dir: str | Path, evaluator: Any = None) -> dict[str, Any]:
    """Run the ``mode`` of a resolved ``dance-search`` config, results under ``out_dir``.

    Parameters
    ----------
    settings : mapping
        The resolved config (``mode``, ``threads``, ``search``, ``hw``...).
    out_dir : path-like
        Where results go.
    evaluator : Evaluator, optional
        An already loaded evaluator (else ``settings["evaluator"]`` is loaded).

    Returns
    -------
    dict
        The result (``mode=compare``: ``{"table", "results", "csv", "markdown"}``;
        ``mode=export``: the written paths).
    """
    mode = settings["mode"]
    if mode not in MODES:
        raise SpaceError(f"mode = {mode!r}: expected one of {list(MODES)}")
    use_threads(settings["threads"])
    if mode == "export":
        return export_search_space(settings, out_dir)
    check_refine(settings)  # search.refine_rounds: refused before any work
    context = build_context(settings, out_dir, evaluator)
    if mode == "compare":
        return compare(context)
    result = run_search(context) if mode == "search" else run_baseline(context, mode)
    print(summary_line(result), flush=True)
    return result
