"""Tests for sam_course.planar.endpoints: distances to minima, classification, Hessian eigenvalues.

Oracles: hand-computed distances, and closed-form Hessians (a quadratic with a cross term,
Himmelblau's polynomial).
"""

import math

import pytest
import torch
from helpers import quadratic_with_cross_term

from sam_course import planar as fn

SHARP, FLAT = fn.SHARP_FLAT.sharp_minimum, fn.SHARP_FLAT.flat_minimum


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


def test_classify_endpoints_messages():
    message = r"^radius must be a number in \(0, inf\] \(float\('inf'\) allowed\), got 0.0$"
    with pytest.raises(ValueError, match=message):
        fn.classify_endpoints(fn.SHARP_FLAT, torch.zeros(1, 2), radius=0.0)
    with pytest.raises(ValueError, match=r"^endpoints must have shape \(\.\.\., 2\)"):
        fn.classify_endpoints(fn.SHARP_FLAT, torch.zeros(1, 3))
    # An integer radius is a radius.
    ends = torch.tensor([[0.0, 0.0], [3.0, 0.0]], dtype=torch.float64)
    assert fn.classify_endpoints(fn.SHARP_FLAT, ends, [(0.5, 0.0)], radius=1).tolist() == [0, -1]


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
