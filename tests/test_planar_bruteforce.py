"""Tests for sam_course.planar.bruteforce: SAM with its inner maximization solved over a grid of the disk.

Oracles: first-order SAM where both must agree (|w|²/2, directions on the grid), the base
optimizer at rho = 0, a peak inside the disk, and the candidates' coordinates by hand.
"""

import math

import pytest
import torch
from helpers import quadratic_with_cross_term

from sam_course import planar as fn
from sam_course.planar.bruteforce import disk_offsets


def isotropic_quadratic():
    """f = |w|² / 2: the worst point of a disk is on its edge, along w, as first-order SAM assumes."""
    return quadratic_with_cross_term(1.0, 1.0, 0.0)


def test_disk_offsets_by_hand():
    offsets = disk_offsets(2.0, 4, 2, torch.float64)
    expected = torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1], [2, 0], [0, 2], [-2, 0], [0, -2]],
                            dtype=torch.float64)
    # cos(pi / 2) is 6e-17 in floating point, hence the tolerance.
    torch.testing.assert_close(offsets, expected, atol=1e-15, rtol=0)
    radii = torch.linalg.vector_norm(disk_offsets(0.3, 7, 3, torch.float64), dim=-1)
    torch.testing.assert_close(radii, torch.tensor([0.0] + [0.1] * 7 + [0.2] * 7 + [0.3] * 7, dtype=torch.float64),
                               atol=1e-15, rtol=0)
    assert math.isclose(float(radii.max()), 0.3)


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
