"""Derivation: the most probable accelerators, in order, and the feasibility repair."""

import itertools

import numpy as np
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
