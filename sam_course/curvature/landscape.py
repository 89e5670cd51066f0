"""Pictures of the loss landscape: random 1-D and 2-D slices, interpolations, trajectory planes.

Chapter 9 follows Li, Xu, Taylor, Studer and Goldstein, *Visualizing the Loss Landscape of Neural
Nets* (NeurIPS 2018). A plot of ``L(w + alpha d)`` against ``alpha`` depends on the scale of ``d``
relative to ``w``; since ReLU networks (and any network with BatchNorm) are invariant to rescaling
a layer's weights, an unnormalized direction can make any minimum look sharp or flat. Li et al.'s
filter normalization gives each filter of ``d`` the norm of the corresponding filter of ``w``, so
that slices of different networks (SGD vs SAM) can be compared.

Conventions:

* ``data`` and ``loss_fn`` are as in :mod:`sam_course.curvature.hessian`: one batch ``(x, y)`` or a sequence of
  batches, ``loss_fn(model(x), y)`` the mean loss of a batch; losses and accuracies are averaged
  over examples (batches weighted by size).
* A direction is a ``list`` of tensors, one per parameter that requires grad, in
  ``model.parameters()`` order, each shaped like its parameter. Every function that takes a
  direction also accepts a flat ``(dim,)`` vector in the same order, e.g. a Hessian eigenvector from
  :func:`sam_course.curvature.spectrum.top_eigenvalues`.
* Every evaluation runs in eval mode (the model's own modes are restored afterwards) through
  ``torch.func.functional_call``, so the model's parameters and buffers are never written. BatchNorm
  therefore normalizes with the running statistics of the UNPERTURBED weights ``w``: away from
  ``alpha = 0`` they no longer match the perturbed network's activations, which adds to the loss
  increase (Li et al. zero the BatchNorm entries of the directions, which limits but does not
  remove the effect). Dropout is off.
* Accuracy is reported when the model outputs ``(B, C)`` scores and ``y`` holds integer class
  labels; otherwise it is ``None``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

from .._checks import check_bool, check_instance, wrong_kind
from .._params import LossFn, as_batches, num_entries, seeded_generator, split_flat, trainable

__all__ = [
    "Slice",
    "Surface",
    "TrajectoryPlane",
    "random_direction",
    "loss_and_accuracy",
    "loss_along",
    "interpolate",
    "surface",
    "trajectory_pca",
]



# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Slice:
    """Loss (and accuracy) along a line: :func:`loss_along` and :func:`interpolate`.

    Attributes:
        alphas: ``(n,)`` float64 positions along the line.
        loss: ``(n,)`` float64 mean loss at each position.
        accuracy: ``(n,)`` float64 fraction correct, or ``None`` when not a classification task.
    """

    alphas: Tensor
    loss: Tensor
    accuracy: Tensor | None

    def to_frame(self):
        """A pandas DataFrame with columns ``alpha``, ``loss`` and (if known) ``accuracy``."""
        import pandas as pd

        columns = {"alpha": self.alphas.numpy(), "loss": self.loss.numpy()}
        if self.accuracy is not None:
            columns["accuracy"] = self.accuracy.numpy()
        return pd.DataFrame(columns)


@dataclass(frozen=True)
class Surface:
    """Loss (and accuracy) on a 2-D grid: :func:`surface`.

    ``loss[i, j]`` is the loss at ``w + alphas[j] * d1 + betas[i] * d2``, so
    ``plt.contour(alphas, betas, loss)`` draws it with ``alpha`` on the x axis.

    Attributes:
        alphas: ``(n_alpha,)`` float64.
        betas: ``(n_beta,)`` float64.
        loss: ``(n_beta, n_alpha)`` float64.
        accuracy: ``(n_beta, n_alpha)`` float64, or ``None``.
    """

    alphas: Tensor
    betas: Tensor
    loss: Tensor
    accuracy: Tensor | None


@dataclass(frozen=True)
class TrajectoryPlane:
    """The PCA plane of a training trajectory: :func:`trajectory_pca`.

    Attributes:
        directions: the two unit-norm principal directions ``(d1, d2)``, each a direction (list of
            tensors shaped like the parameters) when a model was given, else a flat float64 vector.
        explained_variance_ratio: ``(2,)`` float64, the share of the trajectory's variance along
            each direction (their sum is at most 1).
        coordinates: ``(n_snapshots, 2)`` float64, ``(w_i - w_final) . d_j`` for every snapshot; the
            last row is ``(0, 0)``. Directions are signed so the first snapshot has coordinates >= 0.
    """

    directions: tuple
    explained_variance_ratio: Tensor
    coordinates: Tensor


# ----------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every module in eval mode and give each its own mode back afterwards."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def _grid(values, name: str) -> Tensor:
    if isinstance(values, (str, bytes)) or isinstance(values, (int, float)) or getattr(values, "ndim", 1) == 0:
        raise wrong_kind(name, values, "1-D sequence of numbers")
    try:
        grid = torch.as_tensor(values, dtype=torch.float64).reshape(-1).cpu()
    except (TypeError, ValueError, RuntimeError):
        raise wrong_kind(name, values, "1-D sequence of numbers") from None
    if grid.numel() == 0 or not bool(torch.isfinite(grid).all()):
        raise ValueError(f"{name} must be a non-empty sequence of finite numbers")
    return grid


def _direction(model: nn.Module, direction, name: str) -> list[Tensor]:
    """``direction`` as per-parameter tensors on the parameters' dtype and device."""
    params = trainable(model)
    if isinstance(direction, Tensor):
        return split_flat(direction.detach(), params, name)
    if not isinstance(direction, (list, tuple)) or len(direction) != len(params):
        raise ValueError(
            f"{name} must be a flat vector of {num_entries(params)} entries or a list of {len(params)} tensors "
            "(one per trainable parameter, in model.parameters() order)"
        )
    out = []
    for i, (d, p) in enumerate(zip(direction, params)):
        if not isinstance(d, Tensor) or d.shape != p.shape:
            shape = tuple(d.shape) if isinstance(d, Tensor) else type(d).__name__
            raise ValueError(f"{name}[{i}] must be a tensor of shape {tuple(p.shape)}, got {shape}")
        out.append(d.detach().to(dtype=p.dtype, device=p.device))
    return out


def _trainable_names(model: nn.Module) -> list[str]:
    return [name for name, p in model.named_parameters() if p.requires_grad]


def _evaluate_state(model: nn.Module, loss_fn: LossFn, batches, state: Mapping[str, Tensor]) -> tuple[float, float | None]:
    total = sum(y.shape[0] for _, y in batches)
    loss_sum, correct, classification = 0.0, 0.0, True
    with torch.no_grad():
        for x, y in batches:
            out = functional_call(model, dict(state), (x,))
            loss_sum += float(loss_fn(out, y)) * y.shape[0]
            classification = classification and out.ndim == 2 and y.ndim == 1 and not y.is_floating_point()
            if classification:
                correct += float((out.argmax(dim=1) == y).sum())
    return loss_sum / total, (correct / total if classification else None)


def _slice(alphas: Tensor, results: list[tuple[float, float | None]]) -> Slice:
    loss = torch.tensor([r[0] for r in results], dtype=torch.float64)
    accs = [r[1] for r in results]
    accuracy = None if any(a is None for a in accs) else torch.tensor(accs, dtype=torch.float64)
    return Slice(alphas, loss, accuracy)


# ----------------------------------------------------------------------------- public functions


def random_direction(model: nn.Module, seed: int = 0, filter_normalize: bool = True) -> list[Tensor]:
    """A Gaussian random direction shaped like the model's parameters (Li et al., 2018). Chapter 9.

    Every entry is drawn from ``N(0, 1)`` by a generator seeded with ``seed`` (the same draw with
    and without normalization). With ``filter_normalize=True``:

    * each parameter with 2 or more dimensions (linear and conv weights) is rescaled filter by
      filter: slice ``d[i]`` along dim 0 (an output unit, a conv filter) gets the Frobenius norm of
      ``w[i]``, i.e. ``d[i] <- d[i] / ||d[i]|| * ||w[i]||``;
    * every 1-D parameter (biases, BatchNorm scales and shifts) is set to ZERO, as Li et al.
      recommend: these few entries would otherwise move the plot a lot, and a bias has no scale
      to normalize by.

    With ``filter_normalize=False`` the plain Gaussian draw is returned for every parameter (the
    unnormalized baseline whose plots depend on the weights' scale).

    Returns:
        A list of tensors, one per parameter that requires grad, in ``model.parameters()`` order,
        with the parameters' shapes, dtypes and devices. The model is not modified.
    """
    gen = seeded_generator(seed)
    check_bool("filter_normalize", filter_normalize)
    direction = []
    for p in trainable(model):
        d = torch.randn(p.shape, generator=gen, dtype=torch.float64)
        if filter_normalize:
            if p.ndim <= 1:
                d = torch.zeros_like(d)
            else:
                w = p.detach().to(device="cpu", dtype=torch.float64)
                d_norm = torch.linalg.vector_norm(d.flatten(1), dim=1)
                w_norm = torch.linalg.vector_norm(w.flatten(1), dim=1)
                d = d * (w_norm / d_norm).reshape(-1, *([1] * (p.ndim - 1)))
        direction.append(d.to(dtype=p.dtype, device=p.device))
    return direction


def loss_and_accuracy(model: nn.Module, loss_fn: LossFn, data) -> tuple[float, float | None]:
    """Mean loss and accuracy of the model on ``data``, in eval mode (modes restored). Chapter 9.

    The batches of ``data`` follow the conventions of ``sam_course._params``; for whole datasets and the
    training loop's metrics see :func:`sam_course.train.evaluation.evaluate`.

    Returns:
        ``(loss, accuracy)``; accuracy is ``None`` when the task is not classification.
    """
    params = trainable(model)
    batches = as_batches(data, params[0].device)
    with _eval_mode(model):
        return _evaluate_state(model, loss_fn, batches, {})


def loss_along(model: nn.Module, loss_fn: LossFn, data, direction, alphas) -> Slice:
    """A 1-D slice of the loss: ``L(w + alpha * d)`` for each ``alpha``. Chapter 9.

    Args:
        direction: ``d``, e.g. from :func:`random_direction` (or a flat vector).
        alphas: positions, in units of ``d`` (with a filter-normalized ``d``, ``alpha = 1`` moves
            every filter by its own norm).

    Returns:
        A :class:`Slice`. The model is not modified; see the module docstring for BatchNorm.
    """
    d = _direction(model, direction, "direction")
    grid = _grid(alphas, "alphas")
    params = trainable(model)
    names = _trainable_names(model)
    batches = as_batches(data, params[0].device)
    results = []
    with _eval_mode(model), torch.no_grad():
        for alpha in grid.tolist():
            state = {n: p + alpha * di for n, p, di in zip(names, params, d)}
            results.append(_evaluate_state(model, loss_fn, batches, state))
    return _slice(grid, results)


def interpolate(model: nn.Module, state_a: Mapping[str, Tensor], state_b: Mapping[str, Tensor], loss_fn: LossFn,
                data, alphas) -> Slice:
    """Loss along the straight line from solution ``a`` to solution ``b``. Chapter 9.

    Evaluates ``model`` with every parameter set to ``(1 - alpha) * a + alpha * b``: ``alpha = 0`` is
    ``a``, ``alpha = 1`` is ``b`` (both exactly), values outside ``[0, 1]`` extrapolate (Goodfellow et
    al., 2015). Floating-point buffers (BatchNorm running means and variances) are interpolated too,
    with ``alpha`` clipped to ``[0, 1]`` so running variances stay positive; integer buffers
    (``num_batches_tracked``) are taken from ``a``. Between the endpoints these statistics belong to
    neither network, which raises the loss there (recomputing them at each point is the remedy).

    Args:
        model: a network of the architecture of both states (its own weights are not used or changed).
        state_a, state_b: ``state_dict()`` of the two solutions, with the keys of ``model.state_dict()``.
        alphas: positions along the line.

    Returns:
        A :class:`Slice`.
    """
    keys = list(model.state_dict().keys())
    for name, state in (("state_a", state_a), ("state_b", state_b)):
        check_instance(name, state, Mapping, "state_dict (a mapping from names to tensors)")
        missing = [k for k in keys if k not in state]
        unexpected = [k for k in state if k not in keys]
        if missing or unexpected:
            raise ValueError(f"{name} does not match model.state_dict(): missing {missing}, unexpected {unexpected}")
    grid = _grid(alphas, "alphas")
    param_names = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    device = next(iter(model.state_dict().values())).device if keys else torch.device("cpu")
    a = {k: state_a[k].detach().to(device) for k in keys}
    b = {k: state_b[k].detach().to(device) for k in keys}
    batches = as_batches(data, device)
    results = []
    with _eval_mode(model), torch.no_grad():
        for alpha in grid.tolist():
            state = {}
            for k in keys:
                if not a[k].is_floating_point():
                    state[k] = a[k]
                    continue
                t = alpha if k in param_names else min(max(alpha, 0.0), 1.0)
                state[k] = (1.0 - t) * a[k] + t * b[k]
            results.append(_evaluate_state(model, loss_fn, batches, state))
    return _slice(grid, results)


def surface(model: nn.Module, loss_fn: LossFn, data, d1, d2, alphas, betas) -> Surface:
    """A 2-D slice of the loss: ``L(w + alpha * d1 + beta * d2)`` on a grid. Chapter 9.

    Args:
        d1, d2: directions (lists of tensors or flat vectors), e.g. two :func:`random_direction`
            draws with different seeds, or the two directions of :func:`trajectory_pca`.
        alphas, betas: grid positions along ``d1`` and ``d2``.

    Returns:
        A :class:`Surface` with ``loss`` of shape ``(len(betas), len(alphas))``. Costs
        ``len(alphas) * len(betas)`` passes over ``data``. The model is not modified.
    """
    u = _direction(model, d1, "d1")
    v = _direction(model, d2, "d2")
    grid_a, grid_b = _grid(alphas, "alphas"), _grid(betas, "betas")
    params = trainable(model)
    names = _trainable_names(model)
    batches = as_batches(data, params[0].device)
    losses = torch.empty(len(grid_b), len(grid_a), dtype=torch.float64)
    accuracy: Tensor | None = torch.empty_like(losses)
    with _eval_mode(model), torch.no_grad():
        for i, beta in enumerate(grid_b.tolist()):
            for j, alpha in enumerate(grid_a.tolist()):
                state = {n: p + alpha * ui + beta * vi for n, p, ui, vi in zip(names, params, u, v)}
                loss, acc = _evaluate_state(model, loss_fn, batches, state)
                losses[i, j] = loss
                if acc is None:
                    accuracy = None
                elif accuracy is not None:
                    accuracy[i, j] = acc
    return Surface(grid_a, grid_b, losses, accuracy)


def _snapshot_vector(snapshot, i: int, model: nn.Module | None) -> Tensor:
    if isinstance(snapshot, Tensor):
        if snapshot.ndim != 1:
            raise ValueError(f"snapshots[{i}] must be a flat 1-D vector, got shape {tuple(snapshot.shape)}")
        return snapshot.detach().to(device="cpu", dtype=torch.float64)
    if isinstance(snapshot, Mapping):
        if model is None:
            raise ValueError("snapshots given as state_dicts need model= to tell parameters from buffers")
        names = _trainable_names(model)
        missing = [n for n in names if n not in snapshot]
        if missing:
            raise ValueError(f"snapshots[{i}] lacks parameters {missing}")
        snapshot = [snapshot[n] for n in names]
    if isinstance(snapshot, (list, tuple)) and all(isinstance(t, Tensor) for t in snapshot):
        if model is not None:
            _direction(model, list(snapshot), f"snapshots[{i}]")  # validates the shapes
        return torch.cat([t.detach().reshape(-1).to(device="cpu", dtype=torch.float64) for t in snapshot])
    raise ValueError(f"snapshots[{i}] must be a flat tensor, a list of tensors or a state_dict")


def trajectory_pca(snapshots: Sequence, model: nn.Module | None = None) -> TrajectoryPlane:
    """The plane that shows a training trajectory best (Li et al., 2018, section 7). Chapter 9.

    With ``w_final = snapshots[-1]``, the rows ``w_i - w_final`` of the earlier snapshots are
    centered and their top two principal components (by SVD) are the directions, as in Li et al.'s
    code (scikit-learn's PCA, which centers). Random directions are nearly orthogonal to a
    trajectory in high dimension, so it would look like a point on a random plane; the PCA plane
    captures most of its movement.

    Args:
        snapshots: at least 3 snapshots, in training order (e.g. one per epoch), each a flat vector
            over the trainable parameters, a list of tensors shaped like them, or a ``state_dict``
            (buffers such as BatchNorm statistics are ignored; needs ``model``).
        model: gives the parameter structure; then the directions come back as lists of tensors
            (shaped, typed and placed like the parameters) ready for :func:`surface`. Without it
            they are flat float64 vectors.

    Returns:
        A :class:`TrajectoryPlane`. To draw the path over the loss, load ``w_final`` into the model,
        call ``surface(model, ..., *plane.directions, alphas, betas)`` and plot
        ``plane.coordinates``: both are in the same units (parameter distance along unit vectors).
    """
    if isinstance(snapshots, (Tensor, Mapping, str, bytes)) or not isinstance(snapshots, Sequence):
        raise wrong_kind("snapshots", snapshots, "list or tuple of at least 3 snapshots")
    if len(snapshots) < 3:
        raise ValueError("snapshots must be a sequence of at least 3 snapshots (flat vectors, lists of tensors or state_dicts)")
    vectors = [_snapshot_vector(s, i, model) for i, s in enumerate(snapshots)]
    dim = vectors[0].numel()
    if model is not None and dim != num_entries(trainable(model)):
        raise ValueError(f"snapshots have {dim} entries but the model has {num_entries(trainable(model))} trainable parameters")
    if any(v.numel() != dim for v in vectors):
        raise ValueError("all snapshots must have the same number of entries")
    weights = torch.stack(vectors)
    offsets = weights - weights[-1]
    centered = offsets[:-1] - offsets[:-1].mean(dim=0)
    _, singular, vh = torch.linalg.svd(centered, full_matrices=False)
    total = float((singular**2).sum())
    if total == 0:
        raise ValueError("snapshots do not move: the trajectory has no variance to project")
    basis = vh[:2]
    if basis.shape[0] < 2:  # dim == 1: no plane exists
        raise ValueError("snapshots must have at least 2 entries for a plane")
    coordinates = offsets @ basis.T
    signs = torch.where(coordinates[0] < 0, -1.0, 1.0).to(torch.float64)
    basis, coordinates = basis * signs[:, None], coordinates * signs
    ratio = singular[:2] ** 2 / total
    if model is None:
        directions = (basis[0].clone(), basis[1].clone())
    else:
        params = trainable(model)
        directions = tuple(split_flat(row, params, "direction") for row in basis)
    return TrajectoryPlane(directions, ratio, coordinates)
