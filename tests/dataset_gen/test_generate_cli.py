"""The dance-gen console script, run as a user runs it: a real process, killed with SIGKILL."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path


from dataset_gen.cli_gen import load_config
from dataset_gen.generate import generate
from dataset_gen.reader import read_dataset
from dataset_gen.writer import CONFIG_FILE, read_manifest

DANCE_GEN = Path(sys.executable).with_name("dance-gen")
SMALL = ["space=small", "layers.input_sizes=[32]"]


def dance_gen(*arguments, timeout=120):
    command = [str(DANCE_GEN) if DANCE_GEN.exists() else shutil.which("dance-gen"), *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_dance_gen_writes_a_dataset_and_closes_with_a_summary(tmp_path):
    out = tmp_path / "data"
    run = dance_gen(*SMALL, "n_samples=120", "shard_rows=50", "workers=1", f"out={out}")
    assert run.returncode == 0, run.stderr
    assert "dance-gen wrote 120 rows" in run.stdout and str(out) in run.stdout and "infeasible" in run.stdout
    assert "rows" in run.stderr  # the tqdm progress bar
    assert sorted(path.name for path in out.iterdir()) == [CONFIG_FILE, "_manifest.json", "part-00000.parquet",
                                                            "part-00001.parquet", "part-00002.parquet"]
    assert not list(Path.cwd().glob("*.log"))  # Hydra writes no log file anywhere

    described = dance_gen(f"describe={out}")
    assert described.returncode == 0, described.stderr
    assert "rows         120 of 120 (3 of 3 shards)" in described.stdout
    assert "Latency of feasible rows by dataflow" in described.stdout
    for dataflow in ("ws", "os", "is", "rs"):
        assert any(line.split()[:1] == [dataflow] for line in described.stdout.splitlines())

    again = dance_gen(*SMALL, "n_samples=120", "shard_rows=50", "seed=9", f"out={out}")
    assert again.returncode == 2
    assert "holds data generated with other settings (seed = 0 there, 9 here)" in again.stderr
    assert "overwrite=true" in again.stderr and "Traceback" not in again.stderr


def test_a_bad_config_exits_with_status_2_and_one_line_naming_the_key(tmp_path):
    run = dance_gen(*SMALL, "space.accelerator.pe_rows.min=32", f"out={tmp_path / 'never'}")
    assert run.returncode == 2
    assert run.stderr.strip() == "dance-gen: error: space.accelerator.pe_rows: min = 32 > max = 8: the range is empty"
    assert not (tmp_path / "never").exists()


def test_a_run_killed_with_sigkill_finishes_on_the_next_start_with_no_row_lost_or_twice(tmp_path):
    out = tmp_path / "data"
    arguments = [*SMALL, "n_samples=2000", "shard_rows=40", "workers=2", "progress=false"]
    process = subprocess.Popen([str(DANCE_GEN), *arguments, f"out={out}"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(list(out.glob("part-*.parquet"))) < 4 and time.monotonic() < deadline:
            assert process.poll() is None, "dance-gen ended before it could be killed"
            time.sleep(0.02)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the run and its workers: its own process group
        process.wait()
    manifest = read_manifest(out)
    killed_with = len(list(out.glob("part-*.parquet")))
    assert manifest is not None and not manifest["complete"] and 4 <= killed_with < 50

    finished = dance_gen(*arguments, f"out={out}")
    assert finished.returncode == 0, finished.stderr
    assert "resumed from an earlier run" in finished.stdout
    assert not [path.name for path in out.iterdir() if path.name.startswith(".")]  # no torn leftovers
    frame = read_dataset(out)
    assert frame["row_id"].tolist() == list(range(2000))

    uninterrupted = tmp_path / "uninterrupted"
    generate(load_config([*arguments, "workers=1", f"out={uninterrupted}"]))
    assert frame.equals(read_dataset(uninterrupted))


def test_ctrl_c_stops_at_once_keeping_finished_shards_and_leaving_no_temporary_file(tmp_path):
    out = tmp_path / "data"
    # 40,000 rows: stopped after its first shards, the run is far from done when the signal arrives
    # Started as a terminal starts a command: Ctrl-C at its default disposition. A child inherits
    # an ignored SIGINT and Python then installs no KeyboardInterrupt handler: a suite started as
    # a background job of a non-interactive shell (`bash -c "... &"` ignores SIGINT there) saw
    # dance-gen run to the end and exit 0 (the "flaky" failures of earlier sessions).
    reset = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
    process = subprocess.Popen([sys.executable, "-c", reset, str(DANCE_GEN), *SMALL, "n_samples=40000", "shard_rows=40",
                                "workers=2", "progress=false", f"out={out}"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(list(out.glob("part-*.parquet"))) < 2 and time.monotonic() < deadline:
            assert process.poll() is None, "dance-gen ended before it could be interrupted"
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's process group
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130
    assert f"dance-gen: interrupted. The finished shards are kept; run the same command again to finish the dataset in {out}." in stderr
    assert not [path.name for path in out.iterdir() if path.name.startswith(".")]
    assert not read_manifest(out)["complete"]
    assert len(read_dataset(out, allow_incomplete=True)) % 40 == 0
