"""Friendly SAM (F-SAM; Li, Zhou, He, Cheng & Huang, CVPR 2024): SAM's ascent without the full-gradient part.

F-SAM's argument: the minibatch gradient ``g`` that SAM climbs along is the full-batch gradient
plus the batch's noise, and only the noise part of the ascent helps generalization. An
exponential moving average ``m`` of past gradients estimates the full-batch part, and the
ascent is taken along ``g - sigma * m`` instead of ``g``. Everything else is SAM's step.

The rule follows the authors' code (github.com/nblt/F-SAM, ``utils.py``), in particular the
order of the two updates and what the average is taken of: the *raw* gradient ``g``, not the
corrected ``g - sigma * m``.

Example::

    from sam_course.optim.friendly import FriendlySAM

    opt = FriendlySAM(model.parameters(), torch.optim.SGD, rho=0.05, sigma=1.0, lmbda=0.9,
                      lr=0.1, momentum=0.9)
    opt.step(closure)   # two passes, as SAM
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import check_real
from .perturbation import check_finite_grads
from .sam import SAM, split_state

__all__ = ["FriendlySAM"]

#: Key of F-SAM's average ``m`` in the optimizer's per-parameter state.
MOMENTUM_KEY = "fsam_momentum"


class FriendlySAM(SAM):
    """Friendly SAM (Li et al., CVPR 2024): SAM whose ascent direction drops an average of past gradients.

    With ``g_t`` the gradient at ``w_t`` (all groups together) and ``m`` F-SAM's average, kept
    per parameter::

        t = 0:   d_0 = g_0,                     m_0 = g_0
        t > 0:   d_t = g_t - sigma * m_{t-1},   m_t = lmbda * m_{t-1} + (1 - lmbda) * g_t
        eps_hat = epsilon_hat(d_t)              (SAM's, so rho * d_t / ||d_t|| for p = 2)
        w_{t+1} = base(w_t, g(w_t + eps_hat))

    The average is of the raw gradients ``g`` (as in the authors' code), never of the corrected
    ``d``. ``sigma = 0`` is :class:`~sam_course.optim.SAM`, step for step (``m`` is still kept).
    A parameter seen for the first time (a group added later, a parameter whose ``.grad`` was
    None before) starts its own ``m`` from its gradient, and its ``d`` is its ``g``.

    ``eps_hat`` is SAM's in every other respect: ``rho``, ``p``, ``adaptive`` (ASAM's ball taken
    of ``d``), ``eta`` and the sign for ``maximize=True``. The authors add ``1e-12`` to the norm;
    SAM does not (a zero ``d`` gives ``eps_hat = 0``). Cost: two forward-backward passes per step,
    as SAM.

    Args:
        params: parameters or parameter groups, as for :class:`~sam_course.optim.SAM`.
        base_optimizer: a ``torch.optim.Optimizer`` subclass (the class).
        rho: radius of the perturbation, finite and >= 0.
        sigma: weight of the average subtracted from the gradient, finite and >= 0 (the paper: 1).
        lmbda: decay of the average, in [0, 1] (the paper: 0.9 to 0.95).
        **sam_kwargs: the other arguments of :class:`~sam_course.optim.SAM` (``p``, ``adaptive``,
            ``eta``) and the base optimizer's (``lr``, ``momentum``, ...).

    Raises:
        ValueError: on a bad ``sigma`` or ``lmbda`` (and on anything :class:`~sam_course.optim.SAM`
            rejects).
    """

    def __init__(self, params, base_optimizer: type[torch.optim.Optimizer], rho: float = 0.05, sigma: float = 1.0,
                 lmbda: float = 0.9, **sam_kwargs) -> None:
        self.sigma = check_real("sigma", sigma, 0)
        self.lmbda = check_real("lmbda", lmbda, 0, 1)
        super().__init__(params, base_optimizer, rho=rho, **sam_kwargs)

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Move every parameter with a gradient to ``w + eps_hat``, ``eps_hat`` taken of ``d = g - sigma * m``.

        Updates the average ``m`` (see the class docstring). Without ``zero_grad`` the ``.grad``
        of every parameter is left as it was (the raw ``g``).

        Raises:
            RuntimeError: if called twice without ``second_step`` in between.
            ValueError: if a gradient holds inf or NaN (nothing is changed then, ``m`` included).
        """
        if self.perturbed:
            raise RuntimeError("first_step was called twice; call second_step() before the next first_step()")
        params = [q for group in self.param_groups for q in group["params"] if q.grad is not None]
        if params:
            check_finite_grads([q.grad for q in params])
        # New averages and corrected directions are computed first and stored only once SAM's
        # step has succeeded, so an error leaves m as it was.
        averages: dict[Tensor, Tensor] = {}
        swapped: list[tuple[Tensor, Tensor]] = []
        for q in params:
            g = q.grad
            previous = self.state[q].get(MOMENTUM_KEY)
            if previous is None:
                averages[q] = g.detach().clone()
                continue
            averages[q] = previous.mul(self.lmbda).add_(g, alpha=1.0 - self.lmbda)
            if self.sigma != 0:
                swapped.append((q, g))
                q.grad = g.sub(previous, alpha=self.sigma)
        try:
            super().first_step(zero_grad=False)
        finally:
            for q, g in swapped:
                q.grad = g  # the raw gradient back, whether SAM's step worked or not
        for q, m in averages.items():
            self.state[q][MOMENTUM_KEY] = m
        if zero_grad:
            self.zero_grad()

    def state_dict(self) -> dict:
        """SAM's state (base optimizer included; the averages ``m`` are in the per-parameter state)
        and F-SAM's settings.

        Raises:
            RuntimeError: while the weights are perturbed (see :meth:`sam_course.optim.sam.SAM.state_dict`).
        """
        state = super().state_dict()
        state["friendly_sam"] = {"sigma": self.sigma, "lmbda": self.lmbda}
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a :meth:`state_dict`: the base optimizer's state and the averages (``sigma`` and
        ``lmbda`` stay those given to the constructor).

        Raises:
            ValueError: if ``state_dict`` was not saved by :meth:`FriendlySAM.state_dict`.
        """
        state_dict, _ = split_state(state_dict, "friendly_sam", "FriendlySAM")
        super().load_state_dict(state_dict)
