"""sam_course.optim.momentum_sam.MomentumSAM against oracles: two steps on a quadratic in closed form
(SGD with momentum and Adam), the base optimizer bit for bit at rho = 0, one pass per step at
w - rho v / ||v||, an uninterrupted run (resume), and bad arguments."""

import io

import pytest
import torch
from helpers import batches64 as batches
from helpers import loss_closure as closure_for
from helpers import tiny_net64 as small_net
from torch import nn

from sam_course.optim.momentum_sam import MomentumSAM, momentum_buffer

DT = torch.float64
A = torch.tensor([[3.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 0.3]], dtype=DT)
B = torch.tensor([1.0, -2.0, 0.5], dtype=DT)


def grad(v):
    return A @ v - B


def quadratic_closure(w):
    def closure():
        loss = 0.5 * w @ A @ w - B @ w
        loss.backward()
        return loss
    return closure


# --------------------------------------------------------------------------- the update rule, closed form


def test_two_sgd_steps_on_a_quadratic_match_the_closed_form():
    """SGD with momentum mu: v <- mu v + g, w <- w - lr v; MSAM takes g at w - rho v / ||v||."""
    rho, lr, mu = 0.3, 0.05, 0.9
    w = nn.Parameter(torch.tensor([1.0, 2.0, -1.0], dtype=DT))
    opt = MomentumSAM([w], torch.optim.SGD, rho=rho, lr=lr, momentum=mu)
    w0 = w.detach().clone()
    # t = 0: no momentum yet, eps = 0: a plain SGD step (the buffer starts as g).
    v0 = grad(w0)
    w1 = w0 - lr * v0
    # t = 1: the gradient at w1 - rho v0 / ||v0||, applied at w1.
    v1 = mu * v0 + grad(w1 - rho * v0 / v0.norm())
    w2 = w1 - lr * v1
    opt.step(quadratic_closure(w))
    assert torch.allclose(w.detach(), w1, rtol=0, atol=1e-12)
    opt.step(quadratic_closure(w))
    assert torch.allclose(w.detach(), w2, rtol=0, atol=1e-12)


def test_two_adam_steps_on_a_quadratic_match_the_closed_form():
    """Adam: the perturbation along -exp_avg (the first moment), normalized to rho."""
    rho, lr, b1, b2, eps = 0.3, 0.05, 0.9, 0.999, 1e-8
    w = nn.Parameter(torch.tensor([1.0, 2.0, -1.0], dtype=DT))
    opt = MomentumSAM([w], torch.optim.Adam, rho=rho, lr=lr, betas=(b1, b2), eps=eps)
    w0 = w.detach().clone()
    g0 = grad(w0)
    m0, s0 = (1 - b1) * g0, (1 - b2) * g0 ** 2
    w1 = w0 - lr * (m0 / (1 - b1)) / ((s0 / (1 - b2)).sqrt() + eps)
    g1 = grad(w1 - rho * m0 / m0.norm())
    m1, s1 = b1 * m0 + (1 - b1) * g1, b2 * s0 + (1 - b2) * g1 ** 2
    w2 = w1 - lr * (m1 / (1 - b1 ** 2)) / ((s1 / (1 - b2 ** 2)).sqrt() + eps)
    opt.step(quadratic_closure(w))
    assert torch.allclose(w.detach(), w1, rtol=0, atol=1e-12)
    opt.step(quadratic_closure(w))
    assert torch.allclose(w.detach(), w2, rtol=0, atol=1e-12)


def test_one_pass_per_step_at_w_minus_rho_times_the_normalized_momentum():
    model = small_net()
    opt = MomentumSAM(model.parameters(), torch.optim.SGD, rho=0.3, lr=0.1, momentum=0.9)
    data = batches(6)
    calls = []
    for i, (x, y) in enumerate(data):
        params = list(model.parameters())
        w = [q.detach().clone() for q in params]
        v = [momentum_buffer(opt.base_optimizer, q) for q in params]
        v = [None if b is None else b.clone() for b in v]   # the step updates the buffers in place
        seen = []

        def closure(x=x, y=y, seen=seen):
            seen.append([q.detach().clone() for q in model.parameters()])
            return closure_for(model, x, y, calls)()
        opt.step(closure)
        assert len(seen) == 1
        if i == 0:
            assert all(torch.equal(s, wq) for s, wq in zip(seen[0], w))   # the first step: eps = 0
        else:
            norm = torch.sqrt(sum((b * b).sum() for b in v))
            for s, wq, b in zip(seen[0], w, v):
                assert torch.allclose(s, wq - 0.3 * b / norm, rtol=0, atol=1e-14)
    assert len(calls) == opt.steps_taken == len(data)
    assert all(q.grad is None for q in model.parameters())


# --------------------------------------------------------------------------- rho = 0, resume


@pytest.mark.parametrize("base, kwargs", [
    (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "nesterov": True}),
    (torch.optim.Adam, {"lr": 1e-2}),
    (torch.optim.AdamW, {"lr": 1e-2}),
])
def test_rho_zero_is_the_base_optimizer_bit_for_bit(base, kwargs):
    a, b = small_net(), small_net()
    msam = MomentumSAM(a.parameters(), base, rho=0.0, **kwargs)
    plain = base(b.parameters(), **kwargs)
    for x, y in batches(12):
        loss_a = msam.step(closure_for(a, x, y, optimizer=msam))
        loss_b = plain.step(closure_for(b, x, y, optimizer=plain))
        assert torch.equal(loss_a, loss_b)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("base, kwargs", [
    (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}),
    (torch.optim.Adam, {"lr": 1e-2}),
])
def test_resumed_from_state_dict_equals_an_uninterrupted_run(base, kwargs):
    data = batches(10)
    make = lambda m: MomentumSAM(m.parameters(), base, rho=0.3, **kwargs)  # noqa: E731
    whole = small_net()
    opt = make(whole)
    for x, y in data:
        opt.step(closure_for(whole, x, y))
    first = small_net()
    opt_first = make(first)
    for x, y in data[:5]:
        opt_first.step(closure_for(first, x, y))
    buffer = io.BytesIO()
    torch.save({"model": first.state_dict(), "opt": opt_first.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed = small_net(seed=3)
    resumed.load_state_dict(saved["model"])
    opt_resumed = make(resumed)
    opt_resumed.load_state_dict(saved["opt"])
    assert opt_resumed.steps_taken == 5
    for x, y in data[5:]:
        opt_resumed.step(closure_for(resumed, x, y))
    for p, q in zip(whole.parameters(), resumed.parameters()):
        assert torch.equal(p, q)


def test_the_two_step_api_equals_step():
    a, b = small_net(), small_net()
    one = MomentumSAM(a.parameters(), torch.optim.SGD, rho=0.3, lr=0.1, momentum=0.9)
    two = MomentumSAM(b.parameters(), torch.optim.SGD, rho=0.3, lr=0.1, momentum=0.9)
    for i, (x, y) in enumerate(batches(5)):
        one.step(closure_for(a, x, y))
        two.first_step()
        assert two.perturbed == (i > 0)   # no momentum before the first step: nothing moves
        if two.perturbed:
            with pytest.raises(RuntimeError, match="perturbed"):
                two.state_dict()
        closure_for(b, x, y)()
        two.second_step(zero_grad=True)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


# --------------------------------------------------------------------------- bad arguments, errors


@pytest.mark.parametrize("base, kwargs, name", [
    (torch.optim.SGD, {"rho": -1.0, "momentum": 0.9}, "rho"),
    (torch.optim.SGD, {"rho": "a", "momentum": 0.9}, "rho"),
    (torch.optim.SGD, {}, "momentum"),
    (torch.optim.SGD, {"momentum": 0.9, "p": 3}, "p"),
    (torch.optim.Adam, {"adaptive": True}, "adaptive"),
])
def test_bad_arguments_are_refused_naming_them(base, kwargs, name):
    with pytest.raises(ValueError, match=name):
        MomentumSAM(small_net().parameters(), base, lr=0.1, **kwargs)


def test_a_base_without_momentum_is_refused_after_its_first_step_and_a_closure_is_needed():
    model = small_net()
    opt = MomentumSAM(model.parameters(), torch.optim.Adagrad, rho=0.3, lr=0.1)
    x, y = batches(1)[0]
    with pytest.raises(RuntimeError, match="momentum buffer"):
        opt.step(closure_for(model, x, y))
    with pytest.raises(RuntimeError, match="closure"):
        MomentumSAM(model.parameters(), torch.optim.Adam, lr=0.1).step()
    with pytest.raises(ValueError, match="momentum_sam"):
        opt.load_state_dict(torch.optim.SGD(model.parameters(), lr=0.1).state_dict() | {"base_optimizer": {}})


# --------------------------------------------------------------------------- in train.fit


def test_fit_step_lets_batchnorm_see_the_one_pass():
    """train.optimizer_step freezes BatchNorm's statistics on SAM's perturbed pass; MomentumSAM's
    perturbed pass is its only one, so they are updated there, once per step."""
    from sam_course import train

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 3)).to(DT)
    opt = MomentumSAM(model.parameters(), torch.optim.SGD, rho=0.3, lr=0.1, momentum=0.9)
    for x, y in batches(3):
        train.optimizer_step(model, opt, nn.functional.cross_entropy, x, y)
    assert int(model[1].num_batches_tracked) == 3 and opt.steps_taken == 3


def test_fit_refuses_msam_m_with_momentum_sam():
    from torch.utils.data import TensorDataset

    from sam_course import train

    model = small_net()
    opt = MomentumSAM(model.parameters(), torch.optim.SGD, rho=0.3, lr=0.1, momentum=0.9)
    x, y = batches(1)[0]
    with pytest.raises(ValueError, match="msam_m must be None with a MomentumSAM"):
        train.fit(model, opt, TensorDataset(x, y), 1, batch_size=8, msam_m=4, progress=False)


# --------------------------------------------------------------------------- SAM's contract


@pytest.mark.parametrize("base, kwargs", [(torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}),
                                          (torch.optim.Adam, {"lr": 1e-2})])
def test_maximize_is_momentum_sam_on_the_negated_loss(base, kwargs):
    """With maximize=True the base's momentum accumulates -g and its step goes along -v: the
    perturbation, along -v too, is that of MomentumSAM descending on -L."""
    a, b = small_net(), small_net()
    up = MomentumSAM(a.parameters(), base, rho=0.3, maximize=True, **kwargs)
    down = MomentumSAM(b.parameters(), base, rho=0.3, **kwargs)
    for x, y in batches(6):
        up.step(closure_for(a, x, y))

        def negated(x=x, y=y):
            loss = -nn.functional.cross_entropy(b(x), y)
            loss.backward()
            return loss
        down.step(negated)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="base_optimizer must take a step without a closure"):
        MomentumSAM(small_net().parameters(), torch.optim.LBFGS)


def test_groups_with_their_own_rho_and_a_group_added_later():
    """rho per group, one norm over all momenta; a group added later trains like one given up front."""
    a, b = small_net(), small_net()
    late = MomentumSAM(a[0].parameters(), torch.optim.SGD, rho=0.3, lr=0.1, momentum=0.9)
    late.add_param_group({"params": list(a[2].parameters()), "rho": 0.0})
    early = MomentumSAM([{"params": b[0].parameters()}, {"params": b[2].parameters(), "rho": 0.0}],
                        torch.optim.SGD, rho=0.3, lr=0.1, momentum=0.9)
    for i, (x, y) in enumerate(batches(5)):
        late.step(closure_for(a, x, y))
        before = [q.detach().clone() for q in b.parameters()]
        early.first_step()
        moved = [not torch.equal(q, w) for q, w in zip(b.parameters(), before)]
        assert moved == [i > 0] * 2 + [False] * 2   # the rho = 0 group stays at w
        closure_for(b, x, y)()
        early.second_step(zero_grad=True)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
