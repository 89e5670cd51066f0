"""Tests of sam_course.optim against oracles: Hölder's identities, brute force over the p-ball,
the closed form of one step on a quadratic, pytorch_optimizer.SAM, and bit-exact resume."""

import copy
import io
import math
import warnings

import pytest
import torch
from torch import nn

from sam_course.optim import SAM, epsilon_hat, frozen_batchnorm_stats

P_VALUES = [1, 1.25, 1.5, 2, 3, 7, math.inf]


def flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


def dual(p):
    if p == 1:
        return math.inf
    if math.isinf(p):
        return 1.0
    return p / (p - 1)


def random_grads(seed, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(3, 4, generator=gen, dtype=dtype), torch.randn(5, generator=gen, dtype=dtype)]


# --------------------------------------------------------------------------------------------
# epsilon_hat


@pytest.mark.parametrize("p", P_VALUES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_epsilon_hat_meets_the_hoelder_identities(p, seed):
    grads = random_grads(seed)
    rho = 0.3
    eps = epsilon_hat(grads, rho, p)
    assert [e.shape for e in eps] == [g.shape for g in grads]
    g, e = flat(grads), flat(eps)
    assert torch.linalg.vector_norm(e, p).item() == pytest.approx(rho, rel=1e-10)
    assert (g @ e).item() == pytest.approx(rho * torch.linalg.vector_norm(g, dual(p)).item(), rel=1e-10)


def test_epsilon_hat_special_cases_have_their_closed_forms():
    grads = random_grads(5)
    g = flat(grads)
    torch.testing.assert_close(flat(epsilon_hat(grads, 0.1, 2)), 0.1 * g / g.norm())
    torch.testing.assert_close(flat(epsilon_hat(grads, 0.1, math.inf)), 0.1 * g.sign())
    expected = torch.zeros_like(g)
    expected[g.abs().argmax()] = 0.1 * g[g.abs().argmax()].sign()
    torch.testing.assert_close(flat(epsilon_hat(grads, 0.1, 1)), expected)


def test_epsilon_hat_p1_shares_rho_between_ties():
    eps = epsilon_hat([torch.tensor([1.0, -3.0]), torch.tensor([3.0, 2.0])], 0.6, 1)
    torch.testing.assert_close(flat(eps), torch.tensor([0.0, -0.3, 0.3, 0.0]))


def boundary_of_p_ball_2d(p, rho, n=200_001):
    theta = torch.linspace(0, 2 * math.pi, n, dtype=torch.float64)
    u = torch.stack([theta.cos(), theta.sin()], dim=1)
    return rho * u / torch.linalg.vector_norm(u, p, dim=1, keepdim=True)


@pytest.mark.parametrize("p", [1, 1.5, 2, 4, math.inf])
@pytest.mark.parametrize("g", [(0.7, -0.2), (-1.0, 2.5), (0.3, 0.3)])
def test_epsilon_hat_equals_brute_force_maximum_over_the_ball(p, g):
    grad = torch.tensor(g, dtype=torch.float64)
    rho = 0.5
    candidates = boundary_of_p_ball_2d(p, rho)
    values = candidates @ grad
    eps = flat(epsilon_hat([grad], rho, p))
    # The linear objective's maximum over the ball lies on its boundary.
    assert (eps @ grad).item() == pytest.approx(values.max().item(), rel=1e-8)
    if 1 < p < math.inf:
        # Strictly convex balls have a unique maximizer: the brute-force argmax.
        torch.testing.assert_close(eps, candidates[values.argmax()], atol=1e-4, rtol=0)


def test_epsilon_hat_brute_force_in_three_dimensions():
    gen = torch.Generator().manual_seed(3)
    grad = torch.tensor([0.4, -1.1, 0.8], dtype=torch.float64)
    u = torch.randn(400_000, 3, generator=gen, dtype=torch.float64)
    for p in (1.5, 3.0):
        candidates = u / torch.linalg.vector_norm(u, p, dim=1, keepdim=True)
        best = (candidates @ grad).max().item()
        value = (flat(epsilon_hat([grad], 1.0, p)) @ grad).item()
        assert best <= value + 1e-12
        assert value == pytest.approx(best, rel=1e-3)


@pytest.mark.parametrize("p", P_VALUES)
def test_epsilon_hat_of_zero_gradient_is_zero(p):
    eps = epsilon_hat([torch.zeros(3), torch.zeros(2, 2)], 0.05, p)
    assert all(torch.equal(e, torch.zeros_like(e)) for e in eps)


@pytest.mark.parametrize("p", P_VALUES)
def test_epsilon_hat_handles_tiny_and_huge_gradients(p):
    for magnitude in (1e-30, 1e30):
        grads = [t.float() * magnitude for t in random_grads(7)]
        eps = flat(epsilon_hat(grads, 0.1, p))
        assert torch.isfinite(eps).all()
        assert torch.linalg.vector_norm(eps.double(), p).item() == pytest.approx(0.1, rel=1e-5)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_epsilon_hat_rejects_non_finite_gradients(bad):
    with pytest.raises(ValueError, match="inf or NaN"):
        epsilon_hat([torch.tensor([1.0, bad])], 0.1, 2)


@pytest.mark.parametrize("rho", [-0.1, float("nan"), float("inf")])
def test_epsilon_hat_rejects_bad_rho(rho):
    with pytest.raises(ValueError, match="rho must be a finite number >= 0"):
        epsilon_hat([torch.ones(2)], rho, 2)


@pytest.mark.parametrize("p", [0.5, 0, -1, float("nan")])
def test_epsilon_hat_rejects_bad_p(p):
    with pytest.raises(ValueError, match=r"p must be a number in \[1, inf\]"):
        epsilon_hat([torch.ones(2)], 0.1, p)


# --------------------------------------------------------------------------------------------
# SAM: construction


def test_sam_rejects_bad_arguments():
    w = [nn.Parameter(torch.ones(2))]
    with pytest.raises(ValueError, match="rho must be a finite number >= 0"):
        SAM(w, torch.optim.SGD, rho=-1.0, lr=0.1)
    with pytest.raises(ValueError, match="rho must be a finite number >= 0"):
        SAM(w, torch.optim.SGD, rho=float("inf"), lr=0.1)
    with pytest.raises(ValueError, match=r"p must be a number in \[1, inf\]"):
        SAM(w, torch.optim.SGD, p=0.9, lr=0.1)
    with pytest.raises(ValueError, match="eta must be a finite number >= 0"):
        SAM(w, torch.optim.SGD, eta=-0.01, adaptive=True, lr=0.1)
    with pytest.raises(ValueError, match="base_optimizer must be a torch.optim.Optimizer subclass"):
        SAM(w, torch.optim.SGD(w, lr=0.1), lr=0.1)
    with pytest.raises(ValueError, match="base_optimizer must be a torch.optim.Optimizer subclass"):
        SAM(w, nn.Linear, lr=0.1)
    with pytest.raises(ValueError, match="rho must be a finite number >= 0"):
        SAM([{"params": w, "rho": -2.0}], torch.optim.SGD, lr=0.1)
    with pytest.raises(ValueError, match="adaptive must be True or False"):
        SAM(w, torch.optim.SGD, adaptive="yes", lr=0.1)


def test_step_without_closure_says_what_to_do():
    opt = SAM([nn.Parameter(torch.ones(2))], torch.optim.SGD, lr=0.1)
    with pytest.raises(RuntimeError, match="needs a closure.*first_step"):
        opt.step()


def test_groups_are_shared_with_the_base_optimizer_and_schedulers_reach_it():
    w = nn.Parameter(torch.ones(2))
    opt = SAM([w], torch.optim.SGD, lr=0.1, momentum=0.9)
    assert opt.param_groups is opt.base_optimizer.param_groups
    assert opt.param_groups[0]["momentum"] == 0.9 and opt.param_groups[0]["rho"] == 0.05
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        w.sum().backward()
        opt.first_step(zero_grad=True)
        w.sum().backward()
        opt.second_step(zero_grad=True)
        sched.step()
    assert opt.base_optimizer.param_groups[0]["lr"] == pytest.approx(0.05)


# --------------------------------------------------------------------------------------------
# SAM: one step against closed forms


def quadratic():
    gen = torch.Generator().manual_seed(11)
    m = torch.randn(4, 4, generator=gen, dtype=torch.float64)
    a = m @ m.T + torch.eye(4, dtype=torch.float64)
    b = torch.randn(4, generator=gen, dtype=torch.float64)
    w0 = torch.randn(4, generator=gen, dtype=torch.float64)
    return a, b, w0


def test_one_sam_step_on_a_quadratic_matches_the_closed_form():
    a, b, w0 = quadratic()
    rho, lr = 0.2, 0.05
    w = nn.Parameter(w0.clone())
    opt = SAM([w], torch.optim.SGD, rho=rho, lr=lr)
    loss = opt.step(lambda: (0.5 * w @ a @ w - b @ w).backward() or (0.5 * w @ a @ w - b @ w))
    g = a @ w0 - b
    eps = rho * g / g.norm()
    expected = w0 - lr * (a @ (w0 + eps) - b)
    torch.testing.assert_close(w.detach(), expected, rtol=0, atol=1e-14)
    assert loss.item() == pytest.approx((0.5 * w0 @ a @ w0 - b @ w0).item())


@pytest.mark.parametrize("p", [1, 1.5, 3, math.inf])
def test_one_sam_step_for_any_p_uses_epsilon_hat(p):
    a, b, w0 = quadratic()
    w = nn.Parameter(w0.clone())
    opt = SAM([w], torch.optim.SGD, rho=0.2, p=p, lr=0.05)
    opt.step(lambda: (0.5 * w @ a @ w - b @ w).backward())
    eps = epsilon_hat([a @ w0 - b], 0.2, p)[0]
    torch.testing.assert_close(w.detach(), w0 - 0.05 * (a @ (w0 + eps) - b), rtol=0, atol=1e-14)


def test_adaptive_step_is_asam():
    a, b, w0 = quadratic()
    rho, eta = 0.5, 0.01
    w = nn.Parameter(w0.clone())
    opt = SAM([w], torch.optim.SGD, rho=rho, adaptive=True, eta=eta, lr=0.05)
    (0.5 * w @ a @ w - b @ w).backward()
    opt.first_step()
    g, t = a @ w0 - b, w0.abs() + eta
    eps = rho * t**2 * g / (t * g).norm()
    torch.testing.assert_close(w.detach() - w0, eps, rtol=0, atol=1e-14)
    # In ASAM's coordinates the ball is a plain p-ball: ||eps / T||_2 = rho.
    assert ((w.detach() - w0) / t).norm().item() == pytest.approx(rho, rel=1e-12)


@pytest.mark.parametrize("p", [1.5, 3])
def test_adaptive_perturbation_for_any_p_meets_hoelder_in_scaled_coordinates(p):
    a, b, w0 = quadratic()
    w = nn.Parameter(w0.clone())
    opt = SAM([w], torch.optim.SGD, rho=0.5, p=p, adaptive=True, lr=0.05)
    (0.5 * w @ a @ w - b @ w).backward()
    opt.first_step()
    g, t, eps = a @ w0 - b, w0.abs() + 0.01, w.detach() - w0
    assert torch.linalg.vector_norm(eps / t, p).item() == pytest.approx(0.5, rel=1e-12)
    assert (g @ eps).item() == pytest.approx(0.5 * torch.linalg.vector_norm(t * g, dual(p)).item(), rel=1e-12)


def test_norm_is_global_over_groups_and_each_group_uses_its_rho():
    w1 = nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    w2 = nn.Parameter(torch.tensor([-1.0], dtype=torch.float64))
    # (A group with rho = 0 is left out of the norm: tests/test_sam_on.py.)
    opt = SAM([{"params": [w1], "rho": 0.3}, {"params": [w2], "rho": 0.1}], torch.optim.SGD, lr=0.1)
    w1.grad = torch.tensor([3.0, 0.0], dtype=torch.float64)
    w2.grad = torch.tensor([4.0], dtype=torch.float64)
    opt.first_step()
    torch.testing.assert_close(w1.detach(), torch.tensor([1.0 + 0.3 * 3 / 5, 2.0], dtype=torch.float64))
    torch.testing.assert_close(w2.detach(), torch.tensor([-1.0 + 0.1 * 4 / 5], dtype=torch.float64))


def test_parameters_without_gradient_are_skipped_and_zero_gradient_gives_no_perturbation():
    w1, w2 = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(2))
    opt = SAM([w1, w2], torch.optim.SGD, lr=0.1)
    w1.grad = torch.zeros(3)
    opt.first_step()
    assert torch.equal(w1.detach(), torch.ones(3)) and torch.equal(w2.detach(), torch.ones(2))
    assert w2.grad is None
    opt.second_step()
    assert torch.equal(w1.detach(), torch.ones(3))


@pytest.mark.parametrize("p", [2, 3])
def test_non_finite_gradient_raises_and_leaves_parameters_unchanged(p):
    w1, w2 = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(2))
    opt = SAM([w1, w2], torch.optim.SGD, p=p, lr=0.1)
    w1.grad = torch.ones(3)
    w2.grad = torch.tensor([1.0, float("nan")])
    with pytest.raises(ValueError, match="inf or NaN"):
        opt.first_step()
    assert torch.equal(w1.detach(), torch.ones(3)) and torch.equal(w2.detach(), torch.ones(2))
    assert not opt.perturbed


def test_first_step_twice_raises_and_state_dict_refuses_perturbed_weights():
    w = nn.Parameter(torch.ones(2))
    opt = SAM([w], torch.optim.SGD, lr=0.1)
    w.grad = torch.ones(2)
    opt.first_step()
    with pytest.raises(RuntimeError, match="second_step"):
        opt.first_step()
    with pytest.raises(RuntimeError, match="perturbed"):
        opt.state_dict()
    opt.second_step()
    opt.state_dict()


def test_closure_error_in_second_pass_restores_weights():
    w = nn.Parameter(torch.ones(2))
    opt = SAM([w], torch.optim.SGD, rho=0.5, lr=0.1)
    calls = []

    def closure():
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        loss = (w**2).sum()
        loss.backward()
        return loss

    with pytest.raises(KeyboardInterrupt):
        opt.step(closure)
    assert torch.equal(w.detach(), torch.ones(2)) and not opt.perturbed


# --------------------------------------------------------------------------------------------
# SAM over many steps: a peer implementation, the base optimizer, resume


def make_mlp(seed, dtype=torch.float32):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3)).to(dtype)


def batches(n, dtype=torch.float32):
    gen = torch.Generator().manual_seed(123)
    return [(torch.randn(8, 6, generator=gen, dtype=dtype), torch.randint(0, 3, (8,), generator=gen)) for _ in range(n)]


def train_two_step(model, opt, data):
    loss_fn = nn.CrossEntropyLoss()
    for x, y in data:
        loss_fn(model(x), y).backward()
        opt.first_step(zero_grad=True)
        loss_fn(model(x), y).backward()
        opt.second_step(zero_grad=True)


BASES = [
    (torch.optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=5e-4)),
    (torch.optim.Adam, dict(lr=1e-2)),
]


@pytest.mark.parametrize("base,kwargs", BASES)
def test_fifty_steps_equal_pytorch_optimizer_sam(base, kwargs):
    peer_module = pytest.importorskip("pytorch_optimizer")
    data = batches(50)
    ours, theirs = make_mlp(0), make_mlp(0)
    train_two_step(ours, SAM(ours.parameters(), base, rho=0.05, **kwargs), data)
    peer = peer_module.SAM(theirs.parameters(), base, rho=0.05, perturb_eps=0.0, **kwargs)
    train_two_step(theirs, peer, data)
    moved = sum((a - b).abs().sum().item() for a, b in zip(ours.parameters(), make_mlp(0).parameters()))
    assert moved > 1.0
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.mark.parametrize("base,kwargs", BASES)
def test_rho_zero_is_the_base_optimizer_bit_for_bit(base, kwargs):
    data = batches(20)
    ours, plain = make_mlp(1), make_mlp(1)
    train_two_step(ours, SAM(ours.parameters(), base, rho=0.0, **kwargs), data)
    opt = base(plain.parameters(), **kwargs)
    loss_fn = nn.CrossEntropyLoss()
    for x, y in data:
        opt.zero_grad()
        loss_fn(plain(x), y).backward()
        opt.step()
    for a, b in zip(ours.parameters(), plain.parameters()):
        assert torch.equal(a, b)


def test_step_with_closure_equals_the_two_step_api():
    data = batches(10)
    a, b = make_mlp(2), make_mlp(2)
    train_two_step(a, SAM(a.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9), data)
    opt = SAM(b.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    for x, y in data:
        def closure(x=x, y=y):  # bound now: a closure called later must not see the next batch
            loss = loss_fn(b(x), y)
            loss.backward()
            return loss

        before = loss_fn(b(x), y).item()
        assert opt.step(closure).item() == pytest.approx(before)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def run_with_checkpoint(base, kwargs, restore_base_state=True):
    data = batches(30)
    model = make_mlp(3)
    opt = SAM(model.parameters(), base, rho=0.1, **kwargs)
    train_two_step(model, opt, data[:15])
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    train_two_step(model, opt, data[15:])

    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    resumed = make_mlp(99)
    resumed.load_state_dict(checkpoint["model"])
    opt2 = SAM(resumed.parameters(), base, rho=0.1, **kwargs)
    if restore_base_state:
        opt2.load_state_dict(checkpoint["opt"])
    train_two_step(resumed, opt2, data[15:])
    return model, resumed, opt2


@pytest.mark.parametrize("base,kwargs", BASES)
def test_resume_from_checkpoint_is_bit_identical(base, kwargs):
    model, resumed, opt2 = run_with_checkpoint(base, kwargs)
    for a, b in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    assert opt2.base_optimizer.param_groups is opt2.param_groups
    assert opt2.base_optimizer.state  # momentum / moments came back


@pytest.mark.parametrize("base,kwargs", BASES)
def test_resume_without_base_state_differs(base, kwargs):
    # The defect the test above guards against: losing momentum or moments changes the run.
    model, resumed, _ = run_with_checkpoint(base, kwargs, restore_base_state=False)
    assert any(not torch.equal(a, b) for a, b in zip(model.parameters(), resumed.parameters()))


def test_load_state_dict_rejects_a_plain_optimizer_state():
    w = nn.Parameter(torch.ones(2))
    opt = SAM([w], torch.optim.SGD, lr=0.1)
    with pytest.raises(ValueError, match="base_optimizer"):
        opt.load_state_dict(torch.optim.SGD([w], lr=0.1).state_dict())


# --------------------------------------------------------------------------------------------
# BatchNorm


def test_frozen_batchnorm_stats_keeps_buffers_and_uses_batch_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2)).train()
    x = torch.randn(16, 4)
    model(x)
    bn = model[1]
    before = copy.deepcopy(bn.state_dict())
    expected = copy.deepcopy(model)(x)
    with frozen_batchnorm_stats(model):
        out = model(x)
    for key, value in bn.state_dict().items():
        assert torch.equal(value, before[key]), key
    torch.testing.assert_close(out, expected)
    assert bn.track_running_stats
    model(x)
    assert bn.num_batches_tracked.item() == 2


def test_restore_returns_to_w_exactly_without_a_step():
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 3)
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.5, lr=0.1, momentum=0.9)
    before = [q.detach().clone() for q in model.parameters()]
    model(torch.randn(8, 5)).square().mean().backward()
    opt.first_step(zero_grad=True)
    assert opt.perturbed and not torch.equal(before[0], model.weight)
    opt.restore()
    assert not opt.perturbed
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert not opt.base_optimizer.state            # no momentum buffer: the base optimizer never stepped
    opt.restore()                                  # a second call does nothing


# ----------------------------------------------------------------------------- the optimizer layer


def _package_imports(path):
    """The ``sam_course`` modules a file imports, at any depth (function-level imports included)."""
    import ast

    package = path.parent.relative_to(path.parents[2]).as_posix().replace("/", ".")  # "sam_course.optim"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "sam_course"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.split(".")[0] == "sam_course":
                found.add(name)
    return found


def test_optim_imports_only_itself_checks_and_params():
    """The optimizer family is the layer a user copies into their own code (ARCHITECTURE.md)."""
    from pathlib import Path

    import sam_course.optim

    allowed = ("sam_course.optim", "sam_course._checks", "sam_course._params")
    folder = Path(sam_course.optim.__file__).parent
    for path in sorted(folder.glob("*.py")):
        for name in _package_imports(path):
            assert name == "sam_course.optim" or name.startswith(allowed), f"{path.name} imports {name}"


def test_importing_optim_loads_no_other_part_of_the_package():
    import ast
    import subprocess
    import sys

    code = ("import sys, sam_course.optim; "
            "print(sorted(m for m in sys.modules if m.startswith('sam_course')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = ast.literal_eval(out)
    assert all(m in ("sam_course", "sam_course._checks", "sam_course._params") or m.startswith("sam_course.optim")
               for m in loaded), loaded
