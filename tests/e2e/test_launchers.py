"""Hydra launchers for real: a sweep through submitit's local launcher.

(That every documented launcher composes with dance-search is tests/test_configs.py.)"""

import subprocess
import sys
from pathlib import Path

import pytest

from dataset_gen.reader import read_dataset

BIN = Path(sys.executable).parent


def test_a_two_job_dance_gen_sweep_runs_through_submitit_local(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the dev extra's hydra-submitit-launcher")
    done = subprocess.run([str(BIN / "dance-gen"), "-m", "hydra/launcher=submitit_local", "space=small",
                           f"out={tmp_path}/data-${{seed}}", "n_samples=20", "shard_rows=10", "workers=1",
                           "progress=false", "seed=0,1"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Submitit 'local' sweep" in done.stdout + done.stderr
    first, second = read_dataset(tmp_path / "data-0"), read_dataset(tmp_path / "data-1")
    assert len(first) == len(second) == 20
    assert not first.drop(columns="row_id").equals(second.drop(columns="row_id"))  # seeds 0 and 1
