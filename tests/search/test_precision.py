"""The precision (bitwidth) co-search: the network space's bits, the layer table's
(block, candidate, precision) rows and their weights, the precision logits of the supernet,
and the bits carried through derivation, retraining, result.json and the baselines."""

import itertools
import json

import numpy as np
import pandas as pd
import pytest
import torch

from dataset_gen.network_json import load_network
from dataset_gen.space import LAYER_FIELDS, SpaceError
from search.context import check_settings
from search.export import generation_space
from search.generator import row_weights
from search.hardware import AcceleratorLogits, AcceleratorSpace
from search.module import ARCH_SAMPLING, CoSearchModule
from search.network_space import NetworkSpace
from search.quant import quant_layers
from search.supernet import ChildNet, Supernet
from search.sweep import summarize

from .conftest import search_settings

CANDIDATES = ("k3_e3", "k5_e6", "skip")


def tiny(precision=(4, 8, 16), fixed_bits=16):
    return NetworkSpace(1, 10, 8, ((8, 1, 1), (16, 1, 2)), 32, CANDIDATES, precision=precision, fixed_bits=fixed_bits)


MODULE_SETTINGS = dict(lambda_cost=5.0, epochs=3, warmup_epochs=0,
                       weight_optim={"lr": 0.05, "momentum": 0.9, "weight_decay": 0.0},
                       arch_optim={"lr": 0.02, "hw_lr": 0.05, "weight_decay": 0.0},
                       temperature={"initial": 5.0, "final": 0.5, "schedule": "exponential"},
                       gumbel_samples=2, hard=False, weight_sampling="single_path", finetune_generator=False)


# ------------------------------------------------------------------ the network space


def test_the_default_network_config_keeps_the_layer_table_and_its_weights():
    settings = search_settings()  # the fast experiment: network.precision [16], fixed_bits 16
    assert settings["network"]["precision"] == [16] and settings["network"]["fixed_bits"] == 16
    assert settings["hw"]["choices"]["pe_kind"] == ["fixed"]
    space = NetworkSpace.from_config(settings["network"], 1, 10)
    table = space.layer_table(224)
    mbconvs = sum(sum(block.allowed) - block.allowed[-1] for block in space.blocks)
    assert len(table) == 1 + 3 * mbconvs + 2  # one row per candidate layer, as before precisions
    assert (table.precision == np.where(table.block < 0, -1, 0)).all()
    assert (table.w_bits == 16).all() and (table.a_bits == 16).all()
    # the row weights are the candidates' probabilities, exactly (fixed rows 1)
    probs = np.random.default_rng(0).dirichlet(np.ones(space.num_candidates), size=(1, space.num_blocks))
    weights = row_weights(table, probs)
    block, candidate = table.block.to_numpy(), table.candidate.to_numpy()
    expected = np.where(block < 0, 1.0, probs[0, np.maximum(block, 0), np.maximum(candidate, 0)])
    assert np.array_equal(weights[0], expected)


def test_the_layer_table_has_a_row_per_block_candidate_and_precision():
    space = tiny(fixed_bits=8)
    single = tiny(precision=(16,), fixed_bits=8).layer_table(32)
    table = space.layer_table(32)
    blocks = table[table.block >= 0]
    assert len(blocks) == 3 * len(single[single.block >= 0])
    assert list(table[table.block < 0].name) == ["stem.conv", "head.conv", "classifier"]
    assert (table.loc[table.block < 0, ["w_bits", "a_bits"]] == 8).all().all()  # fixed_bits
    assert (blocks.w_bits == blocks.a_bits).all()  # one choice sets both
    assert (blocks.w_bits == blocks.precision.map(dict(enumerate(space.precision)))).all()
    shape = [f for f in LAYER_FIELDS if f not in ("w_bits", "a_bits")]
    for bits, rows in blocks.groupby("w_bits"):  # each precision: the same layers as the 16-bit table
        assert rows[["block", "candidate", "name", *shape]].reset_index(drop=True).equals(
            single.loc[single.block >= 0, ["block", "candidate", "name", *shape]].reset_index(drop=True)), bits
    choice, precision = (1, 0), (0, 2)
    layers = space.network_layers(choice, 32, precision=precision)
    assert [(layer.name, layer.w_bits) for layer in layers if layer.name.startswith("blocks.")] == [
        ("blocks.0.expand.conv", 4), ("blocks.0.depthwise.conv", 4), ("blocks.0.project.conv", 4),
        ("blocks.1.expand.conv", 16), ("blocks.1.depthwise.conv", 16), ("blocks.1.project.conv", 16)]
    assert space.bits_of(precision) == [4, 16]


def test_row_weights_give_the_exact_expected_cost_over_candidates_and_precisions():
    space = tiny()
    table = space.layer_table(32)
    rng = np.random.default_rng(1)
    mask = np.array([block.allowed for block in space.blocks], dtype=float)
    arch = rng.random(mask.shape) * mask
    arch /= arch.sum(1, keepdims=True)
    bits = rng.dirichlet(np.ones(space.num_precisions), size=space.num_blocks)
    # any per-layer cost: MACs times bits, a stand-in for a layer's latency or energy
    row_cost = (table.apply(lambda r: r.in_c, axis=1) * table.out_c * table.w_bits).to_numpy(dtype=float)
    expected = float(row_weights(table, arch[None], bits[None])[0] @ row_cost)
    by_enumeration = 0.0
    for choice in itertools.product(*(np.flatnonzero(block.allowed) for block in space.blocks)):
        for precision in itertools.product(range(space.num_precisions), repeat=space.num_blocks):
            p = np.prod([arch[b, c] * bits[b, q] for b, (c, q) in enumerate(zip(choice, precision))])
            layers = space.network_layers(choice, 32, precision=precision)
            by_enumeration += p * sum(layer.in_c * layer.out_c * layer.w_bits for layer in layers)
    assert expected == pytest.approx(by_enumeration, rel=1e-12)
    # a block's rows of one conv weigh p(that candidate) over its precisions: sum 1 - p(skip)
    weights = row_weights(table, arch[None], bits[None])[0]
    for block in space.blocks:
        project = (table.block == block.index) & table.name.str.endswith("project.conv")
        assert weights[project.to_numpy()].sum() == pytest.approx(1 - arch[block.index, 2])


@pytest.mark.parametrize("changes,message", [
    ({"precision": (3, 8)}, r"network.precision = \[3, 8\]: 3 is not a precision; expected bits among \[2, 4, 8, 16, 32\]"),
    ({"precision": (0,)}, r"network.precision = \[0\]"),
    ({"precision": ()}, r"network.precision = \(\): expected a non-empty list"),
    ({"precision": (8, 8)}, "duplicates"),
    ({"fixed_bits": 12}, r"network.fixed_bits = 12: expected one of \[2, 4, 8, 16, 32\]"),
])
def test_bad_precision_settings_are_refused_naming_the_field(changes, message):
    with pytest.raises(SpaceError, match=message):
        tiny(**changes)


def test_the_generator_mode_refuses_a_precision_search():
    check_settings(search_settings("hw.mode=generator"))  # one precision: fine
    with pytest.raises(SpaceError, match=r"hw.mode = generator with network.precision = \[4, 8\]"):
        check_settings(search_settings("hw.mode=generator", "network.precision=[4,8]"))


def test_the_cost_reference_is_at_fixed_bits_for_every_precision_setting():
    from search.context import reference_table

    default = search_settings()
    resolution = default["search"]["deploy"]["resolution"]
    expected = NetworkSpace.from_config(default["network"], 1, 10).layer_table(resolution)
    for precision in ("[16]", "[8]", "[4,8,16]"):
        settings = search_settings(f"network.precision={precision}")
        space = NetworkSpace.from_config(settings["network"], 1, 10)
        assert reference_table(space, settings).equals(expected), precision


def test_export_lists_the_precisions_for_dance_gen():
    hw = AcceleratorSpace.from_config(search_settings("hw.choices.pe_kind=[fixed,scalable]")["hw"]["choices"])
    space = generation_space(hw, tiny(fixed_bits=8).layer_table(32))
    assert space["layer"]["w_bits"] == [4, 8, 16] and space["layer"]["a_bits"] == [4, 8, 16]
    assert space["accelerator"]["pe_kind"] == ["fixed", "scalable"]
    assert generation_space(hw, tiny(precision=(16,), fixed_bits=16).layer_table(32))["layer"]["w_bits"] == 16


# ------------------------------------------------------------------ the supernet


def test_a_single_precision_draws_no_random_numbers():
    net = Supernet(tiny(precision=(16,)))
    state = torch.get_rng_state()
    assert torch.equal(net.sample_bits_paths(2), torch.ones(2, 1))
    assert torch.equal(net.sample_bits_weights(1.0), torch.ones(2, 1))
    assert torch.equal(torch.get_rng_state(), state)


def test_precision_paths_are_sampled_like_candidates():
    torch.manual_seed(0)
    net = Supernet(tiny())
    two = net.sample_bits_paths(2)
    assert ((two > 0).sum(1) == 2).all() and torch.allclose(two.sum(1), torch.ones(2))
    with torch.no_grad():
        net.bits_logits.copy_(torch.tensor([[0.0, 3.0, 0.0], [2.0, 0.0, 0.0]]))
    assert net.derive_bits() == (1, 0)
    assert torch.equal(net.derived_bits_weights(), torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]))
    assert all(p is not net.bits_logits for p in net.weight_parameters())


@pytest.mark.parametrize("arch_sampling", ARCH_SAMPLING)
def test_precision_logits_learn_from_the_task_loss_in_every_sampling_mode(arch_sampling):
    torch.manual_seed(0)
    module = CoSearchModule(Supernet(tiny()), **{**MODULE_SETTINGS, "lambda_cost": 0.0}, arch_sampling=arch_sampling)
    loss, _ = module.architecture_loss(torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,)))
    loss.backward()
    grad = module.supernet.bits_logits.grad
    assert grad is not None and (grad.abs().sum(1) > 0).all()
    optimizer = module.configure_optimizers()[0][1]
    assert any(p is module.supernet.bits_logits for group in optimizer.param_groups for p in group["params"])


def test_the_child_network_trains_each_block_at_its_bits():
    torch.manual_seed(0)
    space = tiny(fixed_bits=8)
    child = ChildNet(space, (1, 0), (0, 1))
    assert [(name, layer.bits) for name, layer in child.named_modules() if layer in quant_layers(child)] == [
        ("stem.conv", 8), ("blocks.0.expand.conv", 4), ("blocks.0.depthwise.conv", 4), ("blocks.0.project.conv", 4),
        ("blocks.1.expand.conv", 8), ("blocks.1.depthwise.conv", 8), ("blocks.1.project.conv", 8),
        ("head.conv", 8), ("classifier", 8)]
    # the same weights at fewer bits compute a coarser function of the float network
    x = torch.randn(16, 1, 8, 8)
    state = ChildNet(tiny(precision=(16,)), (1, 0)).state_dict()
    outputs = {}
    for bits in (2, 8, 16):
        net = ChildNet(tiny(precision=(bits,), fixed_bits=bits), (1, 0))
        net.load_state_dict(state)
        outputs[bits] = net.eval()(x).detach()
    assert float((outputs[8] - outputs[16]).abs().mean()) < float((outputs[2] - outputs[16]).abs().mean())


def test_sweep_summary_draws_one_front_per_precision_setting(tmp_path):
    runs = [([16], 0.95, 2e-3), ([16], 0.90, 1e-3), ([8], 0.93, 1.2e-3), ([8], 0.85, 0.8e-3),
            ([4, 8, 16], 0.94, 0.9e-3), ([4, 8, 16], 0.91, 0.5e-3)]
    for number, (precision, accuracy, latency) in enumerate(runs):
        folder = tmp_path / str(number)
        folder.mkdir()
        result = {"method": "cosearch", "test_accuracy": accuracy, "feasible": True,
                  "simulated": {"latency_s": latency, "energy_pj": 1e6, "area_mm2": 1.0, "edp": 1.0, "edap": 1.0},
                  "search": {"lambda_cost": 1.0, "precision": precision, "seconds": 1.0},
                  "architecture": {"candidates": ["k3_e3"], "bits": [precision[0]]}}
        (folder / "result.json").write_text(json.dumps(result))
    csv_path, png_path = summarize(tmp_path, group="precision")
    table = pd.read_csv(csv_path)
    assert sorted(set(table.precision)) == ["16-bit", "4/8/16-bit search", "8-bit"]
    assert table.pareto_in_group.all()  # within its own setting no run dominates another
    # overall: the most accurate 16-bit run and the searched front; 8-bit and the rest are dominated
    assert table.pareto.tolist() == [True, False, False, False, True, True]
    assert png_path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(KeyError, match="no column 'bitwidth'"):
        summarize(tmp_path, group="bitwidth")


# ------------------------------------------------------------------ with a real evaluator and simulator


@pytest.mark.parametrize("arch_sampling", ARCH_SAMPLING)
def test_hardware_cost_gradients_reach_the_precision_logits_in_every_sampling_mode(bitwidth_context, arch_sampling):
    context = bitwidth_context
    torch.manual_seed(0)
    from search.cost import HardwareCost

    cost = HardwareCost(context.evaluator, context.layer_table, context.space.num_blocks,
                        context.space.num_candidates, context.hw_space, context.spec)
    module = CoSearchModule(Supernet(context.space), AcceleratorLogits(context.hw_space), cost, **MODULE_SETTINGS,
                            arch_sampling=arch_sampling)
    x = torch.as_tensor(context.data.x_train[:8], dtype=torch.float32)
    y = torch.as_tensor(context.data.y_train[:8], dtype=torch.long)
    loss, parts = module.architecture_loss(x, y)
    hardware_part = loss - parts["task_loss"]  # lambda * cost + penalties
    (grad,) = torch.autograd.grad(hardware_part, module.supernet.bits_logits)
    assert (grad.abs().sum(1) > 0).all()  # every block's precision is steered by the cost


def test_discrete_cost_at_given_bits_equals_the_evaluator_prediction(bitwidth_context):
    from search.cost import HardwareCost
    from search.derive import one_hot_architecture

    context = bitwidth_context
    cost = HardwareCost(context.evaluator, context.layer_table, context.space.num_blocks,
                        context.space.num_candidates, context.hw_space, context.spec)
    choice, precision = (0, 1), (0, 2)
    index = context.hw_space.index_of({**context.hw_space.accelerator(context.hw_space.middle()).to_dict(),
                                       "pe_kind": "scalable"})
    accelerator = {field: torch.nn.functional.one_hot(torch.tensor([i]), len(values)).float()
                   for (field, values), i in zip(context.hw_space.choices, index)}
    bits = torch.nn.functional.one_hot(torch.tensor(precision), context.space.num_precisions).float()
    terms = cost(one_hot_architecture(choice, context.space.num_candidates), accelerator, bits)
    layers = context.network_layers(choice, precision)
    assert [layer.w_bits for layer in layers] == [16, 4, 4, 4, 16, 16, 16, 16, 16]
    predicted = context.evaluator.predict(layers, context.hw_space.accelerator(index))
    assert float(terms["latency_s"]) == pytest.approx(predicted["latency_s"].sum(), rel=1e-4)
    assert float(terms["energy_pj"]) == pytest.approx(predicted["energy_pj"].sum(), rel=1e-4)


def test_a_bitwidth_search_records_its_bits_from_derivation_to_result_json(bitwidth_context, tmp_path):
    import dataclasses

    from search.baselines import run_evolution
    from search.cosearch import run_search

    out = tmp_path / "run"
    result = run_search(dataclasses.replace(bitwidth_context, out_dir=out))
    context = bitwidth_context
    architecture = result["architecture"]
    assert len(architecture["bits"]) == context.space.num_blocks
    assert architecture["bits"] == [context.space.precision[i] for i in architecture["precision_choice"]]
    assert result["search"]["precision"] == [4, 8, 16]
    probabilities = np.asarray(result["precision_probabilities"])
    assert probabilities.shape == (context.space.num_blocks, 3)
    assert architecture["precision_choice"] == list(probabilities.argmax(1))
    # the layers of result.json (what dance-sim --network reads) carry the bits
    design = load_network(out / "result.json")
    assert list(design.layers) == context.network_layers(architecture["choice"], architecture["precision_choice"])
    for layer in design.layers:
        bits = (architecture["bits"][int(layer.name.split(".")[1])] if layer.name.startswith("blocks.")
                else context.space.fixed_bits)
        assert (layer.w_bits, layer.a_bits) == (bits, bits), layer.name
    per_layer = pd.read_csv(out / "layers.csv")
    assert per_layer.w_bits.tolist() == [layer.w_bits for layer in design.layers]
    # the simulated figures are those of the layers at their bits
    table = context.simulator.table(list(design.layers), [design.accelerator])
    assert result["simulated"]["latency_s"] == pytest.approx(table.latency_s.sum(), rel=1e-12)
    assert result["retrain"]["quantised"] == any(b < 16 for b in architecture["bits"])
    assert 0.0 <= result["test_accuracy"] <= 1.0
    # the evolution baseline searches the precision too, and records it
    evolved = run_evolution(context, tmp_path / "evolution", budget_s=1.0)
    assert all(len(entry["bits"]) == context.space.num_blocks for entry in evolved["history"])
    best = min(evolved["history"], key=lambda entry: entry["score"])
    assert evolved["architecture"]["bits"] == best["bits"]


def test_evolution_mutates_one_block_candidate_one_block_precision_or_one_accelerator_field(bitwidth_context):
    from search.baselines import Candidate, _PairSearch

    pairs = _PairSearch(bitwidth_context, np.random.default_rng(0), 1.0)
    choice, accelerator, precision = pairs.random_pair()
    assert len(precision) == bitwidth_context.space.num_blocks
    parent = Candidate(choice, accelerator, 1.0, 1.0, 0.5, 1.0, True, precision)
    kinds = set()
    for _ in range(200):
        child_choice, child_accelerator, child_precision = pairs.mutate(parent)
        changes = {"candidate": sum(a != b for a, b in zip(child_choice, choice)),
                   "precision": sum(a != b for a, b in zip(child_precision, precision)),
                   "accelerator": sum(a != b for a, b in zip(child_accelerator, accelerator))}
        assert sum(changes.values()) == 1, changes
        kinds.update(kind for kind, count in changes.items() if count)
    assert kinds == {"candidate", "precision", "accelerator"}


def test_descending_the_cost_moves_each_block_to_the_simulators_cheapest_precision(bitwidth_context):
    from search.cost import CostSpec, HardwareCost
    from search.hardware import sample_choices

    context = bitwidth_context
    spec = CostSpec(metric="energy", reference=context.spec.reference, feasibility_weight=0.0)
    cost = HardwareCost(context.evaluator, context.layer_table, context.space.num_blocks,
                        context.space.num_candidates, context.hw_space, spec)
    torch.manual_seed(0)
    supernet = Supernet(context.space)
    hardware = AcceleratorLogits(context.hw_space)
    optimizer = torch.optim.Adam([supernet.bits_logits], lr=0.2)
    for _ in range(25):
        optimizer.zero_grad()
        terms = cost(supernet.arch_probs().detach(), sample_choices(hardware(), 1.0, samples=2), supernet.bits_probs())
        terms["cost"].backward()
        optimizer.step()
    derived = supernet.derive_bits()
    # the simulator's verdict, block by block (the others at their derived precision), averaged
    # over the accelerator space and the block's candidates, as the expected cost is
    accelerators = [context.hw_space.accelerator(i) for i in context.hw_space.enumerate()]
    for block in context.space.blocks:
        energies = []
        for precision in range(context.space.num_precisions):
            bits = list(derived)
            bits[block.index] = precision
            total = 0.0
            for candidate in np.flatnonzero(block.allowed):
                choice = [0] * context.space.num_blocks
                choice[block.index] = int(candidate)
                table = context.simulator.table(context.network_layers(choice, bits), accelerators)
                total += float(np.nansum(table.energy_pj))
            energies.append(total)
        assert derived[block.index] == int(np.argmin(energies)), (block.index, energies)
