"""Tests for sam_course.planar.runners: run_optimizer, optimizer_factory, start_grid, run_from_starts.

Oracles: closed-form and hand-recurrence paths on quadratics, run_optimizer run separately from
each start (run_from_starts must give the same paths), pytorch-optimizer's SAM as a peer
implementation, hand-computed grids, and the base-optimizer registry.
"""

import pytest
import torch

from sam_course import base_optimizers
from sam_course import planar as fn
from sam_course.optim import GSAM, SAM


def as_point(xy):
    return torch.tensor(xy, dtype=torch.float64)


def quadratic(a, b):
    """f = (a x² + b y²) / 2 on [-10, 10]², a test function with a closed-form SGD path."""
    return fn.TestFunction(
        name="quadratic",
        f=lambda p: 0.5 * (a * p[..., 0] ** 2 + b * p[..., 1] ** 2),
        domain=((-10.0, 10.0), (-10.0, 10.0)),
        minima=((0.0, 0.0),),
        min_value=0.0,
    )


# --------------------------------------------------------------------------
# run_optimizer
# --------------------------------------------------------------------------

def test_sgd_trajectory_matches_closed_form():
    a, b, lr, steps = 1.0, 4.0, 0.1, 25
    path = fn.run_optimizer(
        quadratic(a, b), (3.0, -2.0), lambda p: torch.optim.SGD(p, lr=lr), steps
    )
    k = torch.arange(steps + 1, dtype=torch.float64)
    expected = torch.stack((3.0 * (1 - lr * a) ** k, -2.0 * (1 - lr * b) ** k), dim=-1)
    assert path.shape == (steps + 1, 2) and path.dtype == torch.float64
    torch.testing.assert_close(path, expected, atol=1e-12, rtol=0)


def test_momentum_trajectory_matches_hand_recurrence():
    a, lr, mu, steps = 2.0, 0.05, 0.9, 20
    path = fn.run_optimizer(
        quadratic(a, a), (1.0, 0.5), lambda p: torch.optim.SGD(p, lr=lr, momentum=mu), steps
    )
    w, v = as_point((1.0, 0.5)), torch.zeros(2, dtype=torch.float64)
    for k in range(steps):
        # torch's heavy ball: v <- mu v + g (v = g on the first step), w <- w - lr v.
        v = mu * v + a * w
        w = w - lr * v
        torch.testing.assert_close(path[k + 1], w, atol=1e-12, rtol=0)


def test_zero_steps_returns_the_start():
    path = fn.run_optimizer(fn.EASOM, (1.0, 2.0), lambda p: torch.optim.SGD(p, lr=1.0), 0)
    assert path.tolist() == [[1.0, 2.0]]


def test_projection_keeps_eggholder_inside_and_matters():
    starts = [(-500.0, 500.0), (0.0, 0.0), (300.0, -400.0), (505.0, 505.0)]
    escaped = False
    for start in starts:
        factory = lambda p: torch.optim.SGD(p, lr=5.0)  # noqa: E731 - deliberately too large
        path = fn.run_optimizer(fn.EGGHOLDER, start, factory, steps=40)
        assert path.abs().max().item() <= 512.0
        free = fn.run_optimizer(fn.EGGHOLDER, start, factory, steps=40, project=False)
        escaped |= free.abs().max().item() > 512.0
    assert escaped  # otherwise this test would not exercise the projection


def test_projected_adagrad_reaches_eggholder_boundary_minimum():
    path = fn.run_optimizer(
        fn.EGGHOLDER, (500.0, 380.0), lambda p: torch.optim.Adagrad(p, lr=5.0), steps=300
    )
    torch.testing.assert_close(path[-1], as_point((512.0, 404.2319)), atol=1e-3, rtol=0)


def test_sam_trajectory_matches_hand_recurrence():
    # On f = a (x² + y²) / 2 the SAM step is w <- w - lr a (w + rho w / |w|).
    a, lr, rho, steps = 1.0, 0.1, 0.05, 20
    path = fn.run_optimizer(
        quadratic(a, a), (1.0, 2.0), lambda p: SAM(p, torch.optim.SGD, rho=rho, lr=lr), steps
    )
    w = as_point((1.0, 2.0))
    for k in range(steps):
        w = w - lr * a * (w + rho * w / w.norm())
        torch.testing.assert_close(path[k + 1], w, atol=1e-10, rtol=0)


def sgd(params):
    return torch.optim.SGD(params, lr=0.1)


@pytest.mark.parametrize("start", [(600.0, 0.0), (0.0, -513.0), (float("nan"), 0.0)])
def test_start_outside_domain(start):
    with pytest.raises(ValueError, match="start"):
        fn.run_optimizer(fn.EGGHOLDER, start, sgd, 5)


@pytest.mark.parametrize("start", [(1.0,), (1.0, 2.0, 3.0), ((1.0, 2.0),)])
def test_start_not_a_point(start):
    with pytest.raises(ValueError, match="start"):
        fn.run_optimizer(fn.EASOM, start, sgd, 5)


@pytest.mark.parametrize("steps", [-1, 2.5, True])
def test_bad_steps(steps):
    with pytest.raises(ValueError, match="steps"):
        fn.run_optimizer(fn.EASOM, (0.0, 0.0), sgd, steps)


def test_bad_function_and_dtype():
    with pytest.raises(ValueError, match="function"):
        fn.run_optimizer(lambda p: p.sum(), (0.0, 0.0), sgd, 5)
    with pytest.raises(ValueError, match="dtype"):
        fn.run_optimizer(fn.EASOM, (0.0, 0.0), sgd, 5, dtype=torch.int64)


def test_steps_message_names_range_and_value():
    with pytest.raises(ValueError, match=r"^steps must be an int >= 0, got -1$"):
        fn.run_optimizer(fn.EASOM, (0.0, 0.0), sgd, -1)


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

def test_base_labels_are_the_registry_display_names():
    assert fn.BASE_LABELS == base_optimizers.display_names() == ("SGD", "Adam", "Adagrad")
    assert fn.SAM_PREFIXES == ("SAM", "USAM", "GSAM")
    param = torch.nn.Parameter(torch.zeros(2))
    for entry in base_optimizers.BASE_OPTIMIZERS.values():
        assert type(fn.optimizer_factory(entry.display, 0.1)([param])) is entry.cls
        for prefix in fn.SAM_PREFIXES:
            assert type(fn.optimizer_factory(f"{prefix}-{entry.display}", 0.1)([param]).base_optimizer) is entry.cls


def test_optimizer_factory_builds_the_named_optimizers():
    param = torch.nn.Parameter(torch.zeros(2))
    adagrad = fn.optimizer_factory("Adagrad", 0.3)([param])
    assert type(adagrad) is torch.optim.Adagrad and adagrad.param_groups[0]["lr"] == 0.3
    sam = fn.optimizer_factory("SAM-SGD", 0.1, rho=0.2, momentum=0.9)([param])
    assert isinstance(sam, SAM) and type(sam.base_optimizer) is torch.optim.SGD
    group = sam.param_groups[0]
    assert (group["rho"], group["lr"], group["momentum"]) == (0.2, 0.1, 0.9)
    assert type(fn.optimizer_factory("SAM-Adam", 0.01)([param]).base_optimizer) is torch.optim.Adam
    assert type(sam) is SAM and group["normalize"] is True


def test_optimizer_factory_builds_usam_and_gsam():
    param = torch.nn.Parameter(torch.zeros(2))
    usam = fn.optimizer_factory("USAM-Adagrad", 0.5, rho=0.3, alpha=0.7)([param])  # alpha: GSAM's only
    assert type(usam) is SAM and type(usam.base_optimizer) is torch.optim.Adagrad
    assert (usam.param_groups[0]["rho"], usam.param_groups[0]["normalize"], usam.param_groups[0]["lr"]) == (0.3, False, 0.5)
    gsam = fn.optimizer_factory("GSAM-SGD", 0.1, rho=0.2, alpha=0.3, momentum=0.9)([param])
    assert type(gsam) is GSAM and type(gsam.base_optimizer) is torch.optim.SGD and gsam.alpha == 0.3
    group = gsam.param_groups[0]
    assert (group["rho"], group["normalize"], group["lr"], group["momentum"]) == (0.2, True, 0.1, 0.9)
    assert fn.optimizer_factory("GSAM-Adam", 0.01)([param]).alpha == 0.1  # GSAM's default


def test_usam_steps_match_the_closed_form_on_a_quadratic():
    # USAM: eps_hat = rho g (no normalization). On f = (a x² + b y²) / 2, g(w) = A w with
    # A = diag(a, b), so one SGD step is w <- w - lr A (w + rho A w), per coordinate
    # w_i <- (1 - lr a_i (1 + rho a_i)) w_i: a geometric sequence.
    a, b, lr, rho, steps = 1.0, 4.0, 0.1, 0.3, 15
    path = fn.run_optimizer(quadratic(a, b), (3.0, -2.0), fn.optimizer_factory("USAM-SGD", lr, rho=rho), steps)
    w = as_point((3.0, -2.0))
    first = w - lr * quadratic(a, b).grad(w + rho * quadratic(a, b).grad(w))
    torch.testing.assert_close(path[1], first, atol=1e-12, rtol=0)
    k = torch.arange(steps + 1, dtype=torch.float64)
    expected = torch.stack((3.0 * (1 - lr * a * (1 + rho * a)) ** k, -2.0 * (1 - lr * b * (1 + rho * b)) ** k), dim=-1)
    torch.testing.assert_close(path, expected, atol=1e-12, rtol=0)


def test_usam_diverges_on_a_quadratic_where_sam_does_not():
    # lr a (1 + rho a) = 0.9 * 3 > 2: USAM's factor is |1 - 2.7| = 1.7 per step; SAM's step
    # w - lr a (w + rho w / |w|) stays within lr a rho of the minimum once there (lr a < 2).
    a, lr, rho, steps = 9.0, 0.1, 2 / 9, 40
    f = quadratic(a, a)
    usam = fn.run_optimizer(f, (0.01, 0.0), fn.optimizer_factory("USAM-SGD", lr, rho=rho), steps, project=False)
    sam = fn.run_optimizer(f, (0.01, 0.0), fn.optimizer_factory("SAM-SGD", lr, rho=rho), steps, project=False)
    torch.testing.assert_close(usam[-1].norm(), torch.tensor(0.01 * 1.7**steps, dtype=torch.float64), rtol=1e-10, atol=0)
    assert sam.norm(dim=-1).max().item() <= lr * a * rho + 1e-12


def test_gsam_step_matches_the_closed_form_on_a_quadratic():
    # GSAM (Zhuang et al. 2022): g = A w, eps_hat = rho g / |g|, g_p = A (w + eps_hat),
    # g_perp = g - (<g, g_p> / |g_p|²) g_p, w <- w - lr (g_p - alpha g_perp).
    a, b, lr, rho, alpha, steps = 1.0, 4.0, 0.1, 0.5, 0.3, 10
    f = quadratic(a, b)
    path = fn.run_optimizer(f, (3.0, -2.0), fn.optimizer_factory("GSAM-SGD", lr, rho=rho, alpha=alpha), steps)
    w = as_point((3.0, -2.0))
    for k in range(steps):
        g = f.grad(w)
        g_p = f.grad(w + rho * g / g.norm())
        g_perp = g - (g @ g_p) / (g_p @ g_p) * g_p
        w = w - lr * (g_p - alpha * g_perp)
        torch.testing.assert_close(path[k + 1], w, atol=1e-12, rtol=0)
    sam = fn.run_optimizer(f, (3.0, -2.0), fn.optimizer_factory("SAM-SGD", lr, rho=rho), steps)
    assert (path - sam).abs().max().item() > 1e-3  # alpha matters off the axes


@pytest.mark.parametrize("base, lr", [("Adagrad", 0.5), ("SGD", 0.02), ("Adam", 0.05)])
def test_gsam_with_alpha_zero_is_sam_bit_for_bit(base, lr):
    starts = fn.start_grid(fn.SHARP_FLAT, 3)
    sam = fn.optimizer_factory(f"SAM-{base}", lr, rho=0.4)
    gsam = fn.optimizer_factory(f"GSAM-{base}", lr, rho=0.4, alpha=0.0)
    assert torch.equal(fn.run_from_starts(fn.SHARP_FLAT, starts, gsam, 30),
                       fn.run_from_starts(fn.SHARP_FLAT, starts, sam, 30))
    assert torch.equal(fn.run_optimizer(fn.SHARP_FLAT, (-1.7, 0.4), gsam, 30),
                       fn.run_optimizer(fn.SHARP_FLAT, (-1.7, 0.4), sam, 30))


@pytest.mark.parametrize("label", ["adagrad", "SAM", "USAM", "GSAM", "SAM-LBFGS", "SAM_Adagrad", "usam-SGD",
                                   "GSAM-LBFGS", "USAM_Adagrad", "USAM-SAM-SGD", "-SGD", 3])
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


@pytest.mark.parametrize("alpha", [-0.1, float("nan"), float("inf"), True])
def test_optimizer_factory_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        fn.optimizer_factory("GSAM-SGD", 0.1, alpha=alpha)


def test_optimizer_factory_messages_name_range_and_value():
    with pytest.raises(ValueError, match=r"^label must be one of 'SGD', 'Adam', 'Adagrad', 'SAM-SGD', 'SAM-Adam', "
                                         r"'SAM-Adagrad', 'USAM-SGD', 'USAM-Adam', 'USAM-Adagrad', 'GSAM-SGD', "
                                         r"'GSAM-Adam', 'GSAM-Adagrad', got 'sgd'$"):
        fn.optimizer_factory("sgd", 0.1)
    with pytest.raises(ValueError, match=r"^lr must be a finite number > 0, got 0.0$"):
        fn.optimizer_factory("SGD", 0.0)
    with pytest.raises(ValueError, match=r"^rho must be a finite number >= 0, got -0.1$"):
        fn.optimizer_factory("SAM-SGD", 0.1, rho=-0.1)
    with pytest.raises(ValueError, match=r"^alpha must be a finite number >= 0, got -0.5$"):
        fn.optimizer_factory("GSAM-SGD", 0.1, alpha=-0.5)


# --------------------------------------------------------------------------
# run_from_starts
# --------------------------------------------------------------------------

CASES = [
    (fn.SHARP_FLAT, "Adagrad", 0.5, 0.0, {}),
    (fn.SHARP_FLAT, "SAM-Adagrad", 0.5, 0.4, {}),
    (fn.SHARP_FLAT, "SAM-SGD", 0.02, 0.3, {"momentum": 0.9}),
    (fn.SHARP_FLAT, "Adam", 0.05, 0.0, {}),
    (fn.SHARP_FLAT, "USAM-Adagrad", 0.5, 0.5, {}),
    (fn.SHARP_FLAT, "GSAM-Adagrad", 0.5, 0.5, {"alpha": 0.3}),
    (fn.SHARP_FLAT, "GSAM-SGD", 0.02, 0.3, {"momentum": 0.9}),
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
