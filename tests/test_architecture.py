"""The architecture's guard rails: import contracts (``.importlinter``) and self-contained docs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold_layers_acyclic_packages_and_no_torch_in_the_simulator():
    """search -> evaluator -> dataset_gen only, no cycle inside a package, no torch below evaluator."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    completed = subprocess.run([str(lint_imports), "--config", str(ROOT / ".importlinter")], cwd=ROOT,
                               capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-2000:]
    assert "3 kept, 0 broken" in completed.stdout


def test_no_file_of_the_project_cites_notes_a_user_does_not_have():
    """The repository is all a user has: nothing may point at the team's private notes."""
    private = ("DESIGN" + ".md", "STYLE" + ".md", "../" + "shared")
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    citing = []
    for name in tracked.stdout.split():
        path = ROOT / name
        if path.suffix in {".png", ".parquet", ".pt", ".ckpt"} or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        citing += [f"{name}: {word}" for word in private if word in text]
    assert not citing, citing
