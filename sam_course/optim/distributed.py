"""SAM in real training loops: several workers (DDP), gradient accumulation, mixed precision.

A SAM step is two forward-backward passes on the same batch (chapter 5). Each tool of large-scale
training interacts with that in its own way, and :class:`SAMStep` gets all of them right at once
(the page "SAM at scale" explains the choices):

Several workers (``torch.nn.parallel.DistributedDataParallel``)
    DDP averages the gradients of every backward pass over the workers. For the second pass that
    is what we want. For the first pass there are two sound choices:

    - per-worker perturbation (``sync_perturbation=False``, the default, and what the paper's own
      implementation does): the first backward runs under ``model.no_sync()``, so each worker
      computes its own ``eps_hat`` from its local batch. The averaged second gradient is then
      m-SAM's gradient with ``m`` = the per-worker batch (:func:`sam_course.optim.msam.msam_gradient`).
    - synchronized perturbation (``sync_perturbation=True``): the first gradient is averaged too,
      every worker uses the same ``eps_hat``, and the step equals single-process SAM on the
      concatenation of the workers' batches.

Fully sharded workers (FSDP2, ``torch.distributed.fsdp.fully_shard``, torch >= 2.6)
    Each worker holds a shard of every parameter and of its averaged gradient (DTensors).
    ``eps_hat`` needs the norm of the *whole* gradient: the norms are reduced over the shards
    (:func:`~sam_course.optim.perturbation.global_norm`), so the step equals single-process SAM
    on the concatenated batch, ASAM and every ``p`` included. Only the synchronized perturbation
    exists here (``sync_perturbation=True``): a worker never holds its own full gradient.
    Under a GradScaler every worker skips a step whose gradient overflowed in any shard.

Gradient accumulation (``accumulation_steps=k``)
    The batch is split into ``k`` equal micro-batches. The first pass accumulates the gradient of
    the whole batch before ``eps_hat`` is computed, the second pass accumulates the perturbed
    gradient the same way; the step equals SAM on the whole batch (for a loss that averages over
    examples; BatchNorm sees micro-batches, as with any accumulation). Under DDP only the last
    micro-batch of a pass that should be averaged synchronizes.

Mixed precision (``autocast_dtype``, ``scaler``)
    The forward passes run under ``torch.autocast``. With a ``torch.amp.GradScaler`` the first
    gradient is unscaled before ``eps_hat`` (so ``rho`` keeps its meaning), and a step whose first
    or second gradient holds inf or NaN is skipped as a whole: the weights end exactly where they
    started, the base optimizer's state is untouched, and the scaler backs off. With per-worker
    perturbations the workers agree on skipping (one all-reduce of a flag).
"""

from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .._checks import check_bool, check_instance, check_int, check_optional_real
from .._params import LossFn
from .perturbation import frozen_batchnorm_stats
from .sam import SAM

__all__ = ["SAMStep", "first_pass_context", "is_ddp", "is_fsdp"]


def is_ddp(model: nn.Module) -> bool:
    """True when ``model`` is wrapped in ``DistributedDataParallel``."""
    return isinstance(model, nn.parallel.DistributedDataParallel)


def is_fsdp(model: nn.Module) -> bool:
    """True when ``model`` is the root of an FSDP2 sharding (``fully_shard(model)``, an ``FSDPModule``).

    Recognized by the methods ``fully_shard`` gives the module, so that the package imports
    nothing of FSDP2 (torch >= 2.6) and still runs on its torch floor.
    """
    return all(callable(getattr(model, name, None)) for name in ("set_requires_gradient_sync", "reshard", "unshard"))


@contextlib.contextmanager
def _fsdp_no_sync(model: nn.Module):
    """FSDP2's ``no_sync``: the backward passes inside keep their gradients unsharded and local;
    the next backward outside reduce-scatters them all."""
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def first_pass_context(model: nn.Module, sync_perturbation: bool = False):
    """The context for the first (unperturbed) forward and backward pass of a SAM step.

    ``model.no_sync()`` when ``model`` is DDP and each worker should perturb with its own gradient;
    a context that does nothing otherwise. Use it when writing the two passes by hand::

        with first_pass_context(model):
            loss_fn(model(x), y).backward()
        opt.first_step(zero_grad=True)
        with frozen_batchnorm_stats(model):
            loss_fn(model(x), y).backward()        # averaged over the workers by DDP
        opt.second_step(zero_grad=True)
    """
    if is_ddp(model) and not sync_perturbation:
        return model.no_sync()
    return contextlib.nullcontext()


class SAMStep:
    """One SAM update of ``model`` on a batch, correct under DDP, FSDP2, accumulation and mixed precision.

    Args:
        model: the network, plain, wrapped in ``DistributedDataParallel``, or sharded with FSDP2's
            ``fully_shard`` (the root module included). When ``torch.distributed`` runs more than
            one process it must be one of the last two (otherwise the second gradients would not be
            averaged and the workers' weights would drift apart).
        optimizer: a :class:`~sam_course.optim.SAM` over ``model``'s parameters.
        sync_perturbation: False (default): each DDP worker computes ``eps_hat`` from its own batch
            (m-SAM with m = the per-worker batch); True: from the gradient averaged over all
            workers (SAM on the global batch). Without DDP both are the same. A sharded model
            needs True.
        accumulation_steps: number of equal micro-batches each batch is split into, >= 1; it must
            divide every batch size.
        scaler: a ``torch.amp.GradScaler`` (enabled or not), or None.
        autocast_dtype: run the forward passes under ``torch.autocast`` with this dtype
            (``torch.bfloat16`` on a CPU, ``torch.float16`` or ``torch.bfloat16`` on a GPU), or None.
        freeze_bn_stats: keep BatchNorm running statistics out of the second pass
            (:func:`~sam_course.optim.frozen_batchnorm_stats`).
        max_grad_norm: None, or clip the gradient the base optimizer applies (the second one, at
            ``w + eps_hat``) to this global 2-norm over all of the optimizer's parameters
            (``torch.nn.utils.clip_grad_norm_``), a finite number > 0. Under a GradScaler it is
            unscaled first, so the bound is in the gradient's own units. The first gradient is
            not clipped: for ``p = 2`` that would change nothing (``eps_hat`` is normalized).

    Calling the object, ``step(inputs, targets, loss_fn)``, zeroes the gradients, runs both passes
    and the base optimizer's step, and returns the batch loss at ``w`` (a detached 0-d tensor,
    this worker's batch only). ``last_step_skipped`` tells whether the scaler skipped it.

    With FSDP2 (``fully_shard``; tested on CPU with gloo, 2 processes, torch 2.14) the step equals
    single-process SAM on the concatenated batch, with ``accumulation_steps`` (the micro-batches
    before the last skip the reduce-scatter), ``adaptive=True``, any ``p`` and ``max_grad_norm``
    (``clip_grad_norm_`` reduces the norm over the shards itself). ``freeze_bn_stats`` keeps the
    second pass out of BatchNorm's running statistics, which stay per worker: FSDP2 neither shards
    nor syncs buffers, so BatchNorm normalizes by each worker's batch (as under DDP).
    A ``scaler`` works too: a worker sees inf or NaN only in its own shard, but DTensor's unscale
    (``_amp_foreach_non_finite_check_and_unscale_``, pytorch/pytorch#132816, torch 2.5) reduces
    the flag over the mesh, so every worker skips a step that overflowed in any shard. Refused:
    ``sync_perturbation=False`` (no worker holds its own full gradient).
    ``autocast_dtype=torch.bfloat16`` runs; it is not compared with an oracle, since bfloat16's
    rounding depends on how the batch is split (2e-4 from the single-process autocast loop after
    3 steps of the test's MLP).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, sync_perturbation: bool = False,
                 accumulation_steps: int = 1, scaler: torch.amp.GradScaler | None = None,
                 autocast_dtype: torch.dtype | None = None, freeze_bn_stats: bool = True,
                 max_grad_norm: float | None = None) -> None:
        check_instance("optimizer", optimizer, SAM, "sam_course.SAM")
        if not type(optimizer).two_passes_every_step:
            raise ValueError(
                f"optimizer is a {type(optimizer).__name__}, which decides per step how many forward-backward "
                "passes to take, and SAMStep always runs SAM's two: train it with optimizer.step(closure)"
            )
        check_instance("model", model, nn.Module, "torch.nn.Module")
        if isinstance(model, nn.DataParallel):
            raise ValueError(
                "model is torch.nn.DataParallel, whose replicas share one backward pass: a per-worker "
                "perturbation is impossible. Use DistributedDataParallel (one process per device)"
            )
        workers = _world_size()
        if workers > 1 and not sync_perturbation and type(optimizer).prepare_descent is not SAM.prepare_descent:
            raise ValueError(
                f"sync_perturbation=False with {type(optimizer).__name__}: its descent direction uses each "
                "worker's own first gradient, so the workers would apply different updates and drift apart. "
                "Use sync_perturbation=True"
            )
        sharded = is_fsdp(model)
        if workers > 1 and not (is_ddp(model) or sharded):
            raise ValueError(
                f"torch.distributed runs {workers} processes but model is not DistributedDataParallel "
                "(nor sharded with fully_shard): the second gradients would not be averaged and the "
                "workers' weights would drift apart. Wrap it: model = DistributedDataParallel(model)"
            )
        owned = {id(q) for q in model.parameters()}
        if any(id(q) not in owned for group in optimizer.param_groups for q in group["params"]):
            raise ValueError("optimizer holds parameters that are not model's: build SAM over model.parameters() "
                             "(under FSDP2, after fully_shard: it replaces the parameters)")
        check_bool("sync_perturbation", sync_perturbation)
        if scaler is not None and not isinstance(scaler, torch.amp.GradScaler):
            raise ValueError(f"scaler must be a torch.amp.GradScaler or None, got {type(scaler).__name__}")
        if sharded and not sync_perturbation:
            raise ValueError(
                "sync_perturbation=False is not supported for a model sharded with fully_shard (FSDP2): "
                "each worker holds only a shard of the averaged gradient, never its own full gradient, so "
                "there is no per-worker eps_hat. Pass sync_perturbation=True (SAM on the global batch)"
            )
        if autocast_dtype is not None and not isinstance(autocast_dtype, torch.dtype):
            raise ValueError(f"autocast_dtype must be a torch.dtype (e.g. torch.bfloat16) or None, got {autocast_dtype!r}")
        self.model = model
        self.optimizer = optimizer
        self.sync_perturbation = sync_perturbation
        self.accumulation_steps = check_int("accumulation_steps", accumulation_steps, 1)
        self.scaler = scaler if scaler is not None and scaler.is_enabled() else None
        self.autocast_dtype = autocast_dtype
        self.freeze_bn_stats = check_bool("freeze_bn_stats", freeze_bn_stats)
        self.max_grad_norm = check_optional_real("max_grad_norm", max_grad_norm, 0, low_open=True)
        self.last_step_skipped = False
        self._device_type = next(model.parameters()).device.type

    def _micro_batches(self, inputs: Tensor, targets: Tensor) -> list[tuple[Tensor, Tensor]]:
        n, k = inputs.shape[0], self.accumulation_steps
        if targets.shape[0] != n:
            raise ValueError(f"inputs and targets must have the same batch size, got {n} and {targets.shape[0]}")
        if n % k:
            raise ValueError(f"accumulation_steps={k} must divide the batch size, got a batch of {n}")
        return list(zip(inputs.split(n // k), targets.split(n // k)))

    def _backward(self, micro: list[tuple[Tensor, Tensor]], loss_fn: LossFn, synchronize: bool) -> Tensor:
        """Accumulate the batch-mean gradient over ``micro``; DDP averages it when ``synchronize``."""
        total = None
        autocast = (torch.autocast(self._device_type, dtype=self.autocast_dtype)
                    if self.autocast_dtype is not None else contextlib.nullcontext())
        for i, (x, y) in enumerate(micro):
            # DDP reduces on the backward of a forward run outside no_sync: only the last one.
            last_synced = synchronize and i == len(micro) - 1
            if last_synced or not (is_ddp(self.model) or is_fsdp(self.model)):
                sync = contextlib.nullcontext()
            else:
                sync = self.model.no_sync() if is_ddp(self.model) else _fsdp_no_sync(self.model)
            with sync, torch.enable_grad():
                with autocast:
                    loss = loss_fn(self.model(x), y)
                scaled = loss / len(micro)
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            part = loss.detach() / len(micro)
            total = part if total is None else total + part
        return total

    def _found_inf(self, optimizer: torch.optim.Optimizer) -> dict:
        # GradScaler records, per optimizer and device, whether unscaling met inf or NaN; its own
        # step() and update() read the same record.
        return self.scaler._per_optimizer_states[id(optimizer)]["found_inf_per_device"]

    def _first_gradient_finite(self) -> bool:
        """Unscale the first gradient in place (through the scaler) and say whether it is finite."""
        self.scaler.unscale_(self.optimizer)
        found = self._found_inf(self.optimizer)
        flag = sum((v.to("cpu", torch.float32) for v in found.values()), torch.zeros(()))
        if is_ddp(self.model) and not self.sync_perturbation and _world_size() > 1:
            # Each worker saw only its own first gradient; all must skip if any overflowed, and
            # every scaler must back off the same way, so the recorded flags are made equal too.
            # (On a GPU with NCCL the flag travels on the gradients' device.)
            device = next(iter(found.values())).device if found else torch.device("cpu")
            shared = flag.to(device)
            dist.all_reduce(shared, op=dist.ReduceOp.MAX)
            flag = shared.cpu()
            for v in found.values():
                v.copy_(shared.to(v.device))
        return not bool(flag > 0)

    def _clip(self) -> None:
        if self.max_grad_norm is not None:
            params = [q for group in self.optimizer.param_groups for q in group["params"] if q.grad is not None]
            # An inf or NaN gradient stays non-finite after clipping, so the scaler still skips.
            nn.utils.clip_grad_norm_(params, self.max_grad_norm)

    def step(self, inputs: Tensor, targets: Tensor, loss_fn: LossFn) -> Tensor:
        """One SAM step on ``(inputs, targets)``; ``loss_fn(outputs, targets)`` must average over examples."""
        micro = self._micro_batches(inputs, targets)
        opt = self.optimizer
        opt.zero_grad()
        loss = self._backward(micro, loss_fn, synchronize=self.sync_perturbation)
        self.last_step_skipped = False
        if self.scaler is not None and not self._first_gradient_finite():
            self.last_step_skipped = True
            opt.zero_grad()
            self.scaler.update()
            return loss
        opt.first_step(zero_grad=True)
        bn = frozen_batchnorm_stats(self.model) if self.freeze_bn_stats else contextlib.nullcontext()
        try:
            with bn:
                self._backward(micro, loss_fn, synchronize=True)
        except BaseException:
            opt.restore()
            raise
        if self.scaler is None:
            opt.prepare_descent()  # the variant's direction (GSAM) is what gets clipped and applied
            self._clip()
            opt.second_step(zero_grad=True)
            return loss
        opt.restore()
        if self.max_grad_norm is not None or type(opt).prepare_descent is not SAM.prepare_descent:
            # Unscaled once here; scaler.step then knows and does not unscale again.
            self.scaler.unscale_(opt.base_optimizer)
            opt.prepare_descent()
            self._clip()
        # scaler.step unscales the second gradient, skips the base step when it is not finite.
        self.scaler.step(opt.base_optimizer)
        self.last_step_skipped = any(bool(v.item()) for v in self._found_inf(opt.base_optimizer).values())
        self.scaler.update()
        opt._opt_called = True
        opt.zero_grad()
        return loss

    __call__ = step
