import math

import pytest
import torch

from acol_eval.models.losses import acol_loss, rest_cross_entropy


def approx(value):
    return pytest.approx(value, rel=1e-6)


def test_rest_cross_entropy_matches_hand_values():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    target = torch.tensor([0, 2])
    lse0 = math.log(math.exp(2.0) + math.exp(0.0) + math.exp(-1.0))
    lse1 = math.log(2 * math.exp(0.5) + math.exp(3.0))
    expected = ((lse0 - (0.0 - 1.0) / 2) + (lse1 - (0.5 + 0.5) / 2)) / 2
    assert rest_cross_entropy(logits, target).item() == approx(expected)


def test_rest_cross_entropy_is_finite_for_huge_logits():
    logits = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]])
    target = torch.tensor([0, 2])
    loss = rest_cross_entropy(logits, target)
    assert torch.isfinite(loss)
    # sample 0: lse = 1e4, rest mean = (-1e4 + 0) / 2 -> 1.5e4; sample 1: lse = 1e4 + log 2,
    # rest mean = (-1e4 + 1e4) / 2 = 0 -> 1e4 + log 2
    assert loss.item() == approx((1.5e4 + 1e4 + math.log(2)) / 2)


def test_rest_cross_entropy_gradient_pushes_label_logit_down():
    logits = torch.tensor([[1.0, 2.0, 0.5, -0.3]], requires_grad=True)
    rest_cross_entropy(logits, torch.tensor([1])).backward()
    grad = logits.grad[0]
    assert grad[1] > 0  # descent lowers the label's logit
    expected = torch.softmax(logits.detach(), 1)[0, 1]
    assert grad[1].item() == approx(expected.item())
    # the other logits are pulled up towards the uniform target
    assert grad[0] < grad[1] and grad[2] < grad[1]


def test_acol_loss_sums_weighted_parts():
    torch.manual_seed(0)
    z1, z2 = torch.randn(4, 5), torch.randn(4, 5)
    y = torch.tensor([0, 1, 2, 3])
    total, parts = acol_loss("pn", [z1, z2], y, [1.0, 0.5])
    ce = torch.nn.functional.cross_entropy(z1, y)
    assert parts[0].item() == approx(ce.item())
    assert parts[1].item() == approx(rest_cross_entropy(z2, y).item())
    assert total.item() == approx(ce.item() + 0.5 * parts[1].item())
