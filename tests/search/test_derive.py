"""Derivation: the most probable accelerators, in order, and the feasibility repair."""

import itertools

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from dataset_gen.space import Layer
from search.derive import first_feasible, ranked_accelerators
from search.hardware import AcceleratorSpace
from search.simulated import SimulatorCache

CHOICES = {"pe_rows": [8, 16], "pe_cols": [8, 16, 32], "dataflow": ["ws", "rs"], "rf_bytes": [4, 64],
           "ifmap_kb": [64], "filter_kb": [64], "ofmap_kb": [64], "dram_bw": [16], "word_bits": [16],
           "freq_mhz": [500], "pe_kind": ["fixed"]}


def test_ranked_accelerators_are_the_joint_probability_order_of_the_whole_space():
    space = AcceleratorSpace.from_config(CHOICES)
    rng = np.random.default_rng(0)
    probs = {}
    for field, values in space.choices:
        p = rng.random(len(values))
        probs[field] = torch.tensor(p / p.sum())
    ranked = ranked_accelerators(space, probs, limit=space.size)
    joint = {index: float(np.prod([probs[f][i] for f, i in zip(space.fields, index)]))
             for index in itertools.product(*(range(n) for n in space.sizes))}
    assert sorted(ranked) == sorted(joint)
    assert [round(joint[i], 12) for i in ranked] == sorted((round(v, 12) for v in joint.values()), reverse=True)
    assert ranked_accelerators(space, probs, limit=3) == ranked[:3]


def test_feasibility_repair_skips_accelerators_that_cannot_map_the_network():
    space = AcceleratorSpace.from_config(CHOICES)
    # A 7x7 row-stationary layer needs 2*7+1 = 15 register-file words (30 bytes): 4 B is too small.
    layers = [Layer(16, 16, 8, 8, 7, 7, 1, 3, 8, name="dw7")]
    infeasible = space.index_of({**{f: v[0] for f, v in CHOICES.items()}, "dataflow": "rs", "rf_bytes": 4})
    feasible = space.index_of({**{f: v[0] for f, v in CHOICES.items()}, "dataflow": "rs", "rf_bytes": 64})
    simulator = SimulatorCache()
    index, rank, ok = first_feasible(layers, space, [infeasible, feasible], simulator)
    assert (index, rank, ok) == (feasible, 1, True)
    index, rank, ok = first_feasible(layers, space, [infeasible], simulator)
    assert (index, ok) == (infeasible, False)


def test_predicted_ranking_orders_the_space_by_the_evaluators_cost_of_the_network(context):
    from search.cost import combine
    from search.derive import predicted_ranking

    layers = context.network_layers([0] * context.space.num_blocks)
    ranked = predicted_ranking(layers, context.hw_space, context.evaluator, context.spec)
    assert sorted(ranked) == sorted(itertools.product(*(range(n) for n in context.hw_space.sizes)))

    def predicted_cost(index):
        frame = context.evaluator.predict(pd.DataFrame([layer.to_dict() for layer in layers]),
                                          context.hw_space.accelerator(index))
        return float(combine(frame["latency_s"].sum(), frame["energy_pj"].sum(), frame["area_mm2"].iloc[0],
                             context.spec.metric)), bool((frame["p_feasible"] >= 0.5).all())

    first, last = predicted_cost(ranked[0]), predicted_cost(ranked[-1])
    assert first[1]  # predicted feasible
    costs = [predicted_cost(index) for index in ranked[:5]]
    assert [c for c, _ in costs] == sorted(c for c, _ in costs)  # least predicted cost first
    assert first[0] <= min(predicted_cost(index)[0] for index in ranked[1:40:7])
    assert last[0] >= first[0] or not last[1]


def test_derive_accelerator_is_validated(context):
    import copy

    from dataset_gen.space import SpaceError
    from search.cosearch import derive

    class Module:  # the two derivation methods of a finished co-search module
        hardware = None

        def derive_architecture(self):
            return (0,) * context.space.num_blocks

        def derive_precision(self):
            return None

        def accelerator_probabilities(self, arch=None):
            return {field: torch.full((len(values),), 1.0 / len(values)) for field, values in context.hw_space.choices}

    settings = copy.deepcopy(context.settings)
    settings["search"]["derive_accelerator"] = "best"
    bad = dataclasses.replace(context, settings=settings)
    with pytest.raises(SpaceError, match=r"search.derive_accelerator = 'best': expected one of \['probable', 'predicted'\]"):
        derive(bad, Module())
    settings["search"]["derive_accelerator"] = "predicted"
    design = derive(bad, Module())
    assert design.feasible and design.accelerator_rank == 0
