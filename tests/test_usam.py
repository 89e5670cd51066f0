"""Unnormalized SAM (USAM, ``SAM(..., normalize=False)``): ``eps_hat = rho * g`` for p = 2, ASAM's
``rho * T**2 g`` with ``adaptive=True``; refused for any other p. Oracles: the closed forms."""

import math

import pytest
import torch
from torch import nn

from sam_course.optim import SAM


def quadratic(seed=11, n=4):
    gen = torch.Generator().manual_seed(seed)
    m = torch.randn(n, n, generator=gen, dtype=torch.float64)
    a = m @ m.T + torch.eye(n, dtype=torch.float64)
    return a, torch.randn(n, generator=gen, dtype=torch.float64), torch.randn(n, generator=gen, dtype=torch.float64)


def closure_for(w, a, b):
    def closure():
        loss = 0.5 * w @ a @ w - b @ w
        loss.backward()
        return loss
    return closure


def test_eps_hat_is_rho_times_the_gradient():
    a, b, w0 = quadratic()
    w = nn.Parameter(w0.clone())
    opt = SAM([w], torch.optim.SGD, rho=0.2, normalize=False, lr=0.1)
    closure_for(w, a, b)()
    opt.first_step()
    torch.testing.assert_close(w.detach() - w0, 0.2 * (a @ w0 - b), rtol=0, atol=1e-15)


def test_one_usam_step_on_a_quadratic_matches_the_closed_form():
    # w1 = w0 - lr * (A (w0 + rho g) - b), g = A w0 - b.
    a, b, w0 = quadratic(seed=2)
    w = nn.Parameter(w0.clone())
    SAM([w], torch.optim.SGD, rho=0.2, normalize=False, lr=0.05).step(closure_for(w, a, b))
    g = a @ w0 - b
    torch.testing.assert_close(w.detach(), w0 - 0.05 * (a @ (w0 + 0.2 * g) - b), rtol=0, atol=1e-12)


def test_adaptive_usam_is_rho_times_t_squared_times_g():
    a, b, w0 = quadratic(seed=3)
    w = nn.Parameter(w0.clone())
    opt = SAM([w], torch.optim.SGD, rho=0.2, adaptive=True, eta=0.01, normalize=False, lr=0.1)
    closure_for(w, a, b)()
    opt.first_step()
    t = w0.abs() + 0.01
    torch.testing.assert_close(w.detach() - w0, 0.2 * t ** 2 * (a @ w0 - b), rtol=0, atol=1e-15)


def test_usam_on_a_quadratic_diverges_where_sam_does_not():
    # USAM's step on 0.5 w^T A w is w <- (I - lr A (I + rho A)) w: unstable once lr l (1 + rho l) > 2
    # for an eigenvalue l of A. Here l = 10, lr = 0.1, rho = 0.5: 0.1 * 10 * 6 = 6 > 2; SAM's
    # normalized perturbation stays of length rho and the run settles near the minimum.
    a = torch.diag(torch.tensor([10.0, 1.0], dtype=torch.float64))
    runs = {}
    for normalize in (True, False):
        w = nn.Parameter(torch.tensor([1.0, 1.0], dtype=torch.float64))
        opt = SAM([w], torch.optim.SGD, rho=0.5, normalize=normalize, lr=0.1)
        for _ in range(30):
            opt.step(closure_for(w, a, torch.zeros(2, dtype=torch.float64)))
        runs[normalize] = w.detach().norm().item()
    assert runs[False] > 1e10 and runs[True] < 2.0


def test_normalized_and_unnormalized_groups_keep_separate_norms():
    w1 = nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    w2 = nn.Parameter(torch.tensor([-1.0], dtype=torch.float64))
    opt = SAM([{"params": [w1]}, {"params": [w2], "normalize": False}], torch.optim.SGD, rho=0.3, lr=0.1)
    w1.grad = torch.tensor([3.0, 4.0], dtype=torch.float64)
    w2.grad = torch.tensor([12.0], dtype=torch.float64)
    opt.first_step()
    torch.testing.assert_close(w1.detach(), torch.tensor([1.0 + 0.3 * 3 / 5, 2.0 + 0.3 * 4 / 5], dtype=torch.float64))
    torch.testing.assert_close(w2.detach(), torch.tensor([-1.0 + 0.3 * 12.0], dtype=torch.float64))


@pytest.mark.parametrize("p", [1, 3, math.inf])
def test_normalize_false_with_another_p_is_refused(p):
    with pytest.raises(ValueError, match="normalize=False .* p = 2 only"):
        SAM(nn.Linear(2, 2).parameters(), torch.optim.SGD, p=p, normalize=False, lr=0.1)
    opt = SAM(nn.Linear(2, 2).parameters(), torch.optim.SGD, lr=0.1)
    groups = list(opt.param_groups)
    with pytest.raises(ValueError, match="normalize=False"):
        opt.add_param_group({"params": [nn.Parameter(torch.ones(2))], "p": p, "normalize": False})
    assert opt.param_groups == groups


def test_a_non_boolean_normalize_is_refused_naming_it():
    with pytest.raises(TypeError, match="normalize must be True or False"):
        SAM(nn.Linear(2, 2).parameters(), torch.optim.SGD, normalize="no", lr=0.1)


def test_a_non_finite_gradient_is_refused_and_nothing_moves():
    w = nn.Parameter(torch.ones(2, dtype=torch.float64))
    opt = SAM([w], torch.optim.SGD, normalize=False, lr=0.1)
    w.grad = torch.tensor([1.0, math.nan], dtype=torch.float64)
    with pytest.raises(ValueError, match="inf or NaN"):
        opt.first_step()
    assert torch.equal(w.detach(), torch.ones(2, dtype=torch.float64)) and not opt.perturbed


def test_a_checkpoint_without_normalize_loads_and_stays_normalized():
    # Checkpoints saved before issue 15 have no "normalize" in their groups.
    a, b, w0 = quadratic()
    w = nn.Parameter(w0.clone())
    opt = SAM([w], torch.optim.SGD, rho=0.2, lr=0.1)
    state = opt.state_dict()
    for group in state["param_groups"]:
        del group["normalize"]
    opt.load_state_dict(state)
    closure_for(w, a, b)()
    opt.first_step()
    g = a @ w0 - b
    torch.testing.assert_close(w.detach() - w0, 0.2 * g / g.norm(), rtol=0, atol=1e-15)
