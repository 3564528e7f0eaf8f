"""The accelerator space and its learnable parameterisations."""

import pytest
import torch

from dataset_gen.space import ACCELERATOR_FIELDS, Accelerator, SpaceError
from search.hardware import AcceleratorLogits, AcceleratorSpace, HardwareGenerator, sample_choices

CHOICES = {"pe_rows": [8, 16], "pe_cols": [8, 16, 32], "dataflow": ["ws", "rs"], "rf_bytes": [16, 64],
           "ifmap_kb": [64], "filter_kb": [64], "ofmap_kb": [64], "dram_bw": [16], "word_bits": [16],
           "freq_mhz": [500], "pe_kind": ["fixed"]}


def test_space_covers_every_accelerator_field_in_order():
    space = AcceleratorSpace.from_config(CHOICES)
    assert space.fields == ACCELERATOR_FIELDS
    assert space.size == 2 * 3 * 2 * 2
    assert len(space.enumerate()) == space.size
    index = (1, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0)
    accelerator = space.accelerator(index)
    assert accelerator == Accelerator(pe_rows=16, pe_cols=32, dataflow="rs", rf_bytes=16, ifmap_kb=64,
                                      filter_kb=64, ofmap_kb=64)
    assert space.index_of(accelerator) == index


def test_enumerate_samples_distinct_indices_when_the_space_is_larger_than_the_limit():
    space = AcceleratorSpace.from_config(CHOICES)
    sample = space.enumerate(limit=5, seed=3)
    assert len(set(sample)) == 5
    assert sample == space.enumerate(limit=5, seed=3)


@pytest.mark.parametrize("field,values,message", [
    ("pe_rows", [0, 8], "pe_rows"),
    ("dataflow", ["ws", "xy"], "dataflow"),
    ("word_bits", [12], "word_bits"),
    ("pe_cols", [], "at least one value"),
    ("rf_bytes", [16, 16], "duplicated"),
])
def test_bad_choices_are_refused_naming_the_field(field, values, message):
    with pytest.raises(SpaceError, match=message):
        AcceleratorSpace.from_config({**CHOICES, field: values})


def test_every_field_must_be_configured():
    choices = dict(CHOICES)
    del choices["dram_bw"]
    with pytest.raises(SpaceError, match=r"missing field\(s\) \['dram_bw'\]"):
        AcceleratorSpace.from_config(choices)


def test_gumbel_samples_are_distributions_and_fixed_fields_are_one():
    space = AcceleratorSpace.from_config(CHOICES)
    params = AcceleratorLogits(space)
    probs = sample_choices(params(), tau=1.0, samples=5)
    for field, values in space.choices:
        assert probs[field].shape == (5, len(values))
        assert torch.allclose(probs[field].sum(1), torch.ones(5))
    assert torch.equal(probs["word_bits"], torch.ones(5, 1))
    hard = sample_choices(params(), tau=1.0, samples=3, hard=True)
    assert set(hard["pe_cols"].detach().flatten().tolist()) <= {0.0, 1.0}


def test_low_temperature_samples_concentrate_on_the_argmax():
    space = AcceleratorSpace.from_config(CHOICES)
    params = AcceleratorLogits(space, init=(0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0), init_bias=3.0)
    torch.manual_seed(0)
    cold = sample_choices(params(), tau=0.05, samples=200)["pe_cols"].mean(0)
    hot = sample_choices(params(), tau=50.0, samples=200)["pe_cols"].mean(0)
    assert cold[2] > 0.85
    assert hot.max() < 0.5
    assert params.derive() == (0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0)


def test_generator_maps_architectures_to_per_field_logits():
    space = AcceleratorSpace.from_config(CHOICES)
    generator = HardwareGenerator(space, n_blocks=3, n_candidates=4, hidden=16)
    logits = generator(torch.rand(6, 3, 4))
    assert {field: tuple(t.shape) for field, t in logits.items()} == {
        field: (6, len(values)) for field, values in space.choices}
    assert len(generator.derive(torch.rand(3, 4))) == len(ACCELERATOR_FIELDS)
