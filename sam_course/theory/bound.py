"""The terms of SAM's PAC-Bayesian generalization bound, one function each (chapter 2).

Foret et al. (2021, appendix A.1, Theorem 2) bound the population loss of weights ``w`` by the
worst training loss in a ball of radius ``rho`` plus a complexity term::

    L_D(w) <= max_{||eps||_2 <= rho} L_S(w + eps)
              + sqrt( ( k log(1 + ||w||^2 / rho^2 * (1 + sqrt(log(n) / k))^2)
                        + 4 log(n / delta) + O~(1) ) / (n - 1) )

with probability at least ``1 - delta`` over a training set of ``n`` examples, for a model with
``k`` parameters and a loss with values in ``[0, 1]`` (the 0-1 error, say), under the assumption
that Gaussian noise on the weights does not lower the population loss. Chapter 2 derives it in
four steps, and this module has one function per step, so that the chapter evaluates every term
on a trained network without re-implementing any of them:

1. McAllester's PAC-Bayes bound for a posterior ``Q`` and a prior ``P``: :func:`mcallester_bound`.
2. ``Q = N(w, sigma^2 I)``, ``P = N(0, sigma_P^2 I)``: their KL divergence, :func:`gaussian_kl`;
   the prior variance that would minimize it, :func:`best_prior_variance`; the prior actually
   used, picked from a grid fixed before seeing the data, :func:`grid_prior`, which costs
   :func:`union_bound_log_term`; the resulting bound on the KL, :func:`kl_upper_bound`.
3. The noise ``eps ~ N(0, sigma^2 I)`` stays in the ball ``||eps||_2 <= rho`` with probability at
   least ``1 - 1/sqrt(n)`` when ``sigma = rho / (sqrt(k) + sqrt(log n))``, :func:`posterior_std`,
   by the chi-square tail bound of Laurent and Massart, :func:`laurent_massart_threshold`
   (the exact tail: :func:`gaussian_norm_tail`).
4. The theorem's complexity term ``h``, :func:`complexity_term`, and the whole right-hand side,
   :func:`sharpness_bound`.

The ``O~(1)`` of the theorem is not constant: following the paper's own proof it is
``8 log(6 n + 3 k)`` (:func:`theorem_constant`), the price of the union bound over the grid of
prior variances. Functions that take it accept ``constant=0.0`` for the theorem's leading terms
alone. All logarithms are natural; all quantities are plain Python floats.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from .._checks import check_int, check_real

__all__ = [
    "PriorChoice",
    "BoundTerms",
    "posterior_std",
    "gaussian_kl",
    "best_prior_variance",
    "grid_prior",
    "kl_upper_bound",
    "union_bound_log_term",
    "mcallester_bound",
    "laurent_massart_threshold",
    "gaussian_norm_tail",
    "theorem_constant",
    "complexity_term",
    "sharpness_bound",
]


# delta, the probability with which a bound may fail, lies in (0, 1).
_DELTA_RANGE = dict(low=0.0, high=1.0, low_open=True, high_open=True)


# ----------------------------------------------------------------------------- step 2: the Gaussians


def gaussian_kl(k: int, sigma_q: float, sigma_p: float, sq_distance: float) -> float:
    """``KL(N(mu_Q, sigma_q^2 I_k) || N(mu_P, sigma_p^2 I_k))`` in nats (chapter 2, equation (6)).

    ``0.5 * [(k sigma_q^2 + ||mu_Q - mu_P||^2) / sigma_p^2 - k + k log(sigma_p^2 / sigma_q^2)]``:
    the posterior ``Q`` measured against the prior ``P`` (the paper's equation (6) writes
    ``KL(P || Q)``, but its formula is this one).

    Args:
        k: dimension (number of parameters), >= 1.
        sigma_q, sigma_p: standard deviations of ``Q`` and ``P`` (parameter units), > 0.
        sq_distance: ``||mu_Q - mu_P||_2^2``, >= 0 (squared parameter units).
    """
    k = check_int("k", k, 1)
    sigma_q = check_real("sigma_q", sigma_q, 0.0, low_open=True)
    sigma_p = check_real("sigma_p", sigma_p, 0.0, low_open=True)
    sq_distance = check_real("sq_distance", sq_distance, 0.0)
    ratio = (sigma_q / sigma_p) ** 2
    # k (ratio - 1 - log ratio) >= 0 is computed as one piece: each of its terms alone can be huge
    # when k is, and their difference would then lose every digit.
    return 0.5 * (k * (ratio - 1.0 - math.log(ratio)) + sq_distance / sigma_p**2)


def best_prior_variance(k: int, sigma_q: float, sq_distance: float) -> float:
    """The prior variance ``sigma_P^2`` that minimizes :func:`gaussian_kl`: ``sigma_q^2 + d^2 / k``.

    Setting the derivative of the KL in ``sigma_P^2`` to zero gives it (chapter 2). The prior may
    not depend on the data, and ``d = ||w||`` does, which is why the bound uses :func:`grid_prior`.
    """
    k = check_int("k", k, 1)
    sigma_q = check_real("sigma_q", sigma_q, 0.0, low_open=True)
    sq_distance = check_real("sq_distance", sq_distance, 0.0)
    return sigma_q**2 + sq_distance / k


@dataclass(frozen=True)
class PriorChoice:
    """The prior variance :func:`grid_prior` picks from the grid ``c exp((1 - j) / k)``.

    Attributes:
        j: the grid index, an int >= 1.
        variance: ``sigma_P^2 = c exp((1 - j) / k)``; it lies in ``[v*, exp(1/k) v*]`` where
            ``v* = sigma_q^2 + ||w||^2 / k`` is :func:`best_prior_variance`.
        log_scale: ``log c``, with ``c = sigma_q^2 (1 + exp(4 n / k))`` the top of the grid.
        delta_share: the confidence spent on this grid point, ``6 / (pi^2 j^2)`` (a fraction of
            ``delta``; the shares of all ``j`` sum to 1).
    """

    j: int
    variance: float
    log_scale: float
    delta_share: float


def _log_grid_scale(k: int, n: int, sigma_q: float) -> float:
    # log(sigma_q^2 (1 + exp(4n/k))) without overflow: exp(4n/k) is astronomically large when k << n.
    return 2.0 * math.log(sigma_q) + _log1p_exp(4.0 * n / k)


def _log1p_exp(x: float) -> float:
    """``log(1 + exp(x))`` for any real ``x`` without overflow."""
    return x + math.log1p(math.exp(-x)) if x > 0 else math.log1p(math.exp(x))


def grid_prior(k: int, n: int, sigma_q: float, sq_norm: float) -> PriorChoice:
    """The grid prior variance of the proof of Theorem 2 for weights of squared norm ``sq_norm``.

    The grid ``T = {c exp((1 - j) / k) : j = 1, 2, ...}`` with ``c = sigma_q^2 (1 + exp(4 n / k))``
    is fixed before the data are seen; the bound for grid point ``j`` is asked to hold with
    probability ``1 - 6 delta / (pi^2 j^2)``, so that all hold at once with probability
    ``1 - delta`` (union bound). For given weights the proof then uses
    ``j = floor(1 - k log(v* / c))`` with ``v* = sigma_q^2 + sq_norm / k``, the grid point just
    above the best prior variance ``v*`` (chapter 2).

    Args:
        k: number of parameters, >= 1.
        n: number of training examples, >= 1.
        sigma_q: the posterior's standard deviation, > 0.
        sq_norm: ``||w||_2^2``, >= 0 (the prior is centred at 0).

    Raises:
        ValueError: on bad arguments, or when ``v* > c``: the grid does not reach the weights
            (``sq_norm > k sigma_q^2 exp(4 n / k)``). Then the theorem holds trivially, because its
            complexity term exceeds 2 (see :attr:`BoundTerms.grid_covers`).
    """
    k = check_int("k", k, 1)
    n = check_int("n", n, 1)
    sigma_q = check_real("sigma_q", sigma_q, 0.0, low_open=True)
    sq_norm = check_real("sq_norm", sq_norm, 0.0)
    log_c = _log_grid_scale(k, n, sigma_q)
    log_best = math.log(best_prior_variance(k, sigma_q, sq_norm))
    if log_best > log_c:
        raise ValueError(
            f"sq_norm={sq_norm!r} is beyond the grid of prior variances (its top is "
            f"c = sigma_q^2 (1 + exp(4n/k)) = exp({log_c:.4g})); there the bound holds trivially"
        )
    j = math.floor(1.0 - k * (log_best - log_c))
    return PriorChoice(j=j, variance=math.exp(log_c + (1.0 - j) / k), log_scale=log_c,
                       delta_share=6.0 / (math.pi**2 * j**2))


def kl_upper_bound(k: int, sigma_q: float, sq_norm: float) -> float:
    """The proof's bound on the KL for the grid prior: ``0.5 [1 + k log(1 + ||w||^2 / (k sigma_q^2))]``.

    Equation (12) of the paper: with :func:`grid_prior`'s variance, the first two terms of
    :func:`gaussian_kl` sum to at most 0 and the log term to at most
    ``1 + k log(v* / sigma_q^2)``. In nats (chapter 2).
    """
    k = check_int("k", k, 1)
    sigma_q = check_real("sigma_q", sigma_q, 0.0, low_open=True)
    sq_norm = check_real("sq_norm", sq_norm, 0.0)
    return 0.5 * (1.0 + k * math.log1p(sq_norm / (k * sigma_q**2)))


def union_bound_log_term(n: int, k: int, delta: float) -> float:
    """The proof's bound on ``log(n / delta_j)`` over the grid: ``log(n / delta) + 2 log(6 n + 3 k)``.

    For the index ``j`` of :func:`grid_prior`, ``delta_j = 6 delta / (pi^2 j^2)`` and
    ``j <= 2 k + 4 n``, so ``log(pi^2 j^2 / 6) <= 2 log(6 n + 3 k)`` (chapter 2).
    """
    n = check_int("n", n, 1)
    k = check_int("k", k, 1)
    delta = check_real("delta", delta, **_DELTA_RANGE)
    return math.log(n / delta) + 2.0 * math.log(6.0 * n + 3.0 * k)


# ----------------------------------------------------------------------------- step 1: PAC-Bayes


def mcallester_bound(train_loss: float, kl: float, n: int, delta: float) -> float:
    """McAllester's PAC-Bayes bound in the form the paper uses (equation (5); chapter 2).

    With probability ``1 - delta`` over ``n`` examples, for every posterior ``Q`` at once,
    ``E_Q[L_D] <= E_Q[L_S] + sqrt((KL(Q || P) + log(n / delta)) / (2 (n - 1)))`` for a loss with
    values in ``[0, 1]`` and a prior ``P`` fixed before seeing the data.

    Args:
        train_loss: ``E_{w ~ Q}[L_S(w)]``, in ``[0, 1]``.
        kl: ``KL(Q || P)`` in nats, >= 0.
        n: number of training examples, >= 2.
        delta: failure probability, in ``(0, 1)``.

    Returns:
        The right-hand side: a bound on ``E_Q[L_D]``.
    """
    train_loss = check_real("train_loss", train_loss, 0.0)
    kl = check_real("kl", kl, 0.0)
    n = check_int("n", n, 2)
    delta = check_real("delta", delta, **_DELTA_RANGE)
    return train_loss + math.sqrt((kl + math.log(n / delta)) / (2.0 * (n - 1)))


# ----------------------------------------------------------------------------- step 3: chi-square


def posterior_std(rho: float, k: int, n: int) -> float:
    """The theorem's noise level ``sigma = rho / (sqrt(k) + sqrt(log n))`` (chapter 2).

    With it, ``eps ~ N(0, sigma^2 I_k)`` satisfies ``||eps||_2 <= rho`` with probability at least
    ``1 - 1/sqrt(n)`` (:func:`laurent_massart_threshold` with ``t = log(n) / 2``).
    """
    rho = check_real("rho", rho, 0.0, low_open=True)
    k = check_int("k", k, 1)
    n = check_int("n", n, 1)
    return rho / (math.sqrt(k) + math.sqrt(math.log(n)))


def laurent_massart_threshold(k: int, t: float) -> float:
    """A value ``x`` with ``P(chi^2_k >= x) <= exp(-t)``: ``k + 2 sqrt(k t) + 2 t``.

    Lemma 1 of Laurent and Massart (2000), upper tail, for a chi-square variable with ``k``
    degrees of freedom (the squared norm of a standard Gaussian vector in ``R^k``). Chapter 2
    uses ``t = log(sqrt(n))`` to keep the posterior's noise inside the ball of radius ``rho``.

    Args:
        k: degrees of freedom, >= 1.
        t: >= 0; the tail probability is at most ``exp(-t)``.
    """
    k = check_int("k", k, 1)
    t = check_real("t", t, 0.0)
    return k + 2.0 * math.sqrt(k * t) + 2.0 * t


def gaussian_norm_tail(k: int, sigma: float, radius: float) -> float:
    """The exact ``P(||eps||_2 > radius)`` for ``eps ~ N(0, sigma^2 I_k)`` (chapter 2).

    ``||eps||^2 / sigma^2`` is chi-square with ``k`` degrees of freedom, whose upper tail is the
    regularized upper incomplete gamma function ``Q(k/2, radius^2 / (2 sigma^2))``
    (``torch.special.gammaincc``, in float64).

    Args:
        k: dimension, >= 1.
        sigma: standard deviation of each coordinate, > 0.
        radius: >= 0.
    """
    k = check_int("k", k, 1)
    sigma = check_real("sigma", sigma, 0.0, low_open=True)
    radius = check_real("radius", radius, 0.0)
    a = torch.tensor(k / 2.0, dtype=torch.float64)
    x = torch.tensor(radius**2 / (2.0 * sigma**2), dtype=torch.float64)
    return float(torch.special.gammaincc(a, x))


# ----------------------------------------------------------------------------- step 4: the theorem


def theorem_constant(n: int, k: int) -> float:
    """The ``O~(1)`` of Theorem 2 made explicit: ``8 log(6 n + 3 k)`` (chapter 2).

    It is 4 times the union-bound cost ``2 log(6 n + 3 k)`` of :func:`union_bound_log_term`: the
    last step of the proof multiplies the numerator by 4 to absorb the ``1/sqrt(n)`` of the
    chi-square step. (That step also produces ``4 * 1/4 = 1``, from the ``1/2`` of
    :func:`kl_upper_bound`, which the paper's final line omits; the slack of its earlier steps,
    which double ``log(n / delta)`` and ``log(6n + 3k)``, covers it, so the constant stays valid.)
    It grows like ``log`` of the sizes, hence the tilde.
    """
    n = check_int("n", n, 1)
    k = check_int("k", k, 1)
    return 8.0 * math.log(6.0 * n + 3.0 * k)


def _numerator_parts(k: int, n: int, w_norm: float, rho: float, delta: float,
                     constant: float | None) -> tuple[float, float, float]:
    x = (w_norm / rho) ** 2 * (1.0 + math.sqrt(math.log(n) / k)) ** 2
    weights = k * math.log1p(x)
    confidence = 4.0 * math.log(n / delta)
    const = theorem_constant(n, k) if constant is None else check_real("constant", constant, 0.0)
    return weights, confidence, const


def complexity_term(k: int, n: int, w_norm: float, rho: float, delta: float = 0.05,
                    constant: float | None = None) -> float:
    """The theorem's ``h(||w||^2 / rho^2)``: the square root added to the worst-case training loss.

    ``sqrt((k log(1 + ||w||^2 / rho^2 (1 + sqrt(log(n) / k))^2) + 4 log(n / delta) + C) / (n - 1))``
    with ``C`` = :func:`theorem_constant` by default. Strictly increasing in ``||w|| / rho`` and
    in ``k``, decreasing in ``n`` (for ``n`` large enough) and in ``delta`` (chapter 2). In the
    units of the loss, which the theorem takes in ``[0, 1]``: above 1 the bound says nothing.

    Args:
        k: number of parameters, >= 1.
        n: number of training examples, >= 2.
        w_norm: ``||w||_2``, >= 0.
        rho: radius of the ball, > 0.
        delta: failure probability, in ``(0, 1)``.
        constant: the ``O~(1)`` term; None for :func:`theorem_constant`, ``0.0`` to drop it.
    """
    k = check_int("k", k, 1)
    n = check_int("n", n, 2)
    w_norm = check_real("w_norm", w_norm, 0.0)
    rho = check_real("rho", rho, 0.0, low_open=True)
    delta = check_real("delta", delta, **_DELTA_RANGE)
    weights, confidence, const = _numerator_parts(k, n, w_norm, rho, delta, constant)
    return math.sqrt((weights + confidence + const) / (n - 1))


@dataclass(frozen=True)
class BoundTerms:
    """Every term of Theorem 2's right-hand side for one ``(w, rho)`` (:func:`sharpness_bound`).

    Attributes:
        max_loss: ``max_{||eps|| <= rho} L_S(w + eps)`` as given (an estimate, in loss units).
        complexity: :func:`complexity_term`, ``h``.
        total: ``max_loss + complexity``, the bound on ``L_D(w)``.
        weights_part: ``k log(1 + ||w||^2 / rho^2 (1 + sqrt(log(n)/k))^2)``, the numerator's term
            that depends on the weights.
        confidence_part: ``4 log(n / delta)``.
        constant_part: the ``O~(1)`` used.
        sigma: the posterior's standard deviation, :func:`posterior_std`.
        grid_covers: False when ``||w||`` is beyond the grid of prior variances
            (:func:`grid_prior` raises); the theorem then holds only because ``complexity > 2``.
        k, n, w_norm, rho, delta: the inputs.
    """

    max_loss: float
    complexity: float
    total: float
    weights_part: float
    confidence_part: float
    constant_part: float
    sigma: float
    grid_covers: bool
    k: int
    n: int
    w_norm: float
    rho: float
    delta: float

    @property
    def vacuous(self) -> bool:
        """Whether the bound exceeds 1, the largest value of a loss in ``[0, 1]``: it says nothing."""
        return self.total > 1.0

    def as_dict(self) -> dict:
        """The fields and ``vacuous`` as a dict (one row of a table)."""
        return {**asdict(self), "vacuous": self.vacuous}


def sharpness_bound(max_loss: float, k: int, n: int, w_norm: float, rho: float, delta: float = 0.05,
                    constant: float | None = None) -> BoundTerms:
    """The right-hand side of Theorem 2 of Foret et al. (2021), term by term (chapter 2).

    ``L_D(w) <= max_loss + complexity_term(k, n, w_norm, rho, delta, constant)``, with probability
    ``1 - delta`` over the ``n`` training examples, for a loss with values in ``[0, 1]`` and under
    the assumption ``L_D(w) <= E_{eps ~ N(0, sigma^2 I)} L_D(w + eps)``. The radius ``rho`` must be
    fixed before seeing the data; taking the best of several radii needs a union bound over them
    (replace ``delta`` by ``delta / len(radii)``).

    Args:
        max_loss: the worst training loss in the ball of radius ``rho`` around ``w``, >= 0. It is
            usually estimated from below, e.g. by :func:`sam_course.optim.msam.m_sharpness` with
            ``m = n`` plus the training loss.
        k, n, w_norm, rho, delta, constant: as in :func:`complexity_term`.

    Returns:
        A :class:`BoundTerms`.
    """
    max_loss = check_real("max_loss", max_loss, 0.0)
    complexity = complexity_term(k, n, w_norm, rho, delta, constant)
    weights, confidence, const = _numerator_parts(k, n, w_norm, rho, delta, constant)
    sigma = posterior_std(rho, k, n)
    covers = 2.0 * math.log(w_norm) <= math.log(k) + 2.0 * math.log(sigma) + 4.0 * n / k if w_norm > 0 else True
    return BoundTerms(
        max_loss=max_loss, complexity=complexity, total=max_loss + complexity,
        weights_part=weights, confidence_part=confidence, constant_part=const, sigma=sigma,
        grid_covers=covers, k=k, n=n, w_norm=float(w_norm), rho=float(rho), delta=float(delta),
    )
