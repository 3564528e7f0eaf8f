"""The co-search module's schedules and settings."""

import pytest

from search.module import temperature_at


@pytest.mark.parametrize("schedule", ["exponential", "linear", "cosine"])
def test_temperature_runs_from_initial_to_final(schedule):
    values = [temperature_at(epoch, 10, 5.0, 0.5, schedule) for epoch in range(10)]
    assert values[0] == pytest.approx(5.0)
    assert values[-1] == pytest.approx(0.5)
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_exponential_temperature_is_geometric():
    assert temperature_at(1, 3, 4.0, 1.0) == pytest.approx(2.0)


def test_bad_schedules_are_refused_by_name():
    with pytest.raises(ValueError, match="schedule"):
        temperature_at(0, 10, 5.0, 0.5, "step")
    with pytest.raises(ValueError, match="initial"):
        temperature_at(0, 10, 0.0, 0.5)


SETTINGS = dict(lambda_cost=1.0, epochs=3, warmup_epochs=1,
                weight_optim={"lr": 0.05, "momentum": 0.9, "weight_decay": 0.0},
                arch_optim={"lr": 0.02, "hw_lr": 0.05, "weight_decay": 0.0},
                temperature={"initial": 5.0, "final": 0.5, "schedule": "exponential"},
                gumbel_samples=2, hard=False, arch_sampling="two_path", weight_sampling="single_path",
                finetune_generator=False)


def tiny_supernet():
    from search.network_space import NetworkSpace
    from search.supernet import Supernet

    return Supernet(NetworkSpace(in_channels=1, num_classes=10, stem_channels=8, stages=((8, 1, 1),),
                                 head_channels=16, candidates=("k3_e3", "skip")))


def test_module_reads_its_optimiser_settings_as_given():
    from search.module import CoSearchModule

    module = CoSearchModule(tiny_supernet(), **SETTINGS)
    assert module.arch_optim == SETTINGS["arch_optim"]
    assert module.weight_optim == SETTINGS["weight_optim"]
    assert module.tau == 5.0


@pytest.mark.parametrize("node,key", [("arch_optim", "hw_lr"), ("weight_optim", "momentum"),
                                      ("temperature", "schedule")])
def test_module_settings_without_a_key_are_refused_naming_it(node, key):
    from search.module import CoSearchModule

    partial = {k: v for k, v in SETTINGS[node].items() if k != key}
    with pytest.raises(ValueError, match=rf"search.{node}: missing key\(s\) \['{key}'\]"):
        CoSearchModule(tiny_supernet(), **{**SETTINGS, node: partial})
