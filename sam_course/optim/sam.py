"""Sharpness-Aware Minimization (SAM) as a ``torch.optim`` optimizer.

SAM (Foret et al., ICLR 2021) minimizes ``max_{||eps||_p <= rho} L(w + eps)``. Each step takes two
gradients: one at ``w`` to find the first-order worst-case perturbation ``eps_hat`` (chapter 3),
and one at ``w + eps_hat``, which the base optimizer then applies at ``w`` (chapters 4 and 5).
This module holds the optimizer's state machine (perturb, restore, step, checkpoints); the
perturbation itself, :func:`~sam_course.optim.perturbation.epsilon_hat` and its norms, is in
:mod:`~sam_course.optim.perturbation`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from torch import Tensor

from .._checks import check_bool, check_real

# The perturbation's functions live in .perturbation; importing them here keeps the older paths
# (``sam_course.optim.sam.epsilon_hat`` ...) working. __all__ names only what this module defines,
# so the API reference documents each function once, where it is written.
from .perturbation import check_finite_grads, check_p, check_rho, finite_norm2, is_dtensor, unit_direction
from .perturbation import epsilon_hat as epsilon_hat
from .perturbation import frozen_batchnorm_stats as frozen_batchnorm_stats
from .perturbation import global_norm as global_norm

__all__ = ["SAM", "require_closure", "check_base_optimizer", "split_state"]

#: SAM's own per-group settings, next to the base optimizer's (``lr``, ``momentum``, ...).
SAM_GROUP_KEYS = ("rho", "p", "adaptive", "eta", "normalize")


def _copy_into(targets: list[Tensor], sources: list[Tensor]) -> None:
    """``targets[i].copy_(sources[i])`` for all i: one foreach pass, or one copy each for DTensors
    (FSDP2's sharded parameters; DTensor has no ``_foreach_copy_`` in torch 2.14)."""
    if any(is_dtensor(t) for t in targets):
        for target, source in zip(targets, sources):
            target.copy_(source)
    else:
        torch._foreach_copy_(targets, sources)


def require_closure(closure, owner: str, alternative: str = "") -> None:
    """Raise ``RuntimeError`` when ``owner.step`` was called without a closure; ``alternative``
    ends the message with what else the caller can do."""
    if closure is None:
        raise RuntimeError(f"{owner}.step needs a closure that does forward + backward and returns the loss "
                           f"(opt.step(closure)){alternative}")


def check_base_optimizer(base_optimizer, owner: str = "SAM") -> type[torch.optim.Optimizer]:
    """``base_optimizer`` when it is a ``torch.optim.Optimizer`` class that SAM can drive: not an
    instance, not SAM, not one whose ``step`` requires a closure (LBFGS re-evaluates the loss at
    points of its own choosing; SAM hands it one gradient, taken at ``w + eps_hat``)."""
    if not (isinstance(base_optimizer, type) and issubclass(base_optimizer, torch.optim.Optimizer)):
        raise ValueError(
            "base_optimizer must be a torch.optim.Optimizer subclass (the class, e.g. "
            f"torch.optim.SGD, not an instance), got {base_optimizer!r}"
        )
    if issubclass(base_optimizer, SAM):
        raise ValueError("base_optimizer must not be SAM itself")
    closure = inspect.signature(base_optimizer.step).parameters.get("closure")
    if closure is not None and closure.default is inspect.Parameter.empty:
        raise ValueError(
            f"base_optimizer must take a step without a closure, got {base_optimizer.__name__}, whose step(closure) "
            f"re-evaluates the loss itself (a line search): {owner} applies one gradient, taken at w + eps_hat, "
            "and cannot hand it a closure. Use a first-order optimizer (SGD, Adam, ...)"
        )
    return base_optimizer



def split_state(state_dict: dict, key: str, owner: str) -> tuple[dict, object]:
    """``state_dict`` without its entry ``key``, and that entry: how SAM and each variant load their own
    part of a saved state before handing the rest on (the input is not modified).

    Raises:
        ValueError: when ``state_dict`` has no ``key`` (it was not saved by ``owner.state_dict()``).
    """
    if key not in state_dict:
        raise ValueError(f"state_dict has no {key!r} entry; it was not saved by {owner}.state_dict()")
    rest = dict(state_dict)
    return rest, rest.pop(key)

class SAM(torch.optim.Optimizer):
    """Sharpness-Aware Minimization around any ``torch.optim`` optimizer.

    Each step moves the weights to ``w + eps_hat`` (the first-order worst case in a p-ball of
    radius ``rho``, see :func:`~sam_course.optim.perturbation.epsilon_hat`), takes the gradient
    there, moves back to ``w`` and
    lets the base optimizer step with that gradient (Algorithm 1 of Foret et al., 2021;
    chapter 5). With ``adaptive=True`` it is ASAM (Kwon et al., 2021): the ball is taken in the
    coordinates ``eps / (|w| + eta)``, so ``eps_hat = T * epsilon_hat(T * g)`` with
    ``T = |w| + eta`` element-wise (for p = 2, ``rho * T**2 g / ||T g||``). With
    ``normalize=False`` it is unnormalized SAM (USAM; Andriushchenko & Flammarion, ICML 2022;
    Dai et al., NeurIPS 2023): ``eps_hat = rho * g`` (ASAM's ball: ``rho * T**2 g``), no division
    by the gradient's norm, so ``rho`` is then a step length in units of parameter per unit of
    gradient, and the perturbation grows with the gradient (chapter 6 shows where that diverges).
    Only ``p = 2`` has an unnormalized form (``normalize=False`` with another ``p`` is refused).

    Args:
        params: parameters or parameter groups, as for any ``torch.optim`` optimizer. Groups may
            set their own ``rho``, ``p``, ``adaptive`` and ``eta``.
        base_optimizer: a ``torch.optim.Optimizer`` subclass (the class, e.g.
            ``torch.optim.SGD``); it is built over the same parameter groups with ``base_kwargs``.
        rho: radius of the neighbourhood, finite and >= 0 (``rho = 0`` is the base optimizer).
        p: order of the norm of the ball, in [1, inf]; the paper uses 2.
        adaptive: ASAM's scale-invariant ball.
        eta: ASAM's offset in ``|w| + eta``, finite and >= 0.
        normalize: divide ``g`` by its global norm (SAM, the default); False is USAM,
            ``eps_hat = rho * g``, for ``p = 2`` only.
        **base_kwargs: keyword arguments of the base optimizer (``lr``, ``momentum``, ...).

    The norm of the gradient is global: one norm over every parameter of every group that shares
    the same ``p`` (with the usual single ``p``, over all parameters), as in the paper; each
    group then scales its part by its own ``rho``. Groups whose ``rho`` is 0 are left out of that
    norm (and out of the perturbation): they are not perturbed, so their gradient must not shrink
    the other groups' ``eps_hat``. That is SAM-ON (Mueller et al., NeurIPS 2023), which perturbs
    only the normalization layers' affine parameters
    (:func:`~sam_course.optim.perturbation.norm_layer_groups` builds the groups); the gradients of
    those groups are not checked for inf or NaN by ``first_step`` (the base optimizer gets them).

    Use either ``step(closure)``, where the closure does forward and backward and returns the
    loss, or call ``first_step`` and ``second_step`` around your own second backward pass.
    Gradients in ``step(closure)``, as in ``torch.optim``: they are not zeroed before the first
    call, whose backward adds to what ``.grad`` holds (earlier micro-batches), and ``eps_hat``
    comes from that total. Before the second call ``.grad`` is zeroed: the base optimizer applies
    the closure's gradient at ``w + eps_hat``, its batch only (earlier micro-batches cannot be
    re-evaluated there; a closure that runs them all gives SAM on all of them). After the update
    ``.grad`` is zeroed again, so the applied perturbed gradient cannot leak into the next step.
    While perturbed (after ``first_step``), ``step()`` is ``second_step()`` (for frameworks that
    call ``optimizer.step()`` themselves) and ``step(closure)`` runs the closure at
    ``w + eps_hat`` first (:meth:`complete_step`); otherwise ``step()`` needs a closure.

    Gradient clipping belongs on the gradient the base optimizer applies: after the second
    backward, before ``second_step``. Clipping the first gradient by its global norm changes
    nothing for ``p = 2`` (``eps_hat`` is normalized). A base optimizer with ``maximize=True``
    gets the worst case of the maximized objective, ``-eps_hat`` (the run equals SAM minimizing
    ``-L``); one whose ``step`` requires a closure (LBFGS) is refused (:func:`check_base_optimizer`).
    """

    #: Whether every step takes SAM's two passes. A variant that decides per step (SAMEveryK,
    #: LookSAM, the schedules) or takes one pass (MomentumSAM) says False, and
    #: :class:`~sam_course.optim.SAMStep`, which always runs both passes itself, refuses it.
    two_passes_every_step: bool = True

    def __init__(
        self,
        params,
        base_optimizer: type[torch.optim.Optimizer],
        rho: float = 0.05,
        p: float = 2,
        adaptive: bool = False,
        eta: float = 0.01,
        normalize: bool = True,
        **base_kwargs,
    ) -> None:
        check_base_optimizer(base_optimizer, type(self).__name__)
        defaults = dict(rho=rho, p=p, adaptive=adaptive, eta=eta, normalize=normalize)
        super().__init__(params, defaults)
        # The base optimizer shares the very same group dicts, so schedulers that change
        # group["lr"] on SAM act on the base optimizer too.
        self.base_optimizer = base_optimizer(self.param_groups, **base_kwargs)
        self.param_groups = self.base_optimizer.param_groups
        self.defaults.update(self.base_optimizer.defaults)
        self._saved: dict[Tensor, Tensor] = {}
        self._active: list[Tensor] = []
        self._perturbed = False

    @property
    def param_groups(self) -> list[dict]:
        """The parameter groups, one list of dicts shared with ``base_optimizer``."""
        return self._param_groups

    @param_groups.setter
    def param_groups(self, groups: list[dict]) -> None:
        # Code that replaces the list (load_state_dict, Lightning's BaseFinetuning on resume)
        # replaces it for the base optimizer too, so the two never drift apart.
        self._param_groups = groups
        base = self.__dict__.get("base_optimizer")
        if base is not None:
            base.param_groups = groups

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        if "param_groups" in state:
            self.param_groups = state.pop("param_groups")  # through the setter, not into __dict__
        super().__setstate__(state)

    @staticmethod
    def _check_group_settings(values: dict) -> None:
        check_rho(values["rho"], "rho")
        check_p(values["p"], "p")
        check_real("eta", values["eta"], 0)
        check_bool("adaptive", values["adaptive"])
        if not check_bool("normalize", values.get("normalize", True)) and float(values["p"]) != 2:
            raise ValueError(f"normalize=False (unnormalized SAM, eps_hat = rho * g) is defined for p = 2 only, "
                             f"got p={values['p']!r}")

    def add_param_group(self, param_group: dict) -> None:
        """Add a group (``{"params": [...], "lr": ..., "rho": ...}``) to SAM and its base optimizer.

        The two share one list of groups: the base appends the group once, after SAM's settings
        are checked and filled in from the defaults. A rejected group leaves ``param_groups`` as
        it was. Progressive unfreezing (Lightning's ``BaseFinetuning``) calls this.

        Raises:
            ValueError: on a bad ``rho``, ``p``, ``eta``, ``adaptive`` or ``normalize``, and whatever the base
                optimizer rejects (parameters already in a group...).
        """
        if not hasattr(self, "base_optimizer"):
            # During __init__: torch.optim.Optimizer fills SAM's list, the base is built over it.
            # A rejected group aborts the construction, so nothing survives it.
            super().add_param_group(param_group)
            self._check_group_settings(self.param_groups[-1])
            return
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        # Check before touching anything, so that a rejected group leaves no trace.
        self._check_group_settings({k: param_group.get(k, self.defaults[k]) for k in SAM_GROUP_KEYS})
        for key in SAM_GROUP_KEYS:
            param_group.setdefault(key, self.defaults[key])
        # The base appends the dict to the list both share (as torch.optim does, the dict itself).
        self.base_optimizer.add_param_group(param_group)

    @property
    def perturbed(self) -> bool:
        """True between ``first_step`` and ``second_step``."""
        return self._perturbed

    def _groups_with_grads(self) -> list[tuple[dict, list[Tensor], list[Tensor]]]:
        out = []
        for group in self.param_groups:
            params = [q for q in group["params"] if q.grad is not None]
            if params:
                out.append((group, params, [q.grad for q in params]))
        return out

    def _rho(self, group: dict) -> float:
        """The radius of ``group`` for this step (its ``rho``; a variant may schedule it)."""
        return group["rho"]

    def _save(self, params: list[Tensor]) -> None:
        # Buffers persist across steps: reallocating a copy of the model every step costs
        # page faults on the CPU and allocator churn on the GPU.
        buffers = []
        for q in params:
            buf = self._saved.get(q)
            if buf is None or buf.shape != q.shape or buf.dtype != q.dtype or buf.device != q.device:
                buf = self._saved[q] = torch.empty_like(q, memory_format=torch.preserve_format)
            buffers.append(buf)
        _copy_into(buffers, params)
        self._active.extend(params)

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Move every parameter with a gradient from ``w`` to ``w + eps_hat``.

        ``eps_hat`` comes from the current ``.grad`` of all groups (see the class docstring);
        ``w`` is remembered exactly for :meth:`second_step`. Parameters whose ``.grad`` is None
        are left alone, and so are groups whose ``rho`` is 0 (they do not count in the norm). A
        zero gradient gives ``eps_hat = 0``.

        Raises:
            RuntimeError: if called twice without ``second_step`` in between.
            ValueError: if a gradient holds inf or NaN (nothing is changed then).
        """
        if self.perturbed:
            raise RuntimeError("first_step was called twice; call second_step() before the next first_step()")
        everything = self._groups_with_grads()
        # Groups with rho = 0 are not perturbed: they stay out of the norm (SAM-ON) and are not copied.
        rhos = {id(g): self._rho(g) for g, _, _ in everything}
        groups = [entry for entry in everything if rhos[id(entry[0])] != 0]
        # A base with maximize=True climbs L: its worst case in the ball is the lowest L, -eps_hat.
        sign = {id(g): -1.0 if g.get("maximize", False) else 1.0 for g, _, _ in groups}
        by_p: dict[object, list[tuple[dict, list[Tensor], list[Tensor]]]] = {}
        for entry in groups:
            # Unnormalized groups (USAM, p = 2) need no norm: they form a class of their own.
            key = float(entry[0]["p"]) if entry[0].get("normalize", True) else "unnormalized"
            by_p.setdefault(key, []).append(entry)
        # Compute every direction before touching any parameter, so that an error (a non-finite
        # gradient) leaves the model as it was.
        updates = []
        for p, members in by_p.items():
            scales = [
                torch._foreach_add(torch._foreach_abs(params), group["eta"]) if group["adaptive"] else None
                for group, params, _ in members
            ]
            scaled = [grads if t is None else torch._foreach_mul(grads, t) for (_, _, grads), t in zip(members, scales)]
            if p == "unnormalized":
                check_finite_grads([g for _, _, gs in members for g in gs])
                updates.extend((params, t, s, sign[id(group)] * rhos[id(group)])
                               for (group, params, _), t, s in zip(members, scales, scaled))
            elif p == 2:
                norm = finite_norm2([g for s in scaled for g in s], [g for _, _, gs in members for g in gs])
                inv = 1.0 / norm if norm > 0 else 0.0
                updates.extend(
                    (params, t, s, sign[id(group)] * rhos[id(group)] * inv)
                    for (group, params, _), t, s in zip(members, scales, scaled)
                )
            else:
                check_finite_grads([g for _, _, gs in members for g in gs])
                unit = unit_direction([g for s in scaled for g in s], p)
                start = 0
                for (group, params, _), t in zip(members, scales):
                    updates.append((params, t, unit[start:start + len(params)], sign[id(group)] * rhos[id(group)]))
                    start += len(params)
        for params, t, direction, alpha in updates:
            self._save(params)
            if t is None:
                torch._foreach_add_(params, direction, alpha=alpha)
            else:
                torch._foreach_addcmul_(params, t, direction, value=alpha)
        # Perturbed even when every group has rho = 0, so the two-step API behaves the same for any rho.
        self._perturbed = bool(everything)
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Restore ``w`` exactly and let the base optimizer step with the current gradients.

        The gradients should be those taken at ``w + eps_hat`` (after :meth:`first_step`); while
        perturbed, :meth:`prepare_descent` turns them into the variant's descent direction first.
        Without a preceding ``first_step`` this is a plain base-optimizer step.
        """
        if self.perturbed:
            self.prepare_descent()
        self._restore()
        self.base_optimizer.step()
        # LR schedulers check this flag (set by their wrapper of .step) to warn about a
        # scheduler step before any optimizer step; the two-step API never calls .step.
        self._opt_called = True
        if zero_grad:
            self.zero_grad()

    def prepare_descent(self) -> None:
        """Turn the gradients at ``w + eps_hat`` into the gradient the base optimizer applies, in place.

        SAM applies them as they are (this does nothing); a variant with a descent rule of its own
        (:class:`~sam_course.optim.gsam.GSAM`) overrides it. :meth:`second_step` calls it; code
        that runs the base step itself calls it on unscaled gradients, before clipping them
        (:class:`~sam_course.optim.distributed.SAMStep` under a GradScaler). A second call before
        the next :meth:`first_step` does nothing.
        """

    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """One full SAM step: gradient at ``w``, perturb, gradient at ``w + eps_hat``, update.

        Args:
            closure: does forward and backward on one batch and returns the loss. The first
                call's backward adds to the gradients already in ``.grad`` (they are not zeroed:
                ``eps_hat`` comes from the total); the gradients are zeroed before the second
                call, whose gradient the base optimizer applies, and after the update.

        While perturbed (after :meth:`first_step`), ``step()`` is :meth:`second_step`, and
        ``step(closure)`` first runs the closure at ``w + eps_hat``; see the class docstring.

        Returns:
            The loss of the first call (at ``w``); when completing a step begun with
            ``first_step``, the closure's loss at ``w + eps_hat`` (None without a closure).
        """
        if self.perturbed:
            return self.complete_step(closure)
        require_closure(closure, "SAM", "; or call opt.first_step() and opt.second_step() yourself. "
                        "With a torch.amp.GradScaler, scaler.step(sam) cannot work (it unscales only one of "
                        "the two gradients): use sam_course.optim.distributed.SAMStep(model, sam, scaler=scaler)")
        closure = torch.enable_grad()(closure)
        loss = closure()
        self.first_step(zero_grad=True)
        self._perturbed_pass(closure)
        self.second_step(zero_grad=True)
        return loss

    def complete_step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """Finish a step begun with :meth:`first_step`: run ``closure`` (if any) at ``w + eps_hat``,
        then :meth:`second_step`. Returns the closure's loss, or None without one.

        Raises:
            RuntimeError: when the weights are not perturbed (no :meth:`first_step` before).
        """
        if not self.perturbed:
            raise RuntimeError(f"{type(self).__name__}.complete_step needs a first_step() before it")
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = self._perturbed_pass(closure)
        self.second_step()
        return loss

    def _perturbed_pass(self, closure: Callable[[], Tensor]) -> Tensor:
        """Call ``closure`` at ``w + eps_hat``; if it raises, put ``w`` back before re-raising."""
        try:
            return closure()
        except BaseException:
            self._restore()
            raise

    def restore(self) -> None:
        """Move the perturbed parameters back to ``w`` exactly, without a base-optimizer step.

        For code that takes the two passes apart, e.g. to skip a step whose second gradient
        overflowed, or to collect perturbed gradients as :func:`sam_course.optim.msam.msam_gradient`
        does. Does nothing when the parameters are not perturbed.
        """
        self._restore()

    @torch.no_grad()
    def _restore(self) -> None:
        if self._active:
            _copy_into(self._active, [self._saved[q] for q in self._active])
            self._active.clear()
        self._perturbed = False

    def state_dict(self) -> dict:
        """SAM's state together with the base optimizer's (momentum buffers, Adam moments...).

        Raises:
            RuntimeError: between ``first_step`` and ``second_step``, when the model's weights
                are perturbed and a checkpoint would store the wrong weights.
        """
        if self.perturbed:
            raise RuntimeError("state_dict() was called while the weights are perturbed; call second_step() first")
        state = super().state_dict()
        state["base_optimizer"] = self.base_optimizer.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a :meth:`state_dict`, base optimizer included, so training resumes bit-identically."""
        state_dict, base = split_state(state_dict, "base_optimizer", "SAM")
        self._restore()
        self.base_optimizer.load_state_dict(base)
        super().load_state_dict(state_dict)
