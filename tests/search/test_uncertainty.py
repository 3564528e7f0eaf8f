"""The derived design's predicted uncertainty in the verification (result.json and the summary)."""

import json
import logging
import math

import numpy as np
import pandas as pd
import pytest

from search.cosearch import summary_line
from search.verify import WARN_RELATIVE, network_uncertainty, verify_design, write_result


def layer_predictions(latency, energy, latency_std, energy_std, area=1.0, area_std=0.01):
    """A per-layer prediction frame as `Evaluator.predict(..., return_std=True)` gives it."""
    n = len(latency)
    return pd.DataFrame({"latency_s": latency, "energy_pj": energy, "area_mm2": [area] * n,
                         "latency_s_std": latency_std, "energy_pj_std": energy_std, "area_mm2_std": [area_std] * n})


def totals(frame, scale=1.0):
    latency, energy = frame["latency_s"].sum() * scale, frame["energy_pj"].sum() * scale
    area = frame["area_mm2"].iloc[0]
    return {"latency_s": latency, "energy_pj": energy, "area_mm2": area, "edp": latency * energy,
            "edap": latency * energy * area}


def test_layer_sigmas_combine_as_fully_correlated_weighted_by_each_layers_share():
    frame = layer_predictions([3.0, 1.0], [10.0, 30.0], [0.02, 0.06], [0.05, 0.01])
    result = network_uncertainty(frame, totals(frame), totals(frame), ensemble=5)
    sigma = result["sigma"]
    assert sigma["latency_s"] == pytest.approx(0.75 * 0.02 + 0.25 * 0.06)
    assert sigma["energy_pj"] == pytest.approx(0.25 * 0.05 + 0.75 * 0.01)
    assert sigma["area_mm2"] == pytest.approx(0.01)
    assert sigma["edp"] == pytest.approx(sigma["latency_s"] + sigma["energy_pj"])
    assert sigma["edap"] == pytest.approx(sigma["edp"] + 0.01)
    independent = result["sigma_if_independent"]["latency_s"]
    assert independent == pytest.approx(math.hypot(0.75 * 0.02, 0.25 * 0.06))
    assert independent < sigma["latency_s"]  # correlated errors are the conservative case
    low, high = result["band_2sigma"]["latency_s"]
    assert low == pytest.approx(4.0 * math.exp(-2 * sigma["latency_s"]))
    assert high == pytest.approx(4.0 * math.exp(2 * sigma["latency_s"]))
    assert result["within_2sigma"]["latency_s"] is True and result["z"]["latency_s"] == pytest.approx(0.0)
    assert result["ensemble"] == 5 and result["warnings"] == []


def test_large_errors_wide_bands_and_misses_are_warned_about():
    frame = layer_predictions([1.0, 1.0], [1.0, 1.0], [0.01, 0.01], [0.08, 0.08])
    predicted = totals(frame)
    simulated = totals(frame, scale=1.0 / 1.2)  # the prediction is 20% high
    result = network_uncertainty(frame, predicted, simulated, ensemble=5)
    text = " | ".join(result["warnings"])
    assert f"latency_s: the evaluator's prediction is off by +20.0% from the simulator's (more than " \
           f"{WARN_RELATIVE:.0%})" in text
    assert "energy_pj: the evaluator is uncertain here: its 2-sigma band is +-17.4%" in text  # exp(0.16) - 1
    assert result["within_2sigma"]["latency_s"] is False and result["z"]["latency_s"] < -2
    assert "latency_s: the simulated value lies outside the predicted 2-sigma band" in text
    assert result["within_2sigma"]["energy_pj"] is False  # ln 1.2 = 0.18 > 2 x 0.08
    assert not any(w.startswith("area_mm2") for w in result["warnings"])


def test_a_single_network_reports_no_sigma_but_still_the_error():
    frame = layer_predictions([1.0], [1.0], [0.0], [0.0]).drop(columns=["latency_s_std", "energy_pj_std",
                                                                         "area_mm2_std"])
    result = network_uncertainty(frame, totals(frame), totals(frame, scale=0.5), ensemble=1)
    assert result["sigma"] is None and result["band_2sigma"] == {} and result["within_2sigma"] == {}
    assert any("off by +100.0%" in warning for warning in result["warnings"])


def test_an_infeasible_design_has_no_z_and_no_band_verdict():
    frame = layer_predictions([1.0], [1.0], [0.02], [0.02])
    simulated = {key: math.nan for key in ("latency_s", "energy_pj", "edp", "edap")} | {"area_mm2": 1.0}
    result = network_uncertainty(frame, totals(frame), simulated, ensemble=5)
    assert math.isnan(result["z"]["latency_s"]) and result["within_2sigma"]["latency_s"] is None
    assert result["within_2sigma"]["area_mm2"] is True


def test_the_verification_of_a_design_reports_the_evaluators_uncertainty(context, tmp_path, caplog):
    assert context.evaluator.ensemble > 1  # the search tests' evaluator is the default ensemble
    layers = context.network_layers((0, 0))
    accelerator = context.hw_space.accelerator(context.reference_index)
    with caplog.at_level(logging.WARNING, logger="search"):
        summary, per_layer = verify_design(layers, accelerator, context.evaluator, context.simulator, context.spec)
    uncertainty = summary["uncertainty"]
    assert uncertainty["ensemble"] == context.evaluator.ensemble
    assert all(math.isfinite(value) and value > 0 for value in uncertainty["sigma"].values())
    predicted = context.evaluator.predict(layers, accelerator, return_std=True)
    weights = predicted["latency_s"] / predicted["latency_s"].sum()
    assert uncertainty["sigma"]["latency_s"] == pytest.approx(float((weights * predicted["latency_s_std"]).sum()))
    assert np.allclose(per_layer["predicted_latency_sigma"], predicted["latency_s_std"])
    logged = [record.getMessage() for record in caplog.records if record.name == "search"]
    assert logged == [f"verify: {warning}" for warning in uncertainty["warnings"]]
    # result.json carries it (NaN as null) and the printed summary shows it next to the error
    extra = {**summary, "method": "cosearch", "architecture": {"candidates": ["a", "b"]}, "search": {"seconds": 1.0},
             "test_accuracy": 0.5}
    path = write_result(tmp_path, layers, accelerator, extra)
    on_disk = json.loads(path.read_text())
    assert on_disk["uncertainty"]["sigma"] == pytest.approx(uncertainty["sigma"])
    assert set(on_disk["uncertainty"]["band_2sigma"]) == {"latency_s", "energy_pj", "area_mm2", "edp", "edap"}
    line = summary_line({**extra, "path": str(path)})
    assert f"predicted sigma {uncertainty['sigma']['latency_s']:.1%} latency" in line
