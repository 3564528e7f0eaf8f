"""The ``scalesim`` adapter: SCALE-Sim 3.0.0 as a worker subprocess in its own environment.

Without SCALE-Sim (CI, unless ``make scalesim-env`` ran): the files the adapter writes for
SCALE-Sim and the parsing of its reports, on reports of real SCALE-Sim runs
(``tests/fixtures/scalesim_reports/``, see its README), checked against our simulator's
``scalesim`` mapping; what SCALE-Sim cannot express; the message of a missing environment.
With ``tools/.scalesim-venv`` (``slow``): the real subprocess end to end, its failures and
restarts, and ``dance-gen simulator=scalesim``.
"""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

import dataset_gen.adapters.scalesim as scalesim_adapter
from dataset_gen.adapters import AdapterError, make_adapter, result_columns
from dataset_gen.adapters.scalesim import (ScaleSimAdapter, ScaleSimFailure, parse_report, parse_reports, refusal,
                                           results_from_reports, scalesim_inputs)
from dataset_gen.common.config import compose_config
from dataset_gen.simulator import RESULT_DTYPES, simulate_batch

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "scalesim_reports"
CASES: dict[str, dict] = json.loads((FIXTURES / "cases.json").read_text())
REPORTS = ("COMPUTE_REPORT.csv", "BANDWIDTH_REPORT.csv", "DETAILED_ACCESS_REPORT.csv")
HAVE_SCALESIM = scalesim_adapter.DEFAULT_PYTHON.is_file()
needs_scalesim = pytest.mark.skipif(
    not HAVE_SCALESIM, reason="SCALE-Sim's environment tools/.scalesim-venv is missing (make scalesim-env)")
SETTINGS = {"python": None, "timeout_s": 300, "retries": 0, "max_matrix_entries": 200_000_000,
            "mapping": "scalesim", "objective": "latency"}


def fixture_reports(case: str) -> dict[str, str]:
    return {name: (FIXTURES / case / name).read_text() for name in REPORTS}


def fixture_results(case: str) -> dict:
    return results_from_reports(CASES[case], parse_reports(fixture_reports(case)))


def builtin_scalesim(pairs: list[dict]) -> pd.DataFrame:
    """Our simulator's ``scalesim`` mapping (SCALE-Sim's compute cycles and SRAM reads)."""
    return simulate_batch(pd.DataFrame(pairs), mapping="scalesim")


def pair(**changes) -> dict:
    return {**CASES["conv_ws_8x8"], **changes}


# --- the files SCALE-Sim is given ----------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_adapter_writes_the_config_and_topology_the_fixture_runs_used(case):
    files = scalesim_inputs(CASES[case])
    assert files["config"] == (FIXTURES / case / "layer.cfg").read_text()
    assert files["topology"] == (FIXTURES / case / "layer_topology.csv").read_text()
    assert files["layout"] == "Layer name,\nL,\n"


def test_the_config_gives_scalesim_our_capacities_in_its_one_byte_words_and_our_bandwidth():
    config = scalesim_inputs(CASES["grouped4_ws_8bit"])["config"]  # 8-bit words, dram_bw 4 B/cycle
    assert "ArrayHeight = 8\nArrayWidth = 12\n" in config
    assert "IfmapSramSzkB = 16\nFilterSramSzkB = 8\nOfmapSramSzkB = 32\n" in config
    assert "Bandwidth = 4\n" in config and "Dataflow = ws\n" in config
    # in USER mode SCALE-Sim 3.0.0 reads the ifmap and filter interfaces' bandwidth here
    assert config.count("SRAMBankBandwidth = 4\n") == 2
    assert "InterfaceBandwidth = USER\n" in config
    sixteen = scalesim_inputs(pair(ifmap_kb=64.0, filter_kb=8.0, ofmap_kb=1.0, dram_bw=20.0))["config"]
    # 64 KiB of 16-bit words = 32768 words = 32 SCALE-Sim kB; 1 KiB = 512 words -> at least 1 kB
    assert "IfmapSramSzkB = 32\nFilterSramSzkB = 4\nOfmapSramSzkB = 1\n" in sixteen
    assert "Bandwidth = 10\n" in sixteen  # 20 bytes/cycle of 16-bit words


def test_the_topology_has_the_padded_ifmap_and_one_group():
    topology = scalesim_inputs(CASES["depthwise_batch2_is"])["topology"]  # 7x7x8, pad 1, groups 8
    assert topology.splitlines()[1] == "L, 9, 9, 3, 3, 1, 1, 1,"
    topology = scalesim_inputs(CASES["grouped4_ws_8bit"])["topology"]  # 8x8x16 -> 16, groups 4
    assert topology.splitlines()[1] == "L, 10, 10, 3, 3, 4, 4, 1,"


# --- parsing SCALE-Sim's reports (real runs, committed) ---------------------------------------


def test_a_report_parses_to_its_columns():
    values = parse_report((FIXTURES / "conv_ws_8x8" / "COMPUTE_REPORT.csv").read_text())
    assert values["LayerID"] == 0
    assert values["Total Cycles"] == 14699 and values["Stall Cycles"] == 2748
    assert values["Total Cycles (incl. prefetch)"] == 18663
    assert set(values) == {"LayerID", "Total Cycles (incl. prefetch)", "Total Cycles", "Stall Cycles",
                           "Overall Util %", "Mapping Efficiency %", "Compute Util %"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_parsed_compute_cycles_and_sram_reads_equal_our_scalesim_mapping(case):
    ours = builtin_scalesim([CASES[case]]).iloc[0]
    theirs = fixture_results(case)
    for column in ("compute_cycles", "macs", "sram_ifmap_reads", "sram_filter_reads", "sram_ofmap_writes",
                   "map_kind", "map_order", "map_tile_p", "map_tile_c", "map_tile_k", "rf_accesses", "area_mm2"):
        assert theirs[column] == ours[column], column


def test_cycles_come_from_the_compute_report_and_scale_with_groups_and_batch():
    # grouped4_ws_8bit: 4 groups; its report: 1408 incl. prefetch, 449 total, 0 stall
    results = fixture_results("grouped4_ws_8bit")
    assert (results["total_cycles"], results["compute_cycles"], results["stall_cycles"]) == (4 * 1408, 4 * 449,
                                                                                           4 * (1408 - 449))
    assert results["latency_s"] == 4 * 1408 / 200e6
    # its detailed-access report: DRAM reads 2560 ifmap, 432 filter; 1280 ofmap writes
    assert (results["dram_ifmap_reads"], results["dram_filter_reads"], results["dram_ofmap_writes"]) == (
        4 * 2560, 4 * 432, 4 * 1280)
    assert results["dram_ofmap_reads"] == 0
    # our counting rule: every ofmap write but the first of each output reads first; ws writes
    # each of a group's 16 * 16 outputs once per row fold (5 here: 1280 writes)
    assert results["sram_ofmap_reads"] == results["sram_ofmap_writes"] - 4 * 256 == 4 * 1024
    # depthwise_batch2_is: 8 groups x 2 images of one 9x9 -> 7x7 channel, 3x3: 16 * 49 * 9 MACs
    depthwise = fixture_results("depthwise_batch2_is")
    assert depthwise["macs"] == 16 * 49 * 9
    assert depthwise["utilization"] == depthwise["macs"] / (depthwise["total_cycles"] * 16)


def test_small_buffers_make_scalesim_refetch_and_stall_on_our_bandwidth():
    big, small = fixture_results("conv_ws_8x8"), fixture_results("conv_ws_small_buffers")
    assert big["compute_cycles"] == small["compute_cycles"] == 11951
    assert small["dram_ifmap_reads"] > big["dram_ifmap_reads"]
    assert big["stall_cycles"] > 0 and small["stall_cycles"] > 0


def test_energy_is_our_model_applied_to_the_counts():
    """Given our simulator's own counts as SCALE-Sim's reports, every column is our simulator's."""
    cases = [CASES[name] for name in sorted(CASES) if CASES[name]["groups"] == CASES[name]["batch"] == 1]
    ours = builtin_scalesim(cases)
    for case, (_, row) in zip(cases, ours.iterrows()):
        assert row["dram_ofmap_reads"] == 0  # one tile per layer
        values = {"LayerID": 0.0, "Total Cycles (incl. prefetch)": row["total_cycles"],
                  "Total Cycles": row["compute_cycles"], "Stall Cycles": 0,
                  "SRAM IFMAP Reads": row["sram_ifmap_reads"], "SRAM Filter Reads": row["sram_filter_reads"],
                  "SRAM OFMAP Writes": row["sram_ofmap_writes"], "DRAM IFMAP Reads": row["dram_ifmap_reads"],
                  "DRAM Filter Reads": row["dram_filter_reads"], "DRAM OFMAP Writes": row["dram_ofmap_writes"]}
        assert results_from_reports(case, values) == row.to_dict()


@pytest.mark.parametrize("text, message", [
    ("LayerID, Total Cycles,\n0, 5,\n1, 6,\n", "one layer line, got 3"),
    ("LayerID, Total Cycles,\n0, five,\n", "not a number"),
    ("LayerID, Total Cycles,\n3, 5,\n", "LayerID 0"),
])
def test_a_malformed_report_is_a_failure_naming_it(text, message):
    with pytest.raises(ScaleSimFailure, match=message):
        parse_report(text, "COMPUTE_REPORT.csv")


def test_a_report_without_a_column_is_a_failure():
    reports = fixture_reports("conv_ws_8x8")
    reports["COMPUTE_REPORT.csv"] = "LayerID, Total Cycles,\n0, 5,\n"
    with pytest.raises(ScaleSimFailure, match="no column 'Stall Cycles'"):
        results_from_reports(CASES["conv_ws_8x8"], parse_reports(reports))
    with pytest.raises(ScaleSimFailure, match="no BANDWIDTH_REPORT.csv"):
        parse_reports({"COMPUTE_REPORT.csv": reports["COMPUTE_REPORT.csv"]})


# --- what SCALE-Sim cannot express -------------------------------------------------------------


def test_refusals_name_what_scalesim_lacks():
    assert refusal(pair()) == ""
    assert "has no rs dataflow" in refusal(pair(dataflow="rs"))
    assert "0.5 words per cycle" in refusal(pair(dram_bw=1.0))  # 16-bit words
    assert "max_matrix_entries" in refusal(pair(in_h=224, in_w=224, in_c=256), max_matrix_entries=10 ** 8)
    assert refusal(pair(in_h=224, in_w=224, in_c=256)) == ""  # no limit given


def test_refused_pairs_are_error_rows_without_running_scalesim(tmp_path):
    # the interpreter does not exist: a refused pair must not even try to start it
    adapter = make_adapter({"name": "scalesim", **SETTINGS, "python": str(tmp_path / "none")})
    try:
        results = adapter.simulate(pd.DataFrame([pair(dataflow="rs"), pair(dram_bw=0.5)], index=[7, 9]))
    finally:
        adapter.close()
    assert list(results.index) == [7, 9]
    assert list(results.columns) == list(result_columns())
    assert not results["feasible"].any()
    assert results["error"].str.startswith("scalesim: ").all()
    assert "no rs dataflow" in results.loc[7, "error"]
    assert (results["total_cycles"] == -1).all() and results["energy_pj"].isna().all()
    assert (results["map_kind"] == "").all()


def test_identity_and_provides():
    adapter = ScaleSimAdapter(SETTINGS)
    assert adapter.version == "scalesim 3.0.0 / adapter 1"
    assert adapter.identity() == {"name": "scalesim", "version": "scalesim 3.0.0 / adapter 1",
                                  "settings": SETTINGS}
    assert adapter.provides == frozenset(RESULT_DTYPES)


# --- a missing environment ---------------------------------------------------------------------


def test_check_names_a_missing_interpreter(tmp_path):
    adapter = make_adapter({"name": "scalesim", **SETTINGS, "python": str(tmp_path / "bin" / "python")})
    with pytest.raises(AdapterError, match=r"^simulator scalesim: python = '.*/bin/python' "
                                           r"\(conf/simulator/scalesim.yaml\) is not an executable file.*"
                                           r"make scalesim-env"):
        adapter.check()


def test_check_names_the_missing_environment_and_the_make_target(tmp_path, monkeypatch):
    monkeypatch.setattr(scalesim_adapter, "DEFAULT_PYTHON", tmp_path / "missing" / "bin" / "python")
    with pytest.raises(AdapterError) as error:
        make_adapter({"name": "scalesim", **SETTINGS}).check()
    assert str(error.value) == ("simulator scalesim: SCALE-Sim's environment tools/.scalesim-venv is missing: "
                                "run `make scalesim-env`")


def test_an_interpreter_without_scalesim_is_refused_naming_the_error():
    # this test's own interpreter (numpy 2, no scalesim) is a real Python that cannot run it
    import sys

    adapter = make_adapter({"name": "scalesim", **SETTINGS, "python": sys.executable})
    with pytest.raises(AdapterError, match=r"^simulator scalesim: .* cannot run SCALE-Sim: "
                                           r"ModuleNotFoundError: No module named 'scalesim'"):
        adapter.check()


# --- the real SCALE-Sim (tools/.scalesim-venv) -------------------------------------------------


@pytest.fixture
def adapter():
    built = make_adapter({"name": "scalesim", **SETTINGS})
    yield built
    built.close()


@pytest.mark.slow
@needs_scalesim
def test_real_scalesim_reproduces_the_fixture_runs(adapter):
    adapter.check()
    names = ["conv_ws_8x8", "stride2_pad1_os", "grouped4_ws_8bit"]
    results = adapter.simulate(pd.DataFrame([CASES[name] for name in names]))
    assert (results["error"] == "").all(), list(results["error"])
    for name, (_, row) in zip(names, results.iterrows()):
        expected = fixture_results(name)
        assert {key: row[key] for key in expected} == expected, name


@pytest.mark.slow
@needs_scalesim
def test_a_crash_is_an_error_row_and_the_worker_serves_the_next_pair(adapter):
    # SCALE-Sim divides by its 0 cycles for one MAC on a 1x1 output-stationary array
    crash = pair(in_h=1, in_w=1, in_c=1, out_c=1, k_h=1, k_w=1, pe_rows=1, pe_cols=1, dataflow="os")
    results = adapter.simulate(pd.DataFrame([crash, CASES["stride2_pad1_os"]]))
    assert not results.loc[0, "feasible"]
    assert "ZeroDivisionError" in results.loc[0, "error"]
    assert results.loc[1, "error"] == "" and results.loc[1, "compute_cycles"] == fixture_results(
        "stride2_pad1_os")["compute_cycles"]


@pytest.mark.slow
@needs_scalesim
def test_a_dead_or_overrunning_worker_is_replaced_for_the_next_pair(adapter):
    first = adapter.simulate(pd.DataFrame([CASES["stride2_pad1_os"]]))
    assert first.loc[0, "error"] == ""
    adapter._worker.process.kill()  # as the kernel's OOM killer would, between two pairs
    adapter._worker.process.wait()
    again = adapter.simulate(pd.DataFrame([CASES["grouped4_ws_8bit"]]))
    assert again.loc[0, "error"] == ""
    # a pair of about a second under a 10 ms limit: a timeout row, then a fresh worker
    adapter.timeout_s = 0.01
    slow = adapter.simulate(pd.DataFrame([CASES["conv_ws_8x8"]]))
    assert slow.loc[0, "error"] == "scalesim: timed out after 0.01 s"
    assert adapter._worker is None
    adapter.timeout_s = 300
    after = adapter.simulate(pd.DataFrame([CASES["depthwise_batch2_is"]]))
    assert after.loc[0, "error"] == "" and after.loc[0, "total_cycles"] == fixture_results(
        "depthwise_batch2_is")["total_cycles"]


@pytest.mark.slow
@needs_scalesim
def test_dance_gen_with_the_scalesim_simulator_writes_a_dataset(tmp_path):
    from dataset_gen import generate as generate_module
    from dataset_gen.reader import read_dataset

    config = OmegaConf.to_container(compose_config("gen", [
        "simulator=scalesim", "n_samples=4", "shard_rows=2", "workers=1", "progress=false", "space=small",
        "layers=random", "space.accelerator.dataflow=[ws,os,is]", f"out={tmp_path / 'data'}"]), resolve=True)
    config.pop("hydra", None)
    try:
        result = generate_module.generate(config)
    finally:  # workers=1 ran the shards here: stop the worker its cached adapter holds
        for key in [key for key in generate_module._ADAPTERS if '"scalesim"' in key]:
            generate_module._ADAPTERS.pop(key).close()
    assert (result.rows, result.n_shards, result.simulator) == (4, 2, "scalesim")
    assert result.simulator_version == "scalesim 3.0.0 / adapter 1"
    frame = read_dataset(tmp_path / "data")
    assert len(frame) == 4
    assert (frame["error"] == "").all(), list(frame["error"])
    assert frame["feasible"].all()
    ours = simulate_batch(frame, mapping="scalesim")
    np.testing.assert_array_equal(frame["compute_cycles"], ours["compute_cycles"])
    np.testing.assert_array_equal(frame["sram_filter_reads"], ours["sram_filter_reads"])
    assert (frame["total_cycles"] >= frame["compute_cycles"]).all()
    assert all(math.isfinite(value) for value in frame["energy_pj"])
