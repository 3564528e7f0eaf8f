"""The evaluator's cost: frozen weights, gradients to both choices, pointing the right way."""

import numpy as np
import pytest
import torch

from dataset_gen.space import SpaceError
from search.cost import CostSpec, HardwareCost, combine
from search.derive import one_hot_architecture
from search.generator import row_weights
from search.hardware import AcceleratorLogits, sample_choices
from search.simulated import network_totals
from search.supernet import Supernet


def make_cost(context, **spec_changes):
    spec = context.spec
    if spec_changes:
        values = dict(metric=spec.metric, limits=spec.limits, limit_weight=spec.limit_weight,
                      feasibility_weight=spec.feasibility_weight, scale=spec.scale, reference=spec.reference)
        values.update(spec_changes)
        spec = CostSpec(**values)
    return HardwareCost(context.evaluator, context.layer_table, context.space.num_blocks,
                        context.space.num_candidates, context.hw_space, spec)


def one_hot_accelerator(context, index):
    return {field: torch.nn.functional.one_hot(torch.tensor([i]), len(values)).float()
            for (field, values), i in zip(context.hw_space.choices, index)}


def test_metrics_combine_latency_energy_and_area():
    assert combine(2.0, 3.0, 5.0, "latency") == 2.0
    assert combine(2.0, 3.0, 5.0, "energy") == 3.0
    assert combine(2.0, 3.0, 5.0, "edp") == 6.0
    assert combine(2.0, 3.0, 5.0, "edap") == 30.0
    with pytest.raises(SpaceError, match="metric"):
        CostSpec(metric="power")
    with pytest.raises(SpaceError, match="limits.area"):
        CostSpec(limits={"area": 1.0})


def test_discrete_cost_equals_the_evaluator_prediction_of_the_network(context):
    cost = make_cost(context)
    choice, index = (0, 1), (1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0)
    terms = cost(one_hot_architecture(choice, context.space.num_candidates), one_hot_accelerator(context, index))
    predicted = context.evaluator.predict(context.network_layers(choice), context.hw_space.accelerator(index))
    assert float(terms["latency_s"]) == pytest.approx(predicted["latency_s"].sum(), rel=1e-4)
    assert float(terms["energy_pj"]) == pytest.approx(predicted["energy_pj"].sum(), rel=1e-4)
    assert float(terms["area_mm2"]) == pytest.approx(predicted["area_mm2"].iloc[0], rel=1e-4)


def test_expected_cost_is_the_probability_weighted_sum_over_candidates(context):
    cost = make_cost(context)
    index = (1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0)
    accel = one_hot_accelerator(context, index)
    probs = torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.4, 0.0]])
    expected = float(cost(probs, accel)["latency_s"])
    by_hand = 0.0
    for a in range(3):
        for b in range(2):
            weight = float(probs[0, a] * probs[1, b])
            by_hand += weight * float(cost(one_hot_architecture((a, b), 3), accel)["latency_s"])
    assert expected == pytest.approx(by_hand, rel=1e-4)


def test_gradients_reach_architecture_and_accelerator_but_not_the_evaluator(context):
    supernet = Supernet(context.space)
    hardware = AcceleratorLogits(context.hw_space)
    cost = make_cost(context)
    terms = cost(supernet.arch_probs(), sample_choices(hardware(), tau=1.0, samples=4))
    (terms["cost"] + terms["penalty"]).backward()
    assert supernet.arch_logits.grad.abs().sum() > 0
    for field, values in context.hw_space.choices:
        if len(values) > 1:
            assert hardware.logits[field].grad.abs().sum() > 0, field
    assert all(p.grad is None and not p.requires_grad for p in context.evaluator.parameters())


def simulated_candidate_costs(context, accelerator_index):
    """Simulated EDP of every (block, candidate), the others fixed at their first choice."""
    table = context.simulator.table(context.layer_table, [context.hw_space.accelerator(accelerator_index)])
    costs = np.full((context.space.num_blocks, context.space.num_candidates), np.inf)
    for block in context.space.blocks:
        for candidate, allowed in enumerate(block.allowed):
            if allowed:
                choice = [0] * context.space.num_blocks
                choice[block.index] = candidate
                weights = row_weights(context.layer_table, one_hot_architecture(choice, 3).numpy()[None])
                totals = network_totals(table, weights)
                costs[block.index, candidate] = totals["latency_s"][0, 0] * totals["energy_pj"][0, 0]
    return costs


def test_descending_the_cost_moves_probability_to_the_simulators_cheapest_candidates(context):
    torch.manual_seed(0)
    supernet = Supernet(context.space)
    hardware = AcceleratorLogits(context.hw_space)
    cost = make_cost(context)
    optimizer = torch.optim.Adam([supernet.arch_logits, *hardware.parameters()], lr=0.2)
    with torch.no_grad():
        start = float(cost(supernet.arch_probs(), sample_choices(hardware(), 1.0, gumbel=False))["value"])
    for _ in range(25):
        optimizer.zero_grad()
        terms = cost(supernet.arch_probs(), sample_choices(hardware(), 1.0, samples=2))
        (terms["cost"] + terms["penalty"]).backward()
        optimizer.step()
    with torch.no_grad():
        end = float(cost(supernet.arch_probs(), sample_choices(hardware(), 1.0, gumbel=False))["value"])
    assert end < 0.7 * start
    # the architecture the evaluator's gradient chose is the simulator's cheapest, block by block
    derived_accelerator = hardware.derive()
    simulated = simulated_candidate_costs(context, derived_accelerator)
    assert supernet.derive() == tuple(int(i) for i in simulated.argmin(axis=1))
    # and the accelerator it chose is among the cheaper half of the space for that network
    layers = context.network_layers(supernet.derive())
    everything = context.simulator.table(layers, [context.hw_space.accelerator(i) for i in context.hw_space.enumerate()])
    totals = network_totals(everything, np.ones((1, len(layers))))
    edp = (totals["latency_s"] * totals["energy_pj"])[0]
    chosen = context.hw_space.enumerate().index(derived_accelerator)
    assert edp[chosen] <= np.median(edp)


def test_an_area_limit_pushes_the_accelerator_under_it(context):
    areas = context.simulator.table(context.layer_table.iloc[:1], [context.hw_space.accelerator(i)
                                                                   for i in context.hw_space.enumerate()]).area_mm2
    limit = float(np.sort(areas)[len(areas) // 4])  # only the smallest quarter of the space fits
    torch.manual_seed(0)
    hardware = AcceleratorLogits(context.hw_space)
    supernet = Supernet(context.space)
    # latency alone favours big arrays; the limit must win
    cost = make_cost(context, metric="latency", limits={"area_mm2": limit}, limit_weight=10.0)
    optimizer = torch.optim.Adam(hardware.parameters(), lr=0.2)
    for _ in range(25):
        optimizer.zero_grad()
        terms = cost(supernet.arch_probs().detach(), sample_choices(hardware(), 1.0, samples=2))
        (terms["cost"] + terms["penalty"]).backward()
        optimizer.step()
    chosen = context.hw_space.enumerate().index(hardware.derive())
    assert areas[chosen] <= limit * 1.05
