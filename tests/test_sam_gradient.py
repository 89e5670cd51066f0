"""sam_course.theory.sam_gradient against oracles: the closed form with the exact dense Hessian, central
finite differences of w -> L(w + eps_hat(w)), sam_course.optim.SAM, plain SGD, and train.fit."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from sam_course import train
from sam_course.curvature import hessian
from sam_course.optim import SAM
from sam_course.theory.sam_gradient import (
    SAMGradient,
    fit_sam_gradient,
    sam_gradient,
    sam_gradient_parts,
    sam_gradient_step,
)

CE = nn.CrossEntropyLoss()



def tiny_mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 4)).double()  # 52 parameters


def batch(n=30, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=gen, dtype=torch.float64), torch.randint(0, 4, (n,), generator=gen)


def flat_params(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def load_flat(model, vector):
    torch.nn.utils.vector_to_parameters(vector, model.parameters())


def closed_form(model, data, rho):
    """g' + (rho / ||g||) H (I - u u^T) g' with H from dense_hessian and g' by hand."""
    g = hessian.gradient(model, CE, data)
    w = flat_params(model)
    load_flat(model, w + rho * g / g.norm())
    g_prime = hessian.gradient(model, CE, data)
    load_flat(model, w)
    H = hessian.dense_hessian(model, CE, data)
    u = g / g.norm()
    term = (rho / g.norm()) * H @ (g_prime - u * (u @ g_prime))
    return g, g_prime, term


@pytest.mark.parametrize("rho", [0.01, 0.3, 2.0])
def test_full_gradient_equals_the_closed_form_with_the_dense_hessian(rho):
    model, data = tiny_mlp(), batch()
    g, g_prime, term = closed_form(model, data, rho)
    full = sam_gradient(model, CE, data, rho, second_order=True)
    parts = sam_gradient_parts(model, CE, data, rho)
    torch.testing.assert_close(full, g_prime + term, rtol=0, atol=1e-10)
    torch.testing.assert_close(parts.gradient, g, rtol=0, atol=1e-12)
    torch.testing.assert_close(parts.first_order, g_prime, rtol=0, atol=1e-12)
    torch.testing.assert_close(parts.hessian_term, term, rtol=0, atol=1e-10)
    torch.testing.assert_close(parts.full, full, rtol=0, atol=1e-10)
    assert term.norm() > 1e-6 * g_prime.norm()  # the term is really there (it is O(rho^2))


def test_the_transpose_matters_h_p_not_p_h():
    # The Jacobian of eps_hat is (rho/||g||) P H; the chain rule needs its transpose H P. The two
    # differ (H and P do not commute), so the closed form with P H must NOT match.
    rho = 0.5
    model, data = tiny_mlp(3), batch(seed=4)
    g, g_prime, _ = closed_form(model, data, rho)
    H = hessian.dense_hessian(model, CE, data)
    u = g / g.norm()
    P = torch.eye(len(g), dtype=g.dtype) - torch.outer(u, u)
    wrong = g_prime + (rho / g.norm()) * P @ H @ g_prime
    full = sam_gradient(model, CE, data, rho, second_order=True)
    assert (full - wrong).norm() > 1e-3 * (full - g_prime).norm()


def test_full_gradient_equals_central_finite_differences_of_the_sam_objective():
    rho = 0.2
    model, data = tiny_mlp(1), batch(seed=2)
    w = flat_params(model)

    def sam_objective(vector):
        load_flat(model, vector)
        g = hessian.gradient(model, CE, data)
        load_flat(model, vector + rho * g / g.norm())
        with torch.no_grad():
            value = CE(model(data[0]), data[1]).item()
        load_flat(model, w)
        return value

    h = 1e-5
    numeric = torch.empty_like(w)
    for i in range(len(w)):
        step = torch.zeros_like(w)
        step[i] = h
        numeric[i] = (sam_objective(w + step) - sam_objective(w - step)) / (2 * h)
    full = sam_gradient(model, CE, data, rho, second_order=True)
    first = sam_gradient(model, CE, data, rho)
    torch.testing.assert_close(full, numeric, rtol=0, atol=1e-6)
    assert (first - numeric).abs().max() > 1e-4  # SAM's gradient is not the objective's gradient


def test_first_order_equals_the_grad_after_sam_first_step_and_backward():
    rho = 0.1
    model, (x, y) = tiny_mlp(2), batch(seed=3)
    expected_model = copy.deepcopy(model)
    opt = SAM(expected_model.parameters(), torch.optim.SGD, rho=rho, lr=0.1)
    CE(expected_model(x), y).backward()
    opt.first_step(zero_grad=True)
    CE(expected_model(x), y).backward()
    expected = torch.cat([p.grad.reshape(-1) for p in expected_model.parameters()])
    got = sam_gradient(model, CE, (x, y), rho)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-14)
    torch.testing.assert_close(sam_gradient_parts(model, CE, (x, y), rho).first_order, expected, rtol=0, atol=1e-14)


def test_rho_zero_gives_the_plain_gradient_and_no_hessian_term():
    model, data = tiny_mlp(), batch()
    g = hessian.gradient(model, CE, data)
    for second_order in (False, True):
        torch.testing.assert_close(sam_gradient(model, CE, data, 0.0, second_order), g, rtol=0, atol=1e-14)
    parts = sam_gradient_parts(model, CE, data, 0)
    assert torch.equal(parts.hessian_term, torch.zeros_like(g))
    assert parts.cosine == pytest.approx(1.0) and parts.angle == 0.0
    assert parts.perturbed_loss == parts.loss


def test_zero_gradient_gives_zero_everywhere():
    # Zero weights and zero targets under squared error: the gradient is exactly 0, eps_hat = 0.
    model = nn.Linear(3, 2).double()
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    x = torch.randn(8, 3, dtype=torch.float64)
    data = (x, torch.zeros(8, 2, dtype=torch.float64))
    mse = nn.MSELoss()
    for second_order in (False, True):
        out = sam_gradient(model, mse, data, 0.05, second_order)
        assert torch.equal(out, torch.zeros(8, dtype=torch.float64))
    parts = sam_gradient_parts(model, mse, data, 0.05)
    assert torch.equal(parts.hessian_term, torch.zeros(8, dtype=torch.float64))
    assert all(math.isnan(v) for v in (parts.cosine, parts.angle, parts.norm_ratio, parts.relative_term))


def test_hessian_term_is_second_order_in_rho_with_its_leading_coefficient():
    # g' = g + rho H u + O(rho^2), so (I - u u^T) g' = rho P H u + O(rho^2) and the term is
    # (rho^2 / ||g||) H P H u + O(rho^3): the relative error of this leading form is O(rho).
    model, data = tiny_mlp(4), batch(seed=5)
    g = hessian.gradient(model, CE, data)
    H = hessian.dense_hessian(model, CE, data)
    u = g / g.norm()
    P = torch.eye(len(g), dtype=g.dtype) - torch.outer(u, u)
    leading = H @ P @ H @ u / g.norm()
    errors = []
    for rho in (1e-2, 5e-3):
        term = sam_gradient_parts(model, CE, data, rho).hessian_term
        errors.append(((term / rho**2) - leading).norm() / leading.norm())
    assert errors[0] < 0.05
    assert errors[1] / errors[0] == pytest.approx(0.5, abs=0.05)


def test_uneven_batches_give_the_full_batch_result():
    model = tiny_mlp()
    x, y = batch(n=25)
    pieces = [(x[:10], y[:10]), (x[10:13], y[10:13]), (x[13:], y[13:])]
    for second_order in (False, True):
        torch.testing.assert_close(
            sam_gradient(model, CE, pieces, 0.3, second_order), sam_gradient(model, CE, (x, y), 0.3, second_order),
            rtol=0, atol=1e-12,
        )
    torch.testing.assert_close(sam_gradient_parts(model, CE, pieces, 0.3).full,
                               sam_gradient_parts(model, CE, (x, y), 0.3).full, rtol=0, atol=1e-12)


def test_frozen_parameters_are_left_out_and_the_model_is_unchanged():
    model, data = tiny_mlp(), batch()
    model[0].bias.requires_grad_(False)
    model.eval()
    for p in model.parameters():
        p.grad = torch.full_like(p, 7.0) if p.requires_grad else None
    before = copy.deepcopy(model.state_dict())
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    full = sam_gradient(model, CE, data, 0.3, second_order=True)
    parts = sam_gradient_parts(model, CE, data, 0.3)
    dim = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert full.shape == (dim,) and parts.first_order.shape == (dim,)
    torch.testing.assert_close(parts.full, full, rtol=0, atol=1e-12)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    for p, g in zip(model.parameters(), grads):
        assert (p.grad is None and g is None) or torch.equal(p.grad, g)
    assert not model.training


def test_parts_properties_are_their_definitions():
    parts = SAMGradient(rho=0.1, loss=1.0, perturbed_loss=1.5, gradient=torch.tensor([1.0, 0.0]),
                        first_order=torch.tensor([3.0, 0.0]), hessian_term=torch.tensor([0.0, 4.0]))
    torch.testing.assert_close(parts.full, torch.tensor([3.0, 4.0]))
    assert parts.cosine == pytest.approx(0.6)
    assert parts.angle == pytest.approx(math.atan2(4, 3))
    # A tiny angle, where acos(cosine) would round to 0.
    tiny = SAMGradient(rho=0.1, loss=1.0, perturbed_loss=1.0, gradient=torch.tensor([1.0, 0.0], dtype=torch.float64),
                       first_order=torch.tensor([1.0, 0.0], dtype=torch.float64),
                       hessian_term=torch.tensor([0.0, 1e-9], dtype=torch.float64))
    assert tiny.angle == pytest.approx(1e-9, rel=1e-6)
    assert math.acos(min(1.0, tiny.cosine)) == 0.0
    assert parts.norm_ratio == pytest.approx(5 / 3)
    assert parts.relative_term == pytest.approx(4 / 3)


# ----------------------------------------------------------------------------- steps and the loop


@pytest.mark.parametrize("rho", [0.0, 0.2])
def test_first_order_step_equals_a_sam_optimizer_step(rho):
    model, (x, y) = tiny_mlp(5), batch(seed=6)
    reference = copy.deepcopy(model)
    opt = SAM(reference.parameters(), torch.optim.SGD, rho=rho, lr=0.3, momentum=0.9)
    for _ in range(3):
        def closure():
            loss = CE(reference(x), y)
            loss.backward()
            return loss
        opt.step(closure)
    base = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9)
    losses = [sam_gradient_step(model, base, CE, x, y, rho) for _ in range(3)]
    torch.testing.assert_close(flat_params(model), flat_params(reference), rtol=0, atol=1e-12)
    assert losses[0] == pytest.approx(CE(tiny_mlp(5)(x), y).item(), abs=1e-14)


def test_second_order_step_applies_the_full_gradient():
    model, (x, y) = tiny_mlp(6), batch(seed=7)
    w = flat_params(model)
    full = sam_gradient(model, CE, (x, y), 0.4, second_order=True)
    sam_gradient_step(model, torch.optim.SGD(model.parameters(), lr=0.5), CE, x, y, 0.4, second_order=True)
    torch.testing.assert_close(flat_params(model), w - 0.5 * full, rtol=0, atol=1e-14)


def small_dataset(n=40, seed=8):
    x, y = batch(n=n, seed=seed)
    return TensorDataset(x, y)


def test_fit_sam_gradient_reproduces_train_fit_with_sam_and_with_sgd():
    data, test = small_dataset(), small_dataset(n=20, seed=9)
    for rho in (0.0, 0.1):
        a, b = tiny_mlp(7), tiny_mlp(7)
        history = fit_sam_gradient(a, torch.optim.SGD(a.parameters(), lr=0.2), data, 2, batch_size=16, rho=rho,
                                   eval_sets={"test": test}, seed=3)
        opt = SAM(b.parameters(), torch.optim.SGD, rho=rho, lr=0.2) if rho else torch.optim.SGD(b.parameters(), lr=0.2)
        reference = train.fit(b, opt, data, 2, batch_size=16, eval_sets={"test": test}, seed=3, progress=False).history
        torch.testing.assert_close(flat_params(a), flat_params(b), rtol=0, atol=1e-12)
        assert list(history["steps"]) == [0, 3, 6]
        for column in ("train_loss", "train_acc", "test_loss", "test_acc", "batch_loss"):
            assert history[column].to_list() == pytest.approx(reference[column].to_list(), abs=1e-10, nan_ok=True)
        assert set(history.columns) >= {"epoch", "steps", "seconds"}


def test_fit_sam_gradient_second_order_is_a_loop_of_second_order_steps():
    data = small_dataset()
    a, b = tiny_mlp(9), tiny_mlp(9)
    fit_sam_gradient(a, torch.optim.SGD(a.parameters(), lr=0.2), data, 1, batch_size=16, rho=0.3,
                     second_order=True, seed=1)
    opt = torch.optim.SGD(b.parameters(), lr=0.2)
    x, y = data.tensors
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(train.derive_seed(1, "order")))
    for index in order.split(16):
        sam_gradient_step(b, opt, CE, x[index], y[index], 0.3, second_order=True)
    torch.testing.assert_close(flat_params(a), flat_params(b), rtol=0, atol=0)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("rho", [-0.1, math.nan, math.inf, True, "0.1"])
def test_bad_rho_is_refused(rho):
    with pytest.raises(ValueError, match="rho"):
        sam_gradient(tiny_mlp(), CE, batch(), rho)
    with pytest.raises(ValueError, match="rho"):
        sam_gradient_parts(tiny_mlp(), CE, batch(), rho)


def test_bad_arguments_raise_value_errors_naming_them():
    model, data = tiny_mlp(), batch()
    with pytest.raises(ValueError, match="second_order"):
        sam_gradient(model, CE, data, 0.1, second_order=1)
    with pytest.raises(ValueError, match="model"):
        sam_gradient("not a model", CE, data, 0.1)
    with pytest.raises(ValueError, match="loss_fn"):
        sam_gradient(model, None, data, 0.1)
    with pytest.raises(ValueError, match="data"):
        sam_gradient(model, CE, (data[0][:5], data[1][:4]), 0.1)
    with pytest.raises(ValueError, match="dropout"):
        sam_gradient(nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5)).double(), CE, data, 0.1)
    frozen = tiny_mlp()
    for p in frozen.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="require grad"):
        sam_gradient(frozen, CE, data, 0.1)


def test_non_finite_gradient_is_refused_for_both_orders():
    model, (x, y) = tiny_mlp(), batch()
    x = x.clone()
    x[0, 0] = math.nan
    for second_order in (False, True):
        with pytest.raises(ValueError, match="inf or NaN"):
            sam_gradient(model, CE, (x, y), 0.1, second_order)
    with pytest.raises(ValueError, match="inf or NaN"):
        sam_gradient_parts(model, CE, (x, y), 0.1)


def test_step_and_loop_refuse_a_sam_optimizer_and_bad_loop_arguments():
    model, (x, y) = tiny_mlp(), batch()
    sam = SAM(model.parameters(), torch.optim.SGD, lr=0.1)
    with pytest.raises(ValueError, match="base_optimizer"):
        sam_gradient_step(model, sam, CE, x, y, 0.1)
    with pytest.raises(ValueError, match="optimizer"):
        sam_gradient_step(model, "sgd", CE, x, y, 0.1)
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    data = small_dataset()
    for kwargs, match in [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 8, "epochs": -1}, "epochs"),
        ({"batch_size": 8, "seed": -1}, "seed"),
        ({"batch_size": 8, "rho": -1.0}, "rho"),
        ({"batch_size": 8, "second_order": "yes"}, "second_order"),
        ({"batch_size": 8, "eval_sets": {"train": data}}, "eval_sets"),
    ]:
        arguments = {"epochs": 1, "rho": 0.1, **kwargs}
        epochs = arguments.pop("epochs")
        with pytest.raises(ValueError, match=match):
            fit_sam_gradient(model, sgd, data, epochs, **arguments)


def test_fit_sam_gradient_is_train_fit_with_the_sam_gradient_step():
    """Bit for bit the loop of train.fit with sam_gradient_step plugged in, minus lr and eval_seconds."""
    data, test = small_dataset(), small_dataset(n=20, seed=9)
    a, b = tiny_mlp(7), tiny_mlp(7)
    history = fit_sam_gradient(a, torch.optim.SGD(a.parameters(), lr=0.2, momentum=0.9), data, 2, batch_size=16,
                               rho=0.2, second_order=True, eval_sets={"test": test}, seed=3)

    def step(model, optimizer, loss_fn, x, y):
        # float64: the float sam_gradient_step returns holds the double loss of this double model.
        return torch.tensor(sam_gradient_step(model, optimizer, loss_fn, x, y, 0.2, True), dtype=torch.float64)

    reference = train.fit(b, torch.optim.SGD(b.parameters(), lr=0.2, momentum=0.9), data, 2, batch_size=16,
                          eval_sets={"test": test}, seed=3, step=step, progress=False).history
    torch.testing.assert_close(flat_params(a), flat_params(b), rtol=0, atol=0)
    assert list(history.columns) == ["epoch", "steps", "train_loss", "train_acc", "test_loss", "test_acc",
                                     "batch_loss", "seconds"]
    for column in history.columns.drop("seconds"):
        assert history[column].equals(reference[column]), column


def test_fit_sam_gradient_trains_a_batchnorm_model_in_eval_mode_and_leaves_it_there():
    """The SAM gradient needs BatchNorm on running statistics; fit must not switch to train mode."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 4)).double().eval()
    reference = copy.deepcopy(model)
    data = small_dataset()
    fit_sam_gradient(model, torch.optim.SGD(model.parameters(), lr=0.2), data, 1, batch_size=16, rho=0.1, seed=2)
    assert not model.training
    opt = torch.optim.SGD(reference.parameters(), lr=0.2)
    x, y = data.tensors
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(train.derive_seed(2, "order")))
    for index in order.split(16):
        sam_gradient_step(reference, opt, CE, x[index], y[index], 0.1)
    torch.testing.assert_close(flat_params(model), flat_params(reference), rtol=0, atol=0)
    assert torch.equal(model[1].running_mean, torch.zeros(6, dtype=torch.float64))  # never updated
