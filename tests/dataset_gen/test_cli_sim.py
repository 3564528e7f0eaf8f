"""``dance-sim``: every layer source, accelerator precedence, output formats and bad input."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dataset_gen.cli_sim import main, parse_layer_spec
from dataset_gen.network_json import save_network
from dataset_gen.networks import resnet18
from dataset_gen.simulator import RESULT_FIELDS, simulate
from dataset_gen.space import ACCELERATOR_FIELDS, LAYER_FIELDS, Accelerator, Layer, SpaceError

FIXTURES = Path(__file__).parents[1] / "fixtures"
TOPOLOGY = str(FIXTURES / "resnet18_topology.csv")
CONFIG = str(FIXTURES / "scalesim_example.cfg")
CONFIG_TEXT = Path(CONFIG).read_text()
REQUIRED_KEYS = {"layer", "compute_cycles", "stall_cycles", "total_cycles", "sram_ifmap_reads",
                 "sram_filter_reads", "dram_ifmap_reads", "dram_filter_reads", "dram_ofmap_writes",
                 "energy_pj", "area_mm2", "latency_s", "utilization", "feasible", "map_kind",
                 "map_order", "map_tile_p", "map_tile_c", "map_tile_k"}


def run_json(capsys, *args, stderr=""):
    """Run dance-sim --json in-process; check its stderr; return the parsed records."""
    status = main([*args, "--json"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert captured.err == stderr
    return [json.loads(line) for line in captured.out.splitlines()]


CONFIG_NOTE = (f"dance-sim: note: {CONFIG}, [architecture_presets] gives no RfBytes, WordBits, FreqMHz: using "
               "rf_bytes = 64, word_bits = 16, freq_mhz = 500.0 (dance-sim's defaults)\n")


def test_model_json_has_one_record_per_layer_with_all_fields(capsys):
    records = run_json(capsys, "--model", "resnet18", "--input-size", "32")
    assert [record["layer"] for record in records] == [layer.name for layer in resnet18(input_size=32)]
    for record in records:
        assert REQUIRED_KEYS <= set(record)
        assert set(RESULT_FIELDS) | set(LAYER_FIELDS) | set(ACCELERATOR_FIELDS) <= set(record)
        assert record["feasible"] is True and record["map_kind"] == "search"
        assert record["total_cycles"] == record["compute_cycles"] + record["stall_cycles"]
    assert records[0]["in_h"] == 32 and records[0]["pe_rows"] == Accelerator().pe_rows


def test_json_numbers_equal_the_reference_engine_for_each_layer(capsys):
    records = run_json(capsys, "--layer", "8,8,16,24,3,3,1,1", "--layer", "6,6,8,8,3,3,2,1,8,2",
                       "--dataflow", "os", "--pe-rows", "8", "--objective", "edp")
    layers = [Layer(8, 8, 16, 24, 3, 3, 1, 1), Layer(6, 6, 8, 8, 3, 3, 2, 1, 8, 2)]
    for record, layer in zip(records, layers):
        expected = simulate(layer, Accelerator(pe_rows=8, dataflow="os"), "search", "edp")
        for field in ("total_cycles", "stall_cycles", "sram_ifmap_reads", "dram_filter_reads", "map_order",
                      "map_tile_p", "map_tile_c", "map_tile_k"):
            assert record[field] == getattr(expected, field), field
        assert record["energy_pj"] == pytest.approx(expected.energy_pj, rel=1e-12)
    assert [record["layer"] for record in records] == ["layer0", "layer1"]


def test_topology_and_config_follow_scalesim_semantics_by_default(capsys):
    records = run_json(capsys, "--topology", TOPOLOGY, "--config", CONFIG, stderr=CONFIG_NOTE)
    assert len(records) == 21
    assert all(record["map_kind"] == "scalesim" and record["pad"] == 0 for record in records)
    assert records[0]["in_h"] == 230  # the ifmap size as the file gives it
    assert (records[0]["pe_rows"], records[0]["dataflow"], records[0]["dram_bw"]) == (32, "os", 20.0)
    searched = run_json(capsys, "--topology", TOPOLOGY, "--config", CONFIG, "--mapping", "search", stderr=CONFIG_NOTE)
    assert all(record["map_kind"] == "search" for record in searched)


def test_accelerator_flags_override_the_config_and_the_config_overrides_the_json(tmp_path, capsys):
    network = save_network(tmp_path / "net.json", [Layer(8, 8, 16, 16, 3, 3, pad=1, name="c")],
                           Accelerator(pe_rows=4, pe_cols=4, dataflow="rs", freq_mhz=250))
    from_json = run_json(capsys, "--network", str(network))[0]
    assert (from_json["pe_rows"], from_json["dataflow"], from_json["freq_mhz"]) == (4, "rs", 250.0)
    assert from_json["layer"] == "c"
    from_config = run_json(capsys, "--network", str(network), "--config", CONFIG)[0]
    assert (from_config["pe_rows"], from_config["dataflow"]) == (32, "os")
    assert (from_config["freq_mhz"], from_config["rf_bytes"]) == (250.0, 64)  # the cfg gives no FreqMHz
    flagged = run_json(capsys, "--network", str(network), "--config", CONFIG, "--pe-rows", "8",
                       "--dataflow", "is", "--word-bits", "8")[0]
    assert (flagged["pe_rows"], flagged["pe_cols"], flagged["dataflow"]) == (8, 32, "is")
    # the cfg's Bandwidth is 10 words per cycle: 10 bytes per cycle with 8-bit words
    assert (flagged["word_bits"], flagged["dram_bw"]) == (8, 10.0)


def test_batch_flag_sets_every_layer_and_latency_follows_the_clock(capsys):
    records = run_json(capsys, "--model", "resnet18", "--input-size", "32", "--batch", "2", "--freq-mhz", "1000")
    assert all(record["batch"] == 2 for record in records)
    for record in records:
        assert record["latency_s"] == pytest.approx(record["total_cycles"] / 1e9)


def test_energy_objective_never_spends_more_energy_than_the_latency_objective(capsys):
    layers = ["--layer", "28,28,64,64,3,3,1,1", "--layer", "1,1,512,1000"]
    fastest = run_json(capsys, *layers)
    thriftiest = run_json(capsys, *layers, "--objective", "energy")
    for quick, frugal in zip(fastest, thriftiest):
        assert frugal["energy_pj"] <= quick["energy_pj"]
        assert quick["total_cycles"] <= frugal["total_cycles"]


def test_table_lists_layers_a_total_row_and_the_accelerator_once(capsys):
    assert main(["--model", "resnet18", "--input-size", "32"]) == 0
    table = capsys.readouterr().out
    records = run_json(capsys, "--model", "resnet18", "--input-size", "32")
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["layer", "input"]
    assert any(line.startswith("layer4.0.downsample.0") for line in lines)
    total = next(line for line in lines if line.startswith("TOTAL (21 layers)"))
    assert str(sum(record["total_cycles"] for record in records)) in total.split()
    assert f"{sum(record['energy_pj'] for record in records) / 1e6:.3f}" in total.split()
    assert f"{sum(record['latency_s'] for record in records) * 1e6:.2f}" in total.split()
    assert table.count("area ") == 1 and f"area {records[0]['area_mm2']:.3f} mm2" in table
    assert "16x16 PEs, dataflow ws" in table


def test_infeasible_layers_show_in_the_table_without_an_error(capsys):
    # 0.0625 KiB of ifmap buffer holds 16 words per half: no tile of a 224-wide row fits
    status = main(["--layer", "224,224,3,8,3,3,1,1", "--layer", "4,4,8,8", "--ifmap-kb", "0.0625"])
    captured = capsys.readouterr()
    assert status == 0 and captured.err == ""
    row = next(line for line in captured.out.splitlines() if line.startswith("layer0"))
    assert "infeasible" in row
    assert "TOTAL (1 of 2 feasible)" in captured.out and "warning: 1 layer(s)" in captured.out
    records = run_json(capsys, "--layer", "224,224,3,8,3,3,1,1", "--ifmap-kb", "0.0625")
    assert records[0]["feasible"] is False and records[0]["energy_pj"] is None
    assert records[0]["total_cycles"] == -1


def test_layer_spec_positional_and_keyword_forms_agree():
    assert parse_layer_spec("56,56,64,64,3,3,1,1") == Layer(56, 56, 64, 64, 3, 3, 1, 1)
    assert parse_layer_spec("in_h=56, in_w=56, in_c=64, out_c=64, k_h=3, k_w=3, pad=1, name=c") == \
        Layer(56, 56, 64, 64, 3, 3, 1, 1)
    assert parse_layer_spec("in_h=5,in_w=5,in_c=2,out_c=2,name=c").name == "c"
    assert parse_layer_spec("7,7,32,32,3,3,1,1,32,4") == Layer(7, 7, 32, 32, 3, 3, 1, 1, groups=32, batch=4)
    with pytest.raises(SpaceError, match=r"layer.in_c = 'x': expected an integer in \[1, 65536\]"):
        parse_layer_spec("8,8,x,8")


BAD_INPUTS = [
    (["--layer", "-5,8,8,8"], r"layer.in_h = -5 .*expected an integer in \[1, 8192\]"),
    (["--layer", "4,4,8,8,7,7,1,1"], r"layer.k_h = 7 .*at most in_h \+ 2\*pad = 6"),
    (["--layer", "8,8,8"], "3 values; expected in_h,in_w,in_c,out_c"),
    (["--model", "resnet18", "--dataflow", "xx"], r"dataflow = 'xx': expected one of \['ws', 'os', 'is', 'rs'\]"),
    (["--model", "resnet18", "--pe-rows", "0"], r"pe_rows = 0: expected an integer in \[1, 4096\]"),
    (["--model", "resnet18", "--pe-rows", "abc"], "argument --pe-rows: invalid int value"),
    (["--model", "nosuchnet"], "expected one of"),
    (["--model", "alexnet", "--input-size", "32"], "input size is too small"),
    (["--topology", "missing.csv"], "topology file 'missing.csv' not found"),
    (["--network", "missing.json"], "network file 'missing.json' not found"),
    (["--layer", "8,8,8,8", "--config", "missing.cfg"], "config file 'missing.cfg' not found"),
    (["--layer", "8,8,8,8", "--input-size", "32"], "only with --model"),
    (["--layer", "8,8,8,8", "--objective", "speed"], "argument --objective: invalid choice"),
    ([], "one of the arguments --topology --network --model --layer"),
    (["--model", "resnet18", "--layer", "8,8,8,8"], "not allowed with"),
]


@pytest.mark.parametrize("argv, message", BAD_INPUTS)
def test_bad_input_gives_one_line_on_stderr_and_status_2(capsys, argv, message):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1
    assert captured.err.startswith("dance-sim: error: ")
    assert re.search(message, captured.err), captured.err


def test_malformed_topology_row_is_reported_with_file_row_and_field(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"
                    "c1, 8, 8, 3, 3, 4, 8, 1,\nc2, 8, 8, 3, 3, 4, 0, 1,\n")
    assert main(["--topology", str(path)]) == 2
    error = capsys.readouterr().err
    assert str(path) in error and "row 2 (line 3)" in error
    assert "'Num Filter' = '0': expected an integer in [1, 65536]" in error


def test_list_models_and_help_exit_zero(capsys):
    assert main(["--list-models"]) == 0
    assert capsys.readouterr().out.split() == ["resnet18", "resnet50", "mobilenet_v2", "vgg16", "alexnet"]
    assert main(["--help"]) == 0
    assert "--topology" in capsys.readouterr().out


def installed_script():
    script = Path(sys.executable).parent / "dance-sim"
    return str(script) if script.exists() else shutil.which("dance-sim")


def test_installed_console_script_simulates_a_scalesim_topology():
    script = installed_script()
    assert script, "the dance-sim console script is not installed (pip install -e .)"
    result = subprocess.run([script, "--topology", TOPOLOGY, "--config", CONFIG], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "TOTAL (21 layers)" in result.stdout and "32x32 PEs, dataflow os" in result.stdout
    assert "mapping: scalesim" in result.stdout


def test_installed_console_script_reports_bad_input_without_traceback(tmp_path):
    path = tmp_path / "bad.cfg"
    path.write_text("[architecture_presets]\nDataflow : systolic\n")
    result = subprocess.run([installed_script(), "--layer", "8,8,8,8", "--config", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert result.stderr.strip() == (f"dance-sim: error: {path}, [architecture_presets] Dataflow = 'systolic': "
                                     "expected one of ['ws', 'os', 'is', 'rs']")


def test_a_misspelled_config_key_exits_2_naming_it_and_lenient_warns_and_notes_the_default(tmp_path, capsys):
    path = tmp_path / "typo.cfg"
    path.write_text("[architecture_presets]\nArrayHieght : 8\nArrayWidth : 8\nDataflow : os\n"
                    "RfBytes : 64\nWordBits : 16\nFreqMHz : 500\nIfmapSramSzkB : 64\nFilterSramSzkB : 64\n"
                    "OfmapSramSzkB : 64\nBandwidth : 8\n")
    assert main(["--layer", "8,8,8,8", "--config", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.strip().splitlines() == [
        f"dance-sim: error: {path}, [architecture_presets]: unknown key 'ArrayHieght' (did you mean 'ArrayHeight'?); "
        "expected one of ['ArrayHeight', 'ArrayWidth', 'IfmapSramSzkB', 'IfmapSramSz', 'FilterSramSzkB', "
        "'FilterSramSz', 'OfmapSramSzkB', 'OfmapSramSz', 'Dataflow', 'RfBytes', 'WordBits', 'FreqMHz', 'Bandwidth', "
        "'IfmapOffset', 'FilterOffset', 'OfmapOffset', 'MemoryBanks', 'ReadRequestBuffer', 'WriteRequestBuffer']"]
    records = run_json(capsys, "--layer", "8,8,8,8", "--config", str(path), "--lenient", stderr=(
        f"dance-sim: warning: {path}, [architecture_presets]: unknown key 'ArrayHieght' (did you mean "
        "'ArrayHeight'?); expected one of ['ArrayHeight', 'ArrayWidth', 'IfmapSramSzkB', 'IfmapSramSz', "
        "'FilterSramSzkB', 'FilterSramSz', 'OfmapSramSzkB', 'OfmapSramSz', 'Dataflow', 'RfBytes', 'WordBits', "
        "'FreqMHz', 'Bandwidth', 'IfmapOffset', 'FilterOffset', 'OfmapOffset', 'MemoryBanks', 'ReadRequestBuffer', "
        "'WriteRequestBuffer'] (ignored)\n"
        f"dance-sim: note: {path}, [architecture_presets] gives no ArrayHeight: using pe_rows = 16 "
        "(dance-sim's defaults)\n"))
    assert (records[0]["pe_rows"], records[0]["pe_cols"]) == (16, 8)


def test_a_config_without_dataflow_is_reported_on_stderr(tmp_path, capsys):
    path = tmp_path / "nodf.cfg"
    path.write_text(CONFIG_TEXT.replace("Dataflow : os\n", ""))
    records = run_json(capsys, "--layer", "8,8,8,8", "--config", str(path), stderr=(
        f"dance-sim: note: {path}, [architecture_presets] gives no Dataflow, RfBytes, WordBits, FreqMHz: using "
        "dataflow = ws, rf_bytes = 64, word_bits = 16, freq_mhz = 500.0 (dance-sim's defaults)\n"))
    assert records[0]["dataflow"] == "ws"
    run_json(capsys, "--layer", "8,8,8,8", "--config", str(path), "--dataflow", "is", "--rf-bytes", "32",
             "--word-bits", "8", "--freq-mhz", "200")  # every default replaced by a flag: nothing to report


def test_network_json_with_unknown_keys_exits_2_and_lenient_runs_with_warnings(tmp_path, capsys):
    path = tmp_path / "net.json"
    path.write_text(json.dumps({"network": [{"in_h": 8, "in_w": 8, "in_c": 8, "out_c": 8, "k_h": 3, "k_w": 3,
                                             "strides": 2, "pad": 1}], "accelerator": {"pe_row": 8}}))
    assert main(["--network", str(path)]) == 2
    assert "unknown key 'strides' (did you mean 'stride'?)" in capsys.readouterr().err
    assert main(["--network", str(path), "--lenient", "--json"]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith(f"dance-sim: warning: {path}: network[0]: unknown key 'strides'")
    assert lines[1].startswith(f"dance-sim: warning: {path}: accelerator: unknown key 'pe_row' (did you mean 'pe_rows'?)")
    assert lines[2] == (f"dance-sim: note: {path}: layers leave out stride (1 of 1), groups (1 of 1), batch (1 of 1): "
                        "using stride = 1, groups = 1, batch = 1")
    assert lines[3].startswith(f"dance-sim: note: {path}: accelerator gives no pe_rows, pe_cols, dataflow,")
