"""sam_course.optim.schedules against oracles: RandomizedSAM (RST) and AdaptiveSAM (AE-SAM) step by
step on a quadratic in closed form, their decisions recomputed here; SAM bit for bit when the
schedule always says SAM (and SAMEveryK with k = 1), the base optimizer when it never does; exact
pass counts; uninterrupted runs (resume, the generator's state included); bad arguments."""

import io
import math

import pytest
import torch
from helpers import batches64 as batches
from helpers import loss_closure as closure_for
from helpers import tiny_net64 as small_net
from torch import nn

from sam_course.optim import SAM, SAMEveryK
from sam_course.optim.schedules import AdaptiveSAM, RandomizedSAM

DT = torch.float64
A = torch.tensor([[3.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 0.3]], dtype=DT)


def noisy_b(n, seed=2):
    """A different linear term per step, so the gradient norm (AE-SAM's signal) moves around."""
    g = torch.Generator().manual_seed(seed)
    return [torch.tensor([1.0, -2.0, 0.5], dtype=DT) + torch.randn(3, generator=g, dtype=DT) for _ in range(n)]


def quadratic_closure(w, b, calls=None):
    def closure():
        if calls is not None:
            calls.append(1)
        loss = 0.5 * w @ A @ w - b @ w
        loss.backward()
        return loss
    return closure


def sam_or_plain(w, b, rho, lr, sam):
    """The closed form of one step with plain SGD as the base: SAM's or the base's."""
    g = A @ w - b
    if sam:
        return w - lr * (A @ (w + rho * g / g.norm()) - b)
    return w - lr * g


# --------------------------------------------------------------------------- each step in closed form


def test_randomized_sam_steps_on_a_quadratic_match_the_closed_form():
    rho, lr, probability, seed, steps = 0.2, 0.05, 0.4, 7, 30
    w = nn.Parameter(torch.tensor([1.0, 2.0, -1.0], dtype=DT))
    opt = RandomizedSAM([w], torch.optim.SGD, rho=rho, probability=probability, seed=seed, lr=lr)
    draws = torch.Generator().manual_seed(seed)   # the same stream, one uniform draw per step
    expected, calls, n_sam = w.detach().clone(), [], 0
    for b in noisy_b(steps):
        sam = float(torch.rand((), generator=draws, dtype=DT)) < probability
        n_sam += sam
        expected = sam_or_plain(expected, b, rho, lr, sam)
        opt.step(quadratic_closure(w, b, calls))
        assert torch.allclose(w.detach(), expected, rtol=0, atol=1e-12)
    assert 0 < n_sam < steps
    assert opt.sam_steps_taken == n_sam and opt.passes_taken == len(calls) == steps + n_sam


@pytest.mark.parametrize("c", [0.0, 0.5, -0.5])
def test_adaptive_sam_steps_on_a_quadratic_match_the_closed_form(c):
    """AE-SAM (Algorithm 1 of Jiang et al., 2023): update mu and var with ||g||^2, then compare."""
    rho, lr, delta, steps = 0.2, 0.05, 0.9, 30
    w = nn.Parameter(torch.tensor([1.0, 2.0, -1.0], dtype=DT))
    opt = AdaptiveSAM([w], torch.optim.SGD, rho=rho, c=c, delta=delta, lr=lr)
    expected, mu, var, calls, n_sam = w.detach().clone(), 0.0, 0.0, [], 0
    for b in noisy_b(steps):
        n2 = float(((A @ expected - b) ** 2).sum())
        mu = delta * mu + (1 - delta) * n2
        var = delta * var + (1 - delta) * (n2 - mu) ** 2
        sam = n2 >= mu + c * math.sqrt(var)
        n_sam += sam
        expected = sam_or_plain(expected, b, rho, lr, sam)
        opt.step(quadratic_closure(w, b, calls))
        assert torch.allclose(w.detach(), expected, rtol=0, atol=1e-12)
        assert opt.mean == pytest.approx(mu, rel=1e-12) and opt.variance == pytest.approx(var, rel=1e-12)
    assert 0 < n_sam < steps
    assert opt.sam_steps_taken == n_sam and opt.passes_taken == len(calls) == steps + n_sam


# --------------------------------------------------------------------------- the extremes: SAM, the base


def sam_run(make, data):
    model = small_net()
    opt = make(model)
    losses = [opt.step(closure_for(model, x, y)) for x, y in data]
    return model, losses, opt


ALWAYS = {
    "RandomizedSAM(probability=1)": lambda m, **kw: RandomizedSAM(m.parameters(), probability=1.0, seed=3, **kw),
    "AdaptiveSAM(c=-inf)": lambda m, **kw: AdaptiveSAM(m.parameters(), c=-math.inf, **kw),
    "SAMEveryK(k=1)": lambda m, **kw: SAMEveryK(m.parameters(), k=1, **kw),
}


@pytest.mark.parametrize("schedule", sorted(ALWAYS))
@pytest.mark.parametrize("base, kwargs", [
    (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}),
    (torch.optim.Adam, {"lr": 1e-2, "adaptive": True}),
])
def test_a_schedule_that_always_says_sam_is_sam_bit_for_bit(schedule, base, kwargs):
    data = batches(12)
    a, losses_a, opt = sam_run(lambda m: ALWAYS[schedule](m, base_optimizer=base, rho=0.2, **kwargs), data)
    b, losses_b, _ = sam_run(lambda m: SAM(m.parameters(), base, rho=0.2, **kwargs), data)
    assert all(torch.equal(x, y) for x, y in zip(losses_a, losses_b))
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    assert opt.passes_taken == 2 * len(data)


@pytest.mark.parametrize("make", [
    lambda m: RandomizedSAM(m.parameters(), torch.optim.SGD, rho=0.2, probability=0.0, lr=0.1, momentum=0.9),
    lambda m: AdaptiveSAM(m.parameters(), torch.optim.SGD, rho=0.2, c=math.inf, lr=0.1, momentum=0.9),
], ids=["RandomizedSAM(probability=0)", "AdaptiveSAM(c=inf)"])
def test_a_schedule_that_never_says_sam_is_the_base_optimizer_bit_for_bit(make):
    data = batches(12)
    a, _, opt = sam_run(make, data)
    b = small_net()
    plain = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9)
    for x, y in data:
        plain.step(closure_for(b, x, y, optimizer=plain))
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    assert opt.passes_taken == len(data) and opt.sam_steps_taken == 0


def test_sam_every_k_counts_its_passes_as_the_schedules_do():
    model = small_net()
    opt = SAMEveryK(model.parameters(), torch.optim.SGD, rho=0.2, k=3, lr=0.1)
    calls = []
    for x, y in batches(10):
        opt.step(closure_for(model, x, y, calls))
        assert opt.passes_taken == len(calls)
    assert len(calls) == 10 + 4


def test_randomized_sam_leaves_the_global_generator_alone():
    model = small_net()
    opt = RandomizedSAM(model.parameters(), torch.optim.SGD, rho=0.2, probability=0.5, lr=0.1)
    before = torch.get_rng_state()
    for x, y in batches(5):
        opt.step(closure_for(model, x, y))
    assert torch.equal(torch.get_rng_state(), before)


# --------------------------------------------------------------------------- resume


@pytest.mark.parametrize("make", [
    lambda m: RandomizedSAM(m.parameters(), torch.optim.SGD, rho=0.2, probability=0.5, seed=11, lr=0.1,
                            momentum=0.9),
    lambda m: AdaptiveSAM(m.parameters(), torch.optim.Adam, rho=0.2, c=0.0, lr=1e-2),
], ids=["RandomizedSAM", "AdaptiveSAM"])
def test_resumed_from_state_dict_equals_an_uninterrupted_run(make):
    data = batches(16)
    whole, _, opt_whole = sam_run(make, data)
    assert 0 < opt_whole.sam_steps_taken < len(data)
    first, _, opt_first = sam_run(make, data[:8])
    buffer = io.BytesIO()
    torch.save({"model": first.state_dict(), "opt": opt_first.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed = small_net(seed=5)
    resumed.load_state_dict(saved["model"])
    opt_resumed = make(resumed)
    opt_resumed.load_state_dict(saved["opt"])
    for x, y in data[8:]:
        opt_resumed.step(closure_for(resumed, x, y))
    for p, q in zip(whole.parameters(), resumed.parameters()):
        assert torch.equal(p, q)
    assert (opt_resumed.steps_taken, opt_resumed.sam_steps_taken) == (opt_whole.steps_taken,
                                                                       opt_whole.sam_steps_taken)


# --------------------------------------------------------------------------- bad arguments, errors


@pytest.mark.parametrize("cls, kwargs, name", [
    (RandomizedSAM, {"probability": 1.5}, "probability"),
    (RandomizedSAM, {"probability": "a"}, "probability"),
    (RandomizedSAM, {"seed": -1}, "seed"),
    (RandomizedSAM, {"seed": 1.5}, "seed"),
    (AdaptiveSAM, {"c": math.nan}, "c"),
    (AdaptiveSAM, {"c": None}, "c"),
    (AdaptiveSAM, {"delta": 1.0}, "delta"),
    (AdaptiveSAM, {"delta": -0.1}, "delta"),
    (AdaptiveSAM, {"rho": -0.1}, "rho"),
])
def test_bad_arguments_are_refused_naming_them(cls, kwargs, name):
    with pytest.raises(ValueError, match=f"^{name} must"):
        cls(small_net().parameters(), torch.optim.SGD, lr=0.1, **kwargs)


def test_a_closure_is_needed_and_other_state_dicts_are_refused():
    model = small_net()
    randomized = RandomizedSAM(model.parameters(), torch.optim.SGD, lr=0.1)
    with pytest.raises(RuntimeError, match="closure"):
        randomized.step()
    adaptive = AdaptiveSAM(small_net().parameters(), torch.optim.SGD, lr=0.1)
    with pytest.raises(ValueError, match="randomized_sam"):
        randomized.load_state_dict(adaptive.state_dict())
    with pytest.raises(ValueError, match="adaptive_sam"):
        adaptive.load_state_dict(SAM(small_net().parameters(), torch.optim.SGD, lr=0.1).state_dict())


# --------------------------------------------------------------------------- in train.fit


@pytest.mark.parametrize("make", [
    lambda m: RandomizedSAM(m.parameters(), torch.optim.SGD, rho=0.2, probability=0.5, seed=4, lr=0.1),
    lambda m: AdaptiveSAM(m.parameters(), torch.optim.SGD, rho=0.2, c=0.0, lr=0.1),
], ids=["RandomizedSAM", "AdaptiveSAM"])
def test_fit_drives_a_schedule_as_a_hand_loop_does(make):
    from torch.utils.data import TensorDataset

    from sam_course import train

    x, y = batches(1, seed=9)[0]
    x, y = x[:1], y[:1]   # one example: fit's shuffling cannot change the sums
    fitted = small_net()
    opt = make(fitted)
    train.fit(fitted, opt, TensorDataset(x, y), 4, batch_size=1, progress=False)
    by_hand = small_net()
    opt_hand = make(by_hand)
    for _ in range(4):
        opt_hand.step(closure_for(by_hand, x, y, optimizer=opt_hand))
    for p, q in zip(fitted.parameters(), by_hand.parameters()):
        assert torch.equal(p, q)
    assert opt.passes_taken == opt_hand.passes_taken
    with pytest.raises(ValueError, match="msam_m must be None"):
        train.fit(fitted, opt, TensorDataset(x, y), 1, batch_size=1, msam_m=1, progress=False)


# --------------------------------------------------------------------------- SAM's contract


@pytest.mark.parametrize("cls, kwargs", [(RandomizedSAM, {"probability": 0.5, "seed": 2}), (AdaptiveSAM, {"c": 0.0})],
                         ids=["RandomizedSAM", "AdaptiveSAM"])
def test_maximize_is_the_schedule_on_the_negated_loss_and_lbfgs_is_refused(cls, kwargs):
    a, b = small_net(), small_net()
    up = cls(a.parameters(), torch.optim.SGD, rho=0.2, maximize=True, lr=0.1, momentum=0.9, **kwargs)
    down = cls(b.parameters(), torch.optim.SGD, rho=0.2, lr=0.1, momentum=0.9, **kwargs)
    for x, y in batches(8):
        up.step(closure_for(a, x, y))

        def negated(x=x, y=y):
            loss = -nn.functional.cross_entropy(b(x), y)
            loss.backward()
            return loss
        down.step(negated)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, rtol=0, atol=1e-12)
    assert up.sam_steps_taken == down.sam_steps_taken > 0
    with pytest.raises(ValueError, match="base_optimizer must take a step without a closure"):
        cls(small_net().parameters(), torch.optim.LBFGS)
