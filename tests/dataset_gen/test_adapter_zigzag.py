"""The ``zigzag`` adapter on the real ZigZag 3.9.1 (``pip install '.[zigzag]'``).

A handful of pairs, each a real LOMA search (sampled to ``max_orderings=30`` to keep the
file short): the MAC count is ours, the latency respects the array's bound, the energy
parts add up, a register file too small for the dataflow's operands is infeasible (as in
our simulator), SCALE-Sim's fixed loop order is what ZigZag evaluates, ``dance-gen
simulator=zigzag`` writes a dataset that records it, and without the package the adapter
says how to install it (in a subprocess whose site-packages lacks zigzag).
"""

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

pytest.importorskip("zigzag", reason="zigzag-dse is not installed (pip install '.[zigzag]')")

from dataset_gen.adapters import AdapterError, make_adapter, result_columns  # noqa: E402
from dataset_gen.adapters.zigzag import ZigZagAdapter, fixed_temporal_ordering, mapping_description  # noqa: E402
from dataset_gen.common.config import compose_config  # noqa: E402
from dataset_gen.generate import generate  # noqa: E402
from dataset_gen.reader import read_dataset, read_metadata  # noqa: E402
from dataset_gen.simulator import energy as our_energy  # noqa: E402
from dataset_gen.simulator import simulate_batch  # noqa: E402
from dataset_gen.space import Accelerator, Layer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {"lpf_limit": 6, "max_orderings": 30, "energies": "ours", "timeout_s": 120, "retries": 0,
            "mapping": "search", "objective": "latency"}
CONV = Layer(28, 28, 64, 96, 3, 3, 1, 1, name="conv3x3")
ENERGY_PARTS = ("energy_mac_pj", "energy_rf_pj", "energy_sram_pj", "energy_dram_pj", "energy_leak_pj")


def pairs_of(*cases: tuple[Layer, Accelerator]) -> pd.DataFrame:
    return pd.DataFrame([{**layer.to_dict(), **accelerator.to_dict()} for layer, accelerator in cases])


@pytest.fixture(scope="module")
def ws_os():
    """A 3x3 convolution on a 16x12 weight-stationary and output-stationary array."""
    pairs = pairs_of((CONV, Accelerator(pe_rows=16, pe_cols=12, dataflow="ws", rf_bytes=16)),
                     (CONV, Accelerator(pe_rows=16, pe_cols=12, dataflow="os", rf_bytes=16)))
    return pairs, ZigZagAdapter(SETTINGS).simulate(pairs)


def test_ws_and_os_are_feasible_with_our_mac_count_and_at_least_the_array_bound(ws_os):
    pairs, results = ws_os
    ours = simulate_batch(pairs)
    assert results["feasible"].all() and (results["error"] == "").all()
    assert results["macs"].tolist() == ours["macs"].tolist() == [CONV.macs] * 2
    bound = np.ceil(results["macs"] / (pairs["pe_rows"] * pairs["pe_cols"]))
    assert (results["total_cycles"] >= bound).all()
    assert (results["compute_cycles"] >= bound).all()
    assert (results["stall_cycles"] == results["total_cycles"] - results["compute_cycles"]).all()
    assert results["utilization"].tolist() == pytest.approx(
        (results["macs"] / (results["total_cycles"] * pairs["pe_rows"] * pairs["pe_cols"])).tolist())
    assert results["latency_s"].tolist() == pytest.approx((results["total_cycles"] / 500e6).tolist())
    assert list(results.columns) == list(result_columns())
    assert results["map_kind"].tolist() == ["zigzag-search"] * 2


def test_energy_parts_add_up_and_use_our_per_access_energies(ws_os):
    pairs, results = ws_os
    parts = sum(results[part] for part in ENERGY_PARTS)
    assert results["energy_pj"].tolist() == pytest.approx(parts.tolist(), rel=1e-12)
    assert (results[list(ENERGY_PARTS)] > 0).all().all()
    # ours: each MAC costs our MAC energy; leakage is our model over ZigZag's latency; area is ours
    assert results["energy_mac_pj"].tolist() == pytest.approx((CONV.macs * our_energy.mac_energy_pj(16),) * 2)
    area = our_energy.area_mm2(16, 12, 16, 64.0, 64.0, 64.0, 16)
    assert results["area_mm2"].tolist() == pytest.approx([float(area)] * 2)
    leak = our_energy.leakage_energy_pj(area, results["total_cycles"].to_numpy(), 500.0)
    assert results["energy_leak_pj"].tolist() == pytest.approx(leak.tolist())
    # DRAM energy is the words ZigZag moves times our per-word cost (20 pJ/bit x 16 bit); ZigZag
    # moves whole DRAM-port widths (8 words), so its words can only round the layer's data up
    dram_words = results[["dram_ifmap_reads", "dram_filter_reads", "dram_ofmap_reads", "dram_ofmap_writes"]].sum(axis=1)
    assert results["energy_dram_pj"].tolist() == pytest.approx((dram_words * 320.0).tolist(), rel=1e-9)
    assert (results["dram_filter_reads"] >= 64 * 96 * 9).all() and (results["dram_ofmap_writes"] >= 28 * 28 * 96).all()


def test_zigzag_energies_are_its_own_and_change_only_the_energy():
    pair = pairs_of((CONV, Accelerator(pe_rows=16, pe_cols=12, dataflow="ws", rf_bytes=16)))
    theirs = ZigZagAdapter({**SETTINGS, "energies": "zigzag"}).simulate(pair).iloc[0]
    assert theirs["feasible"] and theirs["macs"] == CONV.macs
    assert theirs["energy_mac_pj"] == pytest.approx(CONV.macs * 0.04 * 4)  # 0.04 pJ at 8 bit, x (16/8)^2
    assert theirs["energy_pj"] == pytest.approx(sum(theirs[part] for part in ENERGY_PARTS))


def test_a_register_file_too_small_for_the_dataflow_is_infeasible_as_in_our_simulator():
    # ws keeps a weight and a partial sum in each PE: 2 words of 16 bits; 2 bytes hold one.
    # rs keeps all three operands: 3 words; 4 bytes hold two. max_orderings: a sample of
    # LOMA's orderings, a sample that is every ordering, and LOMA unsampled
    pairs = pairs_of((CONV, Accelerator(pe_rows=8, pe_cols=8, dataflow="ws", rf_bytes=2)),
                     (Layer(8, 8, 64, 256), Accelerator(pe_rows=14, pe_cols=19, dataflow="rs", rf_bytes=4)))
    results = pd.concat([ZigZagAdapter({**SETTINGS, "max_orderings": limit}).simulate(pairs)
                         for limit in (30, 100_000, None)])
    for position, row in enumerate(results.to_dict("records")):
        assert not row["feasible"] and row["error"] == ""
        assert row["total_cycles"] == -1 and math.isnan(row["energy_pj"]) and row["map_order"] == ""
        pair = pairs.iloc[position % 2]
        assert row["area_mm2"] == pytest.approx(float(our_energy.area_mm2(
            pair["pe_rows"], pair["pe_cols"], pair["rf_bytes"], 64.0, 64.0, 64.0, 16)))
    assert not simulate_batch(pairs)["feasible"].any()


def test_the_scalesim_mapping_is_one_fixed_loop_order_evaluated_by_zigzag():
    layer, accelerator = CONV, Accelerator(pe_rows=16, pe_cols=12, dataflow="ws", rf_bytes=16)
    pair = {**layer.to_dict(), **accelerator.to_dict()}
    # ws: the window's channels down the rows, filters across; pixels stream innermost
    assert mapping_description(pair, pair)[0]["spatial_mapping"] == {"D1": ["C, 16"], "D2": ["K, 12"]}
    assert fixed_temporal_ordering(pair, pair) == [["OX", 28], ["OY", 28], ["FX", 3], ["FY", 3], ["C", 4], ["K", 8]]
    results = ZigZagAdapter({**SETTINGS, "mapping": "scalesim"}).simulate(pairs_of((layer, accelerator)))
    row = results.iloc[0]
    assert row["feasible"] and row["map_kind"] == "zigzag-scalesim" and row["macs"] == layer.macs
    assert row["map_order"].split() == ["OX28", "OY28", "FX3", "FY3", "C4", "K8"]


def test_identity_version_and_settings_errors_name_the_adapter():
    adapter = make_adapter({"name": "zigzag", **SETTINGS})
    assert isinstance(adapter, ZigZagAdapter)
    assert adapter.version == "zigzag-dse 3.9.1 / adapter 3"
    assert adapter.identity() == {"name": "zigzag", "version": "zigzag-dse 3.9.1 / adapter 3", "settings": SETTINGS}
    adapter.check()
    for bad in ({"energies": "cacti"}, {"objective": "area"}, {"max_orderings": 0}, {"mapping": "given"}):
        with pytest.raises(AdapterError, match="simulator zigzag"):
            ZigZagAdapter({**SETTINGS, **bad})


def test_dance_gen_simulator_zigzag_writes_a_dataset_that_records_zigzag(tmp_path):
    out = tmp_path / "zz"
    config = compose_config("gen", ["simulator=zigzag", "simulator.max_orderings=30", "n_samples=6",
                                    "shard_rows=3", "workers=1", "progress=false", "space=small",
                                    "layers.input_sizes=[32]", f"out={out}"])
    result = generate(OmegaConf.to_container(config, resolve=True))
    assert result.rows == 6 and result.n_shards == 2 and result.simulator == "zigzag" and result.errors == 0
    frame = read_dataset(out)
    assert len(frame) == 6 and (frame["error"] == "").all()
    feasible = frame[frame["feasible"]]
    assert len(feasible) > 0
    assert (feasible["map_kind"] == "zigzag-search").all()
    assert (feasible["macs"] == simulate_batch(feasible)["macs"]).all()
    identity = read_metadata(out)["simulator"]
    assert identity["name"] == "zigzag" and identity["version"] == "zigzag-dse 3.9.1 / adapter 3"
    assert identity["settings"]["max_orderings"] == 30
    assert identity["settings"]["objective"] == "edp"  # conf/simulator/zigzag.yaml's default


def test_check_says_how_to_install_zigzag_when_the_package_is_missing(tmp_path):
    """A real environment without zigzag: this venv's site-packages minus zigzag and its
    metadata, linked entry by entry into a folder that replaces site-packages (``python -S``)."""
    import zigzag

    site = Path(zigzag.__file__).resolve().parents[1]
    hidden = tmp_path / "site-packages"
    hidden.mkdir()
    for entry in site.iterdir():
        if not entry.name.lower().startswith(("zigzag", "__editable__")) and entry.suffix != ".pth":
            (hidden / entry.name).symlink_to(entry)
    code = ("from dataset_gen.adapters import AdapterError, make_adapter\n"
            "adapter = make_adapter({'name': 'zigzag', 'mapping': 'search', 'objective': 'latency'})\n"
            "try:\n    adapter.check()\nexcept AdapterError as error:\n    print(error)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(hidden)])}
    done = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ("simulator zigzag: the Python package zigzag-dse is not installed; "
                                   "pip install '.[zigzag]' (zigzag-dse==3.9.1 and six)")


def test_layer_precision_reaches_zigzag_and_a_scalable_array_is_refused():
    from dataclasses import replace

    from dataset_gen.adapters.zigzag import workload_description

    assert workload_description(replace(CONV, w_bits=4, a_bits=8).to_dict(), 16)[0]["operand_precision"] == {
        "I": 8, "W": 4, "O": 8, "O_final": 8}
    assert workload_description(CONV.to_dict(), 16)[0]["operand_precision"]["W"] == 16  # 0: the word width
    accelerator = Accelerator(pe_rows=8, pe_cols=8, dataflow="os", rf_bytes=16)
    pairs = pairs_of((replace(CONV, w_bits=8, a_bits=8), accelerator), (CONV, accelerator),
                     (replace(CONV, w_bits=16, a_bits=16), Accelerator(word_bits=8)),
                     (CONV, replace(accelerator, pe_kind="scalable")))
    results = ZigZagAdapter(SETTINGS).simulate(pairs).to_dict("records")
    narrow, full, too_wide, scalable = results
    # 8-bit operands: the same elements move (or fewer: bigger tiles fit), at half the bits
    dram = ("dram_ifmap_reads", "dram_filter_reads", "dram_ofmap_reads", "dram_ofmap_writes")
    assert sum(narrow[c] for c in dram) <= sum(full[c] for c in dram)
    assert narrow["energy_dram_pj"] < 0.6 * full["energy_dram_pj"]
    assert not too_wide["feasible"] and too_wide["error"] == ""  # wider than the MACs, as our simulator
    assert not scalable["feasible"] and "pe_kind = 'scalable'" in scalable["error"]


def test_only_dram_stalls_the_array_and_compute_is_the_unrolled_cycles():
    """Each on-chip operand and direction has its own port (adapter revision 3): with DRAM far
    wider than the layer needs, ZigZag's stalls are the first loads and last write-backs alone,
    not the register file (before: stall about equal to compute on every dataflow). Its
    compute is the evaluator's ``log2_unrolled_cycles`` feature exactly."""
    import torch

    from evaluator.features import PAIR_FEATURES, encode_accelerators, encode_layers, pair_features

    accelerators = [Accelerator(pe_rows=16, pe_cols=12, dataflow=dataflow, rf_bytes=16, dram_bw=1024.0)
                    for dataflow in ("ws", "os", "rs")]
    pairs = pairs_of(*((CONV, accelerator) for accelerator in accelerators))
    results = ZigZagAdapter(SETTINGS).simulate(pairs)
    assert results["feasible"].all()
    assert (results["stall_cycles"] < 0.05 * results["compute_cycles"]).all(), results[["compute_cycles", "stall_cycles"]]
    features = pair_features(encode_layers(pairs), encode_accelerators(pairs))
    unrolled = torch.exp2(features[:, PAIR_FEATURES.index("log2_unrolled_cycles")].double()).numpy()
    assert results["compute_cycles"].tolist() == pytest.approx(unrolled.tolist(), rel=1e-5)
