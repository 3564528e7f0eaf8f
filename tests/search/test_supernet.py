"""The supernet mixes candidates by architecture weights; one-hot weights give the child."""

import torch

from search.network_space import NetworkSpace
from search.supernet import ChildNet, Supernet

SPACE = NetworkSpace(1, 10, 8, ((8, 1, 1), (16, 1, 2)), 32, ("k3_e3", "k5_e6", "skip"))


def test_disallowed_candidates_get_zero_probability():
    net = Supernet(SPACE)
    probs = net.arch_probs()
    assert probs.shape == (2, 3)
    assert torch.allclose(probs.sum(1), torch.ones(2))
    assert probs[1, 2] == 0  # skip cannot replace a stride-2, 8->16 block
    assert torch.allclose(probs[0], torch.full((3,), 1 / 3))


def test_one_hot_weights_make_the_supernet_compute_the_child_network():
    torch.manual_seed(0)
    net = Supernet(SPACE).eval()
    choice = (1, 0)
    child = ChildNet(SPACE, choice).eval()
    # copy the chosen candidates' weights into the child
    child.stem.load_state_dict(net.stem.state_dict())
    for b, index in enumerate(choice):
        child.blocks[b].load_state_dict(net.blocks[b].ops[index].state_dict())
    child.head.load_state_dict(net.head.state_dict())
    child.classifier.load_state_dict(net.classifier.state_dict())
    x = torch.randn(4, 1, 8, 8)
    weights = torch.nn.functional.one_hot(torch.tensor(choice), 3).float()
    assert torch.allclose(net(x, weights), child(x), atol=1e-5)


def test_architecture_gradient_flows_through_the_mixed_blocks():
    net = Supernet(SPACE)
    loss = torch.nn.functional.cross_entropy(net(torch.randn(8, 1, 8, 8)), torch.randint(0, 10, (8,)))
    loss.backward()
    assert net.arch_logits.grad is not None
    assert net.arch_logits.grad[0].abs().sum() > 0
    assert net.arch_logits.grad[1, 2] == 0  # the masked candidate
    assert all(p is not net.arch_logits for p in net.weight_parameters())


def test_derive_picks_the_most_probable_allowed_candidate():
    net = Supernet(SPACE)
    with torch.no_grad():
        net.arch_logits.copy_(torch.tensor([[0.0, 1.0, 3.0], [0.5, 0.0, 9.0]]))
    assert net.derive() == (2, 0)  # block 1's skip (logit 9) is not allowed


def test_path_sampling_computes_only_the_sampled_candidates_and_renormalises():
    torch.manual_seed(0)
    net = Supernet(SPACE)
    weights = net.sample_paths(2)
    assert torch.allclose(weights.sum(1), torch.ones(2))
    assert ((weights > 0).sum(1) == 2).all()
    assert weights[1, 2] == 0  # never a disallowed candidate
    single = net.sample_paths(1)
    assert torch.equal((single > 0).sum(1), torch.ones(2, dtype=torch.long))
    calls = []
    for block in net.blocks:
        for i, op in enumerate(block.ops):
            op.register_forward_hook(lambda *_, i=i: calls.append(i))
    net(torch.randn(2, 1, 8, 8), single)
    assert len(calls) == 2  # one candidate per block, nothing else computed


def test_path_sampling_follows_the_architecture_probabilities():
    torch.manual_seed(0)
    net = Supernet(SPACE)
    with torch.no_grad():
        net.arch_logits.copy_(torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    picks = torch.stack([net.sample_paths(1)[0].argmax() for _ in range(400)])
    share = float((picks == 0).float().mean())
    expected = float(torch.softmax(torch.tensor([3.0, 0.0, 0.0]), 0)[0])
    assert abs(share - expected) < 0.06
