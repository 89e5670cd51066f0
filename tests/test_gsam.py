"""GSAM (Zhuang et al., ICLR 2022) against its oracles: the closed form of one step on a quadratic,
SAM bit for bit at alpha = 0, 40 steps of pytorch_optimizer.GSAM, bit-exact resume, and the
radius scheduled from the learning rate as the authors' ProportionScheduler does."""

import io

import pytest
import torch
from torch import nn

from sam_course.optim import GSAM, SAM


def quadratic(seed=11, n=5):
    gen = torch.Generator().manual_seed(seed)
    m = torch.randn(n, n, generator=gen, dtype=torch.float64)
    a = m @ m.T + torch.eye(n, dtype=torch.float64)
    b = torch.randn(n, generator=gen, dtype=torch.float64)
    w0 = torch.randn(n, generator=gen, dtype=torch.float64)
    return a, b, w0


def gsam_direction(a, b, w, rho, alpha):
    """The paper's rule, written out: eps = rho g/|g|, g_p = grad at w + eps, d = g_p - alpha g_perp."""
    g = a @ w - b
    eps = rho * g / torch.linalg.vector_norm(g)
    g_p = a @ (w + eps) - b
    g_perp = g - (g @ g_p) / (g_p @ g_p) * g_p
    return g_p - alpha * g_perp


def quadratic_closure(w, a, b):
    def closure():
        loss = 0.5 * w @ a @ w - b @ w
        loss.backward()
        return loss
    return closure


@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.7])
def test_one_gsam_step_on_a_quadratic_matches_the_closed_form(alpha):
    a, b, w0 = quadratic()
    w = nn.Parameter(w0.clone())
    opt = GSAM([w], torch.optim.SGD, rho=0.3, alpha=alpha, lr=0.05)
    opt.step(quadratic_closure(w, a, b))
    expected = w0 - 0.05 * gsam_direction(a, b, w0, 0.3, alpha)
    torch.testing.assert_close(w.detach(), expected, rtol=0, atol=1e-12)


def test_the_descent_direction_keeps_g_p_and_removes_alpha_times_g_perp():
    # The geometry of the paper's Figure 2: <d, g_p> = ||g_p||^2 (the perturbed loss descends as
    # with SAM) and d differs from g_p only along g_perp, against the plain gradient.
    a, b, w0 = quadratic(seed=3)
    d = gsam_direction(a, b, w0, 0.3, 0.2)
    g = a @ w0 - b
    g_p = a @ (w0 + 0.3 * g / g.norm()) - b
    assert (d @ g_p).item() == pytest.approx((g_p @ g_p).item(), rel=1e-12)
    w = nn.Parameter(w0.clone())
    opt = GSAM([w], torch.optim.SGD, rho=0.3, alpha=0.2, lr=1.0)
    opt.step(quadratic_closure(w, a, b))
    applied = w0 - w.detach()
    assert (applied @ g_p).item() == pytest.approx((g_p @ g_p).item(), rel=1e-12)
    torch.testing.assert_close(applied, d, rtol=0, atol=1e-12)


def make_mlp(seed, dtype=torch.float64):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3)).to(dtype)


def batches(n, dtype=torch.float64):
    gen = torch.Generator().manual_seed(123)
    return [(torch.randn(8, 6, generator=gen, dtype=dtype), torch.randint(0, 3, (8,), generator=gen)) for _ in range(n)]


def train(model, opt, data, two_step=False):
    loss_fn = nn.CrossEntropyLoss()
    for x, y in data:
        if two_step:
            loss_fn(model(x), y).backward()
            opt.first_step(zero_grad=True)
            loss_fn(model(x), y).backward()
            opt.second_step(zero_grad=True)
        else:
            def closure(x=x, y=y):
                loss = loss_fn(model(x), y)
                loss.backward()
                return loss
            opt.step(closure)


BASES = [
    (torch.optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=5e-4)),
    (torch.optim.Adam, dict(lr=1e-2)),
]


@pytest.mark.parametrize("base,kwargs", BASES)
def test_alpha_zero_is_sam_bit_for_bit(base, kwargs):
    data = batches(20, torch.float32)
    ours, sam = make_mlp(1, torch.float32), make_mlp(1, torch.float32)
    train(ours, GSAM(ours.parameters(), base, rho=0.05, alpha=0.0, **kwargs), data)
    train(sam, SAM(sam.parameters(), base, rho=0.05, **kwargs), data)
    for p, q in zip(ours.parameters(), sam.parameters()):
        assert torch.equal(p, q)


def test_step_with_closure_equals_the_two_step_api():
    data = batches(10)
    a, b = make_mlp(2), make_mlp(2)
    train(a, GSAM(a.parameters(), torch.optim.SGD, alpha=0.3, lr=0.1, momentum=0.9), data, two_step=True)
    train(b, GSAM(b.parameters(), torch.optim.SGD, alpha=0.3, lr=0.1, momentum=0.9), data)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


class ConstantRho:
    """What pytorch_optimizer.GSAM's rho_scheduler needs: an object whose step() returns rho."""

    def __init__(self, rho):
        self.rho = rho

    def step(self):
        return self.rho


def peer_gsam_run(peer_module, base, kwargs, data, rho, alpha):
    model = make_mlp(0)
    base_opt = base(model.parameters(), **kwargs)
    peer = peer_module.GSAM(model.parameters(), base_opt, model, ConstantRho(rho), alpha=alpha)
    for x, y in data:
        peer.set_closure(nn.CrossEntropyLoss(), x, y)
        peer.step()
    return model


def test_one_step_on_an_mlp_is_the_papers_rule_computed_by_autograd():
    from torch.func import functional_call, grad

    (x, y), = batches(1)
    model = make_mlp(0)
    w0 = {n: q.detach().clone() for n, q in model.named_parameters()}

    def loss(w):
        return nn.functional.cross_entropy(functional_call(model, w, (x,)), y)

    g = grad(loss)(w0)
    norm = torch.sqrt(sum((v ** 2).sum() for v in g.values()))
    g_p = grad(loss)({n: w0[n] + 0.05 * g[n] / norm for n in w0})
    c = sum((g[n] * g_p[n]).sum() for n in w0) / sum((g_p[n] ** 2).sum() for n in w0)
    expected = {n: w0[n] - 0.1 * (g_p[n] - 0.3 * (g[n] - c * g_p[n])) for n in w0}
    train(model, GSAM(model.parameters(), torch.optim.SGD, rho=0.05, alpha=0.3, lr=0.1), [(x, y)])
    for n, q in model.named_parameters():
        torch.testing.assert_close(q.detach(), expected[n], rtol=0, atol=1e-15)


@pytest.mark.parametrize("base,kwargs", BASES)
def test_forty_steps_equal_pytorch_optimizer_gsam(base, kwargs):
    # pytorch_optimizer 4.1.0 follows the authors' rule (g_p - alpha g_perp, the same sign), but
    # takes the global gradient norms in float32 even for float64 gradients: one step already
    # differs from the rule by ~1e-9 here (ours: 1e-16, the test above), 40 steps by ~8e-9.
    peer_module = pytest.importorskip("pytorch_optimizer")
    data = batches(40)
    ours = make_mlp(0)
    train(ours, GSAM(ours.parameters(), base, rho=0.05, alpha=0.3, **kwargs), data)
    theirs = peer_gsam_run(peer_module, base, kwargs, data, rho=0.05, alpha=0.3)
    sam = make_mlp(0)
    train(sam, SAM(sam.parameters(), base, rho=0.05, **kwargs), data)
    moved = sum((p - q).abs().sum().item() for p, q in zip(ours.parameters(), make_mlp(0).parameters()))
    apart_from_sam = max((p - q).abs().max().item() for p, q in zip(ours.parameters(), sam.parameters()))
    assert moved > 1.0 and apart_from_sam > 1e-3  # the oracle sees a real difference from SAM
    for p, q in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


@pytest.mark.parametrize("base,kwargs", BASES)
def test_resume_mid_training_is_bit_identical(base, kwargs):
    data = batches(20)
    straight = make_mlp(4)
    train(straight, GSAM(straight.parameters(), base, rho=0.05, alpha=0.2, **kwargs), data)
    first = make_mlp(4)
    opt = GSAM(first.parameters(), base, rho=0.05, alpha=0.2, **kwargs)
    train(first, opt, data[:10])
    buffer = io.BytesIO()
    torch.save({"model": first.state_dict(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed = make_mlp(99)
    resumed.load_state_dict(saved["model"])
    opt2 = GSAM(resumed.parameters(), base, rho=0.05, alpha=0.2, **kwargs)
    opt2.load_state_dict(saved["opt"])
    train(resumed, opt2, data[10:])
    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p, q)


def test_the_radius_follows_the_learning_rate_as_the_proportion_scheduler():
    # rho_t = rho_min + (rho_max - rho_min) (lr - lr_min) / (lr_max - lr_min), read at every step.
    a, b, w0 = quadratic(seed=5)
    w = nn.Parameter(w0.clone())
    opt = GSAM([w], torch.optim.SGD, rho=0.4, alpha=0.1, rho_min=0.1, lr_max=0.05, lr_min=0.01, lr=0.05)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: [1.0, 0.6, 0.2][min(t, 2)])
    for lr in (0.05, 0.03, 0.01):
        rho_t = 0.1 + 0.3 * (lr - 0.01) / 0.04
        assert opt.current_rho() == [pytest.approx(rho_t, rel=1e-12)]
        before = w.detach().clone()
        opt.step(quadratic_closure(w, a, b))
        torch.testing.assert_close(w.detach(), before - lr * gsam_direction(a, b, before, rho_t, 0.1), rtol=0, atol=1e-12)
        schedule.step()
    state = opt.state_dict()
    assert state["gsam"] == {"alpha": 0.1, "rho_min": 0.1, "lr_max": 0.05, "lr_min": 0.01}


def test_zero_perturbed_gradient_gives_g_perp_equal_to_g():
    w = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = GSAM([w], torch.optim.SGD, rho=0.1, alpha=0.5, lr=1.0)
    w.grad = torch.tensor([3.0, 4.0], dtype=torch.float64)
    opt.first_step(zero_grad=True)
    w.grad = torch.zeros(2, dtype=torch.float64)
    opt.second_step()
    # d = 0 - 0.5 * g
    torch.testing.assert_close(w.detach(), torch.tensor([1.0 + 1.5, -2.0 + 2.0], dtype=torch.float64), rtol=0, atol=0)


def test_second_step_without_first_step_is_a_plain_base_step():
    w = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = GSAM([w], torch.optim.SGD, rho=0.1, alpha=0.5, lr=0.5)
    w.grad = torch.tensor([2.0, 4.0], dtype=torch.float64)
    opt.second_step()
    assert torch.equal(w.detach(), torch.tensor([0.0, -4.0], dtype=torch.float64))


def test_first_step_twice_raises_and_keeps_the_plain_gradient():
    a, b, w0 = quadratic()
    w = nn.Parameter(w0.clone())
    opt = GSAM([w], torch.optim.SGD, rho=0.3, alpha=0.4, lr=0.05)
    quadratic_closure(w, a, b)()
    opt.first_step(zero_grad=True)
    quadratic_closure(w, a, b)()
    with pytest.raises(RuntimeError, match="first_step was called twice"):
        opt.first_step()
    opt.second_step()
    torch.testing.assert_close(w.detach(), w0 - 0.05 * gsam_direction(a, b, w0, 0.3, 0.4), rtol=0, atol=1e-12)


@pytest.mark.parametrize("kwargs, name", [
    (dict(alpha=-0.1), "alpha"),
    (dict(alpha=float("nan")), "alpha"),
    (dict(alpha="0.1"), "alpha"),
    (dict(rho_min=0.01), "lr_max"),
    (dict(rho_min=0.5, lr_max=0.1), "rho_min"),
    (dict(rho_min=-0.5, lr_max=0.1), "rho_min"),
    (dict(rho_min=0.01, lr_max=0.1, lr_min=0.2), "lr_max"),
    (dict(lr_min=-1.0), "lr_min"),
    (dict(rho=-1.0), "rho"),
])
def test_bad_arguments_are_refused_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        GSAM(nn.Linear(2, 2).parameters(), torch.optim.SGD, lr=0.1, **kwargs)


def test_a_state_dict_not_saved_by_gsam_is_refused():
    model = nn.Linear(2, 2)
    state = SAM(model.parameters(), torch.optim.SGD, lr=0.1).state_dict()
    with pytest.raises(ValueError, match="gsam"):
        GSAM(model.parameters(), torch.optim.SGD, lr=0.1).load_state_dict(state)


@pytest.mark.parametrize("with_scaler", [False, True])
def test_samstep_drives_gsam_with_and_without_a_grad_scaler(with_scaler):
    # SAMStep runs the base step itself under a GradScaler: prepare_descent must still turn g_p
    # into g_p - alpha g_perp, on unscaled gradients. A power-of-two scale unscales exactly.
    from sam_course.optim import SAMStep

    data = batches(8)
    reference = make_mlp(5)
    train(reference, GSAM(reference.parameters(), torch.optim.SGD, alpha=0.3, lr=0.1, momentum=0.9), data)
    model = make_mlp(5)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10) if with_scaler else None
    step = SAMStep(model, GSAM(model.parameters(), torch.optim.SGD, alpha=0.3, lr=0.1, momentum=0.9),
                   scaler=scaler, freeze_bn_stats=False)
    for x, y in data:
        step(x, y, nn.CrossEntropyLoss())
        assert not step.last_step_skipped
    for p, q in zip(reference.parameters(), model.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-14)


def test_clipping_in_samstep_bounds_the_gsam_direction_it_applies():
    # Clipping belongs on the gradient the base optimizer applies: d = g_p - alpha g_perp, not g_p.
    from sam_course.optim import SAMStep

    (x, y), = batches(1)
    unclipped = make_mlp(6)
    w0 = [q.detach().clone() for q in unclipped.parameters()]
    train(unclipped, GSAM(unclipped.parameters(), torch.optim.SGD, alpha=0.5, lr=1.0), [(x, y)])
    d = [a - q.detach() for a, q in zip(w0, unclipped.parameters())]
    norm = torch.sqrt(sum((v ** 2).sum() for v in d))
    model = make_mlp(6)
    step = SAMStep(model, GSAM(model.parameters(), torch.optim.SGD, alpha=0.5, lr=1.0), max_grad_norm=1e-3)
    step(x, y, nn.CrossEntropyLoss())
    for a, v, q in zip(w0, d, model.parameters()):
        # clip_grad_norm_ scales by max_norm / (norm + 1e-6)
        torch.testing.assert_close(q.detach(), a - 1e-3 / (norm + 1e-6) * v, rtol=0, atol=1e-15)


def test_samstep_refuses_per_worker_perturbations_for_gsam(monkeypatch):
    # Each worker's g differs without sync_perturbation, so would each worker's d = g_p - alpha g_perp.
    from sam_course.optim import SAMStep, distributed

    monkeypatch.setattr(distributed, "_world_size", lambda: 2)
    model = make_mlp(0)
    with pytest.raises(ValueError, match="sync_perturbation=False with GSAM"):
        SAMStep(model, GSAM(model.parameters(), torch.optim.SGD, lr=0.1))
