"""Schedules that decide, step by step, whether to pay for SAM's second pass (chapter 14).

Every step takes the gradient ``g`` at ``w`` (one forward-backward pass). A schedule then says
either "SAM": perturb to ``w + eps_hat`` (SAM's, from ``g``), take a second gradient there and
let the base optimizer apply it at ``w``; or "plain": the base optimizer applies ``g``. A SAM
step costs two passes, a plain one one. Three policies, each an optimizer usable in any
training loop (``opt.step(closure)``), each counting its passes exactly (``passes_taken``):

:class:`~sam_course.optim.variants.SAMEveryK`
    every ``k`` steps, on steps ``0, k, 2k, ...`` (``RunConfig(sam_every=k)`` of
    :func:`sam_course.train.fit` builds it; the schedule lives in the optimizer, not in ``fit``).
:class:`RandomizedSAM`
    RST (Zhao, Zhang & Hu, 2022, "Randomized Sharpness-Aware Training for Boosting
    Computational Efficiency in Deep Learning"): a SAM step with probability ``probability``,
    drawn from the optimizer's own seeded ``torch.Generator``, whose state is checkpointed.
:class:`AdaptiveSAM`
    AE-SAM (Jiang, Yang, Zhang & Kwok, ICLR 2023, "An Adaptive Policy to Employ
    Sharpness-Aware Minimization"): a SAM step when the squared gradient norm exceeds its
    running mean by ``c`` running standard deviations.

A schedule that always says "SAM" (``probability=1``; ``c=-inf``; ``k=1``) is
:class:`~sam_course.optim.SAM`, step for step, bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from .._checks import check_int, check_real
from .perturbation import global_norm
from .sam import SAM, require_closure, split_state

__all__ = ["ScheduledSAM", "RandomizedSAM", "AdaptiveSAM"]


class ScheduledSAM(SAM):
    """SAM on the steps a policy chooses, the base optimizer alone on the others.

    A subclass defines :meth:`decide`. Each :meth:`step` runs the closure at ``w``, asks
    :meth:`decide` (the gradient ``g`` at ``w`` is in ``.grad``), then either completes a SAM
    step exactly as :meth:`SAM.step <sam_course.optim.sam.SAM.step>` does (two passes) or lets
    the base optimizer apply ``g`` (one pass). Gradients are handled as by ``SAM.step``: the
    first call adds to ``.grad``, which is zeroed before a second call and after the update.

    Attributes:
        steps_taken: steps so far.
        sam_steps_taken: of which SAM (two-pass) steps.

    Args:
        params, base_optimizer, rho, sam_kwargs: as for :class:`~sam_course.optim.SAM`
            (``p``, ``adaptive``, ``eta`` and the base optimizer's ``lr``, ``momentum``, ...).
    """

    two_passes_every_step = False   # it decides per step how many passes to take

    #: The entry of :meth:`ScheduledSAM.state_dict` that holds the schedule's own state.
    STATE_KEY = "scheduled_sam"

    def __init__(self, params, base_optimizer: type[torch.optim.Optimizer], rho: float = 0.05,
                 **sam_kwargs) -> None:
        self.steps_taken = 0
        self.sam_steps_taken = 0
        super().__init__(params, base_optimizer, rho=rho, **sam_kwargs)

    @property
    def passes_taken(self) -> int:
        """Forward-backward passes so far, exactly: one per step, one more per SAM step."""
        return self.steps_taken + self.sam_steps_taken

    def decide(self) -> bool:
        """True for a SAM step. Called once per step by :meth:`step`, with ``g`` in ``.grad``;
        it advances the policy (a random draw, running statistics)."""
        raise NotImplementedError(f"{type(self).__name__} must define decide()")

    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:
        """One step: the closure at ``w``, then a SAM step or a plain one, as :meth:`decide` says.

        Args:
            closure: does forward and backward on one batch and returns the loss.

        Returns:
            The loss of the first call (at ``w``).
        """
        if self.perturbed:
            raise RuntimeError(f"{type(self).__name__}.step was called while the weights are perturbed by "
                               "first_step(); the schedule runs both passes itself: call opt.restore(), then "
                               "opt.step(closure)")
        require_closure(closure, type(self).__name__)
        closure = torch.enable_grad()(closure)
        loss = closure()
        if self.decide():
            self.first_step(zero_grad=True)
            self._perturbed_pass(closure)
            self.sam_steps_taken += 1
        self.second_step(zero_grad=True)  # without first_step: the base optimizer applies g
        self.steps_taken += 1
        return loss

    def _policy_state(self) -> dict:
        return {}

    def _load_policy_state(self, state: dict) -> None:
        pass

    def state_dict(self) -> dict:
        """SAM's state (base optimizer included), the counters and the policy's own state.

        Raises:
            RuntimeError: while the weights are perturbed (see :meth:`sam_course.optim.sam.SAM.state_dict`).
        """
        state = super().state_dict()
        state[self.STATE_KEY] = {"steps_taken": self.steps_taken, "sam_steps_taken": self.sam_steps_taken,
                                 **self._policy_state()}
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a :meth:`ScheduledSAM.state_dict`; training then resumes exactly where it stopped (the policy's
        settings stay those given to the constructor, its state is restored).

        Raises:
            ValueError: if ``state_dict`` was not saved by this class's :meth:`ScheduledSAM.state_dict`.
        """
        state_dict, extra = split_state(state_dict, self.STATE_KEY, type(self).__name__)
        super().load_state_dict(state_dict)
        self.steps_taken = int(extra["steps_taken"])
        self.sam_steps_taken = int(extra["sam_steps_taken"])
        self._load_policy_state(extra)


class RandomizedSAM(ScheduledSAM):
    """RST (Zhao, Zhang & Hu, 2022): a SAM step with probability ``probability``, a plain step otherwise.

    On step ``t``, with ``u_t`` uniform on [0, 1) drawn from the optimizer's own generator
    (seeded with ``seed``, one draw per step)::

        u_t < probability:   eps_hat = epsilon_hat(g(w)),  w <- base(w, g(w + eps_hat))   two passes
        otherwise:                                         w <- base(w, g(w))             one pass

    ``probability=1`` is :class:`~sam_course.optim.SAM` bit for bit, ``probability=0`` the base
    optimizer; on average ``1 + probability`` passes per step (:attr:`ScheduledSAM.passes_taken` counts them
    exactly). The global torch generator is never touched, so the draws do not move the model's
    or the data's randomness, and the generator's state is in :meth:`ScheduledSAM.state_dict`: a resumed run
    draws what the uninterrupted one would. The paper also schedules the probability over
    training; ``opt.probability`` may be changed between steps.

    Args:
        params, base_optimizer, rho, sam_kwargs: as for :class:`~sam_course.optim.SAM`.
        probability: chance of a SAM step, in [0, 1].
        seed: seed of the optimizer's generator, an int >= 0.

    Raises:
        ValueError: on a bad ``probability`` or ``seed`` (and on anything ``SAM`` rejects).
    """

    STATE_KEY = "randomized_sam"

    def __init__(self, params, base_optimizer: type[torch.optim.Optimizer], rho: float = 0.05,
                 probability: float = 0.5, seed: int = 0, **sam_kwargs) -> None:
        self.probability = check_real("probability", probability, 0, 1)
        #: The optimizer's own generator (CPU), seeded with ``seed``.
        self.generator = torch.Generator().manual_seed(check_int("seed", seed, low=0))
        super().__init__(params, base_optimizer, rho=rho, **sam_kwargs)

    def decide(self) -> bool:
        """One draw ``u`` from the optimizer's generator: True when ``u < probability``."""
        return float(torch.rand((), generator=self.generator, dtype=torch.float64)) < self.probability

    def _policy_state(self) -> dict:
        return {"generator": self.generator.get_state()}

    def _load_policy_state(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


class AdaptiveSAM(ScheduledSAM):
    """AE-SAM (Jiang, Yang, Zhang & Kwok, ICLR 2023): SAM where the squared gradient norm is unusually large.

    With ``n_t = ||g(w_t)||^2`` (the minibatch gradient at ``w``, all parameters together) and
    running statistics started at ``mu = var = 0``, each step first updates them and then
    compares (Algorithm 1 of the paper)::

        mu_t  = delta * mu_{t-1}  + (1 - delta) * n_t
        var_t = delta * var_{t-1} + (1 - delta) * (n_t - mu_t)^2
        n_t >= mu_t + c * sqrt(var_t):   SAM step (two passes)
        otherwise:                       w <- base(w, g(w))  (one pass)

    A large gradient norm relative to its recent history is the paper's sign of a sharp region.
    ``c = -inf`` always says SAM (:class:`~sam_course.optim.SAM` bit for bit), ``c = inf`` never.
    The paper moves ``c`` linearly over training (from its ``lambda_1`` to ``lambda_2``, so
    that SAM is frequent early or late as chosen); ``opt.c`` may be changed between steps for
    that. :attr:`ScheduledSAM.passes_taken` counts the passes exactly.

    Args:
        params, base_optimizer, rho, sam_kwargs: as for :class:`~sam_course.optim.SAM`.
        c: the threshold in running standard deviations, a real number (``-inf`` and ``inf``
            allowed).
        delta: the forgetting rate of the running statistics, in [0, 1) (the paper: 0.9).

    Raises:
        ValueError: on a bad ``c`` or ``delta`` (and on anything ``SAM`` rejects).
    """

    STATE_KEY = "adaptive_sam"

    def __init__(self, params, base_optimizer: type[torch.optim.Optimizer], rho: float = 0.05, c: float = 0.0,
                 delta: float = 0.9, **sam_kwargs) -> None:
        self.c = check_real("c", c, allow_inf=True)
        self.delta = check_real("delta", delta, 0, 1, high_open=True)
        #: Running mean and variance of the squared gradient norm.
        self.mean = 0.0
        self.variance = 0.0
        super().__init__(params, base_optimizer, rho=rho, **sam_kwargs)

    def decide(self) -> bool:
        """Update the running mean and variance with ``||g||^2``; True when it is ``>= mean + c * std``."""
        grads = [q.grad for group in self.param_groups for q in group["params"] if q.grad is not None]
        n2 = float(global_norm(grads, 2.0)) ** 2 if grads else 0.0
        self.mean = self.delta * self.mean + (1.0 - self.delta) * n2
        self.variance = self.delta * self.variance + (1.0 - self.delta) * (n2 - self.mean) ** 2
        if math.isinf(self.c):
            return self.c < 0
        return n2 >= self.mean + self.c * math.sqrt(self.variance)

    def _policy_state(self) -> dict:
        return {"mean": self.mean, "variance": self.variance}

    def _load_policy_state(self, state: dict) -> None:
        self.mean = float(state["mean"])
        self.variance = float(state["variance"])
