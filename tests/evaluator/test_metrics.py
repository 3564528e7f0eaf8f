"""Metric functions against numbers worked out by hand."""

import math

import numpy as np
import pytest

from evaluator.metrics import (classification_metrics, kendall_tau, mape, regression_metrics, rmse_log,
                               spearman_rho, within)

SIMULATED = [100.0, 200.0, 400.0, 800.0]
PREDICTED = [104.0, 180.0, 400.0, 1000.0]  # errors: 4%, 10%, 0%, 25%


def test_mape_is_the_mean_relative_error_as_a_fraction():
    assert mape(SIMULATED, PREDICTED) == pytest.approx((0.04 + 0.10 + 0.0 + 0.25) / 4)


def test_within_counts_pairs_at_or_under_the_tolerance():
    assert within(SIMULATED, PREDICTED, 0.05) == pytest.approx(2 / 4)  # 4% and 0%
    assert within(SIMULATED, PREDICTED, 0.10) == pytest.approx(3 / 4)  # 10% counts as within


def test_rmse_log_is_the_root_mean_square_of_log_ratios():
    expected = math.sqrt(np.mean(np.log(np.array(PREDICTED) / np.array(SIMULATED)) ** 2))
    assert rmse_log(SIMULATED, PREDICTED) == pytest.approx(expected)
    assert rmse_log([1.0, 10.0], [math.e, 10.0]) == pytest.approx(math.sqrt(0.5))


def test_rank_correlations_on_hand_counted_pairs():
    # Ranks: simulated 1 2 3 4, predicted 2 1 3 4: one discordant pair out of six.
    simulated, predicted = [1.0, 2.0, 3.0, 4.0], [2.0, 1.0, 3.0, 4.0]
    assert kendall_tau(simulated, predicted) == pytest.approx((5 - 1) / 6)
    # Spearman: 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 2 / 60.
    assert spearman_rho(simulated, predicted) == pytest.approx(0.8)
    assert kendall_tau(SIMULATED, PREDICTED) == pytest.approx(1.0)  # same order


def test_regression_metrics_bundle_every_metric_and_the_count():
    metrics = regression_metrics(SIMULATED, PREDICTED)
    assert metrics["n"] == 4
    assert metrics["mape"] == pytest.approx(0.0975)
    assert metrics["median_ape"] == pytest.approx((0.04 + 0.10) / 2)
    assert metrics["within_10pct"] == pytest.approx(0.75)
    empty = regression_metrics([], [])
    assert empty["n"] == 0 and math.isnan(empty["mape"])


def test_metrics_refuse_undefined_simulated_values_and_mismatched_lengths():
    with pytest.raises(ValueError, match="simulated"):
        mape([1.0, float("nan")], [1.0, 1.0])
    with pytest.raises(ValueError, match="same"):
        mape([1.0, 2.0], [1.0])


def test_classification_metrics_threshold_probabilities_at_one_half():
    truth = [True, True, False, False, True]
    probability = [0.9, 0.4, 0.2, 0.7, 0.5]  # guesses: T F F T T
    metrics = classification_metrics(truth, probability)
    assert metrics["n"] == 5
    assert metrics["accuracy"] == pytest.approx(3 / 5)
    assert metrics["precision"] == pytest.approx(2 / 3)
    assert metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["share_feasible"] == pytest.approx(3 / 5)
