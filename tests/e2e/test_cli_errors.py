"""One error policy for every command, checked on the installed console scripts.

A user error (a missing setting, an unusable or occupied ``out=``) is one line
``PROG: error: MESSAGE`` on stderr and exit status 2, before anything is written; Hydra
never gets to print its own report or a traceback.
"""

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
# The required settings of each command, with values the run-folder check comes before.
REQUIRED = {
    "dance-train": ["dataset=/no/such/dataset"],
    "dance-validate": ["artifact=/no/such/evaluator.pt", "dataset=/no/such/dataset"],
    "dance-search": ["evaluator=/no/such/evaluator.pt"],
}


def command(*arguments, cwd):
    return subprocess.run([str(BIN / arguments[0]), *arguments[1:]], cwd=cwd, capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL)


def assert_one_line_error(done, program, *needles):
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert lines and lines[-1].startswith(f"{program}: error: "), done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "HYDRA_FULL_ERROR" not in done.stderr
    for needle in needles:
        assert needle in lines[-1], (needle, lines[-1])
    return lines[-1]


@pytest.mark.parametrize("program,missing", [("dance-train", "'dataset'"), ("dance-validate", "'artifact', 'dataset'"),
                                             ("dance-search", "'evaluator'")])
def test_a_missing_required_setting_is_one_line_and_exit_2_before_any_folder_exists(program, missing, tmp_path):
    done = command(program, f"out={tmp_path / 'run'}", cwd=tmp_path)
    assert_one_line_error(done, program, missing, "required")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("program", sorted(REQUIRED))
def test_out_under_a_file_is_one_line_and_exit_2(program, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    done = command(program, *REQUIRED[program], f"out={tmp_path / 'file' / 'run'}", cwd=tmp_path)
    assert_one_line_error(done, program, f"out={tmp_path / 'file' / 'run'}", "is a file")


@pytest.mark.parametrize("program", sorted(REQUIRED))
def test_out_that_is_a_file_is_one_line_and_exit_2_and_the_file_is_untouched(program, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    done = command(program, *REQUIRED[program], f"out={tmp_path / 'file'}", cwd=tmp_path)
    assert_one_line_error(done, program, f"out={tmp_path / 'file'}", "is a file")
    assert (tmp_path / "file").read_text() == "not a folder"


@pytest.mark.parametrize("program", sorted(REQUIRED))
def test_out_on_a_file_system_nobody_writes_is_one_line_and_exit_2(program, tmp_path):
    done = command(program, *REQUIRED[program], "out=/sys/dance-run", cwd=tmp_path)
    assert_one_line_error(done, program, "out=/sys/dance-run", "cannot write there")


@pytest.mark.parametrize("program", sorted(REQUIRED))
def test_out_holding_a_run_is_refused_by_name_and_left_as_it_was(program, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("the earlier run's config\n")
    (run / "report.json").write_text("{}\n")
    done = command(program, *REQUIRED[program], f"out={run}", cwd=tmp_path)
    assert_one_line_error(done, program, f"already holds a run ({run / 'report.json'})", "overwrite=true")
    assert sorted(path.name for path in run.iterdir()) == ["config.yaml", "report.json"]  # no .hydra/, no log
    assert (run / "config.yaml").read_text() == "the earlier run's config\n"


def test_a_run_that_failed_before_producing_anything_can_be_retried_in_its_folder(tmp_path):
    run = tmp_path / "run"
    first = command("dance-train", "dataset=/no/such/dataset", f"out={run}", cwd=tmp_path)
    assert_one_line_error(first, "dance-train", "/no/such/dataset")
    assert (run / "config.yaml").is_file()
    again = command("dance-train", "dataset=/no/such/other", f"out={run}", cwd=tmp_path)
    assert_one_line_error(again, "dance-train", "/no/such/other")  # the dataset again, not the folder
    assert "dataset: /no/such/other" in (run / "config.yaml").read_text()


def test_a_sweep_into_a_folder_holding_a_sweep_is_refused_before_its_first_job(tmp_path):
    job = tmp_path / "sweep" / "0"
    job.mkdir(parents=True)
    (job / "result.json").write_text("{}")
    done = command("dance-search", "-m", *REQUIRED["dance-search"], "seed=0,1", f"out={tmp_path / 'sweep'}",
                   cwd=tmp_path)
    assert_one_line_error(done, "dance-search", f"already holds a sweep ({job / 'result.json'})")
    assert sorted(path.name for path in job.iterdir()) == ["result.json"]


def test_overwrite_removes_only_what_the_command_writes(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("config.yaml", "report.json", "report.txt", "parity_test.png", "notes.txt"):
        (run / name).write_text("earlier")
    done = command("dance-validate", *REQUIRED["dance-validate"], f"out={run}", "overwrite=true", cwd=tmp_path)
    # the artifact does not exist: the run fails, but only after the earlier report was removed
    assert_one_line_error(done, "dance-validate", "/no/such/evaluator.pt")
    assert (run / "notes.txt").read_text() == "earlier" and (run / "checkpoints").is_dir()
    assert not (run / "report.json").exists() and not (run / "parity_test.png").exists()


def test_dance_gen_out_under_a_file_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    done = command("dance-gen", "n_samples=10", "shard_rows=10", "workers=1", f"out={tmp_path / 'file' / 'data'}",
                   cwd=tmp_path)
    assert_one_line_error(done, "dance-gen", "file")


def test_dance_demo_reports_a_failed_step_in_one_line_with_exit_2(tmp_path):
    done = command("dance-demo", "--out", "/sys/dance-demo", "--samples", "10", cwd=tmp_path)
    assert_one_line_error(done, "dance-demo", "generate the dataset failed with exit code 2")
