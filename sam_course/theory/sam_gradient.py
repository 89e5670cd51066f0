"""The gradient of the SAM objective, with and without the Hessian term SAM drops (chapter 4).

SAM minimizes ``L(w + eps_hat(w))`` with ``eps_hat(w) = rho * g / ||g||`` and ``g = grad L(w)``
(p = 2, the paper's choice). By the chain rule its exact gradient is::

    grad_w L(w + eps_hat(w)) = g' + (rho / ||g||) * H (I - u u^T) g'

where ``g' = grad L`` evaluated at ``w + eps_hat``, ``u = g / ||g||`` and ``H`` the Hessian of the
loss at ``w``: the Jacobian of ``eps_hat`` is ``(rho / ||g||) (I - u u^T) H``, and the chain rule
multiplies ``g'`` by its transpose. SAM (Foret et al., 2021) keeps only the first term, ``g'``,
which is what :class:`sam_course.optim.SAM` applies; the second term costs one Hessian-vector
product per step. This module computes both, without touching the model: :func:`sam_gradient`
(either gradient), :func:`sam_gradient_parts` (the two terms separately, for measurements), and
:func:`sam_gradient_step` / :func:`fit_sam_gradient` to train with either one.

Conventions are those of :mod:`sam_course.curvature.hessian`: ``loss_fn(model(x), y)`` is a batch mean;
``data`` is one batch ``(x, y)`` or a sequence of batches (the loss is the example-weighted average
over all of them); vectors are flat ``(dim,)`` tensors over the trainable parameters in
``model.parameters()`` order; BatchNorm and dropout must not be in training mode (the loss must be
a deterministic function of the weights; an MLP or a CNN without BatchNorm may train in train
mode). Parameters, buffers, ``.grad`` and the train/eval mode of the model are left unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.utils.data import DataLoader

from .._checks import check_bool, check_instance
from .._params import LossFn, as_batches, check_eval_mode, flatten, split_flat, trainable
from ..optim.perturbation import check_rho, epsilon_hat
from ..optim.sam import SAM

if TYPE_CHECKING:  # pandas is imported only by fit_sam_gradient, through sam_course.train
    import pandas as pd

__all__ = ["SAMGradient", "sam_gradient", "sam_gradient_parts", "sam_gradient_step", "fit_sam_gradient"]


# ----------------------------------------------------------------------------- shared pieces


class _Problem:
    """The model, its trainable parameters and the batches: everything a gradient needs."""

    def __init__(self, model: nn.Module, loss_fn: LossFn, data, rho) -> None:
        check_instance("model", model, nn.Module, "torch.nn.Module")
        if not callable(loss_fn):
            raise ValueError(f"loss_fn must be callable, got {loss_fn!r}")
        check_rho(rho)
        check_eval_mode(model)
        self.model, self.loss_fn, self.rho = model, loss_fn, float(rho)
        self.params = trainable(model)
        lookup = {id(p): p for p in self.params}
        self.names = [name for name, p in model.named_parameters() if id(p) in lookup]
        self.batches = as_batches(data, self.params[0].device)
        self.total = sum(y.shape[0] for _, y in self.batches)

    def loss(self, weights: Sequence[Tensor] | None = None) -> Tensor:
        """The example-weighted mean loss at the model's weights, or at ``weights`` (same order)."""
        state = None if weights is None else dict(zip(self.names, weights))
        total = None
        for x, y in self.batches:
            out = self.model(x) if state is None else functional_call(self.model, state, (x,))
            loss = self.loss_fn(out, y)
            if len(self.batches) > 1:
                loss = loss * (y.shape[0] / self.total)
            total = loss if total is None else total + loss
        return total

    def gradient(self, weights: Sequence[Tensor] | None = None,
                 create_graph: bool = False) -> tuple[Tensor, list[Tensor]]:
        """The loss and its gradient (one tensor per parameter, zeros where the loss ignores one)."""
        with torch.enable_grad():
            if weights is None:
                leaves = self.params
            else:
                leaves = [w.detach().requires_grad_() for w in weights]
            loss = self.loss(None if weights is None else leaves)
            grads = torch.autograd.grad(loss, leaves, create_graph=create_graph, allow_unused=True)
        return loss, [torch.zeros_like(p) if g is None else g for g, p in zip(grads, self.params)]


def _raise_if_not_finite(flat: Tensor, what: str) -> None:
    if not bool(torch.isfinite(flat).all()):
        raise ValueError(f"{what} contains inf or NaN (check the loss, the data and the learning rate)")


def _norm(flat: Tensor) -> float:
    return float(torch.linalg.vector_norm(flat))


# ----------------------------------------------------------------------------- the two gradients


def _first_order(problem: _Problem) -> tuple[Tensor, Tensor]:
    """Loss at ``w`` (0-d, detached) and ``g'``, the gradient at ``w + eps_hat`` (what SAM's second pass takes)."""
    loss, grads = problem.gradient()
    eps = epsilon_hat(grads, problem.rho, 2)  # raises on a non-finite gradient; zero g -> zero eps
    with torch.no_grad():
        perturbed = torch._foreach_add([p.detach() for p in problem.params], eps)
    _, shifted = problem.gradient(perturbed)
    return loss.detach(), flatten([g.detach() for g in shifted], problem.params)


def _second_order(problem: _Problem) -> tuple[Tensor, Tensor]:
    """Loss at ``w`` (0-d, detached) and the exact gradient of ``w -> L(w + eps_hat(w))`` (autograd through eps_hat)."""
    loss, grads = problem.gradient(create_graph=True)
    flat_g = flatten([g.detach() for g in grads], problem.params)
    _raise_if_not_finite(flat_g, "the gradient at w")
    if problem.rho == 0 or not bool(flat_g.any()):
        # eps_hat is identically 0 for rho = 0; at g = 0 the normalization g / ||g|| has no
        # derivative, and we take eps_hat = 0 there as SAM does, so only the first term remains.
        return _first_order(problem)
    with torch.enable_grad():
        norm = torch.sqrt(sum((g * g).sum() for g in grads))
        scale = problem.rho / norm
        # w + eps_hat(w) as a differentiable function of w: autograd backpropagates through the
        # normalization and through g itself, which is where the Hessian enters.
        perturbed = [p + scale * g for p, g in zip(problem.params, grads)]
        total = problem.loss(perturbed)
        full = torch.autograd.grad(total, problem.params, allow_unused=True)
    return loss.detach(), flatten([None if g is None else g.detach() for g in full], problem.params)


def sam_gradient(model: nn.Module, loss_fn: LossFn, data, rho: float, second_order: bool = False) -> Tensor:
    """The SAM gradient at the model's weights, as a flat vector. Chapter 4.

    With ``second_order=False``, SAM's gradient ``g' = grad L`` at ``w + eps_hat``, ``eps_hat =
    rho * g / ||g||`` (equation 3 of Foret et al., 2021): what :class:`sam_course.optim.SAM`'s
    second pass leaves in ``.grad``. With ``second_order=True``, the exact gradient of
    ``w -> L(w + eps_hat(w))``, obtained by autograd through ``eps_hat`` (the first gradient is
    built with ``create_graph=True``); it equals ``g' + (rho / ||g||) H (I - u u^T) g'``.

    At ``rho = 0`` both are the plain gradient. Where ``g = 0``, ``eps_hat = 0`` (as in
    :func:`~sam_course.optim.epsilon_hat`) and the normalization has no derivative; both then
    return the plain gradient (which is 0).

    Args:
        model, loss_fn, data: see the module docstring.
        rho: radius of the ball, finite and >= 0 (parameter units).
        second_order: keep the Hessian term.

    Returns:
        ``(dim,)`` tensor in the parameters' dtype. The model is left unchanged.

    Raises:
        ValueError: on bad arguments, a non-finite gradient, or BatchNorm/dropout in training mode.
    """
    check_bool("second_order", second_order)
    problem = _Problem(model, loss_fn, data, rho)
    return (_second_order if second_order else _first_order)(problem)[1]


@dataclass(frozen=True)
class SAMGradient:
    """The SAM gradient split into its two terms, from :func:`sam_gradient_parts`. Chapter 4.

    All vectors are flat ``(dim,)`` tensors in the parameters' dtype.

    Attributes:
        rho: the radius used.
        loss: ``L(w)``, the loss at the model's weights.
        perturbed_loss: ``L(w + eps_hat)``.
        gradient: ``g = grad L(w)``, the plain gradient.
        first_order: ``g' = grad L(w + eps_hat)``, SAM's gradient.
        hessian_term: ``(rho / ||g||) H (I - u u^T) g'`` with ``u = g / ||g||``, the term SAM
            drops (zeros when ``g = 0`` or ``rho = 0``).
    """

    rho: float
    loss: float
    perturbed_loss: float
    gradient: Tensor
    first_order: Tensor
    hessian_term: Tensor

    @property
    def full(self) -> Tensor:
        """The exact gradient of ``w -> L(w + eps_hat(w))``: ``first_order + hessian_term``."""
        return self.first_order + self.hessian_term

    @property
    def cosine(self) -> float:
        """Cosine of the angle between ``first_order`` and ``full`` (NaN if either is 0)."""
        return _cosine(self.first_order, self.full)

    @property
    def angle(self) -> float:
        """Angle between ``first_order`` and ``full`` in radians (NaN if either is 0).

        Computed as ``2 atan2(||a - b||, ||a + b||)`` for the unit vectors ``a`` and ``b``, which
        stays accurate for tiny angles, where ``acos`` of the cosine loses every digit.
        """
        return _angle(self.first_order, self.full)

    @property
    def norm_ratio(self) -> float:
        """``||full|| / ||first_order||`` (NaN if ``first_order`` is 0)."""
        denominator = _norm(self.first_order)
        return _norm(self.full) / denominator if denominator > 0 else math.nan

    @property
    def relative_term(self) -> float:
        """``||hessian_term|| / ||first_order||``: how large the dropped term is (NaN if 0/0)."""
        denominator = _norm(self.first_order)
        return _norm(self.hessian_term) / denominator if denominator > 0 else math.nan


def _angle(a: Tensor, b: Tensor) -> float:
    na, nb = _norm(a), _norm(b)
    if na == 0 or nb == 0:
        return math.nan
    ua, ub = a.double() / na, b.double() / nb
    return 2.0 * math.atan2(_norm(ua - ub), _norm(ua + ub))


def _cosine(a: Tensor, b: Tensor) -> float:
    na, nb = _norm(a), _norm(b)
    if na == 0 or nb == 0:
        return math.nan
    return float((a.double() @ b.double()) / (na * nb))


def sam_gradient_parts(model: nn.Module, loss_fn: LossFn, data, rho: float) -> SAMGradient:
    """Both terms of the exact SAM gradient, computed separately. Chapter 4.

    ``first_order`` is SAM's ``g'`` (as :func:`sam_gradient`); ``hessian_term`` is
    ``(rho / ||g||) H (I - u u^T) g'``, one Hessian-vector product at ``w`` by double backward
    through the graph of the first gradient (as :func:`sam_course.curvature.hessian.hvp`). Their sum equals
    ``sam_gradient(..., second_order=True)``, which gets it by differentiating through ``eps_hat``
    instead: the two routes check each other and the derivation of chapter 4.

    Args:
        model, loss_fn, data: see the module docstring.
        rho: radius of the ball, finite and >= 0.

    Returns:
        A :class:`SAMGradient`. The model is left unchanged.

    Raises:
        ValueError: as :func:`sam_gradient`.
    """
    problem = _Problem(model, loss_fn, data, rho)
    loss, grads = problem.gradient(create_graph=True)
    flat_g = flatten([g.detach() for g in grads], problem.params)
    _raise_if_not_finite(flat_g, "the gradient at w")
    eps = epsilon_hat([g.detach() for g in grads], problem.rho, 2)
    with torch.no_grad():
        perturbed = torch._foreach_add([p.detach() for p in problem.params], eps)
    perturbed_loss, shifted = problem.gradient(perturbed)
    first = flatten([g.detach() for g in shifted], problem.params)
    norm = _norm(flat_g)
    term = torch.zeros_like(first)
    live = [i for i, g in enumerate(grads) if g.requires_grad]
    if problem.rho > 0 and norm > 0 and live:
        unit = flat_g / norm
        # Only the part of g' orthogonal to g moves eps_hat: scaling g does not change g / ||g||.
        projected = split_flat(first - unit * (unit @ first), problem.params)
        with torch.enable_grad():
            hv = torch.autograd.grad([grads[i] for i in live], problem.params,
                                     grad_outputs=[projected[i] for i in live], allow_unused=True)
        term = flatten([None if h is None else h.detach() for h in hv], problem.params) * (problem.rho / norm)
    return SAMGradient(
        rho=problem.rho,
        loss=float(loss.detach()),
        perturbed_loss=float(perturbed_loss.detach()),
        gradient=flat_g,
        first_order=first,
        hessian_term=term,
    )


# ----------------------------------------------------------------------------- training with either


def _check_optimizer(optimizer) -> None:
    if isinstance(optimizer, SAM):
        raise ValueError(
            "optimizer must be a plain torch.optim optimizer (the SAM gradient is computed here); "
            "pass opt.base_optimizer instead of a sam_course.optim.SAM"
        )
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ValueError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")


def _apply(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn, inputs: Tensor, targets: Tensor,
           rho: float, second_order: bool) -> Tensor:
    """Write the SAM gradient of the batch into ``.grad`` and step; the loss before the step (0-d, detached)."""
    problem = _Problem(model, loss_fn, (inputs, targets), rho)
    loss, flat = (_second_order if second_order else _first_order)(problem)
    for p, piece in zip(problem.params, split_flat(flat, problem.params)):
        p.grad = piece
    optimizer.step()
    return loss


def sam_gradient_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn,
                      inputs: Tensor, targets: Tensor, rho: float, second_order: bool = False) -> float:
    """One training step with the SAM gradient, first- or second-order. Chapter 4.

    Computes :func:`sam_gradient` on the batch, writes it into ``.grad`` of the model's trainable
    parameters (replacing what was there) and calls ``optimizer.step()``. With
    ``second_order=False`` this is SAM's step (the same update as :class:`sam_course.optim.SAM`
    around the same base optimizer); with ``rho = 0`` it is a plain step of ``optimizer``.

    Args:
        model: trained in place; BatchNorm and dropout must not be in training mode.
        optimizer: a plain ``torch.optim`` optimizer over the model's parameters (not SAM).
        loss_fn: averages over the batch.
        inputs, targets: one batch.
        rho: radius, finite and >= 0.
        second_order: keep the Hessian term (one Hessian-vector product more per step).

    Returns:
        The batch loss at the weights before the step.
    """
    _check_optimizer(optimizer)
    check_bool("second_order", second_order)
    return float(_apply(model, optimizer, loss_fn, inputs, targets, rho, second_order))


def fit_sam_gradient(model: nn.Module, optimizer: torch.optim.Optimizer, train_data, epochs: int, *,
                     batch_size: int, rho: float, second_order: bool = False,
                     eval_sets: Mapping[str, object] | None = None, loss_fn: LossFn | None = None,
                     seed: int = 0) -> pd.DataFrame:
    """Train with :func:`sam_gradient_step` and record one history row per epoch. Chapter 4.

    :func:`sam_course.train.fit` with :func:`sam_gradient_step` as its per-batch step, for
    comparing the three updates of chapter 4 on equal terms (``rho = 0``: the base optimizer;
    ``second_order=False``: SAM; ``True``: SAM with the Hessian term). The order of the examples
    is therefore the one ``train.fit`` uses for the same ``seed``, and a SAM run here reproduces
    ``train.fit`` with :class:`~sam_course.optim.SAM` around the same base optimizer, up to
    floating-point rounding. The model's train/eval mode is left as the caller set it (BatchNorm
    and dropout must not be in training mode).

    Args:
        model: trained in place (its parameters' device is used).
        optimizer: a plain ``torch.optim`` optimizer over the model's parameters.
        train_data: a dataset, as for :func:`sam_course.train.fit` (batched from whole tensors;
            a ``DataLoader`` stands for its dataset).
        epochs: number of epochs, >= 0.
        batch_size: examples per step, >= 1 (the last batch of an epoch may be smaller).
        rho, second_order: as in :func:`sam_gradient_step`.
        eval_sets: name -> dataset, evaluated after every epoch as by :func:`sam_course.train.evaluate`.
        loss_fn: averages over a batch; default cross-entropy.
        seed: seeds the order of the examples.

    Returns:
        A DataFrame with one row per epoch, row 0 before training: ``epoch``, ``steps``,
        ``train_loss``, ``train_acc`` (and ``train_clean_acc``, ``train_memorized`` for noisy
        labels), ``{name}_loss`` and ``{name}_acc`` for every eval set (and their noisy views),
        ``batch_loss`` (mean minibatch loss during the epoch, NaN at epoch 0) and ``seconds``
        (wall time of the epoch's steps, evaluation excluded): the columns of ``train.fit``'s
        history without ``lr`` and ``eval_seconds``.

    Raises:
        ValueError: on bad arguments (``train.fit`` checks those of the loop).
    """
    from .. import train

    _check_optimizer(optimizer)
    rho = check_rho(rho)
    check_bool("second_order", second_order)

    def step(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn, x: Tensor, y: Tensor) -> Tensor:
        return _apply(model, optimizer, loss_fn, x, y, rho, second_order)

    # The old loop of this function batched a DataLoader's dataset; fit would take its batches.
    data = train_data.dataset if isinstance(train_data, DataLoader) else train_data
    # train_mode=False: the SAM gradient needs a loss that is a fixed function of the weights, so
    # the model keeps the mode its caller chose (eval for BatchNorm).
    fitted = train.fit(model, optimizer, data, epochs, batch_size=batch_size, eval_sets=eval_sets, loss_fn=loss_fn,
                       seed=seed, step=step, train_mode=False, progress=False)
    history = fitted.history.drop(columns=["lr", "eval_seconds"])
    if train.as_tensors(data).clean is None:
        # Without label noise these two columns only repeat train_acc and NaN.
        history = history.drop(columns=["train_clean_acc", "train_memorized"])
    return history
