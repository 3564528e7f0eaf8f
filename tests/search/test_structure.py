"""The search package's shape: imports point one way, settings have one default, CPUs are shared."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from dataset_gen.common.cpus import allowed_cpus
from search.app import MODES, run
from search.context import build_spaces, check_settings
from search.cosearch import loader_workers
from search.training import use_threads

from .conftest import CONF, search_settings

PACKAGE = Path(__file__).resolve().parents[2] / "search"


def imported_search_modules(path: Path) -> set[str]:
    """The ``search.*`` modules a file imports, at any depth (function-level imports count)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(filter(None, ["search" if node.level else "", node.module or ""]))
            # `from search import baselines` imports the module search.baselines
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(name for name in names if name.startswith("search.") and
                     (PACKAGE / f"{name.split('.')[1]}.py").is_file())
    return {".".join(name.split(".")[:2]) for name in found}


def search_import_graph() -> dict[str, set[str]]:
    return {f"search.{path.stem}": imported_search_modules(path) - {f"search.{path.stem}"}
            for path in sorted(PACKAGE.glob("*.py")) if path.stem != "__init__"}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of the graph (as a path that returns to its start), or []."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str]:
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        state[module] = "done"
        stack.pop()
        return []

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            if cycle:
                return cycle
    return []


def test_the_checker_sees_function_level_and_package_imports(tmp_path):
    source = tmp_path / "lazy.py"
    source.write_text("from search import baselines\n\ndef f():\n    from search.compare import compare\n"
                      "    from .cosearch import derive\n")
    assert imported_search_modules(source) == {"search.baselines", "search.compare", "search.cosearch"}
    assert find_cycle({"search.a": {"search.b"}, "search.b": {"search.a"}}) == ["search.a", "search.b", "search.a"]
    assert find_cycle({"search.a": {"search.b"}, "search.b": set()}) == []


def test_search_modules_import_each_other_without_a_cycle():
    graph = search_import_graph()
    assert {"search.app", "search.context", "search.cosearch", "search.baselines"} <= set(graph)
    assert find_cycle(graph) == []


def test_only_the_app_and_the_cli_know_the_modes():
    graph = search_import_graph()
    modes = {"search.app", "search.cli", "search.baselines", "search.compare", "search.export"}
    for library in ("search.context", "search.cosearch"):
        assert not graph[library] & modes, (library, graph[library] & modes)
    assert "search.cli" not in graph["search.compare"]
    assert {"search.baselines", "search.compare", "search.export"} <= graph["search.app"]
    assert not (PACKAGE / "run.py").exists()


def test_a_missing_search_key_is_an_error_not_a_second_default():
    settings = search_settings()
    del settings["search"]["lambda_cost"]
    with pytest.raises(KeyError, match="lambda_cost"):
        check_settings(settings)


def test_a_missing_task_key_is_an_error_not_a_second_default():
    settings = search_settings()
    del settings["task"]["test_fraction"]
    with pytest.raises(KeyError, match="test_fraction"):
        build_spaces(settings)


@pytest.fixture
def restore_torch_threads():
    saved = torch.get_num_threads()
    yield
    torch.set_num_threads(saved)


def test_threads_caps_torch_at_the_cpus_this_process_may_use(restore_torch_threads):
    assert use_threads(1) == 1 and torch.get_num_threads() == 1
    assert use_threads(4096) == allowed_cpus() == torch.get_num_threads()


def test_threads_null_takes_the_free_cpus_only(restore_torch_threads):
    threads = use_threads(None)
    assert 1 <= threads <= allowed_cpus()
    assert torch.get_num_threads() == threads


def test_dance_search_sets_torch_threads_from_the_config(tmp_path, restore_torch_threads):
    run(search_settings("mode=export", "threads=4096"), tmp_path)
    assert torch.get_num_threads() == allowed_cpus()


def test_loader_workers_stay_in_process_at_zero_and_are_capped_otherwise():
    assert loader_workers(0) == 0
    assert loader_workers(1) == 1
    assert loader_workers(4096) == allowed_cpus()


def test_modes_are_the_search_the_baselines_compare_and_export():
    assert MODES == ("search", "sequential", "evolution", "random", "compare", "export")


def test_optuna_runs_as_many_trials_at_once_as_the_launcher_has_cpus():
    from hydra import compose, initialize_config_dir

    import dataset_gen.common.config  # noqa: F401 - registers ${usable_cpus:}

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="search", overrides=["+hparams_search=optuna", "evaluator=unused"],
                      return_hydra_config=True)
    assert cfg.hydra.sweeper._get_node("n_jobs")._value() == "${usable_cpus:}"
    assert 1 <= cfg.hydra.sweeper.n_jobs <= allowed_cpus()
