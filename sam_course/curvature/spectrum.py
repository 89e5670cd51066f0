"""The Hessian's spectrum: top eigenvalues, ``lambda_max / lambda_k``, trace and eigenvalue density.

SAM is motivated by sharpness, and the usual measures of sharpness are properties of the Hessian
``H`` of the training loss: its largest eigenvalue ``lambda_max`` (Foret et al. report
``lambda_max`` and ``lambda_max / lambda_5`` during training; chapter 13 measures them), its trace
(Hutchinson) and its whole eigenvalue density (stochastic Lanczos quadrature, Ghorbani et al.
2019). Chapter 9 relates the spectrum to the pictures of the loss landscape.

Every estimator here only multiplies by ``H``, through
:class:`~sam_course.curvature.operator.HessianOperator`, and reports its cost as ``num_hvps``
(one HVP = one pass over every batch). The conventions (mean loss, data as batches, flat vectors,
eval mode, the model left unchanged) are listed in :mod:`sam_course.curvature.hessian`, which
re-exports every function of this module. Eigenvalues are in loss units per squared parameter
unit; eigenvalues, eigenvectors, nodes and weights are returned in float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .._checks import check_instance, check_int, check_real
from .._params import LossFn, seeded_generator
from .operator import HessianOperator

__all__ = [
    "EigenResult",
    "TraceEstimate",
    "SpectralDensity",
    "top_eigenvalues",
    "top_spectrum",
    "power_iteration",
    "hutchinson_trace",
    "spectral_density",
    "gaussian_density",
]


def _rademacher(dim: int, gen: torch.Generator) -> Tensor:
    return torch.randint(0, 2, (dim,), generator=gen, dtype=torch.float64) * 2 - 1


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class EigenResult:
    """Eigenvalues found by :func:`top_eigenvalues` or :func:`power_iteration`.

    Attributes:
        eigenvalues: ``(k,)`` float64, in descending order (loss units per squared parameter unit).
        eigenvectors: ``(dim, k)`` float64 with unit-norm columns (column ``i`` belongs to
            ``eigenvalues[i]``; the sign is fixed so that the largest-magnitude entry is positive),
            or ``None`` when not requested.
        num_hvps: Hessian-vector products the method took (the cost measure of chapter 13).
        converged: whether the residual test ``||H u - lambda u|| <= tol * |lambda|`` was met.
    """

    eigenvalues: Tensor
    eigenvectors: Tensor | None
    num_hvps: int
    converged: bool = True


@dataclass(frozen=True)
class TraceEstimate:
    """Hutchinson's estimate of ``tr(H)`` (:func:`hutchinson_trace`).

    Attributes:
        trace: the mean of ``values``.
        stderr: its standard error, ``std(values, ddof=1) / sqrt(samples)`` (NaN for one sample).
        values: ``(samples,)`` float64, the individual ``z^T H z``.
        num_hvps: equal to the number of samples.
    """

    trace: float
    stderr: float
    values: Tensor
    num_hvps: int


@dataclass(frozen=True)
class SpectralDensity:
    """Stochastic Lanczos quadrature of the Hessian's eigenvalue density (:func:`spectral_density`).

    The density is the discrete measure ``sum_i weights[i] * delta(t - nodes[i])``: the Ritz values
    of every start vector, each start's weights divided by the number of starts, so
    ``weights.sum() == 1``. Its mean ``sum(weights * nodes)`` estimates ``tr(H) / dim``.

    Attributes:
        nodes: ``(N,)`` float64 Ritz values (``N = starts * steps`` unless a Krylov space was
            exhausted early, in which case that start contributes fewer nodes).
        weights: ``(N,)`` float64, non-negative, summing to 1.
        starts: the number of random start vectors used.
        steps: the Lanczos steps per start asked for.
        num_hvps: Hessian-vector products taken.
    """

    nodes: Tensor
    weights: Tensor
    starts: int
    steps: int
    num_hvps: int

    @property
    def mean(self) -> float:
        """``sum(weights * nodes)``, an estimate of ``tr(H) / dim``."""
        return float((self.weights * self.nodes).sum())

    def density(self, grid: Tensor, sigma: float) -> Tensor:
        """The density smoothed by a Gaussian of width ``sigma`` on ``grid`` (:func:`gaussian_density`)."""
        return gaussian_density(self.nodes, self.weights, grid, sigma)


def _result_vectors(vectors: Tensor) -> Tensor:
    """Unit columns with the sign fixed so that each column's largest-magnitude entry is positive."""
    vectors = vectors / torch.linalg.vector_norm(vectors, dim=0, keepdim=True)
    peak = vectors.gather(0, vectors.abs().argmax(dim=0, keepdim=True))
    return vectors * torch.where(peak < 0, -1.0, 1.0).to(vectors.dtype)


# ----------------------------------------------------------------------------- eigenvalues


def top_eigenvalues(model: nn.Module, loss_fn: LossFn, data, k: int = 1, tol: float = 1e-4,
                    max_iter: int = 100, ncv: int | None = None, seed: int = 0,
                    return_eigenvectors: bool = False) -> EigenResult:
    """The ``k`` largest eigenvalues of the Hessian by (implicitly restarted) Lanczos. Chapter 13.

    SciPy's ``eigsh`` (ARPACK) runs on a ``LinearOperator`` whose matvec is
    :func:`~sam_course.curvature.hessian.hvp`, with float64 on the SciPy side. ``which='LA'``
    (largest algebraic), not ``'LM'`` (largest magnitude): away from a minimum the Hessian has
    negative eigenvalues, and ``'LM'`` would return a large negative one in place of
    ``lambda_max``, the sharpness SAM is said to reduce. The start vector is Gaussian from
    ``seed``, so runs are reproducible.

    Args:
        k: how many eigenvalues, ``1 <= k < dim`` (ARPACK needs ``k < dim``).
        tol: relative accuracy; ARPACK stops when the residual of every Ritz pair satisfies
            ``||H u - theta u|| <= tol * |theta|`` (the same test as :func:`power_iteration`, except
            that ARPACK floors ``|theta|`` at about ``1e-11`` for eigenvalues near zero). With
            float32 models, tolerances much below ``1e-5`` may not be reachable.
        max_iter: maximum number of ARPACK restarts (each costs up to ``ncv - k`` HVPs).
        ncv: Lanczos vectors kept between restarts, ``k < ncv <= dim``; default SciPy's
            ``min(dim, max(2k + 1, 20))``.
        seed: seed of the start vector.
        return_eigenvectors: also return the eigenvectors (``(dim, k)``, float64).

    Returns:
        An :class:`EigenResult` with eigenvalues in descending order and ``num_hvps`` = the number of
        matvec calls ARPACK made.

    Raises:
        ValueError: bad arguments, or BatchNorm/dropout in training mode.
        RuntimeError: ARPACK did not converge within ``max_iter`` restarts.
    """
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

    check_real("tol", tol, 0)
    check_int("max_iter", max_iter, 1)
    op = HessianOperator(model, loss_fn, data)
    check_int("k", k, 1, op.dim - 1)
    if ncv is not None:
        check_int("ncv", ncv, k + 1, op.dim)
    v0 = torch.randn(op.dim, generator=seeded_generator(seed), dtype=torch.float64)

    def matvec(x):
        v = torch.from_numpy(x.reshape(-1).copy())
        return op.matvec(v).to(device="cpu", dtype=torch.float64).numpy()

    linear_op = LinearOperator((op.dim, op.dim), matvec=matvec, dtype="float64")
    try:
        out = eigsh(linear_op, k=k, which="LA", tol=tol, maxiter=max_iter, ncv=ncv, v0=v0.numpy(),
                    return_eigenvectors=return_eigenvectors)
    except ArpackNoConvergence as err:
        raise RuntimeError(
            f"Lanczos did not converge to tol={tol} in max_iter={max_iter} restarts "
            f"({op.num_hvps} Hessian-vector products); raise max_iter or tol"
        ) from err
    values, vectors = out if return_eigenvectors else (out, None)
    order = values.argsort()[::-1].copy()
    eigenvalues = torch.from_numpy(values[order].copy())
    eigenvectors = _result_vectors(torch.from_numpy(vectors[:, order].copy())) if vectors is not None else None
    return EigenResult(eigenvalues, eigenvectors, op.num_hvps, True)


def top_spectrum(models, loss_fn: LossFn, data, k: int = 5, tol: float = 1e-3, max_iter: int = 100,
                 seed: int = 0) -> dict[str, dict[str, float]]:
    """``lambda_max``, ``lambda_k`` and their ratio for several models on the same data. Chapter 13.

    Foret et al. (2021) summarize the Hessian of a network during training by its largest
    eigenvalue ``lambda_max`` and by ``lambda_max / lambda_5``: how far the top eigenvalue stands
    out from the next few (a large ratio means one sharp direction dominates). This calls
    :func:`top_eigenvalues` once per model, with the same data, tolerance and start-vector seed,
    so that differences between models are not differences in the measurement.

    Args:
        models: a mapping name -> model, or a sequence of models (named ``"0"``, ``"1"``, ...).
            Each must be in eval mode if it has BatchNorm or dropout (see
            :mod:`sam_course.curvature.hessian`).
        loss_fn, data: as in :mod:`sam_course.curvature.hessian`; the same data for every model.
        k: the ratio's denominator is the ``k``-th largest eigenvalue, ``2 <= k < dim``.
        tol, max_iter, seed: passed to :func:`top_eigenvalues`.

    Returns:
        ``{name: {"lambda_max", "lambda_k", "ratio", "num_hvps", "converged"}}`` in the models'
        order; eigenvalues as floats (loss units per squared parameter unit), ``ratio`` =
        ``lambda_max / lambda_k`` and NaN when ``lambda_k <= 0`` (a ratio with a non-positive
        denominator says nothing about how much the top direction stands out), ``num_hvps`` as
        an int, ``converged`` as a bool.

    Raises:
        ValueError: ``models`` empty or not models; ``k`` out of range; anything
            :func:`top_eigenvalues` refuses.
    """
    if isinstance(models, nn.Module):
        raise ValueError("models must be a mapping name -> model or a sequence of models, got a single model")
    if isinstance(models, Mapping):
        named = [(str(name), model) for name, model in models.items()]
    else:
        try:
            named = [(str(i), model) for i, model in enumerate(models)]
        except TypeError:
            raise ValueError(
                f"models must be a mapping name -> model or a sequence of models, got {type(models).__name__}"
            ) from None
    if not named:
        raise ValueError("models must hold at least one model, got none")
    for name, model in named:
        check_instance(f"models[{name!r}]", model, nn.Module, "torch.nn.Module")
    check_int("k", k, 2)
    out: dict[str, dict[str, float]] = {}
    for name, model in named:
        result = top_eigenvalues(model, loss_fn, data, k=k, tol=tol, max_iter=max_iter, seed=seed)
        lam_max, lam_k = float(result.eigenvalues[0]), float(result.eigenvalues[k - 1])
        out[name] = {
            "lambda_max": lam_max,
            "lambda_k": lam_k,
            "ratio": lam_max / lam_k if lam_k > 0 else math.nan,
            "num_hvps": int(result.num_hvps),
            "converged": bool(result.converged),
        }
    return out


def power_iteration(model: nn.Module, loss_fn: LossFn, data, tol: float = 1e-4, max_iter: int = 1000,
                    seed: int = 0) -> EigenResult:
    """The dominant Hessian eigenvalue by power iteration: ``u <- H u / ||H u||``. Chapter 13.

    Stops when ``||H u - theta u|| <= tol * |theta|`` with ``theta = u^T H u`` (the residual test
    ARPACK uses in :func:`top_eigenvalues`, so the two HVP counts answer the same question). The
    error shrinks like ``(|lambda_2| / |lambda_1|)^t``: slow when the spectral gap is small.

    Power iteration finds the eigenvalue of largest MAGNITUDE; if the most negative eigenvalue is
    larger in magnitude than ``lambda_max`` it returns that one (check the sign, or use
    :func:`top_eigenvalues`).

    Args:
        tol: relative residual tolerance, as above.
        max_iter: maximum number of iterations (= HVPs).
        seed: seed of the Gaussian start vector.

    Returns:
        An :class:`EigenResult` with one eigenvalue, its eigenvector (``(dim, 1)``), ``num_hvps`` and
        ``converged=False`` if ``max_iter`` was reached first (the last estimate is still returned).
    """
    check_real("tol", tol, 0)
    check_int("max_iter", max_iter, 1)
    op = HessianOperator(model, loss_fn, data)
    u = torch.randn(op.dim, generator=seeded_generator(seed), dtype=torch.float64)
    u = u / torch.linalg.vector_norm(u)
    theta, converged = 0.0, False
    for _ in range(max_iter):
        w = op.matvec(u).to(device="cpu", dtype=torch.float64)
        theta = float(u @ w)
        residual = float(torch.linalg.vector_norm(w - theta * u))
        if residual <= tol * abs(theta):
            converged = True
            break
        norm = torch.linalg.vector_norm(w)
        if norm == 0:  # u is in the null space: H u = 0 exactly, theta = 0 is an eigenvalue.
            converged = True
            break
        u = w / norm
    vectors = _result_vectors(u.reshape(-1, 1))
    return EigenResult(torch.tensor([theta], dtype=torch.float64), vectors, op.num_hvps, converged)


# ----------------------------------------------------------------------------- trace and density


def hutchinson_trace(model: nn.Module, loss_fn: LossFn, data, samples: int = 100, seed: int = 0) -> TraceEstimate:
    """Hutchinson's estimator of ``tr(H)``: the mean of ``z^T H z`` over Rademacher vectors ``z``. Chapter 13.

    Unbiased, because ``E[z z^T] = I``; with Rademacher entries the variance of one sample is
    ``2 * sum_{i != j} H_ij^2``, the smallest among vectors of independent entries with mean 0 and
    variance 1 (Hutchinson, 1990), and the standard error falls like ``1 / sqrt(samples)``.

    Args:
        samples: number of random vectors (= HVPs), ``>= 1``; one sample gives ``stderr = nan``.
        seed: seed of the random vectors.
    """
    check_int("samples", samples, 1)
    gen = seeded_generator(seed)
    op = HessianOperator(model, loss_fn, data)
    values = torch.empty(samples, dtype=torch.float64)
    for i in range(samples):
        z = _rademacher(op.dim, gen)
        values[i] = z @ op.matvec(z).to(device="cpu", dtype=torch.float64)
    stderr = float(values.std(correction=1) / math.sqrt(samples)) if samples > 1 else math.nan
    return TraceEstimate(float(values.mean()), stderr, values, op.num_hvps)


def _lanczos(matvec: Callable[[Tensor], Tensor], start: Tensor, steps: int) -> tuple[Tensor, Tensor]:
    """``steps`` Lanczos steps with full reorthogonalization from ``start``; returns the tridiagonal's
    diagonal ``alpha`` and off-diagonal ``beta`` (float64), shorter if the Krylov space is exhausted."""
    dim = start.numel()
    basis = torch.empty(steps, dim, dtype=torch.float64)
    basis[0] = start / torch.linalg.vector_norm(start)
    alphas, betas = [], []
    scale = 0.0
    for j in range(steps):
        w = matvec(basis[j]).to(device="cpu", dtype=torch.float64)
        alpha = float(basis[j] @ w)
        alphas.append(alpha)
        if j == steps - 1:
            break
        # Classical Gram-Schmidt against the whole basis, twice ("twice is enough"): without it the
        # Lanczos vectors lose orthogonality in floating point and converged Ritz values reappear as
        # spurious copies, which would put false mass in the density.
        q = basis[: j + 1]
        w = w - q.T @ (q @ w)
        w = w - q.T @ (q @ w)
        beta = float(torch.linalg.vector_norm(w))
        scale = max(scale, abs(alpha), beta)
        if beta <= 1e-10 * scale:  # invariant subspace: T already holds all the spectrum start can see
            break
        betas.append(beta)
        basis[j + 1] = w / beta
    return torch.tensor(alphas, dtype=torch.float64), torch.tensor(betas, dtype=torch.float64)


def spectral_density(model: nn.Module, loss_fn: LossFn, data, steps: int = 64, starts: int = 4,
                     seed: int = 0) -> SpectralDensity:
    """The Hessian's eigenvalue density by stochastic Lanczos quadrature. Chapter 13.

    Ubaru, Chen and Saad (2017); applied to neural networks by Ghorbani, Krishnan and Xiao (2019).
    For each of ``starts`` random unit vectors ``v`` (normalized Rademacher), ``steps`` Lanczos steps
    with full reorthogonalization give a tridiagonal ``T``; its eigenvalues (Ritz values) are the
    nodes and the squared first components of its eigenvectors the weights of a Gauss quadrature
    for ``v^T f(H) v = sum_i (u_i^T v)^2 f(lambda_i)``, exact for polynomials of degree up to
    ``2 * steps - 1``. Averaging over starts estimates ``tr f(H) / dim``, i.e. the density. With
    ``steps = dim`` the nodes are the exact eigenvalues (distinct ones, when some repeat). The
    Lanczos basis of one start is kept in memory: ``8 * steps * dim`` bytes.

    Args:
        steps: Lanczos steps per start, ``1 <= steps <= dim`` (Ghorbani et al. use about 90).
        starts: number of random start vectors, ``>= 1``.
        seed: seed of the start vectors.

    Returns:
        A :class:`SpectralDensity`; ``.density(grid, sigma)`` smooths it for plotting.
    """
    check_int("starts", starts, 1)
    gen = seeded_generator(seed)
    op = HessianOperator(model, loss_fn, data)
    check_int("steps", steps, 1, op.dim)
    nodes, weights = [], []
    for _ in range(starts):
        alpha, beta = _lanczos(op.matvec, _rademacher(op.dim, gen), steps)
        tri = torch.diag(alpha) + torch.diag(beta, 1) + torch.diag(beta, -1)
        ritz, vectors = torch.linalg.eigh(tri)
        nodes.append(ritz)
        weights.append(vectors[0] ** 2 / starts)
    return SpectralDensity(torch.cat(nodes), torch.cat(weights), starts, steps, op.num_hvps)


def gaussian_density(nodes: Tensor, weights: Tensor, grid: Tensor, sigma: float) -> Tensor:
    """``phi(t) = sum_i weights[i] * N(t; nodes[i], sigma^2)`` on ``grid``. Chapter 13.

    Args:
        nodes, weights: 1-D tensors of equal length (e.g. from :func:`spectral_density`).
        grid: 1-D tensor of eigenvalue positions.
        sigma: smoothing width in eigenvalue units, ``> 0``.

    Returns:
        ``(len(grid),)`` float64; integrates to ``weights.sum()`` over the real line.
    """
    sigma = check_real("sigma", sigma, 0, low_open=True)
    nodes, weights, grid = (torch.as_tensor(t, dtype=torch.float64) for t in (nodes, weights, grid))
    if nodes.ndim != 1 or weights.shape != nodes.shape:
        raise ValueError(
            f"nodes and weights must be 1-D of equal length, got {tuple(nodes.shape)} and {tuple(weights.shape)}"
        )
    if grid.ndim != 1:
        raise ValueError(f"grid must be 1-D, got shape {tuple(grid.shape)}")
    z = (grid[:, None] - nodes[None, :]) / sigma
    return (torch.exp(-0.5 * z**2) @ weights) / (sigma * math.sqrt(2 * math.pi))
