"""GSAM: Surrogate Gap Guided Sharpness-Aware Minimization (Zhuang et al., ICLR 2022).

SAM descends on the perturbed loss ``f_p(w) = L(w + eps_hat)``. Zhuang et al. observe that a
small ``f_p`` does not imply a flat minimum: what measures flatness is the *surrogate gap*
``h(w) = f_p(w) - L(w)``. GSAM keeps SAM's descent on ``f_p`` and, in the same step, also
decreases ``h``, with no extra pass: it removes from the plain gradient ``g`` its component along
``g_p`` (the gradient at ``w + eps_hat``), ``g_perp = g - (<g, g_p> / ||g_p||^2) g_p``, and
moves *up* ``L`` along that orthogonal direction, which leaves ``f_p`` unchanged to first order
and so lowers ``h = f_p - L``::

    d = g_p - alpha * g_perp

The base optimizer applies ``d`` at ``w``. Two forward-backward passes per step, as SAM
(:func:`~sam_course.optim.variants.forward_backward_passes` with ``every=1``).

Example::

    from sam_course.optim import GSAM

    opt = GSAM(model.parameters(), torch.optim.SGD, rho=0.05, alpha=0.1, lr=0.1, momentum=0.9)
    for x, y in loader:
        def closure():
            loss = loss_fn(model(x), y)
            loss.backward()
            return loss
        opt.step(closure)
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import check_optional_real, check_real
from .sam import SAM, split_state

__all__ = ["GSAM"]


class GSAM(SAM):
    """GSAM (Zhuang et al., "Surrogate Gap Guided Sharpness-Aware Minimization", ICLR 2022).

    One step, with ``g`` the gradient at ``w`` and ``g_p`` the gradient at ``w + eps_hat``::

        eps_hat = rho_t * g / ||g||                                 (SAM's ascent; any p, ASAM, USAM)
        g_perp  = g - (<g, g_p> / ||g_p||^2) * g_p                  (orthogonal to g_p)
        d       = g_p - alpha * g_perp                              (GSAM's descent direction)
        w      <- base(w, d)

    Inner products and norms are global, over every parameter that has a gradient in both passes
    (all groups together; a parameter without a gradient at ``w + eps_hat`` keeps its ``.grad``
    None and is left out). A zero ``g_p`` gives ``g_perp = g``. ``d``, ``g`` and ``g_p`` are lists
    of tensors shaped like the parameters, in the units of the loss per unit of parameter;
    ``alpha`` is dimensionless. ``alpha = 0`` is :class:`~sam_course.optim.SAM`, bit for bit.

    The radius: ``rho`` (each group's ``rho``) when ``rho_min`` is None; otherwise ``rho`` is
    ``rho_max`` and the radius follows the group's learning rate, as the paper schedules it (the
    authors' ``ProportionScheduler``)::

        rho_t = rho_min + (rho - rho_min) * (lr - lr_min) / (lr_max - lr_min)      (clipped at 0)

    read from ``group["lr"]`` at every :meth:`first_step`, so any ``torch.optim.lr_scheduler``
    on this optimizer drives it (a cosine or linear decay of ``lr`` from ``lr_max`` to ``lr_min``
    decays ``rho`` from ``rho`` to ``rho_min``).

    Driven as SAM: ``step(closure)``, or ``first_step`` / second backward / ``second_step``.
    To clip the gradient the base optimizer applies (``d``), call :meth:`prepare_descent` after
    the second backward, clip, then ``second_step``;
    :class:`~sam_course.optim.distributed.SAMStep` does so, GradScaler included.

    Args:
        params: parameters or parameter groups, as for :class:`~sam_course.optim.SAM`.
        base_optimizer: a ``torch.optim.Optimizer`` subclass (the class).
        rho: radius of the perturbation (``rho_max`` with a schedule), finite and >= 0.
        alpha: weight of the ascent along ``g_perp``, a finite number >= 0 (the paper searches
            ``[0.01, 0.3]``; pytorch_optimizer refuses more than 1).
        rho_min: None (constant ``rho``), or the radius at ``lr = lr_min``, in [0, rho].
        lr_max: the learning rate at which the radius is ``rho``; required with ``rho_min``,
            finite and > ``lr_min``.
        lr_min: the learning rate at which the radius is ``rho_min``, finite and >= 0.
        **sam_kwargs: the other arguments of :class:`~sam_course.optim.SAM` (``p``,
            ``adaptive``, ``eta``, ``normalize``) and the base optimizer's (``lr``, ``momentum``...).

    Raises:
        ValueError: on a bad ``alpha``, ``rho_min``, ``lr_max`` or ``lr_min`` (and on anything
            :class:`~sam_course.optim.SAM` rejects).
    """

    def __init__(self, params, base_optimizer: type[torch.optim.Optimizer], rho: float = 0.05, alpha: float = 0.1,
                 rho_min: float | None = None, lr_max: float | None = None, lr_min: float = 0.0,
                 **sam_kwargs) -> None:
        self.alpha = check_real("alpha", alpha, 0)
        self.rho_min = check_optional_real("rho_min", rho_min, 0)
        self.lr_min = check_real("lr_min", lr_min, 0)
        self.lr_max = check_optional_real("lr_max", lr_max, self.lr_min, low_open=True)
        if self.rho_min is not None and self.lr_max is None:
            raise ValueError(f"lr_max is needed with rho_min (the learning rate at which the radius is rho), "
                             f"got lr_max=None with rho_min={rho_min!r}")
        self._plain: dict[Tensor, Tensor] = {}     # persistent buffers for g, one per parameter
        self._plain_params: list[Tensor] = []      # the parameters whose g is held, this step
        super().__init__(params, base_optimizer, rho=rho, **sam_kwargs)
        if self.rho_min is not None:
            for group in self.param_groups:
                if self.rho_min > group["rho"]:
                    raise ValueError(f"rho_min must be <= every group's rho (the radius at lr_max), got "
                                     f"rho_min={rho_min!r} and rho={group['rho']!r}")

    def _rho(self, group: dict) -> float:
        """``group["rho"]``, or the radius scheduled from ``group["lr"]`` (see the class docstring)."""
        if self.rho_min is None:
            return group["rho"]
        fraction = (float(group["lr"]) - self.lr_min) / (self.lr_max - self.lr_min)
        return max(0.0, self.rho_min + (group["rho"] - self.rho_min) * fraction)

    def current_rho(self) -> list[float]:
        """The radius each group's next :meth:`first_step` uses, in the order of ``param_groups``."""
        return [self._rho(group) for group in self.param_groups]

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Keep a copy of the plain gradient ``g``, then SAM's ``first_step`` (move to ``w + eps_hat``).

        Raises:
            RuntimeError: if called twice without ``second_step`` in between.
            ValueError: if a gradient holds inf or NaN (nothing is changed then).
        """
        if self.perturbed:
            super().first_step(zero_grad)  # raises, before g of the step in progress is overwritten
        params = [q for group in self.param_groups for q in group["params"] if q.grad is not None]
        if self.alpha != 0 and params:
            buffers = []
            for q in params:
                buf = self._plain.get(q)
                if buf is None or buf.shape != q.shape or buf.dtype != q.grad.dtype or buf.device != q.device:
                    buf = self._plain[q] = torch.empty_like(q.grad, memory_format=torch.preserve_format)
                buffers.append(buf)
            torch._foreach_copy_(buffers, [q.grad for q in params])
        self._plain_params = []
        super().first_step(zero_grad)
        self._plain_params = params

    @torch.no_grad()
    def _decompose(self) -> None:
        """Replace every ``.grad`` (``g_p``) by ``g_p - alpha * g_perp``, in place."""
        params = [q for q in self._plain_params if q.grad is not None]
        if not params:
            return
        perturbed = [q.grad for q in params]
        plain = [self._plain[q] for q in params]
        # One dtype and device for the two global sums (float64 stays float64).
        dtype = perturbed[0].dtype
        for t in perturbed[1:]:
            dtype = torch.promote_types(dtype, t.dtype)
        device = perturbed[0].device
        dot = torch.stack([t.sum().to(device, dtype) for t in torch._foreach_mul(plain, perturbed)]).sum()
        norm2 = torch.stack([t.sum().to(device, dtype) for t in torch._foreach_mul(perturbed, perturbed)]).sum()
        coefficient = float(dot / norm2) if bool(norm2 > 0) else 0.0
        # d = g_p - alpha (g - c g_p) = (1 + alpha c) g_p - alpha g: two fused passes.
        torch._foreach_mul_(perturbed, 1.0 + self.alpha * coefficient)
        torch._foreach_add_(perturbed, plain, alpha=-self.alpha)

    @torch.no_grad()
    def prepare_descent(self) -> None:
        """Replace the gradient at ``w + eps_hat`` (``g_p``, in ``.grad``) by ``g_p - alpha * g_perp``.

        :meth:`~sam_course.optim.sam.SAM.second_step` calls it while perturbed, so a step begun
        with :meth:`first_step` ends with GSAM's update; without a preceding ``first_step``,
        ``second_step`` is a plain base-optimizer step with ``.grad`` as it is. It uses the ``g``
        kept by the last :meth:`first_step` once: a second call does nothing.
        """
        if self.alpha != 0:
            self._decompose()
        self._plain_params = []

    def state_dict(self) -> dict:
        """SAM's state (base optimizer included) and GSAM's settings, for the record.

        GSAM holds nothing across steps beyond its base optimizer (``g`` lives within a step), so
        a resumed run is identical to an uninterrupted one.

        Raises:
            RuntimeError: while the weights are perturbed (see :meth:`sam_course.optim.sam.SAM.state_dict`).
        """
        state = super().state_dict()
        state["gsam"] = {"alpha": self.alpha, "rho_min": self.rho_min, "lr_max": self.lr_max, "lr_min": self.lr_min}
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a :meth:`state_dict`; ``alpha`` and the schedule stay those given to the constructor.

        Raises:
            ValueError: if ``state_dict`` was not saved by :meth:`GSAM.state_dict`.
        """
        state_dict, _ = split_state(state_dict, "gsam", "GSAM")
        super().load_state_dict(state_dict)
