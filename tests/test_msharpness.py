"""m-SAM against a naive per-chunk loop and plain SAM; m-sharpness against brute force."""

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from sam_course.optim import SAM, epsilon_hat
from sam_course.optim.msam import m_sharpness, msam_gradient, msam_step


def make_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 12), nn.Tanh(), nn.Linear(12, 3)).double()


def batch(n=12, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=gen, dtype=torch.float64), torch.randint(0, 3, (n,), generator=gen)


LOSS = nn.CrossEntropyLoss()


def naive_msam_gradient(model, x, y, m, rho, p=2):
    params = dict(model.named_parameters())
    grads = []
    for xc, yc in zip(x.split(m), y.split(m)):
        g = torch.autograd.grad(LOSS(model(xc), yc), list(params.values()))
        eps = epsilon_hat(g, rho, p)
        moved = {k: v.detach() + e for (k, v), e in zip(params.items(), eps)}
        moved = {k: v.requires_grad_() for k, v in moved.items()}
        grads.append(torch.autograd.grad(LOSS(functional_call(model, moved, (xc,)), yc), list(moved.values())))
    return [torch.stack(gs).mean(0) for gs in zip(*grads)]


@pytest.mark.parametrize("m", [1, 3, 4, 6, 12])
@pytest.mark.parametrize("p, method", [(2, "loop"), (2, "lowrank"), (2, "auto"), (math.inf, "loop"), (math.inf, "auto")])
def test_msam_gradient_equals_naive_per_chunk_loop(m, p, method):
    model = make_model()
    x, y = batch()
    expected = naive_msam_gradient(model, x, y, m, rho=0.1, p=p)
    before = [q.detach().clone() for q in model.parameters()]
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.1, p=p, lr=0.1)
    loss = msam_gradient(opt, model, LOSS, x, y, m, method)
    for q, g, w in zip(model.parameters(), expected, before):
        torch.testing.assert_close(q.grad, g, rtol=0, atol=1e-12)
        assert torch.equal(q.detach(), w)
    assert loss.item() == pytest.approx(LOSS(model(x), y).item(), rel=1e-12)


def test_msam_with_m_equal_batch_is_plain_sam_bit_for_bit():
    x, y = batch()
    a, b = make_model(), make_model()
    opt_a = SAM(a.parameters(), torch.optim.SGD, rho=0.1, lr=0.1, momentum=0.9)
    opt_b = SAM(b.parameters(), torch.optim.SGD, rho=0.1, lr=0.1, momentum=0.9)
    for _ in range(5):
        msam_step(opt_a, a, LOSS, x, y, m=12)
        LOSS(b(x), y).backward()
        opt_b.first_step(zero_grad=True)
        LOSS(b(x), y).backward()
        opt_b.second_step(zero_grad=True)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_smaller_m_gives_a_different_gradient():
    model = make_model()
    x, y = batch()
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.5, lr=0.1)
    msam_gradient(opt, model, LOSS, x, y, 12)
    full = [q.grad.clone() for q in model.parameters()]
    msam_gradient(opt, model, LOSS, x, y, 2)
    assert any((q.grad - g).abs().max() > 1e-4 for q, g in zip(model.parameters(), full))


@pytest.mark.parametrize("m", [5, 0, -2, 2.0])
def test_msam_rejects_m_that_does_not_divide_the_batch(m):
    model = make_model()
    x, y = batch()
    opt = SAM(model.parameters(), torch.optim.SGD, lr=0.1)
    with pytest.raises(ValueError, match="m must"):
        msam_gradient(opt, model, LOSS, x, y, m)


def brute_force_sharpness(w0, x, y, rho, n=200_001):
    """Max over the circle of radius rho (a convex loss peaks on the boundary) minus L(w0)."""
    theta = torch.linspace(0, 2 * math.pi, n, dtype=torch.float64)
    eps = rho * torch.stack([theta.cos(), theta.sin()], 1)
    w = w0 + eps
    losses = ((x @ w.T - y[:, None]) ** 2).mean(0)
    return (losses.max() - ((x @ w0 - y) ** 2).mean()).item()


def test_m_sharpness_matches_brute_force_on_a_two_parameter_regression():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(8, 2, generator=gen, dtype=torch.float64)
    y = torch.randn(8, generator=gen, dtype=torch.float64)
    model = nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.3, -0.7]]))
    w0 = model.weight.detach().reshape(-1).clone()

    def mse(out, target):
        return ((out.squeeze(1) - target) ** 2).mean()

    for m in (2, 4, 8):
        expected = sum(brute_force_sharpness(w0, xc, yc, 0.5) for xc, yc in zip(x.split(m), y.split(m))) / (8 // m)
        got = m_sharpness(model, mse, x, y, m=m, rho=0.5, steps=30)
        assert got == pytest.approx(expected, rel=1e-8)
        assert got <= expected * (1 + 1e-8)
    assert torch.equal(model.weight.detach().reshape(-1), w0)


def test_m_sharpness_leaves_model_and_batchnorm_buffers_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3)).double()
    x, y = batch()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    value = m_sharpness(model, LOSS, x, y, m=4, rho=0.05, steps=3)
    assert value > 0
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_m_sharpness_rejects_bad_arguments():
    model = make_model()
    x, y = batch()
    with pytest.raises(ValueError, match="rho must be"):
        m_sharpness(model, LOSS, x, y, m=4, rho=-1.0)
    with pytest.raises(ValueError, match="steps must be"):
        m_sharpness(model, LOSS, x, y, m=4, steps=-1)
    with pytest.raises(ValueError, match="m must divide"):
        m_sharpness(model, LOSS, x, y, m=5)
