"""Momentum-SAM (MSAM; Becker, Altrock & Risse, 2024): SAM's perturbation from the momentum, one pass per step.

"Momentum-SAM: Sharpness Aware Minimization without Computational Overhead" replaces SAM's
first gradient by what the optimizer already holds: its momentum ``v``. The gradient is taken
at ``w - rho * v / ||v||``, a step of length ``rho`` along the *negative* momentum, toward where
the next update goes (the authors' ``optimizer/msam.py`` perturbs by ``-rho * v / ||v||``), and
the base optimizer applies it at ``w``. One forward-backward pass per step: it costs what the
base optimizer costs.

Not to be confused with :mod:`~sam_course.optim.msam`, which is m-sharpness (m-SAM, chapter 12).

Example::

    from sam_course.optim.momentum_sam import MomentumSAM

    opt = MomentumSAM(model.parameters(), torch.optim.SGD, rho=0.3, lr=0.1, momentum=0.9)
    opt.step(closure)   # one pass, at w - rho * v / ||v||
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .perturbation import global_norm
from .sam import SAM, require_closure, split_state

__all__ = ["MomentumSAM", "momentum_buffer", "MOMENTUM_KEYS"]

#: Where the base optimizers keep their momentum, in the order looked up: SGD's (and RMSprop's)
#: ``momentum_buffer``, the first moment ``exp_avg`` of Adam, AdamW, NAdam, RAdam, Adamax.
MOMENTUM_KEYS = ("momentum_buffer", "exp_avg")


def momentum_buffer(optimizer: torch.optim.Optimizer, param: Tensor) -> Tensor | None:
    """The momentum ``optimizer`` keeps for ``param`` (:data:`MOMENTUM_KEYS`), None before its first step."""
    state = optimizer.state.get(param, {})
    for key in MOMENTUM_KEYS:
        buffer = state.get(key)
        if isinstance(buffer, Tensor):
            return buffer
    return None


class MomentumSAM(SAM):
    """Momentum-SAM (Becker et al., 2024): the gradient at ``w - rho * v / ||v||``, applied at ``w``.

    With ``v`` the base optimizer's momentum (:func:`momentum_buffer`: SGD's ``momentum_buffer``,
    Adam's first moment ``exp_avg``), its norm global over every parameter that has one, and
    ``base`` the base optimizer's update::

        eps     = -rho * v / ||v||           (rho per group)
        w_{t+1} = base(w_t, g(w_t + eps))    one forward-backward pass

    The base's update moves ``w`` along ``-v`` (for SGD, ``w -= lr * v``), so ``eps`` points
    to where the next step goes: the authors' sign. **First step**: before the base optimizer
    has stepped there is no momentum, and ``eps = 0``: the first step is a plain base step (the
    authors start from a zero buffer, which gives the same). So is every step with ``v = 0``.
    ``rho = 0`` is the base optimizer, step for step.

    Differences from the authors' SGD code, which keeps the weights perturbed between steps: the
    base optimizer here steps at ``w`` exactly (its weight decay taken at ``w``, theirs at the
    perturbed point), so any base optimizer with a momentum works and checkpoints hold ``w``;
    the norm has no ``1e-12`` added. Adam's first moment is a direction of the gradient's
    average, not of Adam's step (which divides by the second moment); it is what the paper uses.

    Driving it: ``step(closure)`` perturbs, calls the closure once (forward and backward, as for
    any ``torch.optim`` optimizer: its backward adds to ``.grad``) and returns *its* loss, taken
    at ``w + eps``, then restores ``w``, steps and zeroes ``.grad``. Or the two-step API:
    :meth:`first_step` (perturb), your forward and backward, ``second_step()``.

    Args:
        params: parameters or parameter groups, as for :class:`~sam_course.optim.SAM` (groups may
            set their own ``rho``).
        base_optimizer: a ``torch.optim.Optimizer`` subclass that keeps a momentum
            (:data:`MOMENTUM_KEYS`): SGD with ``momentum > 0``, Adam, AdamW, ...
        rho: length of the perturbation, finite and >= 0 (the paper uses larger values than
            SAM's, e.g. 0.3 for SGD on CIFAR).
        **base_kwargs: keyword arguments of the base optimizer (``lr``, ``momentum``, ...).

    Raises:
        ValueError: on a bad ``rho``, on SGD with ``momentum=0`` (no momentum to perturb along),
            and on anything :class:`~sam_course.optim.SAM` rejects.
        RuntimeError: after the first step of a base optimizer that kept no momentum buffer.
    """

    two_passes_every_step = False   # one pass per step

    def __init__(self, params, base_optimizer: type[torch.optim.Optimizer], rho: float = 0.05,
                 **base_kwargs) -> None:
        for name in ("p", "adaptive", "eta"):
            if name in base_kwargs:
                raise ValueError(f"{name} is not an argument of MomentumSAM, got {name}={base_kwargs[name]!r}: its "
                                 "perturbation is the momentum's L2 direction (no p-norm ball, no ASAM scaling)")
        super().__init__(params, base_optimizer, rho=rho, **base_kwargs)
        if isinstance(self.base_optimizer, torch.optim.SGD):
            for group in self.param_groups:
                if not group["momentum"] > 0:
                    raise ValueError(f"momentum must be > 0 for MomentumSAM around SGD, got {group['momentum']!r} "
                                     "(without a momentum there is nothing to perturb along)")
        #: Steps taken so far (each one forward-backward pass).
        self.steps_taken = 0

    def _perturbation(self) -> list[tuple[list[Tensor], list[Tensor], float]]:
        """``(params, buffers, -rho / ||v||)`` per group, over the parameters that have a momentum."""
        entries = []
        for group in self.param_groups:
            pairs = [(q, momentum_buffer(self.base_optimizer, q)) for q in group["params"]]
            pairs = [(q, v) for q, v in pairs if v is not None]
            if pairs and group["rho"] != 0:
                entries.append((group, [q for q, _ in pairs], [v for _, v in pairs]))
        if not entries:
            return []
        norm = float(global_norm([v for _, _, vs in entries for v in vs], 2.0))
        if not norm > 0:  # zero momentum (or NaN: refuse to move rather than poison w)
            return []
        return [(params, buffers, -group["rho"] / norm) for group, params, buffers in entries]

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Move the parameters from ``w`` to ``w - rho * v / ||v||`` (``w`` remembered exactly).

        Parameters without a momentum yet stay at ``w``; with no momentum anywhere (the first
        step) or ``rho = 0`` nothing moves. ``.grad`` is not read; ``zero_grad`` zeroes it.

        Raises:
            RuntimeError: if called twice without ``second_step`` in between.
        """
        if self.perturbed:
            raise RuntimeError("first_step was called twice; call second_step() before the next first_step()")
        for params, buffers, alpha in self._perturbation():
            self._save(params)
            torch._foreach_add_(params, buffers, alpha=alpha)
        # Perturbed only where something moved: before the first momentum there is no w to restore.
        self._perturbed = bool(self._active)
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Restore ``w`` and let the base optimizer step with the gradient taken at ``w + eps``.

        Raises:
            RuntimeError: when, after the first step, the base optimizer keeps no momentum buffer
                (:data:`MOMENTUM_KEYS`) for any parameter: MomentumSAM would be the base optimizer.
        """
        super().second_step(zero_grad)
        self.steps_taken += 1
        if self.steps_taken == 1 and not any(momentum_buffer(self.base_optimizer, q) is not None
                                             for group in self.param_groups for q in group["params"]):
            raise RuntimeError(f"base_optimizer {type(self.base_optimizer).__name__} keeps no momentum buffer "
                               f"({' or '.join(MOMENTUM_KEYS)}): MomentumSAM needs SGD with momentum > 0, Adam, ...")

    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """One Momentum-SAM step: perturb along ``-v``, one forward-backward pass, restore, base step.

        Args:
            closure: does forward and backward on one batch and returns the loss.

        Returns:
            The closure's loss, at ``w + eps``. While perturbed (after :meth:`first_step`),
            ``step(closure)`` runs the closure there and completes the step, ``step()`` is
            ``second_step()``.
        """
        if self.perturbed:
            return self.complete_step(closure)
        require_closure(closure, "MomentumSAM", "; or call opt.first_step(), backward, opt.second_step()")
        self.first_step()
        with torch.enable_grad():
            loss = self._perturbed_pass(closure)
        self.second_step(zero_grad=True)
        return loss

    def state_dict(self) -> dict:
        """SAM's state (the base optimizer's, momentum included) and the step counter.

        Raises:
            RuntimeError: while the weights are perturbed (see :meth:`sam_course.optim.sam.SAM.state_dict`).
        """
        state = super().state_dict()
        state["momentum_sam"] = {"steps_taken": self.steps_taken}
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a :meth:`state_dict`; training then resumes exactly where it stopped.

        Raises:
            ValueError: if ``state_dict`` was not saved by :meth:`MomentumSAM.state_dict`.
        """
        state_dict, extra = split_state(state_dict, "momentum_sam", "MomentumSAM")
        super().load_state_dict(state_dict)
        self.steps_taken = int(extra["steps_taken"])
