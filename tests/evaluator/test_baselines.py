"""The scikit-learn baselines: fitted on the evaluator's features, predicting its columns."""

import numpy as np
import pytest

from dataset_gen.reader import read_dataset
from evaluator import PREDICTION_COLUMNS
from evaluator.baselines import BASELINES, fit_baseline
from evaluator.data import assign_split


@pytest.fixture(scope="module")
def splits(small_dataset):
    frame = read_dataset(small_dataset)
    split = assign_split(frame)
    return frame[split == 0], frame[split == 2]


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_a_baseline_predicts_every_column_for_unseen_pairs(name, splits):
    train, test = splits
    predicted = fit_baseline(name, train, seed=0).predict(test)
    assert list(predicted.columns) == list(PREDICTION_COLUMNS) and predicted.index.equals(test.index)
    assert np.isfinite(predicted.to_numpy()).all() and (predicted["energy_pj"] > 0).all()
    assert np.allclose(predicted["latency_s"], predicted["total_cycles"] / (test["freq_mhz"] * 1e6))
    feasible = test["feasible"].to_numpy()
    # Not a fit to noise: predictions rank the simulator's cycles far better than chance.
    order = np.corrcoef(np.log(predicted["total_cycles"][feasible]), np.log(test["total_cycles"][feasible]))[0, 1]
    assert order > 0.5


def test_an_unknown_baseline_is_refused(splits):
    with pytest.raises(ValueError, match="baseline"):
        fit_baseline("random_forest", splits[0])
