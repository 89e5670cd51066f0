"""Curvature of the training loss: the gradient, Hessian-vector products and the dense Hessian.

SAM is motivated by sharpness, and the usual measures of sharpness are properties of the Hessian
``H`` of the training loss: its largest eigenvalue ``lambda_max`` (Foret et al. report
``lambda_max`` and ``lambda_max / lambda_5`` during training; chapter 13 measures them), its trace
(Hutchinson) and its whole eigenvalue density (stochastic Lanczos quadrature, Ghorbani et al.
2019). Chapter 4 uses :func:`hvp` to measure the Hessian term that SAM's gradient drops; chapter 9
relates the spectrum to the pictures of the loss landscape.

This module is the curvature API the chapters call (``from sam_course.curvature import hessian``).
It defines :func:`gradient`, :func:`hvp` and :func:`dense_hessian`, and re-exports the spectrum
estimators of :mod:`sam_course.curvature.spectrum`, where they are documented:
``hessian.top_eigenvalues``, ``hessian.top_spectrum``, ``hessian.power_iteration``,
``hessian.hutchinson_trace``, ``hessian.spectral_density``, ``hessian.gaussian_density`` and the
result classes ``EigenResult``, ``TraceEstimate``, ``SpectralDensity``. Both build on
:class:`~sam_course.curvature.operator.HessianOperator`.

Conventions shared by every function here and in :mod:`~sam_course.curvature.spectrum`:

* ``loss_fn(model(x), y)`` returns the MEAN loss of a batch.
* ``data`` is one batch ``(x, y)`` or a sequence of batches (a list, or a ``DataLoader``, which is
  read once into a list, held in memory for the call, so that every Hessian-vector product sees the
  same examples, augmentations included). The loss is
  the average over all examples: batch losses weighted by batch size ``y.shape[0]``.
* Vectors are flat 1-D tensors over the parameters that require grad, concatenated in
  ``model.parameters()`` order (the order of ``torch.nn.utils.parameters_to_vector``); their length
  ``dim`` is ``sam_course.models.count_parameters(model)``. Hessian-vector products are computed in
  the parameters' dtype; eigenvalues, eigenvectors, nodes and weights are returned in float64.
* One "HVP" is one product with the full-data Hessian, i.e. one pass over every batch.
* BatchNorm and dropout must be in eval mode. In training mode BatchNorm normalizes each batch with
  its own statistics, so the loss of an example depends on which other examples share its batch
  (and each forward pass overwrites the running statistics); dropout makes the loss random. Either
  way there is no single Hessian to measure, so these functions raise ``ValueError`` and ask for
  ``model.eval()``. In eval mode BatchNorm is a fixed affine map and everything here is exact.
* The model is left unchanged: parameters, buffers, ``.grad`` and train/eval mode. Random vectors
  come from a private ``torch.Generator`` seeded by ``seed``, so results are reproducible and the
  global random state is not touched.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call

from .._checks import check_int
from .._params import LossFn, as_batches, check_eval_mode, num_entries, split_flat, trainable
from .operator import HessianOperator

# The spectrum estimators live in .spectrum (which imports only .operator, so there is no cycle);
# the chapters call them as hessian.X, hence these explicit re-exports ("import X as X"). They are
# left out of __all__ so that the API reference documents each of them once, in .spectrum.
from .spectrum import EigenResult as EigenResult
from .spectrum import SpectralDensity as SpectralDensity
from .spectrum import TraceEstimate as TraceEstimate
from .spectrum import gaussian_density as gaussian_density
from .spectrum import hutchinson_trace as hutchinson_trace
from .spectrum import power_iteration as power_iteration
from .spectrum import spectral_density as spectral_density
from .spectrum import top_eigenvalues as top_eigenvalues
from .spectrum import top_spectrum as top_spectrum

__all__ = ["gradient", "hvp", "dense_hessian"]


def gradient(model: nn.Module, loss_fn: LossFn, data) -> Tensor:
    """The gradient of the (data-averaged) loss as a flat vector. Chapter 4.

    Returns:
        ``(dim,)`` tensor in the parameters' dtype, ordered like ``model.parameters()`` (trainable
        ones only). ``.grad`` of the parameters is not touched.
    """
    return HessianOperator(model, loss_fn, data).gradient()[1]


def hvp(model: nn.Module, loss_fn: LossFn, data, v: Tensor) -> Tensor:
    """The Hessian-vector product ``H v`` of the loss at the model's current parameters. Chapters 4, 9, 13.

    Computed by double backward (Pearlmutter's trick, reverse-over-reverse):
    ``H v = grad_w (grad_w L(w) . v)``, batch by batch; exact up to floating-point rounding, no
    finite differences. We prefer it to ``torch.func`` (forward-over-reverse ``jvp`` of ``grad``)
    because it runs on the module as it is, with its buffers, hooks and in-place ops, and supports
    every op PyTorch can backpropagate through twice, while forward-mode AD still misses some ops
    (and its first call costs seconds of set-up). One product costs about two forward-backward
    passes; forward-over-reverse was about 25 % faster on the course's small CNN, not worth it.

    Args:
        model, loss_fn, data: as in the module docstring; BatchNorm/dropout must be in eval mode.
        v: flat ``(dim,)`` tensor over the trainable parameters in ``model.parameters()`` order.
            (To use a list of per-parameter tensors, pass ``torch.cat([t.reshape(-1) for t in ts])``.)

    Returns:
        ``(dim,)`` tensor in the parameters' dtype.
    """
    return HessianOperator(model, loss_fn, data).matvec(v)


def dense_hessian(model: nn.Module, loss_fn: LossFn, data, max_dim: int = 4096) -> Tensor:
    """The exact ``(dim, dim)`` Hessian of a tiny model: the tests' oracle (chapters 4 and 13).

    Uses ``torch.autograd.functional.hessian`` on a function of the flat parameter vector, built
    with ``torch.func.functional_call``: the model's parameters are replaced, not differentiated in
    place, so this shares none of :func:`hvp`'s splitting, batch weighting or ``grad_outputs``
    code. (``torch.func.hessian`` would do as well, but its first call costs seconds of set-up and
    warns under current PyTorch.) Costs ``dim`` backward passes and ``dim^2`` memory, hence
    ``max_dim``.

    Returns:
        ``(dim, dim)`` symmetric tensor in the parameters' dtype, rows and columns ordered like the
        flat vectors of this module.
    """
    check_eval_mode(model)
    params = trainable(model)
    dim = num_entries(params)
    check_int("max_dim", max_dim, 1)
    if dim > max_dim:
        raise ValueError(
            f"model has {dim} trainable parameters, more than max_dim={max_dim}; dense_hessian is for tiny models"
        )
    batches = as_batches(data, params[0].device)
    total = sum(y.shape[0] for _, y in batches)
    lookup = {id(p): p for p in params}
    names = [name for name, p in model.named_parameters() if id(p) in lookup]
    flat0 = torch.cat([p.detach().reshape(-1) for p in params])

    def loss_of(flat: Tensor) -> Tensor:
        pieces = split_flat(flat, params, "flat")
        state = dict(zip(names, pieces))
        losses = [loss_fn(functional_call(model, state, (x,)), y) * (y.shape[0] / total) for x, y in batches]
        return torch.stack(losses).sum()

    return torch.autograd.functional.hessian(loss_of, flat0).detach()
