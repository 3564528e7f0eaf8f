"""The analytic estimates the network corrects: exact where the model is exact, close elsewhere."""

import math

import numpy as np
import pandas as pd
import pytest

from dataset_gen.reader import read_dataset
from dataset_gen.simulator import simulate
from dataset_gen.space import Accelerator, Layer
from evaluator.features import ACCEL_FEATURES, PAIR_FEATURES, encode_accelerators, encode_layers, pair_features

BIG_BUFFERS = dict(ifmap_kb=4096.0, filter_kb=4096.0, ofmap_kb=4096.0, rf_bytes=64)


def estimate(layers, accelerators, name):
    features = pair_features(encode_layers(layers), encode_accelerators(accelerators))
    values = features[:, PAIR_FEATURES.index(name)].double().numpy()
    return values if name == "est_feasible" else np.exp2(values)


@pytest.mark.parametrize("dataflow", ["ws", "os", "is", "rs"])
def test_a_layer_with_a_single_mapping_is_estimated_as_the_simulator_runs_it(dataflow):
    # One output row and one channel per group: every tile ladder is [1], so the mapper has a
    # single tiling and the estimate follows its exact model (the pipeline up to rounding).
    layer = Layer(in_h=3, in_w=20, in_c=12, out_c=12, k_h=3, k_w=3, stride=1, pad=0, groups=12, batch=2)
    accelerator = Accelerator(pe_rows=4, pe_cols=6, dataflow=dataflow, dram_bw=2.0, **BIG_BUFFERS)
    result = simulate(layer, accelerator)
    assert (result.map_tile_p, result.map_tile_c, result.map_tile_k) == (1, 1, 1)
    assert estimate([layer], [accelerator], "log2_est_compute_cycles")[0] == pytest.approx(result.compute_cycles, rel=1e-5)
    dram_words = (result.dram_ifmap_reads + result.dram_filter_reads + result.dram_ofmap_reads
                  + result.dram_ofmap_writes)
    assert estimate([layer], [accelerator], "log2_est_dram_words")[0] == pytest.approx(dram_words, rel=1e-5)
    assert estimate([layer], [accelerator], "log2_est_cycles")[0] == pytest.approx(result.total_cycles, rel=0.02)
    for part in ("mac", "rf", "sram", "dram"):
        assert estimate([layer], [accelerator], f"log2_est_{part}_pj")[0] == pytest.approx(
            getattr(result, f"energy_{part}_pj"), rel=1e-4), part


def test_the_feasibility_flag_agrees_with_the_simulator_on_every_pair(small_dataset):
    frame = read_dataset(small_dataset)
    assert (~frame["feasible"]).any()  # the small space has unmappable pairs
    flags = estimate(frame, frame, "est_feasible") > 0.5
    assert np.array_equal(flags, frame["feasible"].to_numpy())


def test_estimates_are_close_to_the_simulator_on_random_pairs(small_dataset):
    frame = read_dataset(small_dataset)
    frame = frame[frame["feasible"]]
    for name, column in (("log2_est_cycles", "total_cycles"), ("log2_est_energy_pj", "energy_pj")):
        ratio = estimate(frame, frame, name) / frame[column].to_numpy()
        assert np.mean(np.abs(ratio - 1) <= 0.10) >= 0.9, column
        assert np.median(ratio) == pytest.approx(1.0, abs=0.01), column


def test_more_pe_rows_lower_the_estimated_cycles_of_a_compute_bound_layer():
    layer = Layer(in_h=28, in_w=28, in_c=64, out_c=64, k_h=3, k_w=3, pad=1)
    acc_x = encode_accelerators(Accelerator(pe_rows=8, pe_cols=8, dataflow="ws", dram_bw=64.0, **BIG_BUFFERS))
    acc_x.requires_grad_(True)
    features = pair_features(encode_layers([layer]), acc_x)
    features[0, PAIR_FEATURES.index("log2_est_cycles")].backward()
    assert acc_x.grad[0, ACCEL_FEATURES.index("log2_pe_rows")] < 0
    assert math.isfinite(float(acc_x.grad.abs().sum()))


def test_a_register_file_too_small_for_row_stationary_is_unmappable():
    layer = Layer(in_h=8, in_w=8, in_c=4, out_c=4, k_h=5, k_w=5, pad=2)
    small_rf = Accelerator(dataflow="rs", rf_bytes=8, word_bits=16, **{k: v for k, v in BIG_BUFFERS.items() if k != "rf_bytes"})
    assert not simulate(layer, small_rf).feasible  # 4 words per PE, rs needs 2*5 + 1
    assert estimate([layer], [small_rf], "est_feasible")[0] == 0
    assert estimate(pd.DataFrame([layer.to_dict()]), [Accelerator(dataflow="ws", rf_bytes=8)], "est_feasible")[0] == 1
