"""sam_course.optim.distributed: SAMStep under gradient accumulation, mixed precision and DDP (2 processes, gloo).

Oracles: plain SAM on the whole batch (accumulation, synchronized DDP), m-SAM with m = the
per-worker batch (per-worker DDP), and the weights before the step (skipped AMP steps).
"""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from sam_course import SAM
from sam_course.optim.distributed import SAMStep, first_pass_context
from sam_course.optim.msam import msam_step

LOSS = nn.CrossEntropyLoss()
GLOBAL_BATCH = 16
STEPS = 3


def make_model(dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 4)).to(dtype)


def make_batches(dtype=torch.float64, steps=STEPS, n=GLOBAL_BATCH):
    gen = torch.Generator().manual_seed(1)
    return [(torch.randn(n, 6, generator=gen, dtype=dtype), torch.randint(0, 4, (n,), generator=gen))
            for _ in range(steps)]


def make_sam(model, rho=0.1):
    return SAM(model.parameters(), torch.optim.SGD, rho=rho, lr=0.1, momentum=0.9)


def plain_sam(batches, dtype=torch.float64):
    model = make_model(dtype)
    opt = make_sam(model)
    for x, y in batches:
        opt.step(lambda x=x, y=y: LOSS(model(x), y).backward())  # the batch bound now, not at call time
    return model


def params_of(model):
    return [q.detach().clone() for q in model.parameters()]


def assert_same(a, b, atol):
    for p, q in zip(params_of(a) if isinstance(a, nn.Module) else a, params_of(b) if isinstance(b, nn.Module) else b):
        torch.testing.assert_close(p, q, rtol=0, atol=atol)


class InfOnCall:
    """A mean loss that returns inf on chosen calls (counted from 1): a forced overflow."""

    def __init__(self, *calls):
        self.calls, self.count = set(calls), 0

    def __call__(self, out, y):
        self.count += 1
        loss = LOSS(out, y)
        return loss * float("inf") if self.count in self.calls else loss


# ------------------------------------------------------------------ accumulation


@pytest.mark.parametrize("k", [1, 2, 4, 16])
def test_accumulation_equals_sam_on_the_whole_batch(k):
    batches = make_batches()
    model = make_model()
    step = SAMStep(model, make_sam(model), accumulation_steps=k)
    for x, y in batches:
        step(x, y, LOSS)
    assert_same(model, plain_sam(batches), atol=1e-12)


def test_step_returns_the_loss_at_w():
    (x, y), = make_batches(steps=1)
    model = make_model()
    expected = LOSS(model(x), y).item()
    loss = SAMStep(model, make_sam(model), accumulation_steps=4)(x, y, LOSS)
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_accumulation_that_does_not_divide_the_batch_is_an_error():
    model = make_model()
    step = SAMStep(model, make_sam(model), accumulation_steps=3)
    (x, y), = make_batches(steps=1)
    before = params_of(model)
    with pytest.raises(ValueError, match="accumulation_steps=3 must divide the batch size, got a batch of 16"):
        step(x, y, LOSS)
    assert_same(before, model, atol=0)


@pytest.mark.parametrize("kwargs, match", [
    ({"accumulation_steps": 0}, "accumulation_steps must be an int >= 1"),
    ({"accumulation_steps": 2.0}, "accumulation_steps must be an int >= 1"),
    ({"sync_perturbation": "yes"}, "sync_perturbation must be True or False"),
    ({"scaler": object()}, "scaler must be a torch.amp.GradScaler"),
    ({"autocast_dtype": "bf16"}, "autocast_dtype must be a torch.dtype"),
])
def test_bad_arguments(kwargs, match):
    model = make_model()
    with pytest.raises(ValueError, match=match):
        SAMStep(model, make_sam(model), **kwargs)


def test_optimizer_must_be_sam_over_the_models_parameters():
    model = make_model()
    with pytest.raises(ValueError, match="optimizer must be a sam_course.SAM"):
        SAMStep(model, torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="not model's"):
        SAMStep(model, make_sam(make_model()))
    with pytest.raises(ValueError, match="DataParallel"):
        SAMStep(nn.DataParallel(model), make_sam(model))


def test_mismatched_inputs_and_targets():
    model = make_model()
    (x, y), = make_batches(steps=1)
    with pytest.raises(ValueError, match="same batch size"):
        SAMStep(model, make_sam(model))(x, y[:-1], LOSS)


# ------------------------------------------------------------------ mixed precision


def test_enabled_scaler_gives_the_unscaled_step():
    # Power-of-two scales multiply and divide exactly: the step is plain SAM's, bit for bit.
    batches = make_batches(torch.float32)
    model = make_model(torch.float32)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    step = SAMStep(model, make_sam(model), scaler=scaler)
    for x, y in batches:
        step(x, y, LOSS)
        assert not step.last_step_skipped
    assert_same(model, plain_sam(batches, torch.float32), atol=0)


@pytest.mark.parametrize("bad_call, which", [(1, "first"), (2, "second")])
def test_overflow_skips_the_whole_step(bad_call, which):
    (x, y), (x2, y2) = make_batches(torch.float32, steps=2)
    model = make_model(torch.float32)
    opt = make_sam(model)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    step = SAMStep(model, opt, scaler=scaler)
    step(x, y, LOSS)                                        # a normal step fills the momentum
    weights = params_of(model)
    momentum = [opt.base_optimizer.state[q]["momentum_buffer"].clone() for q in model.parameters()]
    scale = scaler.get_scale()
    step(x2, y2, InfOnCall(bad_call))                       # the first or the second pass overflows
    assert step.last_step_skipped, f"an inf in the {which} pass must skip the step"
    assert_same(weights, model, atol=0)
    assert not opt.perturbed
    for q, buf in zip(model.parameters(), momentum):
        assert torch.equal(opt.base_optimizer.state[q]["momentum_buffer"], buf)
        assert q.grad is None
    assert scaler.get_scale() == scale * scaler.get_backoff_factor()
    step(x2, y2, LOSS)                                      # and training goes on
    assert not step.last_step_skipped


def test_autocast_bfloat16_on_cpu_is_close_to_float32():
    batches = make_batches(torch.float32)
    model = make_model(torch.float32)
    step = SAMStep(model, make_sam(model), autocast_dtype=torch.bfloat16)
    for x, y in batches:
        assert torch.isfinite(step(x, y, LOSS))
    reference = plain_sam(batches, torch.float32)
    assert_same(model, reference, atol=2e-2)
    assert any(not torch.equal(p, q) for p, q in zip(params_of(model), params_of(reference)))


def test_scaler_step_on_sam_explains_what_to_use():
    model = make_model(torch.float32)
    opt = make_sam(model)
    scaler = torch.amp.GradScaler("cpu")
    (x, y), = make_batches(torch.float32, steps=1)
    scaler.scale(LOSS(model(x), y)).backward()
    with pytest.raises(RuntimeError, match="GradScaler.*SAMStep"):
        scaler.step(opt)


def test_first_pass_context_without_ddp_does_nothing():
    model = make_model()
    with first_pass_context(model):
        pass


# ------------------------------------------------------------------ DDP, 2 processes


def _ddp_worker(rank, world, store, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        batches = make_batches()
        per = GLOBAL_BATCH // world
        local = [(x[rank * per:(rank + 1) * per], y[rank * per:(rank + 1) * per]) for x, y in batches]
        results = {}
        for name, sync, k in [("sync", True, 1), ("sync_accum", True, 2),
                              ("worker", False, 1), ("worker_accum", False, 4)]:
            model = make_model()
            ddp = nn.parallel.DistributedDataParallel(model)
            step = SAMStep(ddp, make_sam(model), sync_perturbation=sync, accumulation_steps=k)
            for x, y in local:
                step(x, y, LOSS)
            results[name] = params_of(model)
        # A first-pass overflow on rank 1 only: both workers skip, both scalers back off.
        model = make_model(torch.float32)
        ddp = nn.parallel.DistributedDataParallel(model)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
        step = SAMStep(ddp, make_sam(model), scaler=scaler)
        before = params_of(model)
        x, y = local[0]
        step(x.float(), y, InfOnCall(1) if rank == 1 else LOSS)
        results["amp_skipped"] = step.last_step_skipped
        results["amp_unchanged"] = all(torch.equal(p, q) for p, q in zip(before, params_of(model)))
        results["amp_scale"] = scaler.get_scale()
        # Without DDP in a 2-process run: a clear error.
        try:
            SAMStep(make_model(), make_sam(make_model()))
            results["plain_error"] = ""
        except ValueError as err:
            results["plain_error"] = str(err)
        torch.save(results, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    mp.spawn(_ddp_worker, args=(2, str(tmp / "store"), str(tmp)), nprocs=2, join=True)
    return [torch.load(tmp / f"rank{r}.pt", weights_only=True) for r in range(2)]


def test_ddp_synchronized_perturbation_equals_sam_on_the_global_batch(ddp_results):
    reference = params_of(plain_sam(make_batches()))
    for rank in ddp_results:
        assert_same(rank["sync"], reference, atol=1e-6)
        assert_same(rank["sync_accum"], reference, atol=1e-6)


def test_ddp_per_worker_perturbation_equals_m_sam(ddp_results):
    model = make_model()
    opt = make_sam(model)
    for x, y in make_batches():
        msam_step(opt, model, LOSS, x, y, m=GLOBAL_BATCH // 2)
    for rank in ddp_results:
        assert_same(rank["worker"], model, atol=1e-6)
        assert_same(rank["worker_accum"], model, atol=1e-6)
    # and it is not plain SAM on the global batch
    assert max((p - q).abs().max() for p, q in zip(ddp_results[0]["worker"], ddp_results[0]["sync"])) > 1e-6


def test_ddp_overflow_on_one_worker_skips_on_all(ddp_results):
    for rank in ddp_results:
        assert rank["amp_skipped"] and rank["amp_unchanged"]
    assert ddp_results[0]["amp_scale"] == ddp_results[1]["amp_scale"] == 2.0 ** 7


def test_ddp_needs_a_ddp_model(ddp_results):
    assert "not DistributedDataParallel" in ddp_results[0]["plain_error"]


# ------------------------------------------------------------------ the runnable example


def test_example_learns_mnist_in_two_processes():
    from sam_course.examples import ddp

    log = ddp.run(ddp.parse_args(["--nproc", "2", "--epochs", "2", "--n-train", "1000", "--global-batch", "64"]))
    assert [row["epoch"] for row in log] == [1, 2]
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    assert log[-1]["test_acc"] > 0.5          # ten classes: chance is 0.1


def test_example_rejects_bad_arguments():
    from sam_course.examples import ddp

    with pytest.raises(SystemExit):
        ddp.parse_args(["--nproc", "0"])


@pytest.mark.parametrize("kind", ["SAMEveryK", "LookSAM", "RandomizedSAM", "AdaptiveSAM", "MomentumSAM"])
def test_samstep_refuses_an_optimizer_that_schedules_its_own_passes(kind):
    """SAMStep always runs both passes: a scheduled or one-pass variant would silently lose its schedule."""
    from sam_course import optim

    model = nn.Linear(3, 2)
    kwargs = {"momentum": 0.9} if kind == "MomentumSAM" else {}
    opt = getattr(optim, kind)(model.parameters(), torch.optim.SGD, lr=0.1, **kwargs)
    with pytest.raises(ValueError, match=rf"optimizer is a {kind}, which decides per step.*optimizer.step\(closure\)"):
        SAMStep(model, opt)
    for two_pass in (optim.SAM, optim.GSAM, optim.FriendlySAM):
        SAMStep(model, two_pass(model.parameters(), torch.optim.SGD, lr=0.1))
