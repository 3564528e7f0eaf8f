"""The loop-nest model in ZigZag's rules (`evaluator.loopnest`) and the base that uses it.

Checked against ZigZag 3.9.1's own figures (``tests/fixtures/zigzag_reference.csv``: LOMA
unsampled, energy objective, our per-access energies), so it runs without ZigZag installed.
"""

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dataset_gen.adapters.zigzag import layer_sizes
from evaluator.data import encode_frame, statistics_of
from evaluator.loopnest import LoopNest, LoopNestSettings, multiset_permutations
from evaluator.network import LOOPNEST_SETTINGS, EvaluatorNetwork, analytic_base, fit_base, loopnest_settings

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "zigzag_reference.csv"
# the fixture's ZigZag settings (tools/zigzag_reference.py)
FIXTURE_SIMULATOR = {"name": "zigzag", "version": "zigzag-dse 3.9.1 / adapter 3",
                     "settings": {"mapping": "search", "objective": "energy", "max_orderings": None, "lpf_limit": 6,
                                  "energies": "ours"}}
SETTINGS = LoopNestSettings(lpf_limit=6, max_orderings=None, energies="ours", objective="energy")


@pytest.fixture(scope="module")
def fixture_rows():
    """Every third feasible fixture pair (75 of them, ~10 s of loop nests), with ZigZag's loop
    sizes and its dynamic energy."""
    frame = pd.read_csv(FIXTURE)
    frame = frame[frame["feasible"]].iloc[::3].reset_index(drop=True)
    frame["error"] = frame["error"].fillna("")
    frame["energy_array_pj"] = 0.0
    frame["utilization"] = frame["macs"] / (frame["total_cycles"] * frame["pe_rows"] * frame["pe_cols"])
    return frame


@pytest.fixture(scope="module")
def fixture_nests(fixture_rows):
    """The loop nest of each of those pairs (`LoopNest.best`)."""
    return [LoopNest(pair, SETTINGS).best() for pair in _pairs(fixture_rows)]


def _pairs(frame):
    pairs = []
    for record in frame.to_dict("records"):
        pairs.append({**record, **layer_sizes(record)})
    return pairs


def test_permutations_are_every_distinct_ordering_once():
    items = [("K", 2), ("K", 2), ("C", 3), ("OY", 5), ("FX", 11), ("K", 4)]
    perms = [tuple(p) for p in multiset_permutations(items)]
    counts = Counter(items)
    expected = math.factorial(len(items)) // math.prod(math.factorial(c) for c in counts.values())
    assert len(perms) == expected == 360 and len(set(perms)) == expected
    assert all(Counter(p) == counts for p in perms)
    assert list(multiset_permutations([("C", 3)])) == [[("C", 3)]]


def test_permutations_come_in_lomas_order():
    """The adapter's sample of orderings is drawn by index, so the order matters."""
    multipermute = pytest.importorskip("zigzag.opt.loma.multipermute")
    datatypes = pytest.importorskip("zigzag.datatypes")
    items = [("OX", 5), ("FX", 11), ("K", 2), ("K", 2), ("C", 3)]
    theirs = [[(str(dim), size) for dim, size in p]
              for p in multipermute.permutations([(datatypes.LayerDim(d), s) for d, s in items])]
    assert list(multiset_permutations(items)) == theirs


def test_lomas_loop_prime_factors_are_merged_smallest_first():
    pair = {"B": 1, "G": 1, "K": 64, "C": 64, "OY": 56, "OX": 56, "FY": 3, "FX": 3, "stride": 1, "in_h": 56,
            "in_w": 56, "w_bits": 0, "a_bits": 0, "pe_rows": 9, "pe_cols": 16, "dataflow": "ws", "rf_bytes": 16,
            "ifmap_kb": 64.0, "filter_kb": 64.0, "ofmap_kb": 64.0, "dram_bw": 16.0, "word_bits": 16}
    # ws: C takes the 9 rows (uneven: 64 / ceil(64 / 9) = 8 channels a step), K the 16 columns
    nest = LoopNest(pair, SETTINGS)
    assert nest.spatial == [("C", 64 / 8), ("K", 16)]
    # temporal loops K 4, C 8, OY 56, OX 56, FY 3, FX 3: six loops, at least one factor each
    assert sorted(nest.loop_prime_factors()) == sorted([("K", 4), ("C", 8), ("OY", 56), ("OX", 56), ("FY", 3),
                                                        ("FX", 3)])
    # 3 channels and 3 filter rows fill the 9 rows: K 4 = 2 x 2, OY and OX 56 = 2 x 2 x 2 x 7, FX 3
    # (eleven factors). Merged down to six, each time the two smallest of the loop with the most
    # (the first such loop on a tie): OY 2x2, OX 2x2, OY 2x4, OX 2x4, K 2x2.
    nest = LoopNest({**pair, "C": 3}, SETTINGS)
    assert nest.loop_prime_factors() == [("K", 4), ("OY", 7), ("OY", 8), ("OX", 7), ("OX", 8), ("FX", 3)]


def test_energy_and_cycles_match_zigzag_on_real_network_pairs(fixture_rows, fixture_nests):
    costs = np.array([(nest.energy, nest.cycles, nest.compute) for nest in fixture_nests])
    truth = (fixture_rows["energy_pj"] - fixture_rows["energy_leak_pj"]).to_numpy()
    ratio = costs[:, 0] / truth
    assert np.isfinite(ratio).all()
    assert np.mean(np.abs(ratio - 1) <= 0.01) >= 0.98, np.sort(ratio)[[0, -1]]
    assert np.mean(np.abs(ratio - 1) <= 0.10) == 1.0
    # ZigZag's cycles are its latency rounded up; the ideal temporal cycles are exact
    assert (costs[:, 2] == fixture_rows["compute_cycles"].to_numpy()).all()
    cycles = np.ceil(costs[:, 1]) / fixture_rows["total_cycles"].to_numpy()
    assert np.mean(np.abs(cycles - 1) <= 0.01) >= 0.93, np.sort(cycles)[[0, -1]]


def test_on_zigzags_own_loop_order_the_cycles_are_zigzags(fixture_rows, fixture_nests):
    """Where the least-energy ordering is ZigZag's (energy ties aside, about 4 in 5 pairs), its
    stalls, loading and offloading add up to ZigZag's cycles exactly: DRAM's shared port, the
    uneven unrolling's whole PEs, double buffering."""
    same = 0
    for nest, (_, row) in zip(fixture_nests, fixture_rows.iterrows()):
        if " ".join(f"{dim}{size}" for dim, size in nest.ordering) != row["map_order"]:
            continue
        same += 1
        assert math.ceil(nest.cycles) == row["total_cycles"], row["case"]
    assert same >= 0.8 * len(fixture_rows)


def test_the_parts_match_zigzags_levels(fixture_rows, fixture_nests):
    rows = fixture_rows.iloc[:12]
    for nest, (_, row) in zip(fixture_nests, rows.iterrows()):
        parts = nest.parts
        assert parts["mac"] == pytest.approx(row["energy_mac_pj"], rel=1e-6)
        assert parts["rf"] == pytest.approx(row["energy_rf_pj"], rel=1e-3)
        assert parts["buffer"] == pytest.approx(row["energy_sram_pj"], rel=1e-3)
        assert parts["dram"] == pytest.approx(row["energy_dram_pj"], rel=1e-3)


@pytest.fixture(scope="module")
def fixture_network(fixture_rows):
    """A network whose statistics (and base) were fitted on the fixture rows as ZigZag data."""
    stats, _ = statistics_of([encode_frame(fixture_rows)], simulator=FIXTURE_SIMULATOR)
    network = EvaluatorNetwork()
    network.set_statistics(stats)
    return network


def test_the_base_takes_the_loop_nest_for_zigzag_data_only(fixture_rows, fixture_network):
    chunk = encode_frame(fixture_rows)
    fit = fit_base([chunk], FIXTURE_SIMULATOR)
    # energy, cycles and feasibility follow it, under the fixture's objective (energy: index 0)
    assert fit["base_loopnest"].tolist() == [1.0, 6.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    assert fit["base_energy_scales"].tolist() == [1.0] * 6
    # other simulators, or ZigZag on a fixed loop order, keep the analytic energy
    for simulator in (None, {"name": "builtin"}, {**FIXTURE_SIMULATOR, "settings": {"mapping": "scalesim"}}):
        assert loopnest_settings(simulator) is None
        assert fit_base([chunk], simulator)["base_loopnest"].tolist() == [0.0] * len(LOOPNEST_SETTINGS)
    network = fixture_network
    assert network.base_loopnest.tolist() == fit["base_loopnest"].tolist()
    base = network.base(chunk["pair_x"], chunk["acc_x"], chunk["layer_x"])
    within = torch.abs(torch.expm1(base[:, :2] - chunk["targets"][:, :2])) <= 0.10
    assert within.double().mean(dim=0).tolist() >= [0.95, 0.98]
    with pytest.raises(ValueError, match="layer_x"):
        network.base(chunk["pair_x"], chunk["acc_x"])


def test_a_shared_register_files_tie_goes_to_zigzags_last_combination():
    """AlexNet's features.8 on a 23x17 os array (dance-active's unseen set): with the outputs
    first among the register file's operands, as the adapter lists them, ZigZag gives the tie
    between (outputs 3 loops, inputs 1) and (4, 0) to the latter, and the ofmap buffer then
    overflows: that ordering is infeasible, and ZigZag's own choice is exact."""
    pair = {"B": 1, "G": 1, "K": 256, "C": 384, "OY": 13, "OX": 13, "FY": 3, "FX": 3, "stride": 1, "in_h": 13,
            "in_w": 13, "w_bits": 0, "a_bits": 0, "pe_rows": 23, "pe_cols": 17, "dataflow": "os", "rf_bytes": 64,
            "ifmap_kb": 64.0, "filter_kb": 256.0, "ofmap_kb": 8.0, "dram_bw": 16.0, "word_bits": 16}
    nest = LoopNest(pair, LoopNestSettings())
    assert nest.allocate([("C", 24), ("FY", 3), ("C", 16), ("OY", 13), ("K", 16), ("FX", 3)]) is None
    best = nest.best()  # ZigZag (objective edp, its sample of 100): 1,675,676 cycles, 718,848 temporal
    assert " ".join(f"{dim}{size}" for dim, size in best.ordering) == "C24 K16 FY3 FX3 OY13 C16"
    assert (math.ceil(best.cycles), best.compute) == (1675676, 718848)


def test_feasibility_follows_whether_a_loop_nest_fits(fixture_rows, fixture_network):
    """ZigZag's pair is infeasible exactly when no loop nest fits the memories (all 1,500 rows of
    a dance-gen ZigZag dataset agree, 42 of them infeasible): the logit gets the nest's term."""
    rows = fixture_rows.iloc[:4]
    tiny = rows.assign(ifmap_kb=1 / 16, filter_kb=1 / 16, ofmap_kb=1 / 16)  # 64 B: not even one tile
    chunk = encode_frame(pd.concat([rows, tiny], ignore_index=True))
    prior = fixture_network.feasible_prior(chunk["layer_x"], chunk["acc_x"])
    assert prior.tolist() == [6.0] * 4 + [-6.0] * 4
    _, logits = fixture_network.forward_members(chunk["layer_x"], chunk["acc_x"], chunk["pair_x"])
    assert (logits[:, :4] > 0).all() and (logits[:, 4:] < 0).all()
    # an operand wider than the MACs is infeasible too, as in the adapter
    pair = {**_pairs(rows.iloc[:1])[0], "w_bits": 2 * int(rows.iloc[0]["word_bits"])}
    assert LoopNest(pair, SETTINGS).best() is None


def test_the_loop_nest_keeps_the_smooth_estimates_slope(fixture_rows):
    """The loop nest is a step function of the sizes: the base passes the analytic energy's
    and cycles' gradients through with the loop nest's values."""
    chunk = encode_frame(fixture_rows.iloc[:8])
    fit = fit_base([chunk], FIXTURE_SIMULATOR)
    acc_x = chunk["acc_x"].clone().requires_grad_(True)
    from evaluator.features import pair_features
    from evaluator.network import loopnest_base_input, loopnest_log_costs

    nest = loopnest_base_input(loopnest_log_costs(chunk["layer_x"], acc_x, fit["base_loopnest"]), fit["base_loopnest"])
    assert set(nest) == {"energy", "cycles", "compute"}
    pair_x = pair_features(chunk["layer_x"], acc_x)
    with_nest = analytic_base(pair_x, acc_x, fit["base_roofline"], None, 0.0, nest)
    # the cycles against the estimate's; the energy against the estimate's with the nest's time
    # (the leakage's share of the energy follows the cycles)
    timed = {key: nest[key] for key in ("cycles", "compute")}
    for column, others in ((0, None), (1, timed)):
        without = analytic_base(pair_x, acc_x, fit["base_roofline"], None, 0.0, others)
        grad_nest, = torch.autograd.grad(with_nest[:, column].sum(), acc_x, retain_graph=True)
        grad_plain, = torch.autograd.grad(without[:, column].sum(), acc_x, retain_graph=True)
        assert torch.allclose(grad_nest, grad_plain) and grad_plain.abs().sum() > 0
        assert not torch.allclose(with_nest[:, column], without[:, column])
    assert torch.allclose(torch.exp(with_nest[:, 0]), torch.exp(nest["cycles"]))


def test_encoded_pairs_decode_to_the_loop_nests_pairs(fixture_rows):
    from evaluator.features import decode_accelerators, decode_layers, encode_accelerators, encode_layers
    from evaluator.loopnest import pair_dicts

    decoded = pair_dicts(decode_layers(encode_layers(fixture_rows)), decode_accelerators(encode_accelerators(fixture_rows)))
    for pair, record in zip(decoded, _pairs(fixture_rows)):
        for field, value in pair.items():
            expected = record[field]
            if field in ("w_bits", "a_bits") and expected == record["word_bits"]:
                assert value in (0, expected)  # the word width may read as "native"
            else:
                assert value == pytest.approx(expected), field


def test_a_soft_accelerators_sizes_snap_to_a_grid_hard_ones_stay():
    from evaluator.loopnest import SOFT_SIZE_GRID, _size_value

    assert _size_value(48.0) == 48.0 and _size_value(47.99999) == 48.0 and _size_value(12.5) == 12.5
    snapped = _size_value(45.3)
    assert math.log2(snapped) * SOFT_SIZE_GRID == pytest.approx(round(math.log2(45.3) * SOFT_SIZE_GRID))
    assert abs(snapped / 45.3 - 1) <= 2 ** (0.5 / SOFT_SIZE_GRID) - 1
    assert _size_value(45.31) == snapped  # a small drift meets the same pair


def test_zigzags_own_energies_and_sampled_orderings_match_zigzag_live(fixture_rows):
    """The adapter's defaults (100 sampled orderings, objective edp) and ZigZag's example-design
    energies, against ZigZag itself on three pairs (~2 s; skipped without zigzag-dse)."""
    pytest.importorskip("zigzag.api")
    from dataset_gen.adapters.zigzag import ZigZagAdapter

    adapter = ZigZagAdapter({"mapping": "search", "objective": "edp", "max_orderings": 100, "lpf_limit": 6,
                             "energies": "zigzag"})
    for pair in _pairs(fixture_rows.iloc[[0, 30, 60]]):
        result = adapter.simulate_pair(pair)
        nest = LoopNest(pair, LoopNestSettings(6, 100, "zigzag", "edp")).best()
        assert nest.energy == pytest.approx(result["energy_pj"] - result["energy_leak_pj"], rel=1e-3)
        assert (math.ceil(nest.cycles), nest.compute) == (result["total_cycles"], result["compute_cycles"])
