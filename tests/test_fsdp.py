"""SAMStep on a model sharded with FSDP2 (``fully_shard``), 2 processes with gloo on the CPU (issue 13, item 6).

Oracle: the plain single-process ``sam_course.SAM`` loop on the concatenation of the two workers'
batches (float32, 1e-6), compared with the full parameters gathered at the end
(``DTensor.full_tensor()``): SAM, accumulation, ASAM, p = inf and p = 1, clipping, a GradScaler, a
model of one parameter (whose norm ``torch._foreach_norm`` leaves partial), and ``SAM.step(closure)``
without SAMStep. Also the norm computation on
DTensor-sharded gradients directly (``distribute_tensor`` on a 2-rank ``DeviceMesh``), the
refusal of per-worker perturbations, a GradScaler whose overflow in one worker's shard
skips the step on both, and BatchNorm's statistics kept out of the second pass.
"""

import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from sam_course import SAM
from sam_course.optim.distributed import SAMStep, is_fsdp
from sam_course.optim.perturbation import epsilon_hat, global_norm

fsdp = pytest.importorskip("torch.distributed.fsdp")
if not hasattr(fsdp, "fully_shard") or not dist.is_available():
    pytest.skip("FSDP2 (torch.distributed.fsdp.fully_shard, torch >= 2.6) is not available", allow_module_level=True)

LOSS = nn.CrossEntropyLoss()
GLOBAL_BATCH = 16
STEPS = 3
WORLD = 2
#: name -> (SAM's keyword arguments, SAMStep's keyword arguments, a model of one Linear without bias)
CASES = {
    "sam": ({}, {}, False),
    "accumulation": ({}, {"accumulation_steps": 2}, False),
    "asam": ({"adaptive": True, "rho": 0.5}, {}, False),
    "p_inf": ({"p": math.inf, "rho": 0.01}, {}, False),
    "p_1": ({"p": 1, "rho": 0.05}, {}, False),
    "clip": ({}, {"max_grad_norm": 0.05}, False),
    "scaler": ({}, {"scaler": "GradScaler"}, False),       # a power-of-two scale: the float32 step
    "scaler_clip": ({}, {"scaler": "GradScaler", "max_grad_norm": 0.05}, False),
    "one_parameter": ({}, {}, True),
    "closure": ({}, {"closure": True}, False),            # SAM.step(closure), no SAMStep
}


def make_model(one_parameter=False, seed=0):
    torch.manual_seed(seed)
    if one_parameter:
        return nn.Sequential(nn.Linear(6, 4, bias=False))
    return nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 4))


def make_batches():
    gen = torch.Generator().manual_seed(1)
    return [(torch.randn(GLOBAL_BATCH, 6, generator=gen), torch.randint(0, 4, (GLOBAL_BATCH,), generator=gen))
            for _ in range(STEPS)]


def make_sam(model, **kwargs):
    return SAM(model.parameters(), torch.optim.SGD, **{"rho": 0.1, "lr": 0.1, "momentum": 0.9, **kwargs})


def shard(model):
    for layer in model:
        if isinstance(layer, nn.Linear):
            fsdp.fully_shard(layer)
    fsdp.fully_shard(model)
    return model


def oracle(sam_kwargs, step_kwargs, one_parameter):
    """Single-process SAM on the whole batch, clipping the second gradient as SAMStep does."""
    model = make_model(one_parameter)
    opt = make_sam(model, **sam_kwargs)
    for x, y in make_batches():
        LOSS(model(x), y).backward()
        opt.first_step(zero_grad=True)
        LOSS(model(x), y).backward()
        if "max_grad_norm" in step_kwargs:
            nn.utils.clip_grad_norm_(model.parameters(), step_kwargs["max_grad_norm"])
        opt.second_step(zero_grad=True)
    return [q.detach().clone() for q in model.parameters()]


def max_difference(a, b) -> float:
    return max(float((p - q).detach().abs().max()) for p, q in zip(a, b, strict=True))


def _scaler():
    return torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)


class InfInShard:
    """On the chosen backward pass (counted from 1), an inf in this worker's shard of the
    gradient of ``param`` only, after FSDP2's reduce-scatter (a post-accumulate-grad hook)."""

    def __init__(self, param, call):
        self.call, self.count = call, 0
        param.register_post_accumulate_grad_hook(self)

    @torch.no_grad()
    def __call__(self, param):
        self.count += 1
        if self.count == self.call:
            param.grad.to_local().view(-1)[0] = float("inf")


def _refusal(make_step) -> str:
    try:
        make_step()
    except ValueError as err:
        return str(err)
    return ""


def _worker(rank, world, store, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        per = GLOBAL_BATCH // world
        local = [(x[rank * per:(rank + 1) * per], y[rank * per:(rank + 1) * per]) for x, y in make_batches()]
        results = {}
        for name, (sam_kwargs, step_kwargs, one_parameter) in CASES.items():
            model = shard(make_model(one_parameter))
            if "scaler" in step_kwargs:
                step_kwargs = {**step_kwargs, "scaler": _scaler()}
            if "closure" in step_kwargs:
                opt = make_sam(model, **sam_kwargs)
                for x, y in local:
                    opt.step(lambda x=x, y=y, model=model: LOSS(model(x), y).backward())
            else:
                step = SAMStep(model, make_sam(model, **sam_kwargs), sync_perturbation=True, **step_kwargs)
                for x, y in local:
                    step(x, y, LOSS)
            results[name] = [q.full_tensor().detach().clone() for q in model.parameters()]
            if name == "sam":
                results["is_fsdp"] = is_fsdp(model)
                results["local_shape"] = tuple(next(model.parameters()).to_local().shape)

        # BatchNorm: its running statistics are local (FSDP2 does not shard or sync buffers) and
        # see each batch once, in the first pass.
        torch.manual_seed(0)
        model = shard(nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 4)))
        step = SAMStep(model, make_sam(model), sync_perturbation=True)
        for x, y in local:
            step(x, y, LOSS)
        results["bn_batches"] = int(model[1].num_batches_tracked)

        # An overflow in rank 1's shard only (rank 0's shards stay finite), in the first or the
        # second pass: both workers skip the whole step, both scalers back off. DTensor's unscale
        # reduces the overflow flag over the mesh (pytorch/pytorch#132816).
        model = shard(make_model())
        if rank == 1:
            InfInShard(model[0].weight, 1)
        LOSS(model(local[0][0]), local[0][1]).backward()
        results["shard_finite"] = all(bool(torch.isfinite(q.grad.to_local()).all()) for q in model.parameters())
        for call in (1, 2):
            model = shard(make_model())
            step = SAMStep(model, make_sam(model), sync_perturbation=True, scaler=_scaler())
            if rank == 1:
                InfInShard(model[0].weight, call)
            before = [q.full_tensor() for q in model.parameters()]
            x, y = local[0]
            step(x, y, LOSS)
            results[f"overflow_{call}"] = (step.last_step_skipped, step.scaler.get_scale(), max_difference(
                before, [q.full_tensor() for q in model.parameters()]))

        model = shard(make_model())
        results["per_worker_error"] = _refusal(lambda: SAMStep(model, make_sam(model)))

        # The norms on DTensor-sharded gradients directly (2-rank mesh): the one tensor whose
        # torch._foreach_norm stays partial, the inf-norm, and the underflow path of the 2-norm.
        from torch.distributed.tensor import Shard, distribute_tensor, init_device_mesh

        mesh = init_device_mesh("cpu", (world,))
        torch.manual_seed(3)
        full = [torch.randn(6, 6), torch.randn(6), torch.randn(4, 12)]
        full[2][1, 3] = 9.0                     # the largest entry lives on rank 0 only
        sharded = [distribute_tensor(t, mesh, [Shard(0)]) for t in full]
        results["norms"] = {
            (order, which): float(global_norm(tensors, order))
            for order in (2.0, math.inf, 1.0)
            for which, tensors in (("one", sharded[:1]), ("all", sharded))
        }
        results["eps"] = {
            (p, tiny): [e.full_tensor() for e in epsilon_hat([g * tiny for g in sharded], 0.1, p)]
            for p in (2, math.inf, 1, 3) for tiny in (1.0, 1e-30)
        }
        results["full"] = full
        torch.save(results, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def fsdp_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fsdp")
    mp.spawn(_worker, args=(WORLD, str(tmp / "store"), str(tmp)), nprocs=WORLD, join=True)
    return [torch.load(tmp / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


@pytest.mark.parametrize("name", CASES)
def test_sharded_step_equals_single_process_sam_on_the_whole_batch(fsdp_results, name):
    reference = oracle(*CASES[name])
    for rank in fsdp_results:
        assert max_difference(rank[name], reference) <= 1e-6, name
    # and the oracle is not trivially met: the weights moved
    assert max_difference(reference, [q.detach() for q in make_model(CASES[name][2]).parameters()]) > 1e-3


def test_clipping_was_active():
    assert max_difference(oracle(*CASES["clip"]), oracle(*CASES["sam"])) > 1e-3


def test_the_model_really_is_sharded(fsdp_results):
    assert fsdp_results[0]["is_fsdp"] and not is_fsdp(make_model())
    assert fsdp_results[0]["local_shape"] == (6, 6)     # 12 x 6 weight, half on each rank


def test_batchnorm_statistics_see_each_batch_once(fsdp_results):
    assert [rank["bn_batches"] for rank in fsdp_results] == [STEPS] * WORLD


def test_what_is_not_supported_is_refused_with_the_reason(fsdp_results):
    for rank in fsdp_results:
        assert "sync_perturbation=False is not supported" in rank["per_worker_error"]
        assert "fully_shard" in rank["per_worker_error"]


@pytest.mark.parametrize("call", [1, 2])
def test_an_overflow_in_one_shard_skips_the_step_on_every_worker(fsdp_results, call):
    assert [rank["shard_finite"] for rank in fsdp_results] == [True, False]
    assert [rank[f"overflow_{call}"] for rank in fsdp_results] == [(True, 2.0 ** 7, 0.0)] * WORLD


def test_norms_of_dtensor_gradients_are_over_all_shards(fsdp_results):
    full = fsdp_results[0]["full"]
    for rank in fsdp_results:
        for (order, which), value in rank["norms"].items():
            tensors = full[:1] if which == "one" else full
            expected = float(torch.linalg.vector_norm(torch.cat([t.flatten() for t in tensors]), order))
            assert value == pytest.approx(expected, rel=1e-6), (order, which)
        for (p, tiny), eps in rank["eps"].items():
            expected = epsilon_hat([t * tiny for t in full], 0.1, p)
            assert max_difference(eps, expected) <= 1e-6, (p, tiny)
