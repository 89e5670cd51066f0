"""Tests for the many-starts helpers of sam_course.planar (chapter 6).

Oracles: run_optimizer run separately from each start (run_from_starts must give the same paths),
pytorch-optimizer's SAM as a peer implementation, hand-computed grids and distances, and
closed-form Hessians (a quadratic with a cross term, Himmelblau's polynomial).
"""

import math

import pytest
import torch

from sam_course import planar as fn
from sam_course.optim import SAM

SHARP, FLAT = fn.SHARP_FLAT.sharp_minimum, fn.SHARP_FLAT.flat_minimum


def quadratic_with_cross_term(a, b, c):
    """f = (a x² + b y²) / 2 + c x y on [-5, 5]², Hessian [[a, c], [c, b]] everywhere."""
    return fn.TestFunction(
        name="quadratic",
        f=lambda p: 0.5 * (a * p[..., 0] ** 2 + b * p[..., 1] ** 2) + c * p[..., 0] * p[..., 1],
        domain=((-5.0, 5.0), (-5.0, 5.0)),
        minima=((0.0, 0.0),),
        min_value=0.0,
    )


# --------------------------------------------------------------------------
# start_grid
# --------------------------------------------------------------------------

def test_start_grid_cell_centres_x_fastest():
    starts = fn.start_grid(fn.SHARP_FLAT, 3, window=((0.0, 3.0), (-3.0, 3.0)))
    expected = torch.tensor(
        [[x, y] for y in (-2.0, 0.0, 2.0) for x in (0.5, 1.5, 2.5)], dtype=torch.float64
    )
    assert torch.equal(starts, expected)
    # Rows follow y, columns follow x, as in grid() and matplotlib.
    square = starts.reshape(3, 3, 2)
    assert torch.equal(square[0, :, 0], torch.tensor([0.5, 1.5, 2.5], dtype=torch.float64))
    assert torch.equal(square[:, 0, 1], torch.tensor([-2.0, 0.0, 2.0], dtype=torch.float64))


def test_start_grid_default_window_is_the_domain_interior():
    starts = fn.start_grid(fn.EGGHOLDER, 4)
    assert starts.shape == (16, 2)
    # Centres of four cells of width 256: -384, -128, 128, 384 on each axis.
    assert sorted(set(starts[:, 0].tolist())) == [-384.0, -128.0, 128.0, 384.0]
    assert fn.start_grid(fn.EASOM, 1).tolist() == [[0.0, 0.0]]


@pytest.mark.parametrize("n", [0, -1, 2.5, True, "3"])
def test_start_grid_bad_n(n):
    with pytest.raises(ValueError, match="n must"):
        fn.start_grid(fn.EASOM, n)


@pytest.mark.parametrize(
    "window",
    [((0.0, 200.0), (0.0, 1.0)), ((1.0, 0.0), (0.0, 1.0)), ((0.0, 1.0), (2.0, 2.0)), (0.0, 1.0), "box"],
)
def test_start_grid_bad_window(window):
    with pytest.raises(ValueError, match="window"):
        fn.start_grid(fn.EASOM, 3, window=window)


# --------------------------------------------------------------------------
# optimizer_factory
# --------------------------------------------------------------------------

def test_optimizer_factory_builds_the_named_optimizers():
    param = torch.nn.Parameter(torch.zeros(2))
    adagrad = fn.optimizer_factory("Adagrad", 0.3)([param])
    assert type(adagrad) is torch.optim.Adagrad and adagrad.param_groups[0]["lr"] == 0.3
    sam = fn.optimizer_factory("SAM-SGD", 0.1, rho=0.2, momentum=0.9)([param])
    assert isinstance(sam, SAM) and type(sam.base_optimizer) is torch.optim.SGD
    group = sam.param_groups[0]
    assert (group["rho"], group["lr"], group["momentum"]) == (0.2, 0.1, 0.9)
    assert type(fn.optimizer_factory("SAM-Adam", 0.01)([param]).base_optimizer) is torch.optim.Adam


@pytest.mark.parametrize("label", ["adagrad", "SAM", "SAM-LBFGS", "SAM_Adagrad", 3])
def test_optimizer_factory_bad_label(label):
    with pytest.raises(ValueError, match="label"):
        fn.optimizer_factory(label, 0.1)


@pytest.mark.parametrize("lr", [0.0, -0.1, float("nan"), float("inf"), True])
def test_optimizer_factory_bad_lr(lr):
    with pytest.raises(ValueError, match="lr"):
        fn.optimizer_factory("SGD", lr)


@pytest.mark.parametrize("rho", [-0.1, float("nan"), float("inf"), False])
def test_optimizer_factory_bad_rho(rho):
    with pytest.raises(ValueError, match="rho"):
        fn.optimizer_factory("SAM-SGD", 0.1, rho=rho)


# --------------------------------------------------------------------------
# run_from_starts
# --------------------------------------------------------------------------

CASES = [
    (fn.SHARP_FLAT, "Adagrad", 0.5, 0.0, {}),
    (fn.SHARP_FLAT, "SAM-Adagrad", 0.5, 0.4, {}),
    (fn.SHARP_FLAT, "SAM-SGD", 0.02, 0.3, {"momentum": 0.9}),
    (fn.SHARP_FLAT, "Adam", 0.05, 0.0, {}),
    # Starts near the faces with a large step: the projection acts.
    (fn.EGGHOLDER, "SAM-Adagrad", 20.0, 10.0, {}),
    (fn.EGGHOLDER, "SGD", 5.0, 0.0, {}),
]


@pytest.mark.parametrize("function, label, lr, rho, extra", CASES, ids=[f"{c[0].name}-{c[1]}" for c in CASES])
def test_run_from_starts_matches_separate_runs(function, label, lr, rho, extra):
    steps = 25
    if function is fn.EGGHOLDER:
        starts = torch.tensor([[505.0, 400.0], [-510.0, -505.0], [0.0, 0.0], [300.0, -400.0]], dtype=torch.float64)
    else:
        starts = fn.start_grid(function, 3, window=((-2.5, 2.5), (-1.0, 1.0)))
    factory = fn.optimizer_factory(label, lr, rho=rho, **extra)
    paths = fn.run_from_starts(function, starts, factory, steps)
    assert paths.shape == (len(starts), steps + 1, 2) and paths.dtype == torch.float64
    for start, path in zip(starts, paths):
        alone = fn.run_optimizer(function, start, factory, steps)
        torch.testing.assert_close(path, alone, atol=1e-10, rtol=0)
    if function is fn.EGGHOLDER and label == "SGD":
        assert paths.abs().max().item() == 512.0  # some run was clamped onto a face


def test_run_from_starts_runs_are_independent_of_each_other():
    # A single SAM over an (N, 2) tensor would normalise by a joint norm; here a start's path
    # must not change when other starts join the batch.
    factory = fn.optimizer_factory("SAM-Adagrad", 0.5, rho=0.3)
    one = fn.run_from_starts(fn.SHARP_FLAT, [[-1.2, 0.3]], factory, 30)
    many = fn.run_from_starts(fn.SHARP_FLAT, [[2.5, -2.5], [-1.2, 0.3], [0.0, 2.0]], factory, 30)
    torch.testing.assert_close(many[1], one[0], atol=1e-12, rtol=0)
    shared = torch.nn.Parameter(torch.tensor([[2.5, -2.5], [-1.2, 0.3], [0.0, 2.0]], dtype=torch.float64))
    coupled = factory([shared])
    for _ in range(30):
        coupled.step(lambda: fn.SHARP_FLAT.f(shared).sum().backward())
    assert (shared[1].detach() - many[1, -1]).abs().max() > 1e-3  # the coupled version differs


def test_run_from_starts_with_a_peer_sam_implementation():
    pytorch_optimizer = pytest.importorskip("pytorch_optimizer")
    rho, lr, steps = 0.3, 0.5, 40

    def peer(params):
        return pytorch_optimizer.SAM(params, torch.optim.Adagrad, rho=rho, lr=lr)

    starts = [[-1.3, 0.2], [0.5, -0.5], [2.0, 1.0]]
    ours = fn.run_from_starts(fn.SHARP_FLAT, starts, fn.optimizer_factory("SAM-Adagrad", lr, rho=rho), steps)
    theirs = fn.run_from_starts(fn.SHARP_FLAT, starts, peer, steps)
    # The peer takes the gradient norm in float32 (relative error ~1e-8, grown to ~1e-7 by 40
    # steps); a wrong perturbation would be off by O(rho) = 0.3.
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)


def test_run_from_starts_zero_steps_and_dtype():
    paths = fn.run_from_starts(fn.EASOM, [[1.0, 2.0], [3.0, 4.0]], fn.optimizer_factory("SGD", 0.1), 0,
                               dtype=torch.float32)
    assert paths.dtype == torch.float32 and paths.tolist() == [[[1.0, 2.0]], [[3.0, 4.0]]]


@pytest.mark.parametrize(
    "starts",
    [[1.0, 2.0], [[1.0, 2.0, 3.0]], torch.zeros(0, 2), [[600.0, 0.0]], [[float("nan"), 0.0]]],
    ids=["one-point", "three-columns", "empty", "outside", "nan"],
)
def test_run_from_starts_bad_starts(starts):
    with pytest.raises(ValueError, match="starts"):
        fn.run_from_starts(fn.EGGHOLDER, starts, fn.optimizer_factory("SGD", 0.1), 3)


def test_run_from_starts_other_errors():
    sgd = fn.optimizer_factory("SGD", 0.1)
    with pytest.raises(ValueError, match="steps"):
        fn.run_from_starts(fn.EASOM, [[0.0, 0.0]], sgd, -1)
    with pytest.raises(ValueError, match="function"):
        fn.run_from_starts("easom", [[0.0, 0.0]], sgd, 3)
    with pytest.raises(ValueError, match="dtype"):
        fn.run_from_starts(fn.EASOM, [[0.0, 0.0]], sgd, 3, dtype=torch.int32)
    with pytest.raises(ValueError, match="L-BFGS"):
        fn.run_from_starts(fn.EASOM, [[0.0, 0.0]], lambda p: torch.optim.LBFGS(p), 3)


# --------------------------------------------------------------------------
# distances and classification
# --------------------------------------------------------------------------

def test_distance_to_minima_by_hand():
    points = torch.tensor([[3.0, 4.0], [0.0, 0.0]], dtype=torch.float64)
    d = fn.distance_to_minima(fn.HIMMELBLAU, points, minima=[(0.0, 0.0), (3.0, 0.0)])
    torch.testing.assert_close(d, torch.tensor([[5.0, 4.0], [0.0, 3.0]], dtype=torch.float64))
    # Default: the function's own global minima; here the one of Easom at (pi, pi).
    (d_easom,) = fn.distance_to_minima(fn.EASOM, torch.tensor([[math.pi, 0.0]])).tolist()
    assert d_easom == pytest.approx([math.pi])


def test_classify_endpoints_nearest_and_radius():
    minima = (SHARP, FLAT)
    # Distances to (sharp, flat): (0.14, 2.80), (2.99, 0.22), (0.50, 2.40), (3.33, 3.34).
    ends = torch.tensor([[-1.4, 0.1], [1.5, -0.2], [-1.0, 0.0], [-0.05, 3.0]], dtype=torch.float64)
    assert fn.classify_endpoints(fn.SHARP_FLAT, ends, minima).tolist() == [0, 1, 0, 0]
    assert fn.classify_endpoints(fn.SHARP_FLAT, ends, minima, radius=0.3).tolist() == [0, 1, -1, -1]
    assert fn.classify_endpoints(fn.SHARP_FLAT, ends, minima, radius=0.5).tolist() == [0, 1, 0, -1]
    # Shape (...) follows the input; the default minima are the global ones (index 0 only).
    assert fn.classify_endpoints(fn.SHARP_FLAT, ends.reshape(4, 1, 2), minima).shape == (4, 1)
    assert fn.classify_endpoints(fn.SHARP_FLAT, ends).tolist() == [0, 0, 0, 0]


def test_classify_endpoints_tie_goes_to_the_lower_index():
    ends = torch.tensor([[0.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    minima = [(1.0, 0.0), (-1.0, 0.0)]
    assert fn.classify_endpoints(fn.SHARP_FLAT, ends, minima).tolist() == [0, 0]


@pytest.mark.parametrize("radius", [0.0, -1.0, float("nan"), True])
def test_classify_endpoints_bad_radius(radius):
    with pytest.raises(ValueError, match="radius"):
        fn.classify_endpoints(fn.SHARP_FLAT, torch.zeros(1, 2), radius=radius)


@pytest.mark.parametrize("minima", [[], [1.0, 2.0], [[1.0, 2.0, 3.0]]])
def test_bad_minima(minima):
    with pytest.raises(ValueError, match="minima"):
        fn.distance_to_minima(fn.SHARP_FLAT, torch.zeros(1, 2), minima=minima)


# --------------------------------------------------------------------------
# Hessian eigenvalues
# --------------------------------------------------------------------------

def test_hessian_eigenvalues_of_a_quadratic():
    a, b, c = 3.0, 1.0, 2.0
    points = fn.start_grid(fn.EASOM, 2, window=((-4.0, 4.0), (-4.0, 4.0))).reshape(2, 2, 2)
    eig = fn.hessian_eigenvalues(quadratic_with_cross_term(a, b, c), points)
    mean, half_gap = (a + b) / 2, math.sqrt(((a - b) / 2) ** 2 + c**2)
    expected = torch.tensor([mean - half_gap, mean + half_gap], dtype=torch.float64).expand(2, 2, 2)
    torch.testing.assert_close(eig, expected, atol=1e-12, rtol=0)


def test_hessian_eigenvalues_of_himmelblau_against_its_formula():
    points = torch.tensor([[0.5, -1.0], [3.0, 2.0], [-2.0, 4.0], [1.7, 0.3]], dtype=torch.float64)
    x, y = points[:, 0], points[:, 1]
    hxx, hyy, hxy = 12 * x**2 + 4 * y - 42, 12 * y**2 + 4 * x - 26, 4 * x + 4 * y
    exact = torch.linalg.eigvalsh(torch.stack([torch.stack([hxx, hxy], -1), torch.stack([hxy, hyy], -1)], -2))
    torch.testing.assert_close(fn.hessian_eigenvalues(fn.HIMMELBLAU, points), exact, atol=1e-10, rtol=0)


def test_sharp_flat_curvatures_as_documented():
    eig = fn.hessian_eigenvalues(fn.SHARP_FLAT, torch.tensor([SHARP, FLAT], dtype=torch.float64))
    assert eig[0, 1].item() == pytest.approx(44.5, abs=0.1)
    assert eig[1, 1].item() == pytest.approx(1.50, abs=0.01)
    assert (eig > 0).all()  # both are minima


# --------------------------------------------------------------------------
# run_bruteforce_sam
# --------------------------------------------------------------------------

def isotropic_quadratic():
    """f = |w|² / 2: the worst point of a disk is on its edge, along w, as first-order SAM assumes."""
    return quadratic_with_cross_term(1.0, 1.0, 0.0)


def test_bruteforce_sam_equals_first_order_sam_where_they_agree():
    # On |w|²/2 the disk's maximum is w + rho w / |w| exactly; starts on the axes put that
    # direction on the grid of angles (a multiple of 4 of them), so the two SAMs coincide.
    f, rho, lr, steps = isotropic_quadratic(), 0.3, 0.1, 20
    starts = torch.tensor([[2.0, 0.0], [0.0, -3.0]], dtype=torch.float64)
    brute = fn.run_bruteforce_sam(f, starts, fn.optimizer_factory("SGD", lr), rho, steps, n_angles=16, n_radii=3)
    first_order = fn.run_from_starts(f, starts, fn.optimizer_factory("SAM-SGD", lr, rho=rho), steps)
    torch.testing.assert_close(brute, first_order, atol=1e-12, rtol=0)


def test_bruteforce_sam_with_rho_zero_is_the_base_optimizer():
    starts = fn.start_grid(fn.SHARP_FLAT, 2)
    brute = fn.run_bruteforce_sam(fn.SHARP_FLAT, starts, fn.optimizer_factory("Adagrad", 0.5), 0.0, 15)
    plain = fn.run_from_starts(fn.SHARP_FLAT, starts, fn.optimizer_factory("Adagrad", 0.5), 15)
    torch.testing.assert_close(brute, plain, atol=1e-12, rtol=0)


def test_bruteforce_sam_finds_a_peak_inside_the_disk():
    # f = -|w|²: the maximum of the disk around (0.5, 0) with rho = 1 is the origin, an interior
    # candidate (ring 4 of 8, angle pi), where the gradient is zero: the point must not move.
    # A search of the edge only would step away.
    f = fn.TestFunction("cap", lambda p: -(p**2).sum(-1), ((-5.0, 5.0), (-5.0, 5.0)), ((5.0, 5.0),), -50.0)
    path = fn.run_bruteforce_sam(f, [[0.5, 0.0]], fn.optimizer_factory("SGD", 0.1), 1.0, 5, n_angles=8, n_radii=8)
    # (sin(pi) is 1e-16 in floating point, hence the tolerance; an edge-only search moves by ~0.2.)
    torch.testing.assert_close(path[0, -1], torch.tensor([0.5, 0.0], dtype=torch.float64), atol=1e-12, rtol=0)


def test_bruteforce_sam_runs_are_independent_and_projected():
    factory = fn.optimizer_factory("Adagrad", 20.0)
    starts = torch.tensor([[505.0, 400.0], [-300.0, 100.0]], dtype=torch.float64)
    both = fn.run_bruteforce_sam(fn.EGGHOLDER, starts, factory, 20.0, 15)
    alone = fn.run_bruteforce_sam(fn.EGGHOLDER, starts[1:], factory, 20.0, 15)
    torch.testing.assert_close(both[1], alone[0], atol=1e-12, rtol=0)
    assert both.abs().max().item() <= 512.0


def test_bruteforce_sam_errors():
    sgd = fn.optimizer_factory("SGD", 0.1)
    with pytest.raises(ValueError, match="element-wise"):
        fn.run_bruteforce_sam(fn.EASOM, [[0.0, 0.0]], fn.optimizer_factory("SAM-SGD", 0.1), 0.1, 3)
    for kwargs, name in [({"rho": -1.0}, "rho"), ({"rho": float("nan")}, "rho"), ({"steps": -1}, "steps"),
                         ({"n_angles": 0}, "n_angles"), ({"n_radii": 0}, "n_radii")]:
        args = {"rho": 0.1, "steps": 3} | kwargs
        with pytest.raises(ValueError, match=name):
            fn.run_bruteforce_sam(fn.EASOM, [[0.0, 0.0]], sgd, **args)
    with pytest.raises(ValueError, match="starts"):
        fn.run_bruteforce_sam(fn.EASOM, [[500.0, 0.0]], sgd, 0.1, 3)
