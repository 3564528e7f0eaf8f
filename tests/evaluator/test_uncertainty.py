"""The deep ensemble's uncertainty: members, calibrated std columns, calibration, K = 1, old artifacts."""

import json
import math
import warnings

import numpy as np
import pytest
import torch

import evaluator
from dataset_gen.reader import read_dataset
from dataset_gen.space import Accelerator, Layer
from evaluator.data import INPUT_FIELDS, RESULT_COLUMNS, read_split
from evaluator.features import encode_accelerators, encode_layers
from evaluator.metrics import NORMAL_COVERAGE, log_errors, uncertainty_metrics
from evaluator.model import EvaluatorModule
from evaluator.network import EvaluatorNetwork
from evaluator.predictor import STD_COLUMNS, NoUncertaintyWarning
from evaluator.protocol import PREDICTION_COLUMNS
from evaluator.report import format_table

LAYERS = [Layer(16, 16, 8, 16, 3, 3, 1, 1), Layer(8, 8, 16, 16, 3, 3, 1, 1, groups=16), Layer.fully_connected(64, 10)]
ACCELERATOR = Accelerator(pe_rows=4, pe_cols=8, dataflow="os", rf_bytes=32, ifmap_kb=4, filter_kb=4, ofmap_kb=2,
                          dram_bw=8.0, word_bits=8, freq_mhz=200.0)
# (report target, simulator column, rows it is defined on)
TARGETS = [("latency", "latency_s", "feasible"), ("energy", "energy_pj", "feasible"), ("area", "area_mm2", "all")]


@pytest.fixture(scope="module")
def pairs(small_dataset):
    return read_dataset(small_dataset).head(300)


def split_frame(evaluator, data, split):
    stored = evaluator.extra["split"]
    return read_split(data, split, stored["fractions"], stored["salt"],
                      columns=[*INPUT_FIELDS, *RESULT_COLUMNS, "latency_s"])


def defined_rows(frame, column, rows):
    """Rows where the simulator defines ``column``: feasible ones for latency and energy."""
    truth = frame[column].to_numpy(dtype=np.float64)
    defined = np.isfinite(truth) & (truth > 0)
    return defined & frame["feasible"].to_numpy(dtype=bool) if rows == "feasible" else defined


# --------------------------------------------------------------------------- the ensemble


def test_the_default_evaluator_is_an_ensemble_of_distinct_members(trained, pairs):
    network = trained.evaluator.network
    assert network.ensemble == trained.evaluator.ensemble == 5 and len(network.trunks) == len(network.areas) == 5
    first = [p.flatten() for p in network.trunks[0].blocks[0].parameters()]
    second = [p.flatten() for p in network.trunks[1].blocks[0].parameters()]
    assert not all(torch.equal(a, b) for a, b in zip(first, second))  # independent initial weights
    with torch.no_grad():
        members, logits = network.forward_members(encode_layers(pairs), encode_accelerators(pairs))
    assert members.shape[:2] == (5, len(pairs)) and logits.shape == (5, len(pairs))
    spread = members[:, :, :2].std(dim=0)  # ln cycles, ln energy (normalised)
    assert (spread > 0).float().mean() > 0.99  # the members disagree on (almost) every pair


def test_the_prediction_is_the_members_mean_in_log_space(trained, pairs):
    network = trained.evaluator.network
    layer_x, acc_x = encode_layers(pairs), encode_accelerators(pairs)
    with torch.no_grad():
        members, logits = network.forward_members(layer_x, acc_x)
        out = trained.evaluator(layer_x, acc_x)
    logs = members[:, :, :3] * network.target_std[:3] + network.target_mean[:3]  # (K, n, 3)
    assert torch.allclose(out["log_cycles"], logs[:, :, 0].mean(dim=0), atol=1e-5)
    assert torch.allclose(out["log_energy_pj"], logs[:, :, 1].mean(dim=0), atol=1e-5)
    assert torch.allclose(out["log_area_mm2"], logs[:, :, 2].mean(dim=0), atol=1e-5)
    assert torch.allclose(out["feasible_logit"], logits.mean(dim=0), atol=1e-5)
    predicted = trained.evaluator.predict(pairs)
    assert np.allclose(predicted["total_cycles"], np.exp(logs[:, :, 0].mean(dim=0).double().numpy()), rtol=1e-5)


def test_the_loss_is_the_mean_of_the_members_losses(small_dataset):
    from evaluator.data import PairsDataModule

    data = PairsDataModule(str(small_dataset), batch_size=256)
    data.setup("fit")
    batch = next(iter(data.val_dataloader()))
    torch.manual_seed(3)
    model = EvaluatorModule(depth=2, width=16, area_depth=1, area_width=8, ensemble=3)
    model.set_statistics(data.statistics)
    with torch.no_grad():
        total, _ = model._losses(batch)
    single = []
    for i in range(3):  # each member alone, in a one-member module holding its weights
        alone = EvaluatorModule(depth=2, width=16, area_depth=1, area_width=8, ensemble=1)
        alone.set_statistics(data.statistics)
        alone.network.trunks[0].load_state_dict(model.network.trunks[i].state_dict())
        alone.network.areas[0].load_state_dict(model.network.areas[i].state_dict())
        with torch.no_grad():
            single.append(alone._losses(batch)[0])
    assert float(total) == pytest.approx(float(torch.stack(single).mean()), rel=1e-5)


def test_bootstrap_weights_change_the_training_loss_only(small_dataset):
    from evaluator.data import PairsDataModule

    data = PairsDataModule(str(small_dataset), batch_size=256)
    data.setup("fit")
    batch = next(iter(data.val_dataloader()))
    torch.manual_seed(0)
    model = EvaluatorModule(depth=2, width=16, area_depth=1, area_width=8, ensemble=2, bootstrap=True)
    model.set_statistics(data.statistics)
    with torch.no_grad():
        plain, _ = model._losses(batch)
        torch.manual_seed(1)
        resampled, _ = model._losses(batch, bootstrap=True)
    assert torch.isfinite(resampled) and float(resampled) != pytest.approx(float(plain), rel=1e-6)


@pytest.mark.parametrize("bad", [0, -1, 65, 2.5, True, "5"])
def test_a_bad_ensemble_size_is_refused_naming_the_field_and_the_range(bad):
    with pytest.raises(ValueError, match=r"model\.ensemble = .*expected an integer in \[1, 64\]"):
        EvaluatorModule(ensemble=bad)
    with pytest.raises(ValueError, match=r"ensemble = .*expected an integer in \[1, 64\]"):
        EvaluatorNetwork(ensemble=bad)


# --------------------------------------------------------------------------- std columns


def test_return_std_adds_positive_finite_std_columns_and_changes_nothing_else(trained, pairs):
    plain = trained.evaluator.predict(pairs)
    with_std = trained.evaluator.predict(pairs, return_std=True)
    assert list(with_std.columns) == [*PREDICTION_COLUMNS, *STD_COLUMNS]
    assert with_std.index.equals(pairs.index)
    assert np.array_equal(with_std[list(PREDICTION_COLUMNS)].to_numpy(), plain.to_numpy())
    stds = with_std[list(STD_COLUMNS)].to_numpy()
    assert np.isfinite(stds).all() and (stds > 0).all()
    # the clock is exact: latency's relative uncertainty is the cycles'
    assert np.array_equal(with_std["latency_s_std"], with_std["total_cycles_std"])
    # area depends on the accelerator only, so does its std
    layers = trained.evaluator.predict(LAYERS, ACCELERATOR, return_std=True)
    assert list(layers.columns) == [*PREDICTION_COLUMNS, *STD_COLUMNS] and layers["area_mm2_std"].nunique() == 1


def test_the_std_combines_the_scaled_members_spread_departure_and_energy_tie(trained, pairs):
    from evaluator.features import PAIR_FEATURES, pair_features
    from evaluator.network import analytic_base

    ev = trained.evaluator
    layer_x, acc_x = encode_layers(pairs), encode_accelerators(pairs)
    with torch.no_grad():
        members, _ = ev.network.forward_members(layer_x, acc_x)
        pair_x = pair_features(layer_x, acc_x)
        base = analytic_base(pair_x, acc_x)[:, :3].double().numpy()
    tie = pair_x[:, PAIR_FEATURES.index("est_energy_tie")].double().numpy()
    logs = (members[:, :, :3] * ev.network.target_std[:3] + ev.network.target_mean[:3]).double()
    # the sample std over the members, over a floor of 1e-6 (members that agree exactly, as the
    # area members do where the analytic area is exact, keep a finite gradient)
    spread = torch.sqrt(logs.var(dim=0) + 1e-12).numpy()
    departure = np.abs(logs.mean(dim=0).numpy() - base)  # the prediction's distance from the physics
    predicted = ev.predict(pairs, return_std=True)
    scale, departure_scale = ev.calibration["scale"], ev.calibration["departure_scale"]
    assert ev.calibration["tie_scale"] == {"energy": 1.0}  # fixed, energy only
    assert ev.calibration["floor"] == 1e-3  # the least std claimed (evaluator.validate.STD_FLOOR)
    for i, (target, column) in enumerate((("latency", "total_cycles_std"), ("energy", "energy_pj_std"),
                                          ("area", "area_mm2_std"))):
        expected = np.sqrt((scale[target] * spread[:, i]) ** 2 + (departure_scale[target] * departure[:, i]) ** 2
                           + (tie if target == "energy" else 0.0) ** 2 + 1e-3 ** 2)
        assert np.allclose(predicted[column], expected, rtol=1e-3, atol=1e-7), target
    assert departure_scale["energy"] > 0  # the default calibration uses the departure
    assert (tie > 0.1).any() and (tie == 0).mean() > 0.5  # a few near-ties, most pairs none
    widened = tie > 0.1
    assert (predicted["energy_pj_std"][widened] >= tie[widened] - 1e-6).all()


def test_forward_gives_differentiable_calibrated_stds(trained, pairs):
    layer_x = encode_layers(LAYERS)
    acc_x = encode_accelerators(ACCELERATOR).requires_grad_(True)
    out = trained.evaluator(layer_x, acc_x, return_std=True)
    predicted = trained.evaluator.predict(LAYERS, ACCELERATOR, return_std=True)
    assert np.allclose(out["std_log_cycles"].detach().double().numpy(), predicted["total_cycles_std"], rtol=1e-5)
    assert np.allclose(out["std_log_energy_pj"].detach().double().numpy(), predicted["energy_pj_std"], rtol=1e-5)
    out["std_log_energy_pj"].sum().backward()
    assert acc_x.grad is not None and torch.isfinite(acc_x.grad).all() and acc_x.grad.abs().sum() > 0
    assert set(trained.evaluator(layer_x, acc_x)) == {"cycles", "latency_s", "energy_pj", "area_mm2", "feasible_logit",
                                                       "log_cycles", "log_latency_s", "log_energy_pj",
                                                       "log_area_mm2"}  # the search's keys, unchanged


# --------------------------------------------------------------------------- calibration


def test_calibration_is_stored_with_one_positive_scale_per_target(trained):
    calibration = trained.evaluator.calibration
    assert calibration["method"] == "bands" and calibration["split"] == "val"
    assert set(calibration["scale"]) == set(calibration["departure_scale"]) == {"latency", "energy", "area"}
    assert all(math.isfinite(s) and s >= 0 for s in [*calibration["scale"].values(),
                                                      *calibration["departure_scale"].values()])
    assert calibration["n"]["area"] > calibration["n"]["latency"] > 100  # area: every pair, latency: feasible ones


def val_errors_and_stds(evaluator, data, column, rows):
    """Absolute log errors and predicted stds of ``evaluator`` on the validation split."""
    frame = split_frame(evaluator, data, "val")
    mask = defined_rows(frame, column, rows)
    predicted = evaluator.predict(frame, return_std=True)
    errors = np.abs(log_errors(frame[column].to_numpy()[mask], predicted[column].to_numpy()[mask]))
    return errors, predicted[f"{column}_std"].to_numpy()[mask]


@pytest.mark.parametrize("target,column,rows", TARGETS)
def test_the_calibrated_2_sigma_band_holds_95_percent_of_the_validation_split(trained, small_dataset, target, column,
                                                                               rows):
    errors, std = val_errors_and_stds(trained.evaluator, small_dataset, column, rows)
    from evaluator.validate import STD_FLOOR

    share = np.mean(errors <= 2 * std)
    assert 0.80 <= share <= 1.0  # the broad band asked of a few thousand rows...
    floor_share = np.mean(errors <= 2 * STD_FLOOR)
    if floor_share >= NORMAL_COVERAGE["2sigma"]:  # errors below the least std claimed (the exact analytic area)
        assert std.max() == pytest.approx(STD_FLOOR) and share == floor_share
    else:
        assert share == pytest.approx(NORMAL_COVERAGE["2sigma"], abs=2 / len(errors))  # ...and, fitted there, exact
    assert trained.evaluator.calibration["coverage_2sigma"][target] == pytest.approx(share, abs=1e-9)


@pytest.mark.parametrize("target", ["latency", "energy"])
def test_the_report_measures_the_bands_on_the_held_out_test_split(trained, target):
    uncertainty = trained.report["test"][target]["uncertainty"]
    assert uncertainty["n"] == trained.report["test"][target]["n"] > 100
    assert 0.80 <= uncertainty["coverage_2sigma"] <= 1.0  # held out: calibrated on val, measured on test
    assert uncertainty["coverage_1sigma"] < uncertainty["coverage_2sigma"]
    assert -1.0 <= uncertainty["sigma_error_spearman"] <= 1.0


@pytest.mark.parametrize("target,column,rows", TARGETS[:2])
def test_the_band_calibration_brings_the_1_sigma_band_near_68_percent(trained, small_dataset, target, column, rows):
    from evaluator.predictor import Evaluator
    from evaluator.validate import calibrate

    ev = trained.evaluator
    errors, std = val_errors_and_stds(ev, small_dataset, column, rows)
    spread_only = Evaluator(ev.network, extra=ev.extra, calibration=calibrate(ev, small_dataset, method="2sigma"))
    errors, spread_std = val_errors_and_stds(spread_only, small_dataset, column, rows)
    one_sigma, spread_one_sigma = np.mean(errors <= std), np.mean(errors <= spread_std)
    # the spread alone, scaled for 2 sigma, over-covers at 1 sigma (heavy-tailed errors);
    # the departure term brings it nearer 68.3%
    assert abs(one_sigma - NORMAL_COVERAGE["1sigma"]) < abs(spread_one_sigma - NORMAL_COVERAGE["1sigma"]), (
        one_sigma, spread_one_sigma)
    assert ev.calibration["coverage_1sigma"][target] == pytest.approx(one_sigma, abs=1e-9)


def test_band_calibration_recovers_known_factors():
    from evaluator.metrics import band_calibration

    rng = np.random.default_rng(0)

    def draw(n):  # errors of std sqrt((2 spread)^2 + (0.8 departure)^2), departure mostly 0 (heavy tail)
        spread = rng.uniform(0.005, 0.02, n)
        departure = rng.exponential(0.05, n) * (rng.random(n) < 0.2)
        return rng.normal(size=n) * np.sqrt((2.0 * spread) ** 2 + (0.8 * departure) ** 2), spread, departure

    errors, spread, departure = draw(40_000)
    a, b = band_calibration(errors, spread, departure)
    assert a == pytest.approx(2.0, rel=0.25) and b == pytest.approx(0.8, rel=0.3)
    fresh, fresh_spread, fresh_departure = draw(40_000)  # the fitted bands hold on new draws
    std = np.sqrt((a * fresh_spread) ** 2 + (b * fresh_departure) ** 2)
    assert np.mean(np.abs(fresh) <= std) == pytest.approx(NORMAL_COVERAGE["1sigma"], abs=0.015)
    assert np.mean(np.abs(fresh) <= 2 * std) == pytest.approx(NORMAL_COVERAGE["2sigma"], abs=0.01)
    a, b = band_calibration(rng.normal(size=spread.size) * 3.0 * spread, spread, np.zeros(spread.size))
    assert b == 0.0 and a == pytest.approx(3.0, rel=0.05)  # no departure: the spread alone
    assert math.isnan(band_calibration(errors, np.zeros(spread.size), departure)[0])


def test_the_energy_tie_applies_to_the_simulator_whose_mapper_the_analytic_model_replicates():
    from evaluator.validate import tie_applies

    assert tie_applies({"name": "builtin", "settings": {"mapping": "search", "objective": "latency"}})
    assert tie_applies({"name": "builtin"})  # data older than adapters: the builtin default
    assert not tie_applies({"name": "builtin", "settings": {"objective": "energy"}})
    assert not tie_applies({"name": "zigzag", "settings": {"objective": "latency"}})
    assert not tie_applies({"name": "command", "settings": {}})


def test_band_calibration_fits_around_a_fixed_term():
    """The energy tie enters the bands at a fixed scale: ``a`` and ``b`` are fitted with it in
    place, so pairs whose errors the fixed term explains do not widen everyone's band."""
    from evaluator.metrics import band_calibration

    rng = np.random.default_rng(1)
    n = 40_000
    spread = rng.uniform(0.005, 0.02, n)
    tied = rng.random(n) < 0.1  # a tenth of the pairs: near-ties, off by up to their tie
    fixed = np.where(tied, rng.uniform(0.2, 0.6, n), 0.0)
    errors = rng.normal(size=n) * 2.0 * spread + np.where(tied, rng.uniform(-1, 1, n) * fixed, 0.0)
    a, b = band_calibration(errors, spread, np.zeros(n), fixed)
    assert a == pytest.approx(2.0, rel=0.2) and b == 0.0
    std = np.sqrt((a * spread) ** 2 + fixed ** 2)
    assert np.mean(np.abs(errors) <= 2 * std) == pytest.approx(NORMAL_COVERAGE["2sigma"], abs=0.01)
    assert np.mean(np.abs(errors[tied]) <= 2 * std[tied]) > 0.999  # the near-ties inside their 2-sigma band
    a_alone, _ = band_calibration(errors, spread, np.zeros(n))  # without it, the tail sets a for all
    assert a_alone > 3 * a


@pytest.mark.parametrize("method,check", [("1sigma", "coverage_1sigma"), ("rms", "rms_z")])
def test_the_other_calibrations_hit_their_own_targets(trained, small_dataset, method, check):
    from evaluator.predictor import Evaluator
    from evaluator.validate import calibrate

    ev = trained.evaluator  # the same network, another calibration:
    other = Evaluator(ev.network, extra=ev.extra, calibration=calibrate(ev, small_dataset, method=method))
    assert other.calibration["method"] == method
    for column, rows in (("latency_s", "feasible"), ("energy_pj", "feasible")):
        errors, std = val_errors_and_stds(other, small_dataset, column, rows)
        if method == "rms":
            assert np.sqrt(np.mean((errors / std) ** 2)) == pytest.approx(1.0, rel=1e-3)
        else:
            assert np.mean(errors <= std) == pytest.approx(NORMAL_COVERAGE["1sigma"], abs=2 / len(errors))
    with pytest.raises(ValueError, match="calibration = 'median'.*2sigma.*1sigma.*rms"):
        calibrate(trained.evaluator, small_dataset, method="median")


def test_the_report_and_its_table_show_the_calibration(trained):
    report = trained.report
    assert report["format_version"] == 2 and report["ensemble"] == 5
    assert report["calibration"]["scale"] == trained.evaluator.calibration["scale"]
    table = format_table(report)
    assert "in1sig" in table and "in2sig" in table and "rho_sig" in table
    assert "5-member ensemble" in table and "ideal 68.3% / 95.4%" in table
    json.dumps(report, allow_nan=True)  # plain data


# --------------------------------------------------------------------------- artifacts


def test_an_ensemble_artifact_round_trips_its_members_and_calibration(trained, pairs, tmp_path):
    loaded = evaluator.load(evaluator.save(trained.evaluator, tmp_path / "ensemble.pt"))
    assert loaded.ensemble == 5 and loaded.calibration == trained.evaluator.calibration
    before = trained.evaluator.predict(pairs, return_std=True)
    after = loaded.predict(pairs, return_std=True)
    assert np.array_equal(before.to_numpy(), after.to_numpy())
    payload = torch.load(tmp_path / "ensemble.pt", weights_only=True)
    assert payload["format_version"] == 2 and payload["network_config"]["ensemble"] == 5
    assert "trunks.4.head.weight" in payload["state_dict"] and "areas.4.head.weight" in payload["state_dict"]


def version_1_payload(payload):
    """A format-2 single-network payload rewritten in format 1's layout (before ensembles):
    weights ``trunk.*`` / ``area.*``, no ``ensemble`` in the config, no ``calibration``."""
    renamed = {}
    for name, value in payload["state_dict"].items():
        for new, old in (("trunks.0.", "trunk."), ("areas.0.", "area.")):
            if name.startswith(new):
                name = old + name[len(new):]
        renamed[name] = value
    config = {key: value for key, value in payload["network_config"].items() if key != "ensemble"}
    old = {key: value for key, value in payload.items() if key != "calibration"}
    return {**old, "format_version": 1, "state_dict": renamed, "network_config": config}


def test_an_artifact_of_format_1_loads_as_one_member_and_predicts_as_before(trained_single, pairs, tmp_path):
    payload = torch.load(trained_single.artifact, weights_only=True)
    assert payload["format_version"] == 2 and payload["calibration"] == {}
    old = version_1_payload(payload)
    assert any(name.startswith("trunk.blocks") for name in old["state_dict"])
    torch.save(old, tmp_path / "v1.pt")
    loaded = evaluator.load(tmp_path / "v1.pt")
    assert loaded.ensemble == 1 and loaded.calibration == {}
    assert np.array_equal(loaded.predict(pairs).to_numpy(), trained_single.evaluator.predict(pairs).to_numpy())
    # and a format-1 file whose weights are missing still says so
    broken = {**old, "state_dict": {k: v for k, v in old["state_dict"].items() if not k.startswith("area.")}}
    torch.save(broken, tmp_path / "v1-broken.pt")
    with pytest.raises(evaluator.EvaluatorLoadError, match="v1-broken.pt.*weights"):
        evaluator.load(tmp_path / "v1-broken.pt")


# --------------------------------------------------------------------------- a single network


def test_a_single_network_has_nan_std_and_says_why(trained_single, pairs):
    ev = trained_single.evaluator
    assert ev.ensemble == 1 and ev.calibration == {}
    with pytest.warns(NoUncertaintyWarning, match=r"model\.ensemble = 1"):
        predicted = ev.predict(pairs, return_std=True)
    assert list(predicted.columns) == [*PREDICTION_COLUMNS, *STD_COLUMNS]
    assert predicted[list(STD_COLUMNS)].isna().all().all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # without return_std: no warning, the plain columns
        assert list(ev.predict(pairs).columns) == list(PREDICTION_COLUMNS)
    out = ev(encode_layers(LAYERS), encode_accelerators(ACCELERATOR), return_std=True)
    assert torch.isnan(out["std_log_cycles"]).all()


def test_a_single_networks_report_has_no_uncertainty(trained_single):
    report = trained_single.report
    assert report["ensemble"] == 1 and report["calibration"] == {}
    assert all("uncertainty" not in report["test"][target] for target in ("latency", "energy", "area"))
    assert "uncertainty: none" in format_table(report)


# --------------------------------------------------------------------------- metrics


def test_uncertainty_metrics_of_a_normal_error_with_the_true_std():
    rng = np.random.default_rng(0)
    std = rng.uniform(0.01, 0.2, 200_000)
    simulated = rng.uniform(1.0, 1e6, std.size)
    predicted = simulated * np.exp(std * rng.standard_normal(std.size))
    metrics = uncertainty_metrics(simulated, predicted, std)
    assert metrics["coverage_1sigma"] == pytest.approx(NORMAL_COVERAGE["1sigma"], abs=0.005)
    assert metrics["coverage_2sigma"] == pytest.approx(NORMAL_COVERAGE["2sigma"], abs=0.005)
    assert metrics["rms_z"] == pytest.approx(1.0, abs=0.01)
    assert metrics["sigma_error_spearman"] > 0.3  # a larger std does flag a larger error
    halved = uncertainty_metrics(simulated, predicted, std / 2)  # overconfident
    assert halved["coverage_2sigma"] == pytest.approx(NORMAL_COVERAGE["1sigma"], abs=0.005)
    nothing = uncertainty_metrics(simulated, predicted, np.full(std.size, np.nan))
    assert nothing["n"] == 0 and math.isnan(nothing["coverage_2sigma"])
    assert nothing["misses"] == 0 and math.isnan(nothing["misses_in_2sigma"])


def test_the_misses_inside_their_2_sigma_band_are_counted():
    simulated = np.ones(5)
    predicted = np.exp([0.0, 0.05, 0.2, 0.5, -0.3])  # three misses (> 10% off)
    std = np.array([0.01, 0.01, 0.15, 0.1, 0.2])  # 2 sigma: 0.3 reaches the first and the third miss
    metrics = uncertainty_metrics(simulated, predicted, std)
    assert metrics["misses"] == 3 and metrics["misses_in_2sigma"] == pytest.approx(2 / 3)
    assert math.isnan(uncertainty_metrics(simulated, simulated, std)["misses_in_2sigma"])  # no miss


def test_calibration_scales_recover_a_known_factor():
    from evaluator.metrics import calibration_scale, coverage_curve

    rng = np.random.default_rng(1)
    spread = rng.uniform(0.01, 0.1, 100_000)
    errors = 3.0 * spread * rng.standard_normal(spread.size)  # the spread is 3x too small
    for method in ("2sigma", "1sigma", "rms"):  # normal errors: every method finds the same factor
        assert calibration_scale(errors, spread, method) == pytest.approx(3.0, rel=0.02), method
    assert math.isnan(calibration_scale(errors, np.zeros(spread.size)))
    levels = np.array([0.5, 0.9])
    assert np.allclose(coverage_curve(errors, 3.0 * spread, levels), levels, atol=0.01)
    with pytest.raises(ValueError, match="std has 3 values for 2 pairs"):
        uncertainty_metrics([1.0, 2.0], [1.0, 2.0], [0.1, 0.1, 0.1])


def test_a_checkpoint_from_before_ensembles_resumes_as_one_member_only():
    torch.manual_seed(0)
    single = EvaluatorModule(depth=2, width=16, area_depth=1, area_width=8, ensemble=1)
    old_names = {name.replace("network.trunks.0.", "network.trunk.").replace("network.areas.0.", "network.area."): value
                 for name, value in single.state_dict().items()}
    assert "network.trunk.head.weight" in old_names and "network.area.head.weight" in old_names
    checkpoint = {"state_dict": dict(old_names)}
    resumed = EvaluatorModule(depth=2, width=16, area_depth=1, area_width=8, ensemble=1)
    resumed.on_load_checkpoint(checkpoint)
    resumed.load_state_dict(checkpoint["state_dict"])  # strict: every name found
    assert torch.equal(resumed.network.trunks[0].blocks[0][0].weight, single.network.trunks[0].blocks[0][0].weight)
    with pytest.raises(ValueError, match=r"single network .*model\.ensemble = 3: resume it with model\.ensemble=1"):
        EvaluatorModule(depth=2, width=16, area_depth=1, area_width=8, ensemble=3).on_load_checkpoint(
            {"state_dict": dict(old_names)})
