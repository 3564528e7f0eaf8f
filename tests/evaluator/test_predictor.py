"""The frozen evaluator: predictions, differentiability, and what it never does."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from dataset_gen.reader import read_dataset
from dataset_gen.space import Accelerator, Layer, SpaceError
from evaluator import PREDICTION_COLUMNS
from evaluator.features import (ACCEL_FEATURES, FREQ_FEATURE_INDEX, encode_accelerators,
                                encode_accelerators_soft, encode_layers)

LAYERS = [Layer(16, 16, 8, 16, 3, 3, 1, 1), Layer(8, 8, 16, 16, 3, 3, 1, 1, groups=16), Layer.fully_connected(64, 10)]
ACCELERATOR = Accelerator(pe_rows=4, pe_cols=8, dataflow="os", rf_bytes=32, ifmap_kb=4, filter_kb=4, ofmap_kb=2,
                          dram_bw=8.0, word_bits=8, freq_mhz=200.0)


def test_the_evaluator_is_frozen_and_stays_in_eval_mode(trained):
    evaluator = trained.evaluator
    assert not evaluator.training
    assert all(not p.requires_grad for p in evaluator.parameters())
    parent = nn.ModuleDict({"cost": evaluator})
    parent.train()  # a search module switching itself to training must not switch the evaluator
    assert not evaluator.training


def test_predict_gives_one_row_per_layer_with_the_documented_columns(trained):
    frame = trained.evaluator.predict(LAYERS, ACCELERATOR)
    assert list(frame.columns) == list(PREDICTION_COLUMNS) and len(frame) == 3
    assert (frame[["total_cycles", "latency_s", "energy_pj", "area_mm2"]] > 0).all().all()
    assert frame["p_feasible"].between(0, 1).all()
    assert np.allclose(frame["latency_s"], frame["total_cycles"] / 200e6, rtol=1e-5)
    # Area depends on the accelerator only: the same for every layer.
    assert frame["area_mm2"].nunique() == 1


def test_predict_takes_a_pairs_frame_aligned_row_by_row(trained, small_dataset):
    pairs = read_dataset(small_dataset).head(40).set_index(pd.RangeIndex(100, 140))
    frame = trained.evaluator.predict(pairs, pairs)
    assert frame.index.equals(pairs.index)
    one_by_one = pd.concat([trained.evaluator.predict(pairs.iloc[[i]], pairs.iloc[i].to_dict()) for i in (0, 7, 39)])
    assert np.allclose(one_by_one.to_numpy(), frame.iloc[[0, 7, 39]].to_numpy(), rtol=1e-5)
    with pytest.raises(SpaceError, match="rows"):
        trained.evaluator.predict(pairs, pairs.head(3))


def test_gradients_flow_to_the_accelerator_and_layer_encodings(trained):
    layer_x = encode_layers(LAYERS).requires_grad_(True)
    acc_x = encode_accelerators(ACCELERATOR).requires_grad_(True)  # (1, d_acc): broadcast to the layers
    out = trained.evaluator(layer_x, acc_x)
    assert set(out) >= {"cycles", "latency_s", "energy_pj", "area_mm2", "feasible_logit"}
    assert out["cycles"].shape == (3,)
    (out["log_latency_s"].sum() + out["log_energy_pj"].sum() + out["log_area_mm2"].sum()).backward()
    assert acc_x.grad is not None and torch.isfinite(acc_x.grad).all() and acc_x.grad.abs().sum() > 0
    assert layer_x.grad is not None and layer_x.grad.abs().sum() > 0
    # latency_s reads the clock from the encoding: 200 MHz here.
    assert torch.allclose(out["latency_s"], out["cycles"] / 200e6, rtol=1e-5)
    assert float(2 ** acc_x[0, FREQ_FEATURE_INDEX].detach()) == pytest.approx(200.0)


def test_soft_accelerator_probabilities_receive_gradients_through_the_evaluator(trained):
    layer_x = encode_layers(LAYERS)
    logits = torch.zeros(1, 3, requires_grad=True)
    choices = {field: ([value], torch.ones(1, 1)) for field, value in ACCELERATOR.to_dict().items()}
    choices["pe_cols"] = ([4, 8, 16], torch.softmax(logits, dim=1))
    acc_x = encode_accelerators_soft(choices)
    trained.evaluator(layer_x, acc_x)["log_latency_s"].sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    assert acc_x.shape == (1, len(ACCEL_FEATURES))
