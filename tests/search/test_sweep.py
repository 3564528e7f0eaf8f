"""Sweep summaries: the Pareto front of accuracy against simulated cost."""

import numpy as np

from search.sweep import pareto_mask


def test_pareto_front_keeps_only_undominated_points():
    cost = [1.0, 2.0, 3.0, 2.5, np.nan]
    accuracy = [0.80, 0.90, 0.95, 0.85, 0.99]
    assert pareto_mask(cost, accuracy).tolist() == [True, True, True, False, False]


def test_ties_do_not_dominate_each_other():
    assert pareto_mask([1.0, 1.0], [0.5, 0.5]).tolist() == [True, True]
