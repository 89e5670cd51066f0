"""SAM's contract with the code around it (issue 13): groups added later, ``step()`` after
``first_step()``, gradients accumulated before ``step(closure)``, base optimizers SAM cannot drive
and ``maximize=True``. Every trajectory is checked against a plain loop written out here."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sam_course import SAM
from sam_course.optim import LookSAM, SAMEveryK

VARIANTS = {
    "SAM": lambda params, **kw: SAM(params, torch.optim.SGD, **kw),
    "SAMEveryK": lambda params, **kw: SAMEveryK(params, torch.optim.SGD, k=2, **kw),
    "LookSAM": lambda params, **kw: LookSAM(params, torch.optim.SGD, k=2, **kw),
}


def net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))


def data(n: int = 4, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 5, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(n)]


def closure_for(model, x, y, sign: float = 1.0):
    def closure():
        loss = sign * F.cross_entropy(model(x), y)
        loss.backward()
        return loss
    return closure


# ----------------------------------------------------------------------------------------------
# add_param_group


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_add_param_group_adds_the_group_once_and_trains_like_groups_given_up_front(name):
    a, b = net(), net()
    late = VARIANTS[name](a[0].parameters(), rho=0.05, lr=0.1)
    late.add_param_group({"params": list(a[2].parameters()), "lr": 0.05, "rho": 0.1})
    assert late.param_groups is late.base_optimizer.param_groups
    assert len(late.param_groups) == 2
    # The new group got SAM's defaults for what it did not set, and the base optimizer's.
    assert (late.param_groups[1]["rho"], late.param_groups[1]["p"], late.param_groups[1]["momentum"]) == (0.1, 2, 0)
    early = VARIANTS[name]([{"params": b[0].parameters()}, {"params": b[2].parameters(), "lr": 0.05, "rho": 0.1}],
                           rho=0.05, lr=0.1)
    for x, y in data():
        late.step(closure_for(a, x, y))
        early.step(closure_for(b, x, y))
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("bad, match", [({"rho": -5}, "rho must be"), ({"p": 0.5}, "p must be"),
                                        ({"eta": -1}, "eta must be"), ({"adaptive": "yes"}, "adaptive must be")])
def test_a_rejected_group_leaves_no_trace(name, bad, match):
    model = net()
    opt = VARIANTS[name](model[0].parameters(), lr=0.1)
    group = {"params": list(model[2].parameters()), **bad}
    with pytest.raises(ValueError, match=match):
        opt.add_param_group(group)
    assert len(opt.param_groups) == 1 and len(opt.base_optimizer.param_groups) == 1
    assert group.keys() == {"params", *bad}  # the caller's dict was not filled in either
    opt.add_param_group({"params": list(model[2].parameters())})  # the parameters are still free
    assert len(opt.param_groups) == 2


def test_a_group_the_base_optimizer_rejects_leaves_no_trace():
    model = net()
    opt = SAM(model.parameters(), torch.optim.SGD, lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": list(model[0].parameters())})
    assert len(opt.param_groups) == 1 and opt.param_groups is opt.base_optimizer.param_groups


def test_groups_stay_shared_after_load_state_dict_and_can_still_be_added():
    model = net()
    opt = SAM(model[0].parameters(), torch.optim.SGD, lr=0.1, momentum=0.9)
    opt.step(closure_for(model, *data(1)[0]))
    opt.load_state_dict(opt.state_dict())
    opt.add_param_group({"params": list(model[2].parameters())})
    assert opt.param_groups is opt.base_optimizer.param_groups and len(opt.param_groups) == 2


# ----------------------------------------------------------------------------------------------
# step() after first_step()


def two_step_reference(model, batches, make, finish):
    opt = make(model.parameters())
    for x, y in batches:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        if getattr(opt, "next_is_sam", True):
            opt.first_step(zero_grad=True)
            F.cross_entropy(model(x), y).backward()
        finish(opt)
    return opt


@pytest.mark.parametrize("name", ["SAM", "SAMEveryK"])
def test_step_without_closure_after_first_step_is_second_step(name):
    make = lambda params: VARIANTS[name](params, lr=0.1, momentum=0.9)  # noqa: E731
    a, b = net(), net()
    opt_a = two_step_reference(a, data(), make, lambda opt: opt.second_step())
    opt_b = two_step_reference(b, data(), make, lambda opt: opt.step())
    assert not opt_b.perturbed
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    if name == "SAMEveryK":
        assert opt_a.steps_taken == opt_b.steps_taken == 4


def test_step_with_closure_while_perturbed_runs_it_at_the_perturbed_point():
    a, b = net(), net()
    (x, y), = data(1)
    opt_a, opt_b = SAM(a.parameters(), torch.optim.SGD, lr=0.1), SAM(b.parameters(), torch.optim.SGD, lr=0.1)
    for model, opt in ((a, opt_a), (b, opt_b)):
        F.cross_entropy(model(x), y).backward()
        opt.first_step(zero_grad=True)
    F.cross_entropy(a(x), y).backward()
    opt_a.second_step()
    loss = opt_b.step(closure_for(b, x, y))
    assert loss is not None and not opt_b.perturbed
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_step_without_closure_when_not_perturbed_still_needs_a_closure(name):
    model = net()
    opt = VARIANTS[name](model.parameters(), lr=0.1)
    F.cross_entropy(model(data(1)[0][0]), data(1)[0][1]).backward()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(RuntimeError, match="needs a closure"):
        opt.step()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))


def test_looksam_refuses_to_finish_a_step_it_did_not_start():
    model = net()
    opt = LookSAM(model.parameters(), torch.optim.SGD, lr=0.1)
    (x, y), = data(1)
    F.cross_entropy(model(x), y).backward()
    opt.first_step()
    with pytest.raises(RuntimeError, match="restore"):
        opt.step()


# ----------------------------------------------------------------------------------------------
# Gradients accumulated before step(closure)


def test_step_keeps_accumulated_gradients_for_eps_hat_and_applies_the_closures_perturbed_gradient():
    """eps_hat from (earlier gradient + closure's gradient); the update from the closure's batch at w + eps_hat."""
    rho, lr = 0.2, 0.3
    (x0, y0), (x1, y1) = data(2)
    model, ref = net(), net()
    opt = SAM(model.parameters(), torch.optim.SGD, rho=rho, lr=lr)
    (0.5 * F.cross_entropy(model(x0), y0)).backward()
    opt.step(closure_for(model, x1, y1))
    assert all(p.grad is None for p in model.parameters())  # the applied gradient does not leak

    params = list(ref.parameters())
    total = torch.autograd.grad(0.5 * F.cross_entropy(ref(x0), y0) + F.cross_entropy(ref(x1), y1), params)
    norm = torch.linalg.vector_norm(torch.cat([g.flatten() for g in total]))
    origin = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, g in zip(params, total):
            p.add_(g, alpha=rho / norm.item())
    perturbed = torch.autograd.grad(F.cross_entropy(ref(x1), y1), params)
    with torch.no_grad():
        for p, w, g in zip(params, origin, perturbed):
            p.copy_(w - lr * g)
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_a_closure_that_never_zeroes_gradients_gives_the_same_run_as_one_that_does(name):
    """step(closure) ends with zeroed gradients: nothing of one step reaches the next."""
    a, b = net(), net()
    opt_a, opt_b = VARIANTS[name](a.parameters(), lr=0.1), VARIANTS[name](b.parameters(), lr=0.1)
    for x, y in data():
        opt_a.step(closure_for(a, x, y))

        def zeroing(x=x, y=y):
            opt_b.zero_grad()
            return closure_for(b, x, y)()
        opt_b.step(zeroing)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


# ----------------------------------------------------------------------------------------------
# Base optimizers: a closure-driven step, maximize=True


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_a_base_optimizer_that_needs_a_closure_is_refused(name):
    with pytest.raises(ValueError, match="base_optimizer must take a step without a closure, got LBFGS"):
        {"SAM": SAM, "SAMEveryK": SAMEveryK, "LookSAM": LookSAM}[name](net().parameters(), torch.optim.LBFGS)


@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("base, kwargs", [(torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}),
                                          (torch.optim.Adam, {"lr": 0.01})])
@pytest.mark.parametrize("sam_kwargs", [{}, {"p": float("inf"), "rho": 0.01}, {"adaptive": True, "rho": 0.5}])
def test_maximize_equals_sam_minimizing_the_negated_loss(name, base, kwargs, sam_kwargs):
    """Ascent on L with the worst case -eps_hat is, step for step, SAM descending on -L."""
    classes = {"SAM": SAM, "SAMEveryK": SAMEveryK, "LookSAM": LookSAM}
    extra = {} if name == "SAM" else {"k": 2}
    a, b = net(), net()
    up = classes[name](a.parameters(), base, maximize=True, **extra, **sam_kwargs, **kwargs)
    down = classes[name](b.parameters(), base, **extra, **sam_kwargs, **kwargs)
    for x, y in data(5):
        up.step(closure_for(a, x, y))
        down.step(closure_for(b, x, y, sign=-1.0))
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0)


def test_replacing_param_groups_replaces_them_for_the_base_optimizer_too():
    """Lightning's BaseFinetuning assigns optimizer.param_groups on resume; the base must follow."""
    model = net()
    opt = SAM(model[0].parameters(), torch.optim.SGD, lr=0.1)
    opt.param_groups = [*opt.param_groups, {**opt.param_groups[0], "params": list(model[2].parameters())}]
    assert opt.base_optimizer.param_groups is opt.param_groups and len(opt.param_groups) == 2
    before = [p.detach().clone() for p in model[2].parameters()]
    opt.step(closure_for(model, *data(1)[0]))
    assert all(not torch.equal(p, q) for p, q in zip(model[2].parameters(), before))  # the base stepped them


@pytest.mark.parametrize("method", ["loop", "lowrank"])
def test_msam_with_maximize_is_msam_on_the_negated_loss(method):
    """m-SAM's per-chunk perturbations follow maximize=True too, in the loop and the low-rank form."""
    from sam_course.optim.msam import msam_gradient

    a, b = net(), net()
    up = SAM(a.parameters(), torch.optim.SGD, rho=0.1, lr=0.1, maximize=True)
    down = SAM(b.parameters(), torch.optim.SGD, rho=0.1, lr=0.1)
    (x, y), = data(1)
    msam_gradient(up, a, F.cross_entropy, x, y, m=2, method=method)
    msam_gradient(down, b, lambda out, t: -F.cross_entropy(out, t), x, y, m=2, method=method)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p.grad, -q.grad, atol=1e-6, rtol=0)
