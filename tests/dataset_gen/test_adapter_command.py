"""The ``command`` adapter with real commands: the example adapter (our simulator over
dance-sim-protocol/1) and scripted misbehaving ones (tests/fixtures/adapters/scripted.py),
each a real subprocess of this interpreter, through `make_adapter` and through dance-gen."""

import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

import dataset_gen.generate as generate_module
from dataset_gen.adapters import ERROR_COLUMN, AdapterError, make_adapter
from dataset_gen.adapters.base import PAIR_FIELDS
from dataset_gen.adapters.command import PROTOCOL
from dataset_gen.common.config import compose_config
from dataset_gen.common.cpus import allowed_cpus
from dataset_gen.generate import generate, parse_config
from dataset_gen.reader import read_dataset
from dataset_gen.sampling import sample_pairs
from dataset_gen.simulator import RESULT_FIELDS, SIMULATOR_VERSION, simulate_batch

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = [sys.executable, str(ROOT / "examples" / "adapters" / "builtin_over_protocol.py")]
SCRIPTED = ROOT / "tests" / "fixtures" / "adapters" / "scripted.py"
STRINGS = {"map_kind": object, "map_order": object}  # the adapter frame's string columns


def scripted(mode, arg=None):
    return [sys.executable, str(SCRIPTED), mode, *([] if arg is None else [str(arg)])]


@pytest.fixture
def make():
    """Build command adapters (a generous timeout: a broken adapter fails, never hangs the
    suite) and end their commands after the test."""
    made = []

    def build(command, **settings):
        config = {"name": "command", "command": command, "mapping": "search", "objective": "latency",
                  "timeout_s": 120, "retries": 0, **settings}
        made.append(make_adapter(config))
        return made[-1]

    yield build
    for adapter in made:
        adapter.close()


def gen_config(out, *overrides):
    config = compose_config("gen", ["space=small", "n_samples=20", "shard_rows=10", "progress=false",
                                    f"out={out}", *overrides])
    return OmegaConf.to_container(config, resolve=True)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """20 pairs of the small space (every dataflow; one no mapping fits)."""
    settings = parse_config(gen_config(tmp_path_factory.mktemp("unused"), "workers=1"))
    return sample_pairs(settings.space, settings.layers, settings.sampler, 0, 20, 20, 0)[list(PAIR_FIELDS)]


def builtin(pairs, mapping="search", objective="latency"):
    return simulate_batch(pairs, mapping=mapping, objective=objective).astype(STRINGS)


def assert_builtin_rows(results, pairs, rows):
    """``rows`` (positions) of ``results`` are the builtin simulator's, without an error."""
    expected = builtin(pairs).iloc[rows]
    pd.testing.assert_frame_equal(results.iloc[rows][list(RESULT_FIELDS)], expected)
    assert (results.iloc[rows][ERROR_COLUMN] == "").all()


def assert_error_row(row, *phrases):
    assert not row["feasible"] and row["total_cycles"] == -1 and pd.isna(row["energy_pj"]) and row["map_kind"] == ""
    for phrase in phrases:
        assert phrase in row[ERROR_COLUMN], row[ERROR_COLUMN]


def gone(pid):
    """Whether ``pid`` has ended (a zombie waiting for its reaper counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def wait_gone(pid, limit_s=30.0):
    """Bounded wait for ``pid`` to end (its end is asynchronous; the bound is no assertion
    about speed, only a guard against waiting for ever)."""
    ends = time.monotonic() + limit_s
    while not gone(pid) and time.monotonic() < ends:
        time.sleep(0.05)
    return gone(pid)


def test_the_example_command_gives_the_builtin_simulators_rows(make, pairs):
    assert set(pairs["dataflow"]) == {"ws", "os", "is", "rs"}
    adapter = make(EXAMPLE)
    results = adapter.simulate(pairs)
    assert adapter.version == f"command dance-builtin {SIMULATOR_VERSION} / protocol 1"
    assert (~results["feasible"]).sum() >= 1  # an infeasible row: NaN went out as null and came back
    assert results.index.equals(pairs.index)
    assert_builtin_rows(results, pairs, list(range(len(pairs))))


def test_mapping_and_objective_reach_the_command(make, pairs):
    adapter = make(EXAMPLE, mapping="scalesim", objective="edp")
    results = adapter.simulate(pairs.iloc[:8])
    pd.testing.assert_frame_equal(results[list(RESULT_FIELDS)], builtin(pairs.iloc[:8], "scalesim", "edp"))
    assert set(results["map_kind"]) == {"scalesim"}


def test_a_pair_the_command_answers_with_an_error_is_an_error_row_and_the_others_are_fine(make, pairs):
    results = make(scripted("error-dataflow", "rs")).simulate(pairs)
    is_rs = (pairs["dataflow"] == "rs").to_numpy()
    assert 0 < is_rs.sum() < len(pairs)
    for position in is_rs.nonzero()[0]:
        assert_error_row(results.iloc[position], "no rs here", "pair id")
    assert_builtin_rows(results, pairs, list((~is_rs).nonzero()[0]))


def test_a_pair_that_hangs_times_out_and_a_fresh_command_takes_the_next_pairs(make, pairs):
    adapter = make(scripted("hang-id", 3), timeout_s=1)
    first = adapter.simulate(pairs.iloc[:2])
    pid = adapter._process.popen.pid
    results = adapter.simulate(pairs.iloc[2:6])  # request ids 3 (hangs), 4, 5, 6
    assert_error_row(results.iloc[0], "timed out after 1 s")
    assert_builtin_rows(results, pairs.iloc[2:6], [1, 2, 3])
    assert_builtin_rows(first, pairs.iloc[:2], [0, 1])
    assert adapter._process.popen.pid != pid and wait_gone(pid)  # killed, not left sleeping


def test_a_command_that_crashes_on_a_pair_gives_an_error_row_naming_it_and_is_restarted(make, pairs):
    results = make(scripted("crash-id", 2)).simulate(pairs.iloc[:5])
    assert_error_row(results.iloc[1], "pair id 2", "ended (exit status 3) without answering", "boom")
    assert_builtin_rows(results, pairs.iloc[:5], [0, 2, 3, 4])


def test_a_command_that_prints_something_else_than_json_gives_an_error_row_quoting_it(make, pairs):
    results = make(scripted("garbage-id", 2)).simulate(pairs.iloc[:4])
    assert_error_row(results.iloc[1], "pair id 2", "not a JSON object", "Traceback: this is not JSON")
    assert_builtin_rows(results, pairs.iloc[:4], [0, 2, 3])


def test_a_pair_that_fails_its_first_attempt_succeeds_on_the_retry(make, pairs, tmp_path):
    results = make(scripted("flaky", tmp_path / "seen"), retries=1).simulate(pairs.iloc[:4])
    assert_builtin_rows(results, pairs.iloc[:4], [0, 1, 2, 3])
    assert len((tmp_path / "seen").read_text().splitlines()) == 4  # each pair failed once first


def test_without_retries_a_failed_attempt_is_the_pairs_error_row(make, pairs, tmp_path):
    results = make(scripted("flaky", tmp_path / "seen"), retries=0).simulate(pairs.iloc[:2])
    for position in range(2):
        assert_error_row(results.iloc[position], f"pair id {position + 1}", "exit status 4")


@pytest.mark.parametrize("mode,phrases", [
    ("unknown-column", ["unknown result column(s) ['cycles']"]),
    ("wrong-type", ['result column total_cycles = "many": expected an integer']),
])
def test_a_result_with_an_unknown_column_or_a_wrong_type_is_an_error_row_naming_the_column(make, pairs, mode,
                                                                                          phrases):
    results = make(scripted(mode)).simulate(pairs.iloc[:2])
    for position in range(2):
        assert_error_row(results.iloc[position], f"pair id {position + 1}", *phrases)


@pytest.mark.parametrize("mode,arg,settings,phrases", [
    ("protocol", "dance-sim-protocol/2", {}, ["speaks protocol 'dance-sim-protocol/2'", PROTOCOL]),
    ("protocol", "", {}, ["speaks protocol ''"]),
    ("no-handshake", None, {}, ["ended (exit status 1) before its handshake", "license server not found"]),
    ("silent", None, {"start_timeout_s": 0.5}, ["no handshake line on its stdout within start_timeout_s = 0.5 s"]),
])
def test_a_command_without_the_handshake_stops_the_run_at_check_naming_adapter_and_command(make, mode, arg,
                                                                                          settings, phrases):
    adapter = make(scripted(mode, arg), **settings)
    with pytest.raises(AdapterError) as caught:
        adapter.check()
    message = str(caught.value)
    assert message.startswith("simulator 'command' (") and str(SCRIPTED) in message and mode in message
    for phrase in phrases:
        assert phrase in message


def test_a_command_that_does_not_exist_stops_the_run_at_check(make):
    adapter = make(["/nonexistent/dance-simulator-xyz", "--serve"])
    with pytest.raises(AdapterError, match=r"simulator 'command' \(/nonexistent/dance-simulator-xyz --serve\): "
                                           r"cannot start it: .*No such file"):
        adapter.check()


def test_a_wrong_handshake_is_refused_by_simulate_too_before_any_row(make, pairs):
    with pytest.raises(AdapterError, match="speaks protocol 'other/9'"):
        make(scripted("protocol", "other/9")).simulate(pairs.iloc[:2])


@pytest.mark.parametrize("settings,phrase", [
    ({"command": "???"}, "simulator.command is required"),
    ({"command": "python my_adapter.py"}, "expected the argv as a non-empty list of strings"),
    ({"command": []}, "expected the argv as a non-empty list of strings"),
    ({"timeout": 5}, "unknown setting(s) ['timeout']"),
    ({"retries": -1}, "simulator.retries = -1: expected an integer >= 0"),
    ({"timeout_s": 0}, "simulator.timeout_s = 0: expected a positive number"),
    ({"objective": None}, "simulator.objective = None: expected a string"),
])
def test_bad_settings_are_refused_naming_the_setting(settings, phrase):
    config = {"name": "command", "command": EXAMPLE, "mapping": "search", "objective": "latency", **settings}
    with pytest.raises(AdapterError) as caught:
        make_adapter(config)
    assert phrase in str(caught.value)


def test_close_ends_a_command_that_ignores_the_end_of_its_input_and_its_children(make, pairs, tmp_path):
    adapter = make(scripted("linger", tmp_path / "child"))
    results = adapter.simulate(pairs.iloc[:1])
    assert_builtin_rows(results, pairs.iloc[:1], [0])
    pid, child = adapter._process.popen.pid, int((tmp_path / "child").read_text())
    assert not gone(pid) and not gone(child)
    adapter.close()
    assert gone(pid) and wait_gone(child)


def test_env_and_cwd_reach_the_command(make, pairs, tmp_path):
    # the command's own argv reads both: a relative script path resolved in cwd, a variable
    script = tmp_path / "hello.py"
    script.write_text("import json, os, sys\n"
                      f"print(json.dumps({{'protocol': {PROTOCOL!r}, 'name': os.environ['TOOL_NAME'], "
                      "'version': os.path.basename(os.getcwd())}), flush=True)\n"
                      "for line in sys.stdin:\n"
                      "    print(json.dumps({'id': json.loads(line)['id'], 'result': {'feasible': False}}), flush=True)\n")
    adapter = make([sys.executable, "hello.py"], cwd=str(tmp_path), env={"TOOL_NAME": "hello"})
    assert adapter.version == f"command hello {tmp_path.name} / protocol 1"
    results = adapter.simulate(pairs.iloc[:2])
    assert (~results["feasible"]).all() and (results[ERROR_COLUMN] == "").all()
    assert (results["total_cycles"] == -1).all() and results["area_mm2"].isna().all()


@pytest.fixture
def in_process_adapters():
    """dance-gen keeps one adapter per process and config (workers=1: this one); end the
    commands it started here, so that no test leaves a process behind."""
    yield
    for key in [key for key in generate_module._ADAPTERS if '"command"' in key]:
        generate_module._ADAPTERS.pop(key).close()


def dataset_matches_builtin(out):
    frame = read_dataset(out)
    assert len(frame) == 20 and (frame[ERROR_COLUMN] == "").all()
    expected = builtin(frame[list(PAIR_FIELDS)])
    pd.testing.assert_frame_equal(frame[list(RESULT_FIELDS)].astype(STRINGS), expected)
    return frame


def test_dance_gen_with_the_example_command_writes_the_builtin_simulators_rows(tmp_path, in_process_adapters):
    command = ",".join(f"'{part}'" for part in EXAMPLE)
    result = generate(gen_config(tmp_path / "data", "simulator=command", f"simulator.command=[{command}]",
                                 "workers=1"))
    assert result.rows == 20 and result.errors == 0 and result.n_shards == 2
    assert result.simulator == "command"
    assert result.simulator_version == f"command dance-builtin {SIMULATOR_VERSION} / protocol 1"
    dataset_matches_builtin(tmp_path / "data")
    manifest = json.loads((tmp_path / "data" / "_manifest.json").read_text())
    assert manifest["generation"]["simulator"]["settings"]["command"] == EXAMPLE


@pytest.mark.skipif(allowed_cpus() < 2, reason="a pool of 2 workers needs 2 CPUs")
def test_dance_gen_on_a_pool_runs_one_command_per_worker(tmp_path, in_process_adapters):
    log = tmp_path / "pids"
    command = ",".join(f"'{part}'" for part in scripted("pidlog", log))
    result = generate(gen_config(tmp_path / "data", "simulator=command", f"simulator.command=[{command}]",
                                 "workers=2"))
    assert result.workers == 2 and result.rows == 20 and result.errors == 0
    dataset_matches_builtin(tmp_path / "data")
    started = [tuple(map(int, line.split())) for line in log.read_text().splitlines()]
    per_parent = Counter(parent for _, parent in started)
    # check() in this process, then one command in each worker that took a shard, never more
    assert per_parent.pop(os.getpid()) == 1
    assert 1 <= len(per_parent) <= 2 and set(per_parent.values()) == {1}
    # the workers are gone; their commands saw the end of their input and ended
    assert all(wait_gone(pid) for pid, _ in started)
