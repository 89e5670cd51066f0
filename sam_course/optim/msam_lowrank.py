"""m-SAM for networks of ``nn.Linear`` layers without a loop over chunks (chapter 12).

A chunk's gradient with respect to a Linear layer's weight is a sum of outer products over the
chunk's rows, ``G_j = Delta_j^T A_j``: ``A_j`` (rows x in) holds the layer's inputs and
``Delta_j`` (rows x out) the gradients of the chunk's mean loss with respect to the layer's
outputs. With ``p = 2`` the chunk's perturbation of that weight is ``c_j G_j``, where
``c_j = rho / ||g_j||`` and ``||g_j||`` is the norm of the chunk's whole gradient. So nothing of
the size of the weights has to be formed for each chunk:

- the squared norm is ``||G_j||_F^2 = sum((A_j A_j^T) * (Delta_j Delta_j^T))``, from two
  rows x rows Gram matrices;
- at the perturbed weights a row ``a`` of chunk ``j`` gives
  ``(W + c_j G_j) a = W a + c_j Delta_j^T (A_j a)``, a low-rank correction of the plain output;
- the gradient with respect to the perturbed weight is the gradient with respect to ``W`` (the
  perturbation is a constant), and averaging the chunks' gradients is the gradient of the mean
  loss over the whole batch: one backward pass, as in plain SAM.

One forward-backward to the layers' outputs (no weight gradients), one forward with the
corrections and one backward make the step cheaper than plain SAM's two full passes. It needs every
example to pass through the network independently of the others (no BatchNorm, no active dropout,
only Linear layers and element-wise activations in ``nn.Sequential`` containers), ``p = 2``
and no ASAM scaling; :func:`lowrank_unsupported_reason` says why a model does not qualify, and
:func:`sam_course.optim.msam.msam_gradient` then uses its per-chunk loop.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from .._params import LossFn

__all__ = ["lowrank_unsupported_reason", "lowrank_msam_gradient"]

# Layers that act on each example (each row) on its own and hold no parameters.
_ELEMENTWISE = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Tanh, nn.Hardtanh, nn.Sigmoid, nn.Hardsigmoid, nn.Hardswish, nn.Softplus, nn.Identity,
)


def is_transparent_wrapper(module: nn.Module) -> bool:
    """True for a module whose forward is its only child's forward, declared by the class.

    A model class opts in with the class attribute ``forwards_to_only_child = True`` (as
    :class:`sam_course.models.MLP` does): the optimizer core cannot read a forward method, so it
    takes the declaration and checks the structure it implies (exactly one child, no parameters or
    buffers of its own).
    """
    if not getattr(type(module), "forwards_to_only_child", False):
        return False
    own = list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False))
    return len(list(module.children())) == 1 and not own


def _module_reason(name: str, module: nn.Module) -> str | None:
    label = f"{name or 'the model'} ({type(module).__name__})"
    if isinstance(module, nn.Sequential) or is_transparent_wrapper(module):
        return None
    if next(module.children(), None) is not None:
        return f"{label} is a container other than nn.Sequential, whose forward cannot be checked"
    if isinstance(module, nn.PReLU):
        return f"{label} has parameters outside nn.Linear"
    if isinstance(module, nn.Linear) or isinstance(module, _ELEMENTWISE):
        if getattr(module, "inplace", False):
            return f"{label} works in place"
        return None
    if isinstance(module, nn.Flatten):
        return None if module.start_dim != 0 else f"{label} flattens across the batch"
    if isinstance(module, nn.Dropout):
        return None if (module.p == 0 or not module.training) else f"{label} is active (training mode, p > 0)"
    return f"{label} is not a Linear layer or an element-wise activation"


def lowrank_unsupported_reason(optimizer: torch.optim.Optimizer, model: nn.Module) -> str | None:
    """Why :func:`lowrank_msam_gradient` cannot run on ``model``, or None when it can.

    Args:
        optimizer: a :class:`~sam_course.optim.SAM` over ``model``'s parameters; every group
            must have ``p = 2`` and ``adaptive=False``.
        model: every module an ``nn.Sequential`` (or a wrapper that declares ``forwards_to_only_child``,
            such as :class:`~sam_course.models.MLP`), an
            ``nn.Linear`` used once, an element-wise activation (not in place), ``nn.Flatten``
            or an inactive ``nn.Dropout``; the trainable parameters exactly those of its Linear
            layers (none frozen) and exactly the optimizer's.

    Returns:
        A sentence naming the first obstacle found, or None.
    """
    for group in optimizer.param_groups:
        if float(group["p"]) != 2.0:
            return f"a parameter group has p={group['p']} (the low-rank form needs p = 2)"
        if group["adaptive"]:
            return "a parameter group is adaptive (ASAM scales each entry, which breaks the low-rank form)"
    seen: set[int] = set()
    for name, module in model.named_modules(remove_duplicate=False):
        if isinstance(module, nn.Linear):
            if id(module) in seen:
                return f"{name} ({type(module).__name__}) is used more than once"
            seen.add(id(module))
        reason = _module_reason(name, module)
        if reason is not None:
            return reason
    linear_params = [t for m in model.modules() if isinstance(m, nn.Linear) for t in m.parameters()]
    if not all(t.requires_grad for t in linear_params):
        return "a parameter of an nn.Linear layer is frozen (requires_grad=False)"
    linear = {id(t) for t in linear_params}
    trainable = {id(t) for t in model.parameters() if t.requires_grad}
    in_optimizer = {id(q) for group in optimizer.param_groups for q in group["params"]}
    if trainable != linear:
        return "the model has trainable parameters outside nn.Linear"
    if in_optimizer != trainable:
        return "the optimizer's parameters are not exactly the model's trainable parameters"
    return None


@contextlib.contextmanager
def _forward_hooks(layers: list[nn.Linear], hook) -> Iterator[None]:
    handles = [layer.register_forward_hook(hook) for layer in layers]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _rows(t: Tensor, k: int) -> Tensor:
    """(n, ..., f) -> (k, rows per chunk, f): the chunks' rows, examples kept in order."""
    return t.reshape(k, -1, t.shape[-1])


def _chunk_sq_norms(a: Tensor, delta: Tensor, has_bias: bool) -> Tensor:
    """Squared Frobenius norm of each chunk's weight (and bias) gradient, shape (k,)."""
    rows, fan_in, fan_out = a.shape[1], a.shape[2], delta.shape[2]
    if rows * (fan_in + fan_out) <= fan_in * fan_out:
        gram = torch.bmm(a, a.transpose(1, 2)).mul_(torch.bmm(delta, delta.transpose(1, 2)))
        sq = gram.sum(dim=(1, 2))
    else:
        sq = torch.bmm(delta.transpose(1, 2), a).square().sum(dim=(1, 2))
    if has_bias:
        sq = sq + delta.sum(dim=1).square().sum(dim=1)
    return sq


def lowrank_msam_gradient(optimizer: torch.optim.Optimizer, model: nn.Module, loss_fn: LossFn,
                          inputs: Tensor, targets: Tensor, m: int) -> Tensor | None:
    """Fill ``.grad`` with the m-SAM gradient of one batch; return the batch loss at ``w``.

    The same gradient as the per-chunk loop of :func:`sam_course.optim.msam.msam_gradient`
    (equal up to rounding), computed as the module docstring explains. The parameters are never
    moved. ``m`` must divide the batch (checked by the caller) and ``loss_fn`` must average over
    examples.

    Returns:
        The loss at ``w`` (a 0-d tensor, detached); or None, with ``.grad`` untouched, when some
        chunk's gradient norm is so small or so large that its square underflows or overflows
        (the caller's loop then handles the batch exactly).

    Raises:
        ValueError: when the gradient holds inf or NaN (the parameters are unchanged).
    """
    k = inputs.shape[0] // m
    layers = [mod for mod in model.modules() if isinstance(mod, nn.Linear)]
    group_of = {id(q): group for group in optimizer.param_groups for q in group["params"]}

    # Pass 1 at w: gradients with respect to the layers' outputs only.
    seen_inputs: dict[nn.Linear, Tensor] = {}
    outputs: dict[nn.Linear, Tensor] = {}

    def record(layer, args, out):
        seen_inputs[layer] = args[0].detach()
        outputs[layer] = out

    with torch.enable_grad(), _forward_hooks(layers, record):
        loss = loss_fn(model(inputs), targets)
    deltas = torch.autograd.grad(loss, [outputs[layer] for layer in layers], allow_unused=True)
    outputs.clear()

    # A chunk's mean loss weighs its rows k times more than the batch's mean loss does.
    cached = []
    sq_norm = torch.zeros(k, dtype=torch.float64, device=inputs.device)
    nonzero = torch.zeros(k, dtype=torch.bool, device=inputs.device)
    for layer, delta in zip(layers, deltas):
        a = _rows(seen_inputs[layer], k)
        if delta is None:
            delta = a.new_zeros(k, a.shape[1], layer.out_features)
        else:
            delta = _rows(delta.detach() * k, k)
        sq_norm += _chunk_sq_norms(a, delta, layer.bias is not None).double()
        nonzero |= delta.abs().amax(dim=(1, 2)) > 0
        cached.append((a, delta))
    seen_inputs.clear()
    if not bool(torch.isfinite(sq_norm).all()):
        if all(bool(torch.isfinite(t).all()) for pair in cached for t in pair):
            return None   # finite gradients whose squares overflow: the loop rescales them
        raise ValueError(
            "grads contain inf or NaN; no perturbation was applied and the parameters are unchanged "
            "(check the loss, the learning rate, or use a GradScaler-aware step under mixed precision)"
        )
    dtype = cached[0][0].dtype if cached else torch.float32
    floor = (1e4 * math.sqrt(torch.finfo(dtype).tiny)) ** 2
    # A square that underflows (to zero or near it) would lose the direction the loop keeps.
    if bool(((sq_norm < floor) & nonzero).any()):
        return None
    norm = sq_norm.sqrt()
    inv = torch.where(norm > 0, 1.0 / norm, torch.zeros_like(norm))

    def signed_rho(group: dict) -> float:
        # As SAM.first_step: a base with maximize=True gets the worst case of its objective, -eps_hat.
        return -group["rho"] if group.get("maximize", False) else group["rho"]

    scales = {}
    for layer, (a, delta) in zip(layers, cached):
        weight_scale = (signed_rho(group_of[id(layer.weight)]) * inv).to(a.dtype).view(k, 1, 1)
        bias_term = None
        if layer.bias is not None:
            bias_scale = (signed_rho(group_of[id(layer.bias)]) * inv).to(a.dtype).view(k, 1, 1)
            bias_term = bias_scale * delta.sum(dim=1, keepdim=True)
        scales[layer] = (a, delta, weight_scale, bias_term)

    def perturb(layer, args, out):
        a, delta, weight_scale, bias_term = scales[layer]
        x = _rows(args[0], k)
        shift = torch.bmm(torch.bmm(x, a.transpose(1, 2)), delta).mul_(weight_scale)
        if bias_term is not None:
            shift = shift + bias_term
        return out + shift.reshape(out.shape)

    # Pass 2: every chunk at its own w + eps_hat_j, one backward for the mean of their gradients.
    optimizer.zero_grad()
    with torch.enable_grad(), _forward_hooks(layers, perturb):
        loss_fn(model(inputs), targets).backward()
    return loss.detach()

