"""Tests for sam_course.planar.functions and .points: values, gradients, brute-force minima, grids, boxes.

Oracles: values by hand, finite differences, Newton's method, a 1025 x 1025 grid search, and
brute-force maxima over disks.
"""

import dataclasses
import math

import pytest
import torch

from sam_course import planar as fn
from sam_course.planar.points import as_points, as_starts, box_bounds, check_dtype

ALL = list(fn.FUNCTIONS.values())
IDS = list(fn.FUNCTIONS)


def as_point(xy):
    return torch.tensor(xy, dtype=torch.float64)


# --------------------------------------------------------------------------
# values and minima
# --------------------------------------------------------------------------

def test_registry():
    assert set(fn.FUNCTIONS) >= {"easom", "eggholder", "sharp_flat"}
    assert len(fn.FUNCTIONS) >= 5
    assert fn.FUNCTIONS["easom"] is fn.EASOM
    assert fn.FUNCTIONS["eggholder"] is fn.EGGHOLDER
    assert len(fn.HIMMELBLAU.minima) == 4
    with pytest.raises(dataclasses.FrozenInstanceError):
        fn.EASOM.min_value = 0.0


@pytest.mark.parametrize("function", ALL, ids=IDS)
def test_value_at_stated_minima(function):
    # Eggholder's point and value are the published 4-decimal figures.
    tol = 1e-4 if function is fn.EGGHOLDER else 1e-12
    for point in function.minima:
        assert function(as_point(point)).item() == pytest.approx(function.min_value, abs=tol)


def test_known_values_by_hand():
    assert fn.EASOM(as_point((0.0, 0.0))).item() == pytest.approx(-math.exp(-2 * math.pi**2))
    assert fn.ROSENBROCK(as_point((0.0, 0.0))).item() == 1.0
    assert fn.HIMMELBLAU(as_point((0.0, 0.0))).item() == 170.0
    assert fn.RASTRIGIN(as_point((0.5, 0.5))).item() == pytest.approx(40.5)
    # Eggholder at the origin: -47 sin(sqrt(47)).
    assert fn.EGGHOLDER(as_point((0.0, 0.0))).item() == pytest.approx(-47 * math.sin(math.sqrt(47)))


@pytest.mark.parametrize("function", ALL, ids=IDS)
def test_gradient_vanishes_at_interior_minima(function):
    (xmin, xmax), (ymin, ymax) = function.domain
    for point in function.minima:
        x, y = point
        if x in (xmin, xmax) or y in (ymin, ymax):
            continue
        assert function.grad(as_point(point)).abs().max().item() < 1e-8


def test_eggholder_boundary_minimum_satisfies_kkt():
    # At x = xmax the minimum needs df/dx <= 0 (f would keep falling beyond the
    # box) and df/dy = 0 up to the 4-decimal rounding of the published y.
    gx, gy = fn.EGGHOLDER.grad(as_point(fn.EGGHOLDER.minima[0])).tolist()
    assert gx < -1.0
    assert abs(gy) < 1e-3


def central_differences(function, points, h=1e-5):
    grads = torch.empty_like(points)
    for axis in range(2):
        step = torch.zeros(2, dtype=points.dtype)
        step[axis] = h
        grads[..., axis] = (function(points + step) - function(points - step)) / (2 * h)
    return grads


@pytest.mark.parametrize("function", ALL, ids=IDS)
def test_autograd_matches_finite_differences(function):
    generator = torch.Generator().manual_seed(0)
    (xmin, xmax), (ymin, ymax) = function.domain
    unit = torch.rand(200, 2, generator=generator, dtype=torch.float64)
    points = torch.stack(
        (xmin + (xmax - xmin) * unit[:, 0], ymin + (ymax - ymin) * unit[:, 1]), dim=-1
    )
    if function is fn.EGGHOLDER:
        # Away from the cusps of sqrt(|u|), where finite differences are meaningless.
        x, y = points[:, 0], points[:, 1]
        keep = ((x / 2 + y + 47).abs() > 1) & ((x - y - 47).abs() > 1)
        points = points[keep]
        assert len(points) > 150
    numeric = central_differences(function, points)
    analytic = function.grad(points)
    assert analytic.shape == points.shape
    scale = 1.0 + numeric.abs()
    assert ((analytic - numeric).abs() / scale).max().item() < 1e-6


def test_grad_is_batched_pointwise():
    points = torch.randn(4, 3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    batched = fn.HIMMELBLAU.grad(points)
    assert batched.shape == (4, 3, 2)
    for i in range(4):
        for j in range(3):
            torch.testing.assert_close(batched[i, j], fn.HIMMELBLAU.grad(points[i, j]))
    # And by hand at one point: df/dx = 4x(x²+y-11) + 2(x+y²-7).
    x, y = points[0, 0].tolist()
    expected = [
        4 * x * (x * x + y - 11) + 2 * (x + y * y - 7),
        2 * (x * x + y - 11) + 4 * y * (x + y * y - 7),
    ]
    torch.testing.assert_close(batched[0, 0], as_point(expected))


def test_eggholder_gradient_finite_on_cusps():
    # u = x/2 + y + 47 = 0 and x - y - 47 = 0 both hold at (0, -47).
    cusps = as_point([[0.0, -47.0], [100.0, -97.0], [100.0, 53.0], [-512.0, 209.0]])
    assert torch.isfinite(fn.EGGHOLDER.grad(cusps)).all()
    # The value there is untouched by the floor to within 1e-6 per term.
    assert fn.EGGHOLDER(cusps[0]).abs().item() < 1e-4


@pytest.mark.parametrize("function", ALL, ids=IDS)
def test_grid_search_finds_nothing_below_min_value(function):
    # Brute-force oracle: a 1025 x 1025 grid over the domain.
    X, Y, Z = fn.grid(function, 1025)
    assert Z.min().item() >= function.min_value - 1e-9
    # ...and the grid's best point sits next to one of the stated minimizers,
    # so the stated minimum is the global one, not merely a local one.
    index = Z.argmin()
    best = torch.stack((X.flatten()[index], Y.flatten()[index]))
    spacing = max(hi - lo for lo, hi in function.domain) / 1024
    distance = min((best - as_point(m)).norm().item() for m in function.minima)
    assert distance < 2 * spacing


def test_grid_layout_matches_matplotlib_convention():
    X, Y, Z = fn.grid(fn.ROSENBROCK, 5)
    assert X.shape == Y.shape == Z.shape == (5, 5)
    assert X[0].tolist() == [-2.0, -1.0, 0.0, 1.0, 2.0]  # columns follow x
    assert Y[:, 0].tolist() == [-1.0, 0.0, 1.0, 2.0, 3.0]  # rows follow y
    assert Z[2, 3].item() == fn.ROSENBROCK(as_point((1.0, 1.0))).item()


def test_grid_over_a_window_reaching_outside_the_domain():
    # SHARP_FLAT's domain is [-3, 3]²; a view window may reach beyond it.
    X, Y, Z = fn.grid(fn.SHARP_FLAT, 3, window=((-4, 2), (0.0, 5.0)))
    assert X[0].tolist() == [-4.0, -1.0, 2.0]
    assert Y[:, 0].tolist() == [0.0, 2.5, 5.0]
    points = torch.tensor([[x, y] for y in (0.0, 2.5, 5.0) for x in (-4.0, -1.0, 2.0)], dtype=torch.float64)
    assert torch.equal(Z, fn.SHARP_FLAT(points).reshape(3, 3))
    # The default window is the domain itself.
    for a, b in zip(fn.grid(fn.EASOM, 4), fn.grid(fn.EASOM, 4, window=fn.EASOM.domain)):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="window"):
        fn.grid(fn.EASOM, 4, window=((1.0, 0.0), (0.0, 1.0)))


# --------------------------------------------------------------------------
# SHARP_FLAT
# --------------------------------------------------------------------------

def test_sharp_flat_minima_are_stationary_and_stored_precisely():
    F = fn.SHARP_FLAT
    for point, value in ((F.sharp_minimum, F.sharp_value), (F.flat_minimum, F.flat_value)):
        assert F.grad(as_point(point)).abs().max().item() < 1e-12
        assert F(as_point(point)).item() == pytest.approx(value, abs=1e-15)
    assert F.minima == (F.sharp_minimum,)
    assert F.min_value == F.sharp_value
    # The sharp minimum is the deeper one, but only slightly.
    assert 0.0 < F.flat_value - F.sharp_value < 0.2


def test_sharp_flat_minima_by_newton():
    # Re-derive both minimizers from the wells' centres with Newton's method.
    F = fn.SHARP_FLAT
    for start, stored in (((-1.5, 0.0), F.sharp_minimum), ((1.5, 0.0), F.flat_minimum)):
        point = as_point(start)
        for _ in range(30):
            hessian = torch.autograd.functional.hessian(F.f, point)
            point = point - torch.linalg.solve(hessian, F.grad(point))
        torch.testing.assert_close(point, as_point(stored), atol=1e-12, rtol=0)


def test_sharp_flat_curvatures():
    F = fn.SHARP_FLAT
    sharp = torch.linalg.eigvalsh(torch.autograd.functional.hessian(F.f, as_point(F.sharp_minimum)))
    flat = torch.linalg.eigvalsh(torch.autograd.functional.hessian(F.f, as_point(F.flat_minimum)))
    assert sharp.min() > 0 and flat.min() > 0  # both are minima
    assert sharp.max() > 20 * flat.max()


def ball_max(function, center, rho):
    """Brute-force max of function over the disk of radius rho around center."""
    r = torch.linspace(0, rho, 101, dtype=torch.float64)
    theta = torch.linspace(0, 2 * math.pi, 721, dtype=torch.float64)
    R, T = torch.meshgrid(r, theta, indexing="ij")
    points = torch.stack((center[0] + R * torch.cos(T), center[1] + R * torch.sin(T)), dim=-1)
    return function(points).max().item()


def test_sharp_flat_worst_case_criterion_prefers_flat():
    F = fn.SHARP_FLAT
    for rho in (0.1, 0.2, 0.5):
        assert ball_max(F, F.flat_minimum, rho) < ball_max(F, F.sharp_minimum, rho)


def test_gradient_descent_stays_in_sharp_minimum():
    F = fn.SHARP_FLAT
    path = fn.run_optimizer(F, (-1.4, 0.1), lambda p: torch.optim.SGD(p, lr=0.02), steps=300)
    torch.testing.assert_close(path[-1], as_point(F.sharp_minimum), atol=1e-6, rtol=0)


# --------------------------------------------------------------------------
# points, boxes and errors
# --------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(3,), (4, 3), (2, 2, 1), ()])
def test_bad_point_shapes(shape):
    xy = torch.zeros(shape)
    with pytest.raises(ValueError, match="xy"):
        fn.EASOM(xy)
    with pytest.raises(ValueError, match="xy"):
        fn.EASOM.grad(xy)


@pytest.mark.parametrize("n", [1, 0, 2.5, True])
def test_bad_grid_size(n):
    with pytest.raises(ValueError, match="n must"):
        fn.grid(fn.EASOM, n)


def test_grid_size_message_names_range_and_value():
    with pytest.raises(ValueError, match=r"^n must be an int >= 2, got 1$"):
        fn.grid(fn.EASOM, 1)


def test_bad_function_definitions():
    with pytest.raises(ValueError, match="domain"):
        fn.TestFunction("bad", fn.EASOM.f, ((1.0, -1.0), (0.0, 1.0)), ((0.0, 0.5),), 0.0)
    with pytest.raises(ValueError, match="minima"):
        fn.TestFunction("bad", fn.EASOM.f, ((0.0, 1.0), (0.0, 1.0)), ((2.0, 0.5),), 0.0)


def test_check_function():
    assert fn.check_function(fn.EASOM) is fn.EASOM
    with pytest.raises(ValueError, match=r"^function must be a sam_course.planar.TestFunction, got 'easom' \(str\)$"):
        fn.check_function("easom")


def test_parse_box_reads_two_increasing_pairs():
    box = fn.parse_box([(0, 1), torch.tensor([2.0, 3.5])])
    assert box == ((0.0, 1.0), (2.0, 3.5))
    assert all(type(v) is float for pair in box for v in pair)


@pytest.mark.parametrize(
    "window, reason",
    [((0.0, 1.0), r"\(\(xmin, xmax\), \(ymin, ymax\)\)"), ("box", r"\(\(xmin"), (((0, "a"), (0, 1)), r"\(\(xmin"),
     (((1.0, 0.0), (0.0, 1.0)), "xmin < xmax"), (((0.0, 1.0), (2.0, 2.0)), "ymin < ymax"),
     (((0.0, float("nan")), (0.0, 1.0)), "xmin < xmax")],
)
def test_parse_box_errors_name_the_argument_and_the_value(window, reason):
    with pytest.raises(ValueError, match=r"^view must .*" + reason) as info:
        fn.parse_box(window, name="view")
    assert str(info.value).endswith(f"got {window!r}")


def test_as_points_and_as_starts():
    assert as_points([[1, 2]]).dtype == torch.get_default_dtype()
    assert as_points(torch.tensor([3, 4])).tolist() == [3.0, 4.0]
    with pytest.raises(ValueError, match=r"^ends must have shape \(\.\.\., 2\), got \(3,\)$"):
        as_points(torch.zeros(3), "ends")
    source = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    starts = as_starts(fn.EASOM, source, torch.float32)
    assert starts.dtype == torch.float32 and starts.tolist() == [[1.0, 2.0]]
    starts[0, 0] = 9.0
    assert source[0, 0] == 1.0  # a copy: the runners write into it
    with pytest.raises(ValueError, match="starts must lie in the domain"):
        as_starts(fn.EASOM, [[101.0, 0.0]], torch.float64)


def test_box_bounds_and_check_dtype():
    low, high = box_bounds(((-1.0, 2.0), (3.0, 4.0)), torch.float32)
    assert low.tolist() == [-1.0, 3.0] and high.tolist() == [2.0, 4.0] and low.dtype == torch.float32
    assert check_dtype(torch.float64) is torch.float64
    with pytest.raises(ValueError, match="dtype must be a floating torch dtype, got torch.int64"):
        check_dtype(torch.int64)


def test_the_package_re_exports_what_the_chapters_use():
    import importlib
    import types

    # Chapters 1 and 6 (`from sam_course.planar import ...`, `fn.<name>`) and sam_course.plotting.
    used = {"SHARP_FLAT", "EASOM", "EGGHOLDER", "FUNCTIONS", "BASE_LABELS", "hessian_eigenvalues",
            "distance_to_minima", "classify_endpoints", "optimizer_factory", "run_optimizer", "run_from_starts",
            "run_bruteforce_sam", "start_grid", "grid", "parse_box", "check_function", "TestFunction"}
    assert used <= set(fn.__all__)
    for name in fn.__all__:
        home = importlib.import_module(getattr(fn, name).__module__) if callable(getattr(fn, name)) else fn
        assert getattr(home, name) is getattr(fn, name)
    # No re-exported name hides a submodule (`import sam_course.planar.runners as m` is the module).
    for sub in ("functions", "points", "runners", "bruteforce", "endpoints"):
        assert isinstance(getattr(fn, sub), types.ModuleType)
