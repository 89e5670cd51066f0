"""Cheaper relatives of SAM, and the exact count of what they cost (chapter 14).

A SAM step takes two forward-backward passes: one at ``w`` for the direction of the perturbation,
one at ``w + eps_hat`` for the gradient the base optimizer applies. Chapter 14 compares schemes
that spend fewer passes:

:class:`SAMEveryK`
    the full two-pass step on steps ``0, k, 2k, ...`` and a plain base-optimizer step (one pass)
    on the others (``RunConfig(sam_every=k)`` of :mod:`sam_course.train` builds it).
:class:`LookSAM`
    the scheme of Liu et al. (CVPR 2022): the full SAM step every ``k`` steps, where it also
    remembers the part of the SAM gradient that the plain gradient does not explain (its component
    orthogonal to the plain gradient); on the steps in between, one pass gives the plain gradient
    and that remembered component is added back, rescaled. Same passes as SAM every ``k`` steps,
    but every step carries a sharpness correction.

:func:`forward_backward_passes` counts the passes of either schedule exactly, so chapter 14 can
put the cost of each run on the x-axis without relying on a noisy clock.

Example::

    from sam_course.optim.variants import LookSAM

    opt = LookSAM(model.parameters(), torch.optim.SGD, rho=0.05, k=5, alpha=0.7, lr=0.1)
    for x, y in loader:
        def closure():
            loss = loss_fn(model(x), y)
            loss.backward()
            return loss
        opt.step(closure)   # two passes on steps 0, 5, 10, ...; one pass otherwise
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .._checks import check_int, check_items, check_optional_int, check_real
from .perturbation import global_norm
from .sam import SAM, require_closure, split_state

__all__ = ["DEFAULT_ALPHA", "SAMEveryK", "LookSAM", "orthogonal_component", "forward_backward_passes"]

#: LookSAM's default weight of the reused direction (the usual default of LookSAM implementations).
DEFAULT_ALPHA = 0.7


def _dot(a: list[Tensor], b: list[Tensor]) -> Tensor:
    """Global inner product of two lists of tensors (one entry per parameter)."""
    return sum((x * y).sum() for x, y in zip(a, b))


def orthogonal_component(sam_grads: list[Tensor], grads: list[Tensor]) -> list[Tensor]:
    """The part of the SAM gradient orthogonal to the plain gradient, over all parameters together.

    ``g_v = g_s - (<g_s, g> / ||g||^2) g``, with ``g_s`` the gradient at ``w + eps_hat`` and ``g``
    the gradient at ``w``, both given as lists of tensors (one per parameter, same shapes); the
    inner product and the norm are global, over every entry of every tensor. A zero ``g`` gives
    ``g_v = g_s``. Chapter 14 derives why this is the part worth reusing: the component along
    ``g`` changes little from step to step, and the plain gradient of the next step already
    supplies it.

    Returns:
        New tensors, split and shaped like ``sam_grads``.

    Raises:
        ValueError: if the two lists differ in length or in the shape of an entry.
    """
    sam_grads = check_items("sam_grads", sam_grads, Tensor, "tensors")
    grads = check_items("grads", grads, Tensor, "tensors")
    if len(sam_grads) != len(grads) or any(a.shape != b.shape for a, b in zip(sam_grads, grads)):
        raise ValueError("sam_grads and grads must hold tensors of the same shapes, in the same order")
    if not grads:
        return []
    norm2 = _dot(grads, grads)
    coefficient = _dot(sam_grads, grads) / norm2 if bool(norm2 > 0) else torch.zeros((), dtype=grads[0].dtype)
    return [s - coefficient.to(s.dtype) * g for s, g in zip(sam_grads, grads)]


def forward_backward_passes(steps: int, every: int | None) -> int:
    """Exact number of forward-backward passes of ``steps`` optimizer steps.

    ``every=None`` is the base optimizer: one pass per step. ``every=k`` is a schedule whose
    steps ``0, k, 2k, ...`` (counted from the start of the run) take two passes and the others
    one: :class:`SAMEveryK` (``k = 1`` is plain SAM, ASAM included) and :class:`LookSAM` with
    period ``k``. That is ``steps + ceil(steps / k)`` passes. Chapter 14 divides it by ``steps``
    to get the cost per step relative to the base optimizer (2 for SAM, ``1 + 1/k`` in the limit).

    Args:
        steps: optimizer steps since the start of the run, an int >= 0.
        every: None, or the period ``k``, an int >= 1.

    Raises:
        ValueError: on a negative or non-integer ``steps``, or a bad ``every``.
    """
    steps = check_int("steps", steps, low=0)
    every = check_optional_int("every", every, low=1)
    if every is None:
        return steps
    return steps + -(-steps // every)


class SAMEveryK(SAM):
    """SAM every ``k`` steps: a full SAM step on steps ``0, k, 2k, ...``, the base optimizer alone between.

    With ``t`` the optimizer's own step counter (:attr:`steps_taken`, counted across epochs and
    kept by :meth:`state_dict`), ``g(v)`` the minibatch gradient at ``v`` and ``base`` the base
    optimizer's update::

        t % k == 0:   eps_hat = epsilon_hat(g(w)),  w <- base(w, g(w + eps_hat))   two passes
        otherwise:                                  w <- base(w, g(w))             one pass

    ``eps_hat`` is :class:`~sam_course.optim.SAM`'s (``rho``, ``p``, ``adaptive``, ``eta``), so
    ``k = 1`` is SAM, step for step, and :class:`LookSAM` with ``alpha = 0`` is this optimizer. It
    costs ``steps + ceil(steps / k)`` forward-backward passes (:func:`forward_backward_passes`),
    ``1 + 1/k`` per step in the long run. Chapter 14 measures what the skipped perturbations cost
    in accuracy.

    Two ways to drive it:

    * ``step(closure)``: the closure does forward and backward on one batch and returns the loss;
      it is called twice on a SAM step (the second time while :attr:`~sam_course.optim.sam.SAM.perturbed`), once otherwise.
    * the two-step API, for code that runs its own passes (m-SAM, mixed precision): backward at
      ``w``, then, only when :attr:`next_is_sam`, ``first_step()`` and a second backward;
      ``second_step()`` in both cases. Every ``second_step`` counts as one step.

    Args:
        params: parameters or parameter groups, as for :class:`~sam_course.optim.SAM`.
        base_optimizer: a ``torch.optim.Optimizer`` subclass (the class).
        rho: radius of the SAM steps, finite and >= 0.
        k: period of the SAM steps, an int >= 1.
        **sam_kwargs: the other arguments of :class:`~sam_course.optim.SAM` (``p``, ``adaptive``,
            ``eta``) and the base optimizer's (``lr``, ``momentum``, ...).

    Raises:
        ValueError: on a bad ``k`` (and on anything :class:`~sam_course.optim.SAM` rejects).
    """

    two_passes_every_step = False   # it decides per step how many passes to take

    def __init__(self, params, base_optimizer: type[torch.optim.Optimizer], rho: float = 0.05, k: int = 2,
                 **sam_kwargs) -> None:
        self.k = check_int("k", k, low=1)
        #: Steps taken so far; step ``t`` is a SAM step when ``t % k == 0``.
        self.steps_taken = 0
        super().__init__(params, base_optimizer, rho=rho, **sam_kwargs)

    @property
    def next_is_sam(self) -> bool:
        """True when the next step is a SAM (two-pass) step."""
        return self.steps_taken % self.k == 0

    @property
    def passes_taken(self) -> int:
        """Forward-backward passes so far, exactly (:func:`forward_backward_passes`), as the
        schedules of :mod:`~sam_course.optim.schedules` count theirs."""
        return forward_backward_passes(self.steps_taken, self.k)

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """:meth:`SAM.second_step <sam_course.optim.sam.SAM.second_step>`, counted as one step.

        After ``first_step`` it applies the gradient taken at ``w + eps_hat``; without one (the
        steps between SAM steps) it is the base optimizer's step with the plain gradient.
        """
        super().second_step(zero_grad)
        self.steps_taken += 1

    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:
        """A SAM step when :attr:`next_is_sam`, else one base-optimizer step with the gradient at ``w``.

        Args:
            closure: does forward and backward on one batch and returns the loss; gradients are
                handled as by :meth:`SAM.step <sam_course.optim.sam.SAM.step>` (the first call
                adds to ``.grad``, which is zeroed before a second call and after the update).

        Returns:
            The loss of the first call (at ``w``); None without a closure. ``step()`` without a
            closure is ``second_step()`` after ``first_step()`` and on the steps between SAM
            steps (the two-step API); on a SAM step without ``first_step()`` it is an error.
        """
        if self.perturbed:
            return self.complete_step(closure)  # after first_step(): SAM's rule, counted by second_step
        if closure is None and not self.next_is_sam:
            # Between SAM steps the two-step API is backward + second_step(); a framework that
            # calls optimizer.step() itself means the same. On a SAM step, first_step is missing.
            self.second_step()
            return None
        require_closure(closure, "SAMEveryK", "; or call opt.first_step() (when opt.next_is_sam) and opt.second_step()")
        if self.next_is_sam:
            return super().step(closure)
        closure = torch.enable_grad()(closure)
        loss = closure()
        # No first_step: w is not perturbed, so this is the base optimizer's step.
        self.second_step(zero_grad=True)
        return loss

    def state_dict(self) -> dict:
        """SAM's state (base optimizer included) and the step counter, so a resumed run is identical.

        Raises:
            RuntimeError: while the weights are perturbed (see :meth:`sam_course.optim.sam.SAM.state_dict`).
        """
        state = super().state_dict()
        state["sam_every_k"] = {"steps_taken": self.steps_taken, "k": self.k}
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a :meth:`state_dict`: the base optimizer's state and the step counter (``k`` stays).

        Raises:
            ValueError: if ``state_dict`` was not saved by :meth:`SAMEveryK.state_dict`.
        """
        state_dict, extra = split_state(state_dict, "sam_every_k", "SAMEveryK")
        super().load_state_dict(state_dict)
        self.steps_taken = int(extra["steps_taken"])


class LookSAM(SAM):
    """LookSAM (Liu et al., CVPR 2022): a full SAM step every ``k`` steps, a reused direction between.

    On steps ``0, k, 2k, ...`` (counted by the optimizer, across epochs) this is exactly a
    :class:`~sam_course.optim.SAM` step: the gradient ``g`` at ``w``, the perturbation
    ``eps_hat``, the gradient ``g_s`` at ``w + eps_hat``, which the base optimizer applies. It
    also stores ``g_v``, the component of ``g_s`` orthogonal to ``g``
    (:func:`orthogonal_component`). On every other step the closure runs once, giving the plain
    gradient ``g``, and the base optimizer applies instead::

        g + alpha * (||g|| / ||g_v||) * g_v

    (norms over all parameters together; nothing is added while ``g_v = 0``). The rescaling
    gives the reused direction the size of the current gradient, so ``alpha`` is a relative
    weight. ``k = 1`` is SAM, step for step; ``alpha = 0`` is :class:`SAMEveryK`, step for
    step. Average cost: ``1 + 1/k`` forward-backward
    passes per step (:func:`forward_backward_passes`). Chapter 14 measures it.

    Args:
        params: parameters or parameter groups, as for :class:`~sam_course.optim.SAM`.
        base_optimizer: a ``torch.optim.Optimizer`` subclass (the class).
        rho, p, adaptive, eta: the perturbation of the full steps, as for
            :class:`~sam_course.optim.SAM` (``adaptive=True``: ASAM's ball).
        k: period of the full SAM steps, an int >= 1.
        alpha: weight of the reused direction, a finite number >= 0 (default
            :data:`DEFAULT_ALPHA`).
        **base_kwargs: keyword arguments of the base optimizer (``lr``, ``momentum``, ...).

    Raises:
        ValueError: on a bad ``k`` or ``alpha`` (and on anything :class:`~sam_course.optim.SAM` rejects).
    """

    two_passes_every_step = False   # it decides per step how many passes to take

    def __init__(self, params, base_optimizer: type[torch.optim.Optimizer], rho: float = 0.05, k: int = 5,
                 alpha: float = DEFAULT_ALPHA, p: float = 2, adaptive: bool = False, eta: float = 0.01,
                 **base_kwargs) -> None:
        self.k = check_int("k", k, low=1)
        self.alpha = check_real("alpha", alpha, 0)
        #: Steps taken so far; step ``t`` is a full SAM step when ``t % k == 0``.
        self.steps_taken = 0
        self._reused_norm: float | None = None   # ||g_v||, cached: it changes only on full steps
        super().__init__(params, base_optimizer, rho=rho, p=p, adaptive=adaptive, eta=eta, **base_kwargs)

    @property
    def next_is_full(self) -> bool:
        """True when the next :meth:`step` is a full (two-pass) SAM step."""
        return self.steps_taken % self.k == 0

    def _params_with_grads(self) -> list[Tensor]:
        return [q for group in self.param_groups for q in group["params"] if q.grad is not None]

    @torch.no_grad()
    def _remember_direction(self, params: list[Tensor], plain: list[Tensor]) -> None:
        """Store ``g_v`` from the current gradients (``g_s``) and the plain ones (``plain``)."""
        reused = orthogonal_component([q.grad for q in params], plain)
        for q, v in zip(params, reused):
            self.state[q]["looksam_gv"] = v
        self._reused_norm = None

    @torch.no_grad()
    def _add_remembered_direction(self) -> None:
        """Replace every ``.grad`` (the plain ``g``) by ``g + alpha ||g|| / ||g_v|| g_v``."""
        params = [q for q in self._params_with_grads() if "looksam_gv" in self.state[q]]
        if not params or self.alpha == 0:
            return
        grads = [q.grad for q in params]
        reused = [self.state[q]["looksam_gv"] for q in params]
        if self._reused_norm is None:
            self._reused_norm = float(global_norm(reused, 2.0))
        if not self._reused_norm > 0:
            return
        # The cheap steps exist to save time: one fused norm and one fused add on top of the pass.
        scale = self.alpha * float(global_norm(grads, 2.0)) / self._reused_norm
        torch._foreach_add_(grads, reused, alpha=scale)

    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:
        """One LookSAM step: a full SAM step when :attr:`next_is_full`, else one reused-direction step.

        Args:
            closure: does forward and backward on one batch and returns the loss; gradients are
                handled as by :meth:`SAM.step <sam_course.optim.sam.SAM.step>` (the first call
                adds to ``.grad``, which is zeroed before a second call and after the update;
                ``g`` is the total).

        Returns:
            The loss of the first call (at ``w``).
        """
        if self.perturbed:
            # LookSAM remembers g_v from its own two passes; it has no two-step API to complete.
            raise RuntimeError("LookSAM.step was called while the weights are perturbed by first_step(); LookSAM "
                               "runs both passes itself: call opt.restore(), then opt.step(closure)")
        require_closure(closure, "LookSAM")
        closure = torch.enable_grad()(closure)
        loss = closure()
        if self.next_is_full:
            params = self._params_with_grads()
            plain = [q.grad.detach().clone() for q in params]
            self.first_step(zero_grad=True)
            self._perturbed_pass(closure)
            self._remember_direction(params, plain)
            self.second_step()
        else:
            self._add_remembered_direction()
            self.base_optimizer.step()
            self._opt_called = True  # see SAM.second_step: LR schedulers check this flag
        self.zero_grad()  # as SAM.step: the applied gradient must not leak into the next step
        self.steps_taken += 1
        return loss

    def state_dict(self) -> dict:
        """SAM's state (base optimizer included), the stored ``g_v`` and the step counter.

        Raises:
            RuntimeError: while the weights are perturbed (see :meth:`sam_course.optim.sam.SAM.state_dict`).
        """
        state = super().state_dict()
        state["looksam"] = {"steps_taken": self.steps_taken, "k": self.k, "alpha": self.alpha}
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a :meth:`state_dict`; training then resumes exactly where it stopped.

        The step counter and the stored directions are restored; ``k`` and ``alpha`` stay those
        given to the constructor.

        Raises:
            ValueError: if ``state_dict`` was not saved by :meth:`LookSAM.state_dict`.
        """
        state_dict, extra = split_state(state_dict, "looksam", "LookSAM")
        super().load_state_dict(state_dict)
        self.steps_taken = int(extra["steps_taken"])
        self._reused_norm = None
