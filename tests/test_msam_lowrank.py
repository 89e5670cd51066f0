"""The low-rank m-SAM gradient against the per-chunk loop and a naive oracle; when it must not apply."""

import pytest
import torch
from torch import nn
from torch.func import functional_call

from sam_course.models import MLP, SmallCNN
from sam_course.optim import SAM, epsilon_hat
from sam_course.optim.msam import msam_gradient, msam_step
from sam_course.optim.msam_lowrank import lowrank_msam_gradient, lowrank_unsupported_reason

LOSS = nn.CrossEntropyLoss()


def naive(model, x, y, m, rho_of, loss_fn=LOSS):
    """Per chunk: eps_hat from one global 2-norm, each parameter scaled by its own rho; mean of grads."""
    names = [k for k, _ in model.named_parameters()]
    params = [q for _, q in model.named_parameters()]
    grads = []
    for xc, yc in zip(x.split(m), y.split(m)):
        g = torch.autograd.grad(loss_fn(model(xc), yc), params)
        unit = epsilon_hat(g, 1.0, 2)
        moved = {k: (q.detach() + rho_of(k) * e).requires_grad_() for k, q, e in zip(names, params, unit)}
        grads.append(torch.autograd.grad(loss_fn(functional_call(model, moved, (xc,)), yc), list(moved.values())))
    return [torch.stack(gs).mean(0) for gs in zip(*grads)]


def data(n=24, shape=(20,), classes=4, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=gen, dtype=torch.float64), torch.randint(0, classes, (n,), generator=gen)


def mlp(seed=0):
    torch.manual_seed(seed)
    return MLP(20, (16, 8), 4).double()


@pytest.mark.parametrize("m", [1, 2, 3, 4, 8, 12, 24])
def test_lowrank_equals_naive_on_an_mlp(m):
    model = mlp()
    x, y = data()
    expected = naive(model, x, y, m, lambda name: 0.2)
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.2, lr=0.1)
    loss = msam_gradient(opt, model, LOSS, x, y, m, method="lowrank")
    for q, g in zip(model.parameters(), expected):
        torch.testing.assert_close(q.grad, g, rtol=0, atol=1e-12)
    assert loss.item() == pytest.approx(LOSS(model(x), y).item(), rel=1e-12)


def test_lowrank_uses_one_global_norm_and_each_groups_own_rho():
    model = mlp()
    x, y = data()
    rhos = {"net.1.weight": 0.5, "net.1.bias": 0.5}
    expected = naive(model, x, y, 4, lambda name: rhos.get(name, 0.05))
    first = [model.net[1].weight, model.net[1].bias]
    rest = [q for q in model.parameters() if all(q is not f for f in first)]
    opt = SAM([{"params": first, "rho": 0.5}, {"params": rest}], torch.optim.SGD, rho=0.05, lr=0.1)
    msam_gradient(opt, model, LOSS, x, y, 4, method="lowrank")
    for q, g in zip(model.parameters(), expected):
        torch.testing.assert_close(q.grad, g, rtol=0, atol=1e-12)


def test_lowrank_handles_linear_layers_on_sequences_and_layers_without_bias():
    # A Linear layer applied to (batch, tokens, features): an example's gradient sums over its tokens.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6, bias=False), nn.GELU(), nn.Flatten(), nn.Linear(18, 3)).double()
    x, y = data(n=12, shape=(3, 4), classes=3)
    expected = naive(model, x, y, 3, lambda name: 0.3)
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.3, lr=0.1)
    msam_gradient(opt, model, LOSS, x, y, 3, method="lowrank")
    for q, g in zip(model.parameters(), expected):
        torch.testing.assert_close(q.grad, g, rtol=0, atol=1e-12)


def test_lowrank_wide_and_narrow_layers_take_both_norm_formulas():
    # 784 -> 2 -> 300: the rows x rows Gram product in the first layer, the explicit chunk
    # gradient in the second (rows * (in + out) > in * out there).
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(30, 2), nn.Tanh(), nn.Linear(2, 5)).double()
    x, y = data(n=64, shape=(30,), classes=5)
    for m in (2, 32):
        expected = naive(model, x, y, m, lambda name: 0.1)
        opt = SAM(model.parameters(), torch.optim.SGD, rho=0.1, lr=0.1)
        msam_gradient(opt, model, LOSS, x, y, m, method="lowrank")
        for q, g in zip(model.parameters(), expected):
            torch.testing.assert_close(q.grad, g, rtol=0, atol=1e-12)


def test_a_chunk_with_zero_gradient_is_not_perturbed():
    model = nn.Linear(3, 1).double()
    x, _ = data(n=8, shape=(3,))
    with torch.no_grad():
        y = model(x).squeeze(1)
        y[4:] += 1.0   # the first chunk fits exactly, the second does not

    def mse(out, target):
        return ((out.squeeze(1) - target) ** 2).mean()

    expected = naive(model, x, y, 4, lambda name: 0.5, loss_fn=mse)
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.5, lr=0.1)
    msam_gradient(opt, model, mse, x, y, 4, method="lowrank")
    for q, g in zip(model.parameters(), expected):
        assert torch.isfinite(q.grad).all()
        torch.testing.assert_close(q.grad, g, rtol=0, atol=1e-12)


@pytest.mark.parametrize("scale", [1e-30, 1e25], ids=["squares underflow", "squares overflow"])
def test_norms_out_of_float32_range_hand_the_batch_to_the_exact_loop(scale):
    torch.manual_seed(0)
    model = MLP(20, (16,), 4)
    x, y = data()
    x = x.float()

    def scaled(out, target):
        return scale * LOSS(out, target)

    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1)
    assert lowrank_msam_gradient(opt, model, scaled, x, y, 4) is None
    msam_gradient(opt, model, scaled, x, y, 4, method="lowrank")
    got = [q.grad.clone() for q in model.parameters()]
    msam_gradient(opt, model, scaled, x, y, 4, method="loop")
    for a, b in zip(got, model.parameters()):
        assert torch.equal(a, b.grad)
        assert torch.isfinite(a).all() and a.abs().max() > 0


def test_non_finite_gradient_raises_and_leaves_the_weights():
    model = mlp()
    x, y = data()
    x[5, 3] = float("nan")
    before = [q.detach().clone() for q in model.parameters()]
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1)
    with pytest.raises(ValueError, match="inf or NaN"):
        msam_gradient(opt, model, LOSS, x, y, 4, method="lowrank")
    for q, w in zip(model.parameters(), before):
        assert torch.equal(q.detach(), w)


def test_float32_training_agrees_with_the_loop():
    x, y = data()
    a, b = mlp().float(), mlp().float()
    opt_a = SAM(a.parameters(), torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
    opt_b = SAM(b.parameters(), torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
    for _ in range(20):
        msam_step(opt_a, a, LOSS, x.float(), y, 4, method="lowrank")
        msam_step(opt_b, b, LOSS, x.float(), y, 4, method="loop")
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def unsupported_cases():
    torch.manual_seed(0)
    lin = nn.Linear(4, 4)
    frozen = MLP(4, (4,), 2)
    frozen.net[1].weight.requires_grad_(False)
    scaled = nn.Sequential(nn.Linear(4, 2))
    scaled.register_parameter("scale", nn.Parameter(torch.ones(1)))
    return {
        "batch norm": (nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)), {}, "BatchNorm1d"),
        "convolution": (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(72, 2)), {}, "Conv2d"),
        "custom container": (SmallCNN(in_channels=1, width=4), {}, "container other than"),
        "in-place ReLU": (nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True), nn.Linear(4, 2)), {}, "in place"),
        "active dropout": (nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Linear(4, 2)), {}, "is active"),
        "PReLU": (nn.Sequential(nn.Linear(4, 4), nn.PReLU(), nn.Linear(4, 2)), {}, "parameters outside"),
        "shared layer": (nn.Sequential(lin, nn.Tanh(), lin), {}, "more than once"),
        "p = inf": (MLP(4, (4,), 2), {"p": float("inf")}, "p=inf"),
        "ASAM": (MLP(4, (4,), 2), {"adaptive": True}, "adaptive"),
        "frozen weight": (frozen, {}, "frozen"),
        "parameter outside Linear": (nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2)), {}, "LayerNorm"),
        "loose parameter": (scaled, {}, "outside nn.Linear"),
        "flatten the batch": (nn.Sequential(nn.Flatten(0), nn.Linear(4, 2)), {}, "across the batch"),
    }


@pytest.mark.parametrize("case", list(unsupported_cases()))
def test_models_the_low_rank_form_does_not_fit_are_named_and_refused(case):
    model, kwargs, reason = unsupported_cases()[case]
    opt = SAM([q for q in model.parameters() if q.requires_grad], torch.optim.SGD, lr=0.1, **kwargs)
    assert reason in lowrank_unsupported_reason(opt, model)
    shape = (1, 8, 8) if case in ("convolution", "custom container") else (4,)
    x, y = data(n=8, shape=shape, classes=2)
    model.float()
    with pytest.raises(ValueError, match="method='lowrank' does not apply"):
        msam_gradient(opt, model, LOSS, x.float(), y, 4, method="lowrank")


def test_auto_picks_the_loop_where_the_low_rank_form_does_not_fit():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 4)).double()
    x, y = data()
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.1, lr=0.1)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    msam_gradient(opt, model, LOSS, x, y, 6)
    auto = [q.grad.clone() for q in model.parameters()]
    model.load_state_dict(state)
    msam_gradient(opt, model, LOSS, x, y, 6, method="loop")
    for a, q in zip(auto, model.parameters()):
        assert torch.equal(a, q.grad)


def test_eval_mode_dropout_and_an_optimizer_over_other_parameters():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Linear(4, 2)).eval()
    opt = SAM(model.parameters(), torch.optim.SGD, lr=0.1)
    assert lowrank_unsupported_reason(opt, model) is None
    partial = SAM(model[0].parameters(), torch.optim.SGD, lr=0.1)
    assert "not exactly" in lowrank_unsupported_reason(partial, model)


def test_unknown_method_is_refused():
    model = mlp()
    x, y = data()
    opt = SAM(model.parameters(), torch.optim.SGD, lr=0.1)
    with pytest.raises(ValueError, match="method must be one of"):
        msam_gradient(opt, model, LOSS, x, y, 4, method="vmap")
