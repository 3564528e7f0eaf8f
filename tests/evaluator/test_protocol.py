"""One predictor protocol: the evaluator and every baseline answer ``predict(pairs)`` alike."""

import numpy as np
import pytest

from dataset_gen.common.errors import UserError
from dataset_gen.reader import read_dataset
from evaluator.baselines import BASELINES, fit_baseline
from evaluator.data import assign_split
from evaluator.protocol import PREDICTION_COLUMNS, REQUIRED_PAIR_COLUMNS, Predictor

PREDICTORS = ["evaluator", *sorted(BASELINES)]


@pytest.fixture(scope="module")
def frames(small_dataset):
    """Training pairs, and unseen test pairs shuffled under a non-default index."""
    frame = read_dataset(small_dataset)
    split = assign_split(frame)
    test = frame[split == 2].sample(frac=1.0, random_state=1)
    test.index = test.index * 7 + 3
    return frame[split == 0], test


@pytest.fixture(scope="module", params=PREDICTORS)
def predictor(request, frames):
    if request.param == "evaluator":
        return request.getfixturevalue("trained").evaluator
    return fit_baseline(request.param, frames[0], seed=0, max_train_rows=1000)


def test_every_predictor_follows_the_protocol(predictor):
    assert isinstance(predictor, Predictor)


def test_every_predictor_gives_the_same_columns_one_row_per_pair_in_order(predictor, frames):
    test = frames[1]
    predicted = predictor.predict(test)
    assert list(predicted.columns) == list(PREDICTION_COLUMNS)
    assert predicted.index.equals(test.index)
    # Row order is the pairs' order: reversing the pairs reverses the predictions.
    backwards = predictor.predict(test.iloc[::-1])
    assert np.allclose(backwards.to_numpy(), predicted.iloc[::-1].to_numpy(), rtol=1e-6)


def test_every_predictor_gives_finite_figures_on_feasible_pairs(predictor, frames):
    test = frames[1]
    feasible = test["feasible"].to_numpy(dtype=bool)
    assert feasible.sum() > 10
    predicted = predictor.predict(test)[feasible]
    assert np.isfinite(predicted.to_numpy()).all()
    assert (predicted[["total_cycles", "latency_s", "energy_pj", "area_mm2"]] > 0).all().all()
    assert predicted["p_feasible"].between(0, 1).all()


@pytest.mark.parametrize("column", ["in_c", "dataflow", "dram_bw"])
def test_every_predictor_refuses_pairs_missing_a_column_by_name(predictor, frames, column):
    assert column in REQUIRED_PAIR_COLUMNS
    with pytest.raises(UserError, match=f"missing column.*'{column}'"):
        predictor.predict(frames[1].drop(columns=[column]))
