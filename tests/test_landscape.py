"""sam_course.curvature.landscape: filter normalization, slices and surfaces against closed forms, trajectory PCA."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from sam_course.curvature import landscape as L
from sam_course.models import SmallCNN

CE = nn.CrossEntropyLoss()


MSE = nn.MSELoss()


def bn_cnn(seed=0):
    torch.manual_seed(seed)
    model = SmallCNN(in_channels=1, num_classes=3, width=2, batch_norm=True)
    with torch.no_grad():  # move the running statistics away from their initial values
        model(torch.rand(16, 1, 12, 12, generator=torch.Generator().manual_seed(seed)) * 3)
    return model


def image_batch(n=24, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 12, 12, generator=gen), torch.randint(0, 3, (n,), generator=gen)


def regression(n=20, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    return x, torch.randn(n, 1, generator=gen, dtype=torch.float64)


def linear_model(weights=(0.3, -0.7)):
    model = nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([weights], dtype=torch.float64))
    return model


def frozen_copy(model):
    return {k: v.clone() for k, v in model.state_dict().items()}, [m.training for m in model.modules()]


def assert_unchanged(model, before):
    state, modes = before
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None for p in model.parameters())


# ----------------------------------------------------------------------------- directions


def test_filter_normalized_direction_has_the_weights_filter_norms_and_zero_bias_and_bn():
    model = bn_cnn()
    direction = L.random_direction(model, seed=3)
    params = list(model.parameters())
    assert len(direction) == len(params)
    for d, p in zip(direction, params):
        assert d.shape == p.shape and d.dtype == p.dtype
        if p.ndim <= 1:  # BatchNorm scales and shifts, the classifier's bias
            assert torch.equal(d, torch.zeros_like(p))
        else:
            d_norms = torch.linalg.vector_norm(d.flatten(1), dim=1)
            w_norms = torch.linalg.vector_norm(p.detach().flatten(1), dim=1)
            torch.testing.assert_close(d_norms, w_norms, rtol=1e-5, atol=0)
    assert sum(p.ndim <= 1 for p in params) == 7  # 3 BN layers x (weight, bias) + 1 linear bias


def test_normalization_rescales_the_same_gaussian_draw_filter_by_filter():
    model = bn_cnn()
    raw = L.random_direction(model, seed=3, filter_normalize=False)
    normalized = L.random_direction(model, seed=3)
    for r, d, p in zip(raw, normalized, model.parameters()):
        assert r.abs().min() > 0  # plain Gaussian everywhere, biases included
        if p.ndim > 1:
            scale = torch.linalg.vector_norm(p.detach().flatten(1), dim=1) / torch.linalg.vector_norm(r.flatten(1), dim=1)
            torch.testing.assert_close(d, r * scale.reshape(-1, *([1] * (p.ndim - 1))), rtol=1e-5, atol=1e-7)


def test_directions_are_deterministic_by_seed_and_zero_filters_stay_zero():
    model = bn_cnn()
    a, b, c = (L.random_direction(model, seed=s) for s in (5, 5, 6))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    with torch.no_grad():
        model.classifier[1].weight[0].zero_()
    d = L.random_direction(model, seed=5)[-2]
    assert torch.equal(d[0], torch.zeros_like(d[0])) and torch.isfinite(d).all()


# ----------------------------------------------------------------------------- slices


def test_loss_along_matches_the_model_at_zero_and_a_moved_copy_elsewhere():
    model = bn_cnn().train()
    x, y = image_batch()
    direction = L.random_direction(model, seed=1)
    before = frozen_copy(model)
    result = L.loss_along(model, CE, [(x[:10], y[:10]), (x[10:], y[10:])], direction, [-0.5, 0.0, 0.25])
    assert_unchanged(model, before)
    moved = copy.deepcopy(model).eval()
    with torch.no_grad():
        expected_zero = CE(moved(x), y).item()
        acc_zero = (moved(x).argmax(1) == y).double().mean().item()
        for p, d in zip(moved.parameters(), direction):
            p.add_(0.25 * d)
        expected_quarter = CE(moved(x), y).item()
    assert result.alphas.tolist() == [-0.5, 0.0, 0.25]
    frame = result.to_frame()
    assert list(frame.columns) == ["alpha", "loss", "accuracy"] and frame["loss"].tolist() == result.loss.tolist()
    assert result.loss[1].item() == pytest.approx(expected_zero, rel=1e-6)
    assert result.accuracy[1].item() == pytest.approx(acc_zero)
    assert result.loss[2].item() == pytest.approx(expected_quarter, rel=1e-6)
    assert L.loss_and_accuracy(model, CE, (x, y))[0] == pytest.approx(expected_zero, rel=1e-6)
    flat = torch.cat([d.reshape(-1) for d in direction])
    torch.testing.assert_close(L.loss_along(model, CE, (x, y), flat, [0.25]).loss, result.loss[2:], rtol=1e-6, atol=0)
    assert_unchanged(model, before)


def test_interpolate_endpoints_are_each_model_and_the_middle_is_the_averaged_linear_model():
    a, b = bn_cnn(seed=0), bn_cnn(seed=1)
    x, y = image_batch()
    before = frozen_copy(a)
    result = L.interpolate(a, a.state_dict(), b.state_dict(), CE, (x, y), [-1.0, 0.0, 0.5, 1.0, 2.0])
    assert_unchanged(a, before)
    with torch.no_grad():
        assert result.loss[1].item() == pytest.approx(CE(a.eval()(x), y).item(), rel=1e-6)
        assert result.loss[3].item() == pytest.approx(CE(b.eval()(x), y).item(), rel=1e-6)
    # Beyond [0, 1] the parameters extrapolate while the BatchNorm statistics stay at the endpoint's.
    for alpha, near, index in ((-1.0, a, 0), (2.0, b, 4)):
        moved = copy.deepcopy(near).eval()
        with torch.no_grad():
            for p, pa, pb in zip(moved.parameters(), a.parameters(), b.parameters()):
                p.copy_((1 - alpha) * pa + alpha * pb)
            assert result.loss[index].item() == pytest.approx(CE(moved(x), y).item(), rel=1e-5)

    lin_a, lin_b = linear_model((1.0, 2.0)), linear_model((-1.0, 0.5))
    xr, yr = regression()
    line = L.interpolate(lin_a, lin_a.state_dict(), lin_b.state_dict(), MSE, (xr, yr), [0.5, 3.0])
    for alpha, loss in zip((0.5, 3.0), line.loss):
        w = (1 - alpha) * torch.tensor([1.0, 2.0]) + alpha * torch.tensor([-1.0, 0.5])
        assert loss.item() == pytest.approx(((xr @ w.double() - yr[:, 0]) ** 2).mean().item(), rel=1e-12)
    assert line.accuracy is None


def test_surface_on_a_two_parameter_linear_model_equals_the_closed_form():
    model = linear_model()
    x, y = regression()
    d1, d2 = [torch.tensor([[1.0, 0.5]])], [torch.tensor([[-0.2, 1.0]])]
    alphas, betas = torch.linspace(-1, 1, 5), torch.linspace(-2, 2, 3)
    before = frozen_copy(model)
    result = L.surface(model, MSE, (x, y), d1, d2, alphas, betas)
    assert_unchanged(model, before)
    assert result.loss.shape == (3, 5) and result.accuracy is None
    w0 = torch.tensor([0.3, -0.7], dtype=torch.float64)
    u, v = d1[0][0].double(), d2[0][0].double()
    for i, beta in enumerate(betas.double()):
        for j, alpha in enumerate(alphas.double()):
            w = w0 + alpha * u + beta * v
            assert result.loss[i, j].item() == pytest.approx(((x @ w - y[:, 0]) ** 2).mean().item(), rel=1e-12)


def test_surface_reports_accuracy_for_classification():
    model = bn_cnn()
    x, y = image_batch()
    d1, d2 = L.random_direction(model, seed=1), L.random_direction(model, seed=2)
    result = L.surface(model, CE, (x, y), d1, d2, [0.0, 0.5], [0.0])
    line = L.loss_along(model, CE, (x, y), d1, [0.0, 0.5])
    torch.testing.assert_close(result.loss[0], line.loss, rtol=1e-6, atol=0)
    torch.testing.assert_close(result.accuracy[0], line.accuracy)


# ----------------------------------------------------------------------------- trajectory PCA


def test_trajectory_pca_recovers_a_known_plane():
    gen = torch.Generator().manual_seed(0)
    dim = 30
    basis, _ = torch.linalg.qr(torch.randn(dim, 2, generator=gen, dtype=torch.float64))
    final = torch.randn(dim, generator=gen, dtype=torch.float64)
    coords = torch.randn(8, 2, generator=gen, dtype=torch.float64) * torch.tensor([3.0, 1.0], dtype=torch.float64)
    coords[-1] = 0.0
    snapshots = [final + basis @ c for c in coords]
    plane = L.trajectory_pca(snapshots)
    d1, d2 = plane.directions
    found = torch.stack([d1, d2], dim=1)
    torch.testing.assert_close(found.T @ found, torch.eye(2, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(found @ found.T, basis @ basis.T, rtol=0, atol=1e-10)  # same plane
    for w, c in zip(snapshots, plane.coordinates):
        torch.testing.assert_close(final + c[0] * d1 + c[1] * d2, w, rtol=0, atol=1e-10)
    assert plane.explained_variance_ratio.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert plane.explained_variance_ratio[0] >= plane.explained_variance_ratio[1]
    assert (plane.coordinates[0] >= 0).all() and torch.equal(plane.coordinates[-1], torch.zeros(2, dtype=torch.float64))


def test_trajectory_pca_explained_variance_matches_known_components():
    gen = torch.Generator().manual_seed(1)
    dim, n = 12, 7
    axes, _ = torch.linalg.qr(torch.randn(dim, 3, generator=gen, dtype=torch.float64))
    # Coefficients along the three axes: orthogonal, zero-mean, norms 3, 2, 1 -> variances 9 : 4 : 1.
    free = torch.cat([torch.ones(n - 1, 1, dtype=torch.float64), torch.randn(n - 1, 3, generator=gen, dtype=torch.float64)], 1)
    q, _ = torch.linalg.qr(free)
    coefficients = q[:, 1:] * torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)
    final = torch.randn(dim, generator=gen, dtype=torch.float64)
    snapshots = [final + axes @ c for c in coefficients] + [final]
    plane = L.trajectory_pca(snapshots)
    torch.testing.assert_close(plane.explained_variance_ratio, torch.tensor([9 / 14, 4 / 14], dtype=torch.float64))
    assert plane.explained_variance_ratio.sum() < 1
    torch.testing.assert_close(plane.directions[0].abs(), axes[:, 0].abs(), rtol=0, atol=1e-10)


def test_trajectory_pca_centers_the_offsets_like_li_et_al():
    # Offsets t_i e1 + s_i e2 with t = 4, 3, 2, 1 (mean 2.5, spread 5) and s = 1, -1, -1, 1 (orthogonal to t - 2.5; spread 4):
    # centered PCA gives ratios 5/9 and 4/9 (uncentered would give 30/34 and 4/34).
    e = torch.eye(5, dtype=torch.float64)
    final = torch.arange(5, dtype=torch.float64)
    snapshots = [final + t * e[0] + s * e[1] for t, s in zip((4, 3, 2, 1), (1, -1, -1, 1))] + [final]
    plane = L.trajectory_pca(snapshots)
    torch.testing.assert_close(plane.explained_variance_ratio, torch.tensor([5 / 9, 4 / 9], dtype=torch.float64))
    torch.testing.assert_close(plane.coordinates[:, 0], torch.tensor([4.0, 3, 2, 1, 0], dtype=torch.float64))


def test_trajectory_pca_with_a_model_takes_state_dicts_and_returns_structured_directions():
    model = bn_cnn()
    names = [n for n, _ in model.named_parameters()]
    gen = torch.Generator().manual_seed(2)
    states = []
    for _ in range(4):
        state = {k: v.clone() for k, v in model.state_dict().items()}
        for k in names:
            state[k] = state[k] + 0.1 * torch.randn(state[k].shape, generator=gen)
        state["features.1.running_mean"] += 5.0  # buffers must be ignored
        states.append(state)
    flat = [torch.cat([s[k].reshape(-1) for k in names]) for s in states]
    from_states = L.trajectory_pca(states, model=model)
    from_flat = L.trajectory_pca(flat)
    torch.testing.assert_close(from_states.coordinates, from_flat.coordinates, rtol=0, atol=1e-6)
    for direction, vector in zip(from_states.directions, from_flat.directions):
        assert [d.shape for d in direction] == [p.shape for p in model.parameters()]
        torch.testing.assert_close(torch.cat([d.reshape(-1) for d in direction]), vector.float())
    L.surface(model, CE, image_batch(), *from_states.directions, [0.0], [0.0])  # usable as directions


# ----------------------------------------------------------------------------- errors


def test_bad_arguments_raise_value_errors_naming_them():
    model = linear_model()
    data = regression()
    good = [torch.ones(1, 2, dtype=torch.float64)]
    cases = [
        ("seed", lambda: L.random_direction(model, seed=-1)),
        ("direction", lambda: L.loss_along(model, MSE, data, [torch.ones(2)], [0.0])),
        ("direction", lambda: L.loss_along(model, MSE, data, torch.ones(3), [0.0])),
        ("alphas", lambda: L.loss_along(model, MSE, data, good, [])),
        ("alphas", lambda: L.loss_along(model, MSE, data, good, [float("nan")])),
        ("d2", lambda: L.surface(model, MSE, data, good, [torch.ones(2, 1)], [0.0], [0.0])),
        ("betas", lambda: L.surface(model, MSE, data, good, good, [0.0], "x")),
        ("state_b", lambda: L.interpolate(model, model.state_dict(), {"w": torch.ones(1)}, MSE, data, [0.0])),
        ("snapshots", lambda: L.trajectory_pca([torch.ones(3), torch.zeros(3)])),
        ("model", lambda: L.trajectory_pca([model.state_dict()] * 3)),
        ("variance", lambda: L.trajectory_pca([torch.ones(3)] * 3)),
    ]
    for name, call in cases:
        with pytest.raises(ValueError, match=name):
            call()
