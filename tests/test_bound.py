"""The terms of SAM's generalization bound against oracles: torch's KL, SciPy's chi-square,
Monte Carlo, hand-computed values, and the inequalities the proof relies on."""

import math

import pytest
import torch
from scipy import stats
from torch.distributions import Independent, MultivariateNormal, Normal, kl_divergence

from sam_course.theory import bound

# ----------------------------------------------------------------------------- KL of the Gaussians


@pytest.mark.parametrize("k, sigma_q, sigma_p", [(1, 0.3, 1.0), (3, 1.0, 0.5), (7, 0.05, 2.0), (20, 1.0, 1.0)])
def test_gaussian_kl_matches_torch_multivariate_normal(k, sigma_q, sigma_p):
    gen = torch.Generator().manual_seed(k)
    mu_q = torch.randn(k, generator=gen, dtype=torch.float64)
    mu_p = torch.randn(k, generator=gen, dtype=torch.float64)
    q = MultivariateNormal(mu_q, sigma_q**2 * torch.eye(k, dtype=torch.float64))
    p = MultivariateNormal(mu_p, sigma_p**2 * torch.eye(k, dtype=torch.float64))
    expected = float(kl_divergence(q, p))
    got = bound.gaussian_kl(k, sigma_q, sigma_p, float(((mu_q - mu_p) ** 2).sum()))
    assert got == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_gaussian_kl_matches_torch_product_of_normals_in_high_dimension():
    # The shape of the chapter's case: many parameters, a tiny posterior variance.
    k, sigma_q, sigma_p = 5000, 1e-3, 0.02
    gen = torch.Generator().manual_seed(0)
    w = 0.05 * torch.randn(k, generator=gen, dtype=torch.float64)
    q = Independent(Normal(w, torch.full((k,), sigma_q, dtype=torch.float64)), 1)
    p = Independent(Normal(torch.zeros(k, dtype=torch.float64), torch.full((k,), sigma_p, dtype=torch.float64)), 1)
    assert bound.gaussian_kl(k, sigma_q, sigma_p, float((w**2).sum())) == pytest.approx(float(kl_divergence(q, p)), rel=1e-10)


def test_gaussian_kl_is_zero_only_for_equal_distributions():
    assert bound.gaussian_kl(10, 0.7, 0.7, 0.0) == 0.0
    assert bound.gaussian_kl(10, 0.7, 0.7, 1e-6) > 0
    assert bound.gaussian_kl(10, 0.7, 0.71, 0.0) > 0


@pytest.mark.parametrize("k, sigma_q, d2", [(1, 0.5, 2.0), (10, 0.1, 3.0), (1000, 0.01, 40.0)])
def test_best_prior_variance_minimizes_the_kl(k, sigma_q, d2):
    best = bound.best_prior_variance(k, sigma_q, d2)
    assert best == pytest.approx(sigma_q**2 + d2 / k)
    kl_best = bound.gaussian_kl(k, sigma_q, math.sqrt(best), d2)
    for factor in (0.5, 0.9, 0.999, 1.001, 1.1, 2.0):
        assert bound.gaussian_kl(k, sigma_q, math.sqrt(best * factor), d2) > kl_best


# ----------------------------------------------------------------------------- the grid of priors


@pytest.mark.parametrize("k, n, sigma_q, sq_norm", [
    (10, 100, 0.1, 0.0), (10, 100, 0.1, 5.0), (50, 1000, 0.01, 0.3), (2000, 4000, 0.002, 1.0), (7, 10, 1.0, 123.0),
])
def test_grid_prior_brackets_the_best_variance_and_bounds_the_kl(k, n, sigma_q, sq_norm):
    choice = bound.grid_prior(k, n, sigma_q, sq_norm)
    best = bound.best_prior_variance(k, sigma_q, sq_norm)
    assert choice.j >= 1
    # Equation (8) of the paper, up to rounding.
    assert best * (1 - 1e-12) <= choice.variance <= math.exp(1 / k) * best * (1 + 1e-12)
    c = math.exp(choice.log_scale)
    assert c == pytest.approx(sigma_q**2 * (1 + math.exp(4 * n / k)), rel=1e-12)
    assert choice.variance == pytest.approx(c * math.exp((1 - choice.j) / k), rel=1e-12)
    # Equation (12): the KL with the grid prior is below the proof's bound...
    kl = bound.gaussian_kl(k, sigma_q, math.sqrt(choice.variance), sq_norm)
    assert kl <= bound.kl_upper_bound(k, sigma_q, sq_norm) + 1e-9
    # ... and the union bound's cost is below 2 log(6n + 3k).
    assert choice.delta_share == pytest.approx(6 / (math.pi**2 * choice.j**2))
    delta = 0.05
    assert math.log(n / (delta * choice.delta_share)) <= bound.union_bound_log_term(n, k, delta)


def test_grid_prior_index_by_hand():
    # k = 1, n = 1, sigma_q = 1: c = 1 + e^4; v* = 1 + ||w||^2.
    c = 1 + math.exp(4)
    choice = bound.grid_prior(1, 1, 1.0, 3.0)
    assert choice.j == math.floor(1 - math.log(4 / c))
    assert choice.variance == pytest.approx(c * math.exp(1 - choice.j))


def test_delta_shares_sum_to_one():
    assert sum(6 / (math.pi**2 * j**2) for j in range(1, 200_001)) == pytest.approx(1.0, abs=1e-5)


def test_grid_prior_rejects_weights_beyond_the_grid_where_the_bound_is_trivial():
    k, n, rho, w_norm = 10_000, 100, 0.05, 10.0
    sigma = bound.posterior_std(rho, k, n)
    with pytest.raises(ValueError, match="beyond the grid"):
        bound.grid_prior(k, n, sigma, w_norm**2)
    terms = bound.sharpness_bound(0.0, k, n, w_norm, rho)
    assert not terms.grid_covers
    assert terms.complexity > 2


# ----------------------------------------------------------------------------- PAC-Bayes and chi-square


def test_mcallester_bound_by_hand():
    # 0.1 + sqrt((5 + log(1000 / 0.1)) / (2 * 999))
    assert bound.mcallester_bound(0.1, 5.0, 1000, 0.1) == pytest.approx(0.1 + math.sqrt((5 + math.log(1e4)) / 1998))


@pytest.mark.parametrize("k", [1, 2, 10, 100, 10_000])
@pytest.mark.parametrize("t", [0.1, 1.0, 3.0, 10.0])
def test_laurent_massart_threshold_bounds_the_chi_square_tail(k, t):
    threshold = bound.laurent_massart_threshold(k, t)
    assert threshold == pytest.approx(k + 2 * math.sqrt(k * t) + 2 * t)
    assert stats.chi2.sf(threshold, k) <= math.exp(-t)


@pytest.mark.parametrize("k, sigma, radius", [(1, 1.0, 0.5), (5, 0.3, 0.8), (100, 0.1, 1.1), (100, 0.1, 0.9)])
def test_gaussian_norm_tail_matches_scipy(k, sigma, radius):
    expected = stats.chi2.sf(radius**2 / sigma**2, k)
    assert bound.gaussian_norm_tail(k, sigma, radius) == pytest.approx(expected, rel=1e-7, abs=1e-15)  # torch: ~1e-9


def test_gaussian_norm_tail_matches_monte_carlo():
    k, sigma, radius = 20, 0.5, 2.4
    gen = torch.Generator().manual_seed(0)
    eps = sigma * torch.randn(200_000, k, generator=gen, dtype=torch.float64)
    frequency = float((eps.norm(dim=1) > radius).double().mean())
    p = bound.gaussian_norm_tail(k, sigma, radius)
    assert abs(frequency - p) < 4 * math.sqrt(p * (1 - p) / 200_000)


@pytest.mark.parametrize("k, n", [(1, 2), (10, 100), (7850, 4000), (669_706, 4000)])
def test_posterior_noise_stays_in_the_ball_with_probability_at_least_one_minus_inverse_sqrt_n(k, n):
    rho = 0.05
    sigma = bound.posterior_std(rho, k, n)
    assert sigma == pytest.approx(rho / (math.sqrt(k) + math.sqrt(math.log(n))))
    # The proof's chain: the Laurent-Massart radius with t = log(sqrt(n)) is inside the ball.
    assert sigma**2 * bound.laurent_massart_threshold(k, math.log(math.sqrt(n))) <= rho**2 * (1 + 1e-12)
    assert bound.gaussian_norm_tail(k, sigma, rho) <= 1 / math.sqrt(n)


# ----------------------------------------------------------------------------- the theorem


def test_complexity_term_by_hand():
    k, n, w_norm, rho, delta = 100, 1000, 2.0, 0.5, 0.1
    x = (w_norm / rho) ** 2 * (1 + math.sqrt(math.log(n) / k)) ** 2
    numerator = k * math.log(1 + x) + 4 * math.log(n / delta) + 8 * math.log(6 * n + 3 * k)
    assert bound.complexity_term(k, n, w_norm, rho, delta) == pytest.approx(math.sqrt(numerator / (n - 1)), rel=1e-14)
    leading = k * math.log(1 + x) + 4 * math.log(n / delta)
    assert bound.complexity_term(k, n, w_norm, rho, delta, constant=0.0) == pytest.approx(math.sqrt(leading / (n - 1)))
    assert bound.theorem_constant(n, k) == pytest.approx(8 * math.log(6300))


def test_sharpness_bound_adds_its_terms():
    terms = bound.sharpness_bound(0.2, 100, 1000, 2.0, 0.5, 0.1)
    assert terms.total == pytest.approx(0.2 + bound.complexity_term(100, 1000, 2.0, 0.5, 0.1))
    numerator = terms.weights_part + terms.confidence_part + terms.constant_part
    assert terms.complexity == pytest.approx(math.sqrt(numerator / 999))
    assert terms.confidence_part == pytest.approx(4 * math.log(1e4))
    assert terms.sigma == pytest.approx(bound.posterior_std(0.5, 100, 1000))
    assert terms.vacuous == (terms.total > 1)
    row = terms.as_dict()
    assert row["total"] == terms.total and row["vacuous"] == terms.vacuous


def test_h_is_strictly_increasing_in_w_over_rho():
    k, n = 5000, 4000
    ratios = [0.0, 0.01, 0.1, 1.0, 10.0, 100.0, 1e4]
    values = [bound.complexity_term(k, n, r, 1.0) for r in ratios]
    assert all(a < b for a, b in zip(values, values[1:]))
    # It depends on w and rho only through ||w|| / rho.
    assert bound.complexity_term(k, n, 3.0, 0.5) == pytest.approx(bound.complexity_term(k, n, 0.6, 0.1))
    # More parameters, a larger bound.
    assert bound.complexity_term(k + 1, n, 3.0, 0.5) > bound.complexity_term(k, n, 3.0, 0.5)


def test_grid_covers_agrees_with_grid_prior():
    k, n, rho = 200, 1000, 0.1
    sigma = bound.posterior_std(rho, k, n)
    edge = math.sqrt(k) * sigma * math.exp(2 * n / k)  # ||w|| at the top of the grid
    for w_norm in (0.0, 0.5 * edge, 0.999 * edge, 1.001 * edge, 2 * edge):
        covers = bound.sharpness_bound(0.0, k, n, w_norm, rho).grid_covers
        assert covers == (w_norm < edge)
        if covers:
            bound.grid_prior(k, n, sigma, w_norm**2)
        else:
            with pytest.raises(ValueError):
                bound.grid_prior(k, n, sigma, w_norm**2)


def test_theorem_follows_from_the_proof_steps():
    # The chain of the proof, evaluated: PAC-Bayes with the grid prior, plus 1/sqrt(n) for the
    # noise that leaves the ball, is below the theorem's right-hand side.
    k, n, rho, w_norm, delta, max_loss = 300, 20_000, 0.5, 3.0, 0.05, 0.1
    sigma = bound.posterior_std(rho, k, n)
    choice = bound.grid_prior(k, n, sigma, w_norm**2)
    kl = bound.gaussian_kl(k, sigma, math.sqrt(choice.variance), w_norm**2)
    chain = bound.mcallester_bound(max_loss, kl, n, delta * choice.delta_share) + 1 / math.sqrt(n)
    theorem = bound.sharpness_bound(max_loss, k, n, w_norm, rho, delta).total
    assert chain <= theorem


@pytest.mark.parametrize("call, match", [
    (lambda: bound.gaussian_kl(0, 1.0, 1.0, 0.0), "k must be an int >= 1"),
    (lambda: bound.gaussian_kl(3, 0.0, 1.0, 0.0), "sigma_q"),
    (lambda: bound.gaussian_kl(3, 1.0, -1.0, 0.0), "sigma_p"),
    (lambda: bound.gaussian_kl(3, 1.0, 1.0, -0.1), "sq_distance"),
    (lambda: bound.complexity_term(10, 1, 1.0, 0.1), "n must be an int >= 2"),
    (lambda: bound.complexity_term(10, 100, 1.0, 0.0), "rho"),
    (lambda: bound.complexity_term(10, 100, math.nan, 0.1), "w_norm"),
    (lambda: bound.complexity_term(10, 100, 1.0, 0.1, delta=1.0), "delta"),
    (lambda: bound.complexity_term(10, 100, 1.0, 0.1, constant=-1.0), "constant"),
    (lambda: bound.sharpness_bound(-0.1, 10, 100, 1.0, 0.1), "max_loss"),
    (lambda: bound.laurent_massart_threshold(5, -1.0), "t must"),
    (lambda: bound.gaussian_norm_tail(5, 1.0, -1.0), "radius"),
    (lambda: bound.posterior_std(0.1, True, 10), "k must"),
    (lambda: bound.mcallester_bound(0.1, -1.0, 100, 0.1), "kl"),
])
def test_bad_arguments_raise_value_error_naming_them(call, match):
    with pytest.raises(ValueError, match=match):
        call()
