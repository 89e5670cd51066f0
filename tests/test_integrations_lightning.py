"""SAM in Lightning (issue 13): SAMMixin's trajectories equal a plain loop with sam_course.SAM on the
same batches (float32, atol 1e-6), with accumulation, clipping (by norm, and by value, which must
touch the second gradient only), a scheduler, BatchNorm, resume, BaseFinetuning, manual
optimization, bf16-mixed precision and DDP on two processes; the loss a step reports is the loss
at the unperturbed weights."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

L = pytest.importorskip("lightning.pytorch")

from lightning.pytorch.callbacks import BaseFinetuning  # noqa: E402
from lightning.pytorch.plugins import MixedPrecision  # noqa: E402

from sam_course.integrations.lightning import SAMMixin  # noqa: E402
from sam_course.optim import SAM, LookSAM, SAMEveryK, frozen_batchnorm_stats  # noqa: E402

BATCH, N_BATCHES, LR, RHO = 4, 8, 0.2, 0.1


def trainer(**kwargs) -> L.Trainer:
    kwargs.setdefault("max_epochs", 1)
    return L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, **kwargs)


def dataset(seed: int = 5) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(BATCH * N_BATCHES, 6, generator=g), torch.randint(0, 3, (BATCH * N_BATCHES,), generator=g))


def loader() -> DataLoader:
    return DataLoader(dataset(), batch_size=BATCH, shuffle=False)


def network(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 3))


def make_sam(params, kind=SAM):
    extra = {"k": 2} if kind in (LookSAM, SAMEveryK) else {}
    return kind(params, torch.optim.SGD, rho=RHO, lr=LR, momentum=0.9, **extra)


class Net(SAMMixin, L.LightningModule):
    def __init__(self, kind=SAM, scheduler: bool = False):
        super().__init__()
        self.net, self.kind, self.scheduler = network(), kind, scheduler
        self.perturbed_losses: dict[int, float] = {}

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("calls", 1.0, on_step=False, on_epoch=True, reduce_fx="sum")
        if self.sam_second_pass:
            self.perturbed_losses[batch_idx] = float(loss.detach())  # the last pass at w + eps_hat of this batch
        return loss

    def configure_optimizers(self):
        opt = make_sam([p for p in self.parameters() if p.requires_grad], self.kind)
        if not self.scheduler:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.StepLR(opt, 1, 0.7),
                                                   "interval": "step"}}


def clip_values(model, bound) -> None:
    """``clip_grad_value_`` at ``bound``, asserting that it clips something."""
    assert max(float(p.grad.abs().max()) for p in model.parameters() if p.grad is not None) > bound
    nn.utils.clip_grad_value_(model.parameters(), bound)


def plain_loop(model, windows, clip=None, scheduler=False, opt=None, kind=SAM, clip_value=None,
               clip_value_first=False):
    """SAM on each window of micro-batches (each loss / len(window)); the oracle of every test.

    ``clip`` (norm) and ``clip_value`` clip the gradient the base optimizer applies: after the
    second pass, or after the only pass of a one-pass step (SAMEveryK, LookSAM).
    ``clip_value_first`` also value-clips the first gradient of a two-pass step (the wrong place).
    """
    opt = make_sam([p for p in model.parameters() if p.requires_grad], kind) if opt is None else opt
    sched = torch.optim.lr_scheduler.StepLR(opt, 1, 0.7) if scheduler else None
    for window in windows:
        k = len(window)

        def closure(window=window, k=k):
            if not opt.perturbed:
                for x, y in window:
                    (F.cross_entropy(model(x), y) / k).backward()
                two_passes = getattr(opt, "next_is_sam", getattr(opt, "next_is_full", True))
                if clip_value is not None and (clip_value_first or not two_passes):
                    clip_values(model, clip_value)
                return None
            with frozen_batchnorm_stats(model):
                for x, y in window:
                    (F.cross_entropy(model(x), y) / k).backward()
            if clip is not None:
                assert float(nn.utils.clip_grad_norm_(model.parameters(), clip)) > clip  # the clip is active
            if clip_value is not None:
                clip_values(model, clip_value)
            return None

        opt.zero_grad()
        opt.step(closure)
        if sched is not None:
            sched.step()
    return opt


def windows(k: int) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    batches = list(loader())
    return [batches[i:i + k] for i in range(0, len(batches), k)]


def assert_same(module: nn.Module, ref: nn.Module) -> None:
    for (name, p), q in zip(module.state_dict().items(), ref.state_dict().values()):
        if p.is_floating_point():
            torch.testing.assert_close(p, q, atol=1e-6, rtol=0, msg=name)
        else:
            assert torch.equal(p, q), name


@pytest.mark.parametrize("accumulate", [1, 2])
@pytest.mark.parametrize("clip", [None, 0.05])
def test_automatic_optimization_equals_a_plain_sam_loop(accumulate, clip):
    model = Net(scheduler=True)
    t = trainer(accumulate_grad_batches=accumulate, gradient_clip_val=clip)
    t.fit(model, loader())
    ref = network()
    plain_loop(ref, windows(accumulate), clip=clip, scheduler=True)
    assert t.global_step == N_BATCHES // accumulate
    assert_same(model.net, ref)
    # One log record per batch, not one per pass.
    assert float(t.callback_metrics["calls"]) == N_BATCHES


CLIP_VALUE = 0.02


class ClipsByHand(Net):
    """A user's ``configure_gradient_clipping`` that calls ``self.clip_gradients`` itself."""

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        self.clip_gradients(optimizer, gradient_clip_val=gradient_clip_val, gradient_clip_algorithm=gradient_clip_algorithm)


def max_gap(a: nn.Module, b: nn.Module) -> float:
    return max(float((p - q).abs().max()) for p, q in zip(a.state_dict().values(), b.state_dict().values())
               if p.is_floating_point())


@pytest.mark.parametrize("module, kind", [(Net, SAM), (ClipsByHand, SAM), (Net, SAMEveryK), (Net, LookSAM)])
def test_a_value_clip_applies_to_the_second_gradient_only(module, kind):
    """gradient_clip_algorithm="value" changes the direction of a gradient, so clipping the first
    one would change eps_hat: Lightning's clip must land after the second pass only (and on the
    only pass of the one-pass steps of SAMEveryK and LookSAM), as in a plain loop."""
    model = module(kind)
    t = trainer(gradient_clip_val=CLIP_VALUE, gradient_clip_algorithm="value")
    t.fit(model, loader())
    ref = network()
    plain_loop(ref, windows(1), kind=kind, clip_value=CLIP_VALUE)
    assert_same(model.net, ref)
    # The oracle can fail: clipping the first gradient too ends elsewhere by far more than the tolerance.
    both = network()
    plain_loop(both, windows(1), kind=kind, clip_value=CLIP_VALUE, clip_value_first=True)
    assert max_gap(ref, both) > 1e-4


class LossAtW(L.Callback):
    """The oracle of the reported loss: a plain forward of the batch at the weights the step
    starts from (BatchNorm on batch statistics, as in training, with its buffers untouched),
    next to the loss Lightning hands to ``on_train_batch_end``."""

    def __init__(self):
        self.expected, self.reported = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        x, y = batch
        with torch.no_grad(), frozen_batchnorm_stats(pl_module):
            self.expected.append(float(F.cross_entropy(pl_module.net(x), y)))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        # Lightning divides the loss it reports by accumulate_grad_batches, as it does the one it backpropagates.
        self.reported.append(float(outputs["loss"]) * trainer.accumulate_grad_batches)


@pytest.mark.parametrize("accumulate", [1, 2])
def test_the_reported_loss_is_the_loss_at_the_unperturbed_weights(accumulate):
    """What a step returns (``outputs["loss"]``) is the first pass's loss, at w, as with a plain
    optimizer, not the second pass's at w + eps_hat; self.log still records once per batch."""
    model, losses = Net(), LossAtW()
    t = trainer(accumulate_grad_batches=accumulate, callbacks=[losses])
    t.fit(model, loader())
    assert len(losses.reported) == len(losses.expected) == N_BATCHES
    torch.testing.assert_close(torch.tensor(losses.reported), torch.tensor(losses.expected), atol=1e-6, rtol=0)
    # The test can tell the two passes apart: the loss at w + eps_hat is higher by far more than the tolerance.
    stepped = sorted(model.perturbed_losses)
    assert len(stepped) == N_BATCHES
    assert min(model.perturbed_losses[i] - losses.expected[i] for i in stepped) > 1e-3
    assert float(t.callback_metrics["calls"]) == N_BATCHES


@pytest.mark.parametrize("accumulate", [1, 2])
@pytest.mark.parametrize("kind", [SAMEveryK, LookSAM])
def test_the_variants_in_automatic_optimization_equal_a_plain_loop(kind, accumulate):
    model = Net(kind)
    t = trainer(accumulate_grad_batches=accumulate)
    t.fit(model, loader())
    ref = network()
    opt = plain_loop(ref, windows(accumulate), kind=kind)
    assert opt.steps_taken == t.optimizers[0].steps_taken == N_BATCHES // accumulate
    assert_same(model.net, ref)


def test_resume_from_a_checkpoint_continues_the_same_run(tmp_path):
    whole = Net()
    trainer(max_epochs=2).fit(whole, loader())
    first = Net()
    t = trainer(max_epochs=1)
    t.fit(first, loader())
    t.save_checkpoint(tmp_path / "one.ckpt")
    resumed = Net()
    trainer(max_epochs=2).fit(resumed, loader(), ckpt_path=tmp_path / "one.ckpt")
    assert_same(resumed.net, whole.net)
    ref = network()
    opt = plain_loop(ref, windows(1))
    plain_loop(ref, windows(1), opt=opt)
    assert_same(whole.net, ref)


class Unfreeze(BaseFinetuning):
    def freeze_before_training(self, pl_module):
        self.freeze(pl_module.net[0])

    def finetune_function(self, pl_module, epoch, optimizer):
        if epoch == 1:
            self.unfreeze_and_add_param_group(pl_module.net[0], optimizer, initial_denom_lr=10.0)


def test_base_finetuning_unfreezes_into_sam_like_a_plain_loop():
    model = Net()
    t = trainer(max_epochs=2, callbacks=[Unfreeze()])
    t.fit(model, loader())
    sam = t.optimizers[0]
    assert len(sam.param_groups) == 2 and sam.param_groups is sam.base_optimizer.param_groups
    ref = network()
    ref[0].requires_grad_(False)
    opt = plain_loop(ref, windows(1))
    ref[0].requires_grad_(True)
    opt.add_param_group({"params": list(ref[0].parameters()), "lr": LR / 10.0})
    plain_loop(ref, windows(1), opt=opt)
    assert not torch.equal(model.net[0].weight, network()[0].weight)  # the backbone did train
    assert_same(model.net, ref)


class ManualNet(Net):
    def __init__(self, kind=SAM):
        super().__init__(kind)
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        x, y = batch

        def compute_loss():
            self.log("calls", 1.0, on_step=False, on_epoch=True, reduce_fx="sum")  # silent in the second pass
            return F.cross_entropy(self.net(x), y)
        return self.sam_manual_step(compute_loss)


@pytest.mark.parametrize("kind", [SAM, LookSAM])
def test_manual_optimization_stops_at_max_steps_and_equals_a_plain_loop(kind):
    model = ManualNet(kind)
    t = trainer(max_epochs=5, max_steps=3)
    t.fit(model, loader())
    assert t.global_step == 3 and float(t.callback_metrics["calls"]) == 3
    ref = network()
    plain_loop(ref, windows(1)[:3], kind=kind)
    assert_same(model.net, ref)


def test_a_grad_scaler_is_refused_with_a_clear_message():
    model = Net()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(RuntimeError, match="GradScaler.*bf16-mixed"):
        # On a CPU Lightning turns "16-mixed" into bf16; a plugin with an explicit scaler is the GPU's case.
        plugin = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))
        trainer(plugins=[plugin]).fit(model, loader())
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))


def plain_network(seed: int = 0) -> nn.Module:
    """``network`` without BatchNorm: batch statistics per process would differ from the whole batch's."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))


class DDPNet(Net):
    """``Net`` without BatchNorm, each process reading examples ``rank, rank + 2, ...`` in order
    (Lightning's own distributed sampler would shuffle them)."""

    def __init__(self):
        super().__init__()
        self.net = plain_network()

    def train_dataloader(self):
        sampler = DistributedSampler(dataset(), num_replicas=2, rank=self.trainer.global_rank, shuffle=False)
        return DataLoader(dataset(), batch_size=BATCH, sampler=sampler)


class SaveWeights(L.Callback):
    """Each process writes its final weights, so the test sees every rank's, not only rank 0's."""

    def __init__(self, folder):
        self.folder = folder

    def on_train_end(self, trainer, pl_module):
        torch.save(pl_module.net.state_dict(), self.folder / f"rank{trainer.global_rank}.pt")


def test_ddp_on_two_processes_equals_sam_on_the_concatenated_batch(tmp_path):
    """Two gloo processes, each on half of every global batch (Lightning's DistributedSampler):
    DDP averages both passes' gradients, so both ranks share one eps_hat and each step is SAM on
    the union of the two halves. Oracle: one process, SAM on the concatenated batch."""
    t = trainer(devices=2, strategy="ddp_spawn", use_distributed_sampler=False, callbacks=[SaveWeights(tmp_path)])
    t.fit(DDPNet())
    ref = plain_network()
    # Rank r reads examples r, r + 2, ...: a global step covers 2 * BATCH consecutive examples.
    plain_loop(ref, [[batch] for batch in DataLoader(dataset(), batch_size=2 * BATCH, shuffle=False)])
    for rank in (0, 1):
        weights = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for name, q in ref.state_dict().items():
            torch.testing.assert_close(weights[name], q, atol=1e-6, rtol=0)
    assert not torch.equal(ref[0].weight, plain_network()[0].weight)


def test_bf16_mixed_precision_equals_a_plain_loop_under_autocast():
    """precision="bf16-mixed": Lightning runs each training_step under torch.autocast(cpu, bfloat16)
    and backward outside it, with float32 weights and optimizer. The oracle does the same by hand,
    op for op (same casts, same kernels), so the weights agree to float32 rounding: the atol is
    that of the float32 tests, and bf16's own rounding (2**-8 relative) would be far above it."""
    model = Net()
    t = trainer(precision="bf16-mixed")
    t.fit(model, loader())
    ref = network()
    opt = make_sam(ref.parameters())
    for x, y in loader():
        def closure(x=x, y=y):
            context = frozen_batchnorm_stats(ref) if opt.perturbed else contextlib.nullcontext()
            with context, torch.autocast("cpu", dtype=torch.bfloat16):
                loss = F.cross_entropy(ref(x), y)
            loss.backward()
            return loss

        opt.zero_grad()
        opt.step(closure)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert_same(model.net, ref)
    # The oracle can fail: the same run in float32 ends elsewhere by far more than the tolerance.
    fp32 = network()
    plain_loop(fp32, windows(1))
    assert max(float((p - q).abs().max()) for p, q in zip(ref.state_dict().values(), fp32.state_dict().values())) > 1e-3
