"""Quantisation-aware training: the fake quantisers, their straight-through gradients, and the
quantised layers of the supernet and the derived network."""

import pytest
import torch

from search.quant import (FLOAT_BITS, RELU6_MAX, QuantConv2d, QuantLinear, quantize_signed, quantize_unsigned,
                          quantize_weight, ste_round)


def test_ste_round_rounds_forward_and_passes_the_gradient_unchanged():
    x = torch.tensor([0.2, 0.7, -1.4, 2.5], requires_grad=True)
    y = ste_round(x)
    assert torch.equal(y.detach(), torch.round(x.detach()))
    (y * torch.arange(4.0)).sum().backward()
    assert torch.equal(x.grad, torch.arange(4.0))


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_weights_land_on_a_symmetric_per_output_channel_grid(bits):
    torch.manual_seed(0)
    weight = torch.randn(6, 3, 3, 3) * torch.arange(1.0, 7.0).view(6, 1, 1, 1)  # channels of different ranges
    q = quantize_weight(weight, bits)
    levels = 2 ** (bits - 1) - 1
    scale = weight.abs().amax(dim=(1, 2, 3), keepdim=True) / levels
    steps = q / scale
    assert torch.allclose(steps, torch.round(steps), atol=1e-4)  # integer multiples of each channel's step
    assert float(steps.abs().max()) <= levels + 1e-4
    # each channel's largest weight sits at the grid's end, exactly
    assert torch.allclose(q.abs().amax(dim=(1, 2, 3)), weight.abs().amax(dim=(1, 2, 3)))
    assert float((q - weight).abs().max()) <= float(scale.max()) / 2 + 1e-6


def test_weight_gradient_is_the_straight_through_identity():
    weight = torch.randn(4, 2, 3, 3, requires_grad=True)
    upstream = torch.randn(4, 2, 3, 3)
    (quantize_weight(weight, 4) * upstream).sum().backward()
    assert torch.allclose(weight.grad, upstream)


def test_unsigned_activations_are_on_the_relu6_grid_with_the_clipped_ste():
    x = torch.tensor([-1.0, 0.0, 0.1, 1.3, 3.0, 5.99, 6.0, 7.5], requires_grad=True)
    q = quantize_unsigned(x, 4)
    step = RELU6_MAX / 15
    assert torch.allclose(q / step, torch.round(q / step), atol=1e-5)
    assert float(q.detach().min()) == 0.0 and float(q.detach().max()) == pytest.approx(RELU6_MAX)
    q.sum().backward()
    # identity gradient inside [0, 6], none where the input was clipped
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]


def test_signed_activations_are_symmetric_around_zero_and_clipped_at_the_range():
    x = torch.linspace(-3.0, 3.0, 61, requires_grad=True)
    q = quantize_signed(x, 4, peak=2.0)
    step = 2.0 / 7
    assert torch.allclose(q / step, torch.round(q / step), atol=1e-5)
    assert float(q.detach().max()) == pytest.approx(2.0) and float(q.detach().min()) == pytest.approx(-2.0)
    assert torch.allclose(quantize_signed(-x, 4, 2.0), -q)  # symmetric
    q.sum().backward()
    assert x.grad[x.detach().abs() < 2.0].eq(1).all() and x.grad[x.detach().abs() > 2.0].eq(0).all()


def test_sixteen_bits_is_lossless_and_fewer_bits_are_coarser():
    torch.manual_seed(0)
    weight = torch.randn(8, 4, 3, 3)
    acts = torch.rand(1000) * RELU6_MAX
    assert FLOAT_BITS == 16
    assert torch.equal(quantize_weight(weight, 16), weight)
    assert torch.equal(quantize_unsigned(acts, 16), acts)
    errors = {bits: float((quantize_weight(weight, bits) - weight).abs().mean()) for bits in (2, 4, 8)}
    assert errors[8] < errors[4] < errors[2]
    assert errors[8] < 0.01 * float(weight.abs().mean())  # 8 bits: within 1%
    act_errors = {bits: float((quantize_unsigned(acts, bits) - acts).abs().mean()) for bits in (4, 8)}
    assert act_errors[8] < act_errors[4] <= RELU6_MAX / 15 / 2


def test_a_quantised_conv_at_sixteen_bits_is_the_plain_conv_exactly():
    torch.manual_seed(0)
    plain = torch.nn.Conv2d(4, 8, 3, 1, 1, bias=False)
    quant = QuantConv2d(4, 8, 3, 1, 1, bias=False, bits=16)
    quant.load_state_dict({**plain.state_dict(), "input_max": torch.zeros(())})
    x = torch.randn(2, 4, 6, 6)
    assert torch.equal(quant(x), plain(x))
    assert float(quant.input_max) == 0.0  # no range tracked when nothing is quantised


def test_a_quantised_conv_computes_on_quantised_operands_and_tracks_its_signed_range():
    torch.manual_seed(0)
    conv = QuantConv2d(3, 5, 3, 1, 1, bias=False, bits=4, signed_input=True)
    x = torch.randn(2, 3, 6, 6)
    y = conv(x)  # training: the first batch sets the range
    peak = x.abs().max()
    assert float(conv.input_max) == pytest.approx(float(peak))
    expected = torch.nn.functional.conv2d(quantize_signed(x, 4, peak), quantize_weight(conv.weight, 4), padding=1)
    assert torch.allclose(y, expected, atol=1e-5)
    conv(2 * x)  # later batches: a moving average of the peaks
    assert float(conv.input_max) == pytest.approx(float(0.9 * peak + 0.1 * 2 * peak), rel=1e-5)
    conv.eval()
    before = float(conv.input_max)
    conv(10 * x)
    assert float(conv.input_max) == before  # frozen in evaluation
    linear = QuantLinear(6, 3, bits=8, signed_input=False)
    z = torch.rand(4, 6) * RELU6_MAX
    assert torch.allclose(linear(z), torch.nn.functional.linear(quantize_unsigned(z, 8), quantize_weight(linear.weight, 8),
                                                                 linear.bias), atol=1e-5)


def test_a_precision_mixture_is_one_conv_on_mixed_operands_with_gradients_for_every_weight():
    torch.manual_seed(0)
    conv = QuantConv2d(3, 4, 1, bias=False, bits=16, signed_input=False)
    x = torch.rand(2, 3, 5, 5) * RELU6_MAX
    logits = torch.zeros(3, requires_grad=True)
    weights = torch.softmax(logits, 0)
    conv.set_mixture((4, 8, 16), weights)
    y = conv(x)
    w_mix = sum(p * quantize_weight(conv.weight, b) for p, b in zip(weights, (4, 8, 16)))
    x_mix = sum(p * quantize_unsigned(x, b) for p, b in zip(weights, (4, 8, 16)))
    assert torch.allclose(y, torch.nn.functional.conv2d(x_mix, w_mix), atol=1e-5)
    (y ** 2).sum().backward()
    assert (logits.grad != 0).all()
    conv.set_mixture(None)  # back to its own fixed precision
    assert torch.equal(conv(x), torch.nn.functional.conv2d(x, conv.weight))


def test_bad_bit_widths_are_refused_naming_the_value():
    with pytest.raises(ValueError, match="bits = 1"):
        quantize_weight(torch.ones(2, 2), 1)
    with pytest.raises(ValueError, match="bits = 33"):
        QuantConv2d(1, 1, 1, bits=33)
