"""sam_course.curvature.hessian against exact Hessians: closed forms, a known quadratic, and dense_hessian."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sam_course.curvature import hessian as H

CE = nn.CrossEntropyLoss()


MSE = nn.MSELoss()


def tiny_mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 5), nn.Tanh(), nn.Linear(5, 3)).double()  # 33 parameters


def classification_batch(n=40, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=gen, dtype=torch.float64), torch.randint(0, 3, (n,), generator=gen)


class Quadratic(nn.Module):
    """Outputs 0.5 w^T A w for every example: with the mean as loss, the Hessian is exactly A."""

    def __init__(self, matrix: torch.Tensor, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(matrix.shape[0], generator=gen, dtype=torch.float64))
        self.register_buffer("A", matrix)

    def forward(self, x):
        return (0.5 * self.w @ self.A @ self.w).expand(x.shape[0])


def mean_loss(out, y):
    return out.mean()


def with_spectrum(eigenvalues, seed=0):
    """A symmetric matrix with the given eigenvalues and random eigenvectors."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=gen, dtype=torch.float64))
    lam = torch.as_tensor(eigenvalues, dtype=torch.float64)
    return (q * lam) @ q.T


DUMMY = (torch.zeros(4, 1, dtype=torch.float64), torch.zeros(4, dtype=torch.float64))


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}, [p.grad for p in model.parameters()], model.training


def assert_unchanged(model, before):
    state, grads, training = before
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert [p.grad for p in model.parameters()] == grads
    assert model.training == training


# ----------------------------------------------------------------------------- the oracle itself


def test_dense_hessian_of_least_squares_is_two_xtx_over_n():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(30, 4, generator=gen, dtype=torch.float64), torch.randn(30, 1, generator=gen, dtype=torch.float64)
    model = nn.Linear(4, 1).double()  # parameters: weight (4), then bias (1)
    design = torch.cat([x, torch.ones(30, 1, dtype=torch.float64)], dim=1)
    torch.testing.assert_close(H.dense_hessian(model, MSE, (x, y)), 2 * design.T @ design / 30, rtol=0, atol=1e-12)


def test_dense_hessian_of_quadratic_is_its_matrix():
    a = with_spectrum([3.0, -1.0, 0.5, 0.0])
    torch.testing.assert_close(H.dense_hessian(Quadratic(a), mean_loss, DUMMY), a, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- gradient and hvp


def test_gradient_over_uneven_batches_is_the_full_batch_gradient():
    model = tiny_mlp()
    x, y = classification_batch()
    full = torch.autograd.grad(CE(model(x), y), list(model.parameters()))
    expected = torch.cat([g.reshape(-1) for g in full])
    batches = [(x[:7], y[:7]), (x[7:30], y[7:30]), (x[30:], y[30:])]
    torch.testing.assert_close(H.gradient(model, CE, batches), expected, rtol=0, atol=1e-14)
    assert all(p.grad is None for p in model.parameters())


def test_hvp_matches_dense_hessian_times_v():
    model = tiny_mlp()
    x, y = classification_batch()
    dense = H.dense_hessian(model, CE, (x, y))
    gen = torch.Generator().manual_seed(5)
    for _ in range(3):
        v = torch.randn(33, generator=gen, dtype=torch.float64)
        torch.testing.assert_close(H.hvp(model, CE, (x, y), v), dense @ v, rtol=0, atol=1e-10)
        uneven = [(x[:13], y[:13]), (x[13:], y[13:])]
        torch.testing.assert_close(H.hvp(model, CE, uneven, v), dense @ v, rtol=0, atol=1e-10)


def test_hvp_handles_parameters_the_loss_ignores_or_is_linear_in():
    class Partly(nn.Module):
        def __init__(self):
            super().__init__()
            self.quad = nn.Parameter(torch.tensor([2.0], dtype=torch.float64))
            self.lin = nn.Parameter(torch.tensor([3.0], dtype=torch.float64))
            self.unused = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))

        def forward(self, x):
            return (self.quad**2 + 5 * self.lin).expand(x.shape[0])

    v = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(H.hvp(Partly(), mean_loss, DUMMY, v), torch.tensor([2.0, 0.0, 0.0], dtype=torch.float64))


def test_frozen_parameters_are_left_out():
    model = tiny_mlp()
    model[0].weight.requires_grad_(False)
    x, y = classification_batch()
    assert H.gradient(model, CE, (x, y)).shape == (33 - 10,)
    dense = H.dense_hessian(model, CE, (x, y))
    v = torch.randn(23, dtype=torch.float64)
    torch.testing.assert_close(H.hvp(model, CE, (x, y), v), dense @ v, rtol=0, atol=1e-10)


# ----------------------------------------------------------------------------- eigenvalues


@pytest.mark.parametrize("k", [1, 3, 5])
def test_top_eigenvalues_match_eigvalsh(k):
    model = tiny_mlp()
    x, y = classification_batch()
    exact = torch.linalg.eigvalsh(H.dense_hessian(model, CE, (x, y))).flip(0)[:k]
    result = H.top_eigenvalues(model, CE, (x, y), k=k, tol=1e-8)
    torch.testing.assert_close(result.eigenvalues, exact, rtol=1e-6, atol=0)
    assert result.eigenvectors is None and result.converged and result.num_hvps > 0


def test_eigenvectors_are_unit_eigenvectors_of_the_dense_hessian():
    model = tiny_mlp()
    x, y = classification_batch()
    dense = H.dense_hessian(model, CE, (x, y))
    result = H.top_eigenvalues(model, CE, (x, y), k=2, tol=1e-10, return_eigenvectors=True)
    vectors = result.eigenvectors
    assert vectors.shape == (33, 2)
    torch.testing.assert_close(vectors.T @ vectors, torch.eye(2, dtype=torch.float64), rtol=0, atol=1e-8)
    torch.testing.assert_close(dense @ vectors, vectors * result.eigenvalues, rtol=0, atol=1e-8)
    assert (vectors.gather(0, vectors.abs().argmax(0, keepdim=True)) > 0).all()  # the documented sign


def test_largest_algebraic_not_largest_magnitude():
    a = with_spectrum([1.0, 0.5, 0.2, -0.1, -3.0, -2.0])
    model = Quadratic(a)
    top = H.top_eigenvalues(model, mean_loss, DUMMY, k=2, tol=1e-10)
    torch.testing.assert_close(top.eigenvalues, torch.tensor([1.0, 0.5], dtype=torch.float64), rtol=1e-8, atol=0)
    # Power iteration converges to the eigenvalue of largest magnitude, as its docstring warns.
    power = H.power_iteration(model, mean_loss, DUMMY, tol=1e-8, max_iter=2000)
    assert power.converged and power.eigenvalues.item() == pytest.approx(-3.0, rel=1e-8)


def test_lanczos_needs_far_fewer_hvps_than_power_iteration_at_a_small_gap():
    spectrum = [1.0, 0.97, *torch.linspace(-0.5, 0.9, 48).tolist()]  # lambda_2 / lambda_1 = 0.97
    model = Quadratic(with_spectrum(spectrum))
    lanczos = H.top_eigenvalues(model, mean_loss, DUMMY, k=1, tol=1e-8)
    power = H.power_iteration(model, mean_loss, DUMMY, tol=1e-8, max_iter=5000)
    assert lanczos.eigenvalues.item() == pytest.approx(1.0, rel=1e-10)
    assert power.converged and power.eigenvalues.item() == pytest.approx(1.0, rel=1e-10)
    # Power iteration's residual shrinks like 0.97^t: about 600 products for 1e-8.
    assert power.num_hvps > 5 * lanczos.num_hvps
    assert power.num_hvps > 300


def test_power_iteration_reports_non_convergence_and_matches_dense():
    model = tiny_mlp()
    x, y = classification_batch()
    exact = torch.linalg.eigvalsh(H.dense_hessian(model, CE, (x, y)))[-1]
    result = H.power_iteration(model, CE, (x, y), tol=1e-9, max_iter=3000)
    assert result.converged and result.num_hvps < 3000
    assert result.eigenvalues.item() == pytest.approx(exact.item(), rel=1e-8)
    short = H.power_iteration(model, CE, (x, y), tol=1e-12, max_iter=3)
    assert not short.converged and short.num_hvps == 3


def test_lanczos_is_deterministic_by_seed_and_raises_when_not_converged():
    model = tiny_mlp()
    x, y = classification_batch()
    a = H.top_eigenvalues(model, CE, (x, y), k=2, seed=3, return_eigenvectors=True)
    b = H.top_eigenvalues(model, CE, (x, y), k=2, seed=3, return_eigenvectors=True)
    assert torch.equal(a.eigenvalues, b.eigenvalues) and torch.equal(a.eigenvectors, b.eigenvectors)
    assert a.num_hvps == b.num_hvps
    with pytest.raises(RuntimeError, match="max_iter"):
        H.top_eigenvalues(model, CE, (x, y), k=1, tol=1e-14, max_iter=1, ncv=3)


def test_float32_model_gets_the_float64_eigenvalue():
    model64 = tiny_mlp()
    x, y = classification_batch()
    exact = torch.linalg.eigvalsh(H.dense_hessian(model64, CE, (x, y)))[-1].item()
    model32 = tiny_mlp().float()
    result = H.top_eigenvalues(model32, CE, (x.float(), y), k=1, tol=1e-5)
    assert result.eigenvalues.dtype == torch.float64
    assert result.eigenvalues.item() == pytest.approx(exact, rel=1e-4)


# ----------------------------------------------------------------------------- trace


def test_hutchinson_is_within_four_standard_errors_and_the_error_shrinks_like_one_over_sqrt_n():
    model = tiny_mlp()
    x, y = classification_batch()
    dense = H.dense_hessian(model, CE, (x, y))
    # Var(z^T H z) for Rademacher z is 2 * sum_{i != j} H_ij^2.
    sample_var = 2 * ((dense**2).sum() - (dense.diagonal() ** 2).sum()).item()
    small = H.hutchinson_trace(model, CE, (x, y), samples=100, seed=0)
    large = H.hutchinson_trace(model, CE, (x, y), samples=400, seed=1)
    for est, n in ((small, 100), (large, 400)):
        assert abs(est.trace - dense.trace().item()) < 4 * est.stderr
        assert est.stderr == pytest.approx(math.sqrt(sample_var / n), rel=0.3)
        assert est.num_hvps == n and est.values.shape == (n,)
    assert large.stderr / small.stderr == pytest.approx(0.5, abs=0.15)


def test_hutchinson_is_deterministic_and_uses_rademacher_vectors():
    a = with_spectrum([2.0, 1.0, -1.0, 0.5])
    first = H.hutchinson_trace(Quadratic(a), mean_loss, DUMMY, samples=50, seed=7)
    second = H.hutchinson_trace(Quadratic(a), mean_loss, DUMMY, samples=50, seed=7)
    assert torch.equal(first.values, second.values)
    # Every z^T A z with z in {-1, 1}^4 is one of the 8 values sum_ij s_i s_j A_ij (up to sign of z).
    signs = torch.tensor([[1, s1, s2, s3] for s1 in (-1, 1) for s2 in (-1, 1) for s3 in (-1, 1)], dtype=torch.float64)
    possible = torch.einsum("ki,ij,kj->k", signs, a, signs)
    assert all((possible - v).abs().min() < 1e-12 for v in first.values)
    assert math.isnan(H.hutchinson_trace(Quadratic(a), mean_loss, DUMMY, samples=1).stderr)


# ----------------------------------------------------------------------------- spectral density


def test_slq_with_dim_steps_recovers_the_exact_eigenvalues():
    spectrum = torch.linspace(-1.0, 2.0, 12, dtype=torch.float64)
    model = Quadratic(with_spectrum(spectrum.tolist()))
    density = H.spectral_density(model, mean_loss, DUMMY, steps=12, starts=2, seed=0)
    assert density.nodes.shape == (24,) and density.num_hvps == 24
    for start in range(2):
        torch.testing.assert_close(density.nodes[12 * start : 12 * (start + 1)], spectrum, rtol=0, atol=1e-10)
    assert density.weights.min() >= 0
    assert density.weights.sum().item() == pytest.approx(1.0, abs=1e-12)


def test_slq_is_gauss_quadrature_exact_to_degree_2m_minus_1():
    # For diagonal A and a normalized Rademacher v, v^T A^j v = tr(A^j) / dim exactly, so the
    # quadrature's moments are known without knowing v: exact up to degree 2 * steps - 1, not beyond.
    spectrum = torch.tensor([-0.4, 0.1, 0.3, 0.5, 0.9, 1.2, 1.5, 2.0, 2.2, 3.0], dtype=torch.float64)
    density = H.spectral_density(Quadratic(torch.diag(spectrum)), mean_loss, DUMMY, steps=4, starts=3, seed=1)
    for degree in range(8):
        moment = (density.weights * density.nodes**degree).sum().item()
        assert moment == pytest.approx((spectrum**degree).mean().item(), rel=1e-10), degree
    moment8 = (density.weights * density.nodes**8).sum().item()
    assert moment8 != pytest.approx((spectrum**8).mean().item(), rel=1e-6)
    # With steps = dim every weight is (e_i^T v)^2 / starts = 1 / (dim * starts).
    full = H.spectral_density(Quadratic(torch.diag(spectrum)), mean_loss, DUMMY, steps=10, starts=3)
    torch.testing.assert_close(full.weights, torch.full((30,), 1 / 30, dtype=torch.float64), rtol=0, atol=1e-12)


def test_slq_finds_each_distinct_eigenvalue_once_when_some_repeat():
    model = tiny_mlp()  # cross-entropy is invariant to shifting all 3 logits: a 6-fold zero eigenvalue
    x, y = classification_batch()
    exact = torch.linalg.eigvalsh(H.dense_hessian(model, CE, (x, y)))
    density = H.spectral_density(model, CE, (x, y), steps=33, starts=1)
    distinct = exact[torch.cat([torch.tensor([True]), exact.diff() > 1e-9])]
    assert len(distinct) < 33 and density.nodes.shape == distinct.shape
    torch.testing.assert_close(density.nodes, distinct, rtol=0, atol=1e-8)
    assert density.num_hvps == len(distinct)


def test_slq_mean_estimates_trace_over_dim():
    spectrum = [0.1 * i for i in range(-5, 25)]
    a = with_spectrum(spectrum, seed=2)
    dim = len(spectrum)
    density = H.spectral_density(Quadratic(a), mean_loss, DUMMY, steps=6, starts=40, seed=0)
    # Each start's mean is z^T A z / dim for a Rademacher z (Gauss quadrature is exact for degree 1).
    stderr = math.sqrt(2 * ((a**2).sum() - (a.diagonal() ** 2).sum()).item() / 40) / dim
    assert abs(density.mean - a.trace().item() / dim) < 4 * stderr
    assert density.mean == pytest.approx((density.weights * density.nodes).sum().item())
    grid = torch.linspace(-3, 5, 4001, dtype=torch.float64)
    smooth = density.density(grid, sigma=0.05)
    assert torch.trapezoid(smooth, grid).item() == pytest.approx(1.0, abs=1e-6)
    assert torch.trapezoid(smooth * grid, grid).item() == pytest.approx(density.mean, abs=1e-6)


def test_gaussian_density_of_one_node_is_the_normal_pdf():
    grid = torch.tensor([0.0, 1.0, 2.5], dtype=torch.float64)
    got = H.gaussian_density(torch.tensor([1.0]), torch.tensor([0.5]), grid, sigma=2.0)
    expected = 0.5 * torch.exp(-0.5 * ((grid - 1.0) / 2.0) ** 2) / (2.0 * math.sqrt(2 * math.pi))
    torch.testing.assert_close(got, expected, rtol=1e-14, atol=0)
    with pytest.raises(ValueError, match="sigma"):
        H.gaussian_density(torch.tensor([1.0]), torch.tensor([1.0]), grid, sigma=0.0)


# ----------------------------------------------------------------------------- BatchNorm, state, errors


def bn_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 3)).double()
    with torch.no_grad():  # running statistics that differ from the initial (0, 1)
        for seed in range(3):
            model(classification_batch(seed=10 + seed)[0] * 2 + 1)
    return model.eval()


def test_batchnorm_in_eval_mode_agrees_with_dense_hessian():
    model = bn_model()
    x, y = classification_batch()
    dense = H.dense_hessian(model, CE, (x, y))
    v = torch.randn(dense.shape[0], dtype=torch.float64)
    torch.testing.assert_close(H.hvp(model, CE, (x, y), v), dense @ v, rtol=0, atol=1e-10)
    exact = torch.linalg.eigvalsh(dense).flip(0)[:2]
    torch.testing.assert_close(H.top_eigenvalues(model, CE, (x, y), k=2, tol=1e-10).eigenvalues, exact, rtol=1e-6, atol=0)


@pytest.mark.parametrize("layer", [nn.BatchNorm1d(5), nn.Dropout(0.1)])
def test_training_mode_batchnorm_or_dropout_is_refused(layer):
    model = nn.Sequential(nn.Linear(2, 5), layer, nn.Linear(5, 3)).double().train()
    x, y = classification_batch()
    for call in (lambda: H.hvp(model, CE, (x, y), torch.zeros(38, dtype=torch.float64)),
                 lambda: H.top_eigenvalues(model, CE, (x, y)),
                 lambda: H.dense_hessian(model, CE, (x, y))):
        with pytest.raises(ValueError, match=r"model\.eval\(\)"):
            call()


def test_model_is_left_unchanged():
    model = bn_model()
    x, y = classification_batch()
    before = snapshot(model)
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    H.gradient(model, CE, (x, y))
    H.hvp(model, CE, (x, y), v)
    H.top_eigenvalues(model, CE, (x, y), k=2, return_eigenvectors=True)
    H.power_iteration(model, CE, (x, y), max_iter=20)
    H.hutchinson_trace(model, CE, (x, y), samples=5)
    H.spectral_density(model, CE, (x, y), steps=5, starts=2)
    H.dense_hessian(model, CE, (x, y))
    assert_unchanged(model, before)


def test_bad_arguments_raise_value_errors_naming_them():
    model = tiny_mlp()
    data = classification_batch()
    cases = [
        ("k", lambda: H.top_eigenvalues(model, CE, data, k=0)),
        ("k", lambda: H.top_eigenvalues(model, CE, data, k=33)),
        ("k", lambda: H.top_eigenvalues(model, CE, data, k=1.0)),
        ("tol", lambda: H.top_eigenvalues(model, CE, data, tol=-1.0)),
        ("max_iter", lambda: H.power_iteration(model, CE, data, max_iter=0)),
        ("ncv", lambda: H.top_eigenvalues(model, CE, data, k=2, ncv=2)),
        ("seed", lambda: H.hutchinson_trace(model, CE, data, seed=-1)),
        ("samples", lambda: H.hutchinson_trace(model, CE, data, samples=0)),
        ("steps", lambda: H.spectral_density(model, CE, data, steps=0)),
        ("steps", lambda: H.spectral_density(model, CE, data, steps=34)),
        ("starts", lambda: H.spectral_density(model, CE, data, steps=5, starts=0)),
        ("v", lambda: H.hvp(model, CE, data, torch.zeros(32, dtype=torch.float64))),
        ("v", lambda: H.hvp(model, CE, data, torch.zeros(3, 11, dtype=torch.float64))),
        ("max_dim", lambda: H.dense_hessian(model, CE, data, max_dim=10)),
        ("data", lambda: H.gradient(model, CE, [])),
        ("data", lambda: H.gradient(model, CE, (data[0], data[1][:5]))),
        ("data", lambda: H.gradient(model, CE, 3)),
    ]
    for name, call in cases:
        with pytest.raises(ValueError, match=name):
            call()


# ----------------------------------------------------------------------------- top_spectrum (chapter 13)


def test_top_spectrum_matches_the_dense_hessian_of_every_model():
    x, y = classification_batch()
    models = {"a": tiny_mlp(seed=0), "b": tiny_mlp(seed=5)}
    table = H.top_spectrum(models, CE, (x, y), k=5, tol=1e-10)
    assert list(table) == ["a", "b"]
    for name, model in models.items():
        exact = torch.linalg.eigvalsh(H.dense_hessian(model, CE, (x, y))).flip(0)
        row = table[name]
        assert row["lambda_max"] == pytest.approx(float(exact[0]), rel=1e-6)
        assert row["lambda_k"] == pytest.approx(float(exact[4]), rel=1e-6)
        assert row["ratio"] == pytest.approx(float(exact[0] / exact[4]), rel=1e-6)
        assert isinstance(row["num_hvps"], int) and row["num_hvps"] > 0 and row["converged"] is True


def test_top_spectrum_of_a_known_spectrum_and_a_sequence_of_models():
    # Quadratic: the Hessian is exactly A, so lambda_max = 8 and lambda_3 = 2.
    model = Quadratic(with_spectrum([8.0, 4.0, 2.0, 1.0, 0.5, 0.25]))
    table = H.top_spectrum([model], mean_loss, DUMMY, k=3, tol=1e-10)
    assert list(table) == ["0"]
    assert table["0"]["lambda_max"] == pytest.approx(8.0, rel=1e-9)
    assert table["0"]["lambda_k"] == pytest.approx(2.0, rel=1e-9)
    assert table["0"]["ratio"] == pytest.approx(4.0, rel=1e-9)


def test_top_spectrum_ratio_is_nan_when_lambda_k_is_not_positive():
    model = Quadratic(with_spectrum([3.0, 2.0, 1.0, 0.0, -1.0, -2.0]))
    row = H.top_spectrum({"m": model}, mean_loss, DUMMY, k=5, tol=1e-10)["m"]
    assert row["lambda_k"] == pytest.approx(-1.0, rel=1e-8)
    assert math.isnan(row["ratio"])


def test_top_spectrum_bad_arguments_raise_value_errors_naming_them():
    model = tiny_mlp()
    data = classification_batch()
    with pytest.raises(ValueError, match="models"):
        H.top_spectrum(model, CE, data)
    with pytest.raises(ValueError, match="models"):
        H.top_spectrum({}, CE, data)
    with pytest.raises(ValueError, match="models"):
        H.top_spectrum({"x": "not a model"}, CE, data)
    with pytest.raises(ValueError, match="k"):
        H.top_spectrum([model], CE, data, k=1)
    with pytest.raises(ValueError, match="k"):
        H.top_spectrum([model], CE, data, k=33)


# ----------------------------------------------------------------------------- module layout


def test_hessian_reexports_the_spectrum_estimators_the_chapters_call():
    from sam_course.curvature import operator, spectrum

    for name in spectrum.__all__:
        assert getattr(H, name) is getattr(spectrum, name), name
    assert set(H.__all__) == {"gradient", "hvp", "dense_hessian"}  # each name documented once
    assert spectrum.HessianOperator is operator.HessianOperator


def test_spectrum_and_operator_do_not_import_hessian():
    """hessian imports spectrum and operator; the reverse would be a cycle."""
    import ast
    from pathlib import Path

    folder = Path(H.__file__).parent
    for name, forbidden in (("operator", {"hessian", "spectrum"}), ("spectrum", {"hessian"})):
        tree = ast.parse((folder / f"{name}.py").read_text(encoding="utf-8"))
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 1}
        assert not imported & forbidden, f"{name}.py imports {imported & forbidden}"


def test_operator_counts_its_products_and_matches_hvp():
    from sam_course.curvature.operator import HessianOperator

    model, data = tiny_mlp(), classification_batch()
    op = HessianOperator(model, CE, data)
    v = torch.randn(op.dim, dtype=torch.float64)
    assert op.num_hvps == 0 and op.dim == 33 and op.total == 40
    torch.testing.assert_close(op.matvec(v), H.hvp(model, CE, data, v), rtol=0, atol=0)
    loss, grad = op.gradient()
    assert op.num_hvps == 1 and loss == pytest.approx(float(CE(model(data[0]), data[1]).detach()), rel=1e-12)
    torch.testing.assert_close(grad, H.gradient(model, CE, data), rtol=0, atol=0)
