"""Cost of one training step: the base optimizer, sam_course.SAM, pytorch_optimizer.SAM, m-SAM and every SAM variant.

Every method trains its own copy of the model on the same fixed batch; the methods take turns
(interleaved, in a new random order each round, by ``sam_course.timing.compare_step_times``) so
that the machine's drift hits all of them alike, and each is summarized by its median step time.
All the methods of one model are timed in one run. Prints, for each, the forward-backward passes
per step, the median step time and its ratio to the base step and to ``sam_course.SAM``, and
checks the targets of the package (issue 3):

- SAM at most 2.1x the base step on the CNN and 2.3x on the MLP (two passes make 2.0x the floor);
- sam_course.SAM no slower than pytorch_optimizer.SAM (to within 3 %, the noise of a median);
- m-SAM at m = 16 at most 1.1x and at m = 4 at most 1.3x plain SAM.

m-SAM runs with ``msam_step``'s default method: on the MLP that is the low-rank form of
``sam_course.optim.msam_lowrank``, on the CNN the per-chunk loop; "m-SAM m=4, loop" forces the loop on
both, for comparison.

The variants (issue 15), each driven by ``opt.step(closure)`` over SGD with momentum, as a training
loop drives it: ASAM (``SAM(adaptive=True)``), USAM (``SAM(normalize=False)``), GSAM, FriendlySAM,
MomentumSAM (one pass per step), LookSAM and SAM every k steps (k = 5), RandomizedSAM
(probability 0.5) and AdaptiveSAM (c = 0). "SAM, step(closure)" is ``sam_course.SAM`` driven the
same way, to show that the closure costs nothing next to ``train_step``'s two-step API. SAM-ON
(``norm_layer_groups``: only the normalization layers are perturbed) needs normalization layers:
on the CNN it runs on ``SmallCNN(batch_norm=True)``, beside that model's own base step and SAM step
(the rows marked "BN"), and its ratios are to those two; the BN rows' perturbed pass leaves the
running statistics alone (``frozen_batchnorm_stats``), as a correct SAM step does.

Passes per step are counted, not assumed: every closure call is one forward-backward pass, counted
over the timed steps (the warm-up steps left out) and checked against the optimizer's own
``passes_taken`` (or ``steps_taken``) over all its steps. The rows without a closure have the passes
of their definition: 1 for the base step, 2 for SAM (``train_step``), 2 for m-SAM (each of its
128 / m chunks forward-backward twice; the low-rank form instead runs one forward-backward to the
layers' outputs, one corrected forward and one backward). A variant whose steps differ in cost
(the schedules, LookSAM, SAM every k) has a bimodal step time, whose median is the median of one
kind of step; its "median ms" (marked ``*``) is instead the median of its one-pass steps and the
median of its two-pass steps, weighted by how many of each it took in the timed rounds. A fixed
batch is not a training run: how often AdaptiveSAM chooses SAM here says nothing about how often it
does on data (chapter 14 counts that).

Run: ``python benchmarks/step_cost.py [--rounds 40] [--thread-time]`` (the default was 60 rounds
before the variants joined; 40 keeps the whole script to a few minutes). By default it measures
wall-clock time on all of PyTorch's threads; on a shared machine ``--thread-time`` measures the CPU
time of a single thread instead (``torch.set_num_threads(1)``, ``clock=time.thread_time``), which
other processes do not disturb, as chapter 5 does.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from sam_course.models import MLP, SmallCNN
from sam_course.optim import GSAM, SAM, frozen_batchnorm_stats, norm_layer_groups
from sam_course.optim.friendly import FriendlySAM
from sam_course.optim.momentum_sam import MomentumSAM
from sam_course.optim.msam import msam_step
from sam_course.optim.schedules import AdaptiveSAM, RandomizedSAM
from sam_course.optim.variants import LookSAM, SAMEveryK
from sam_course.timing import compare_step_times, train_step

BATCH = 128
LOSS = nn.CrossEntropyLoss()
BASELINE = "base (SGD)"
REFERENCE = "sam_course.SAM"
BN_BASE, BN_SAM = "BN: base (SGD)", "BN: SAM"
WARMUP = 5


def peer_sam(params, **kwargs):
    import pytorch_optimizer

    return pytorch_optimizer.SAM(params, torch.optim.SGD, rho=0.05, **kwargs)


def msam(m, method="auto"):
    def make(model, x, y, **kwargs):
        opt = SAM(model.parameters(), torch.optim.SGD, rho=0.05, **kwargs)
        return lambda: msam_step(opt, model, LOSS, x, y, m, method)

    return make


def fixed(passes, make):
    """A method whose passes per step are those of its definition (no closure to count)."""
    make.passes = passes
    return make


class ClosureStep:
    """One ``opt.step(closure)`` training step on a fixed batch, counting the closure's calls.

    ``passes[i]`` is the number of forward-backward passes of the ``i``-th call. On a model with
    BatchNorm, every pass after the first of a step runs under ``frozen_batchnorm_stats`` (the
    perturbed pass of a SAM step must not move the running statistics).
    """

    def __init__(self, model, opt, x, y):
        self.model, self.opt, self.x, self.y = model, opt, x, y
        self.has_bn = any(isinstance(m, nn.modules.batchnorm._NormBase) for m in model.modules())
        self.passes: list[int] = []

    def _pass(self):
        loss = LOSS(self.model(self.x), self.y)
        loss.backward()
        return loss

    def __call__(self) -> float:
        calls = 0

        def closure():
            nonlocal calls
            calls += 1
            if calls > 1 and self.has_bn:
                with frozen_batchnorm_stats(self.model):
                    return self._pass()
            return self._pass()

        self.opt.zero_grad()
        loss = self.opt.step(closure)
        self.passes.append(calls)
        return loss.item()

    def check_count(self, name):
        """The counted passes against the optimizer's own counter, where it keeps one."""
        counted = sum(self.passes)
        own = getattr(self.opt, "passes_taken", None)
        if own is None and isinstance(self.opt, MomentumSAM):
            own = self.opt.steps_taken  # one pass per step
        if own is not None and own != counted:
            raise RuntimeError(f"{name}: {counted} closure calls counted, the optimizer says {own} passes")


def variant(build, **extra):
    def make(model, x, y, **kwargs):
        return ClosureStep(model, build(model, **extra, **kwargs), x, y)

    return make


def sgd(params, **kw):
    return torch.optim.SGD(params, **kw)


METHODS = {
    BASELINE: fixed(1, lambda model, x, y, **kw: train_step(model, torch.optim.SGD(model.parameters(), **kw),
                                                            LOSS, x, y)),
    REFERENCE: fixed(2, lambda model, x, y, **kw: train_step(
        model, SAM(model.parameters(), torch.optim.SGD, rho=0.05, **kw), LOSS, x, y)),
    "pytorch_optimizer.SAM": fixed(2, lambda model, x, y, **kw: train_step(model, peer_sam(model.parameters(), **kw),
                                                                           LOSS, x, y)),
    "m-SAM m=32": fixed(2, msam(32)),
    "m-SAM m=16": fixed(2, msam(16)),
    "m-SAM m=4": fixed(2, msam(4)),
    "m-SAM m=4, loop": fixed(2, msam(4, "loop")),
    "SAM, step(closure)": variant(lambda m, **kw: SAM(m.parameters(), torch.optim.SGD, rho=0.05, **kw)),
    "ASAM (adaptive)": variant(lambda m, **kw: SAM(m.parameters(), torch.optim.SGD, rho=0.5, adaptive=True, **kw)),
    "USAM (normalize=False)": variant(lambda m, **kw: SAM(m.parameters(), torch.optim.SGD, rho=0.05,
                                                          normalize=False, **kw)),
    "GSAM alpha=0.1": variant(lambda m, **kw: GSAM(m.parameters(), torch.optim.SGD, rho=0.05, alpha=0.1, **kw)),
    "FriendlySAM": variant(lambda m, **kw: FriendlySAM(m.parameters(), torch.optim.SGD, rho=0.05, sigma=1.0,
                                                       lmbda=0.9, **kw)),
    "MomentumSAM": variant(lambda m, **kw: MomentumSAM(m.parameters(), torch.optim.SGD, rho=0.3, **kw)),
    "LookSAM k=5": variant(lambda m, **kw: LookSAM(m.parameters(), torch.optim.SGD, rho=0.05, k=5, **kw)),
    "SAM every k=5": variant(lambda m, **kw: SAMEveryK(m.parameters(), torch.optim.SGD, rho=0.05, k=5, **kw)),
    "RandomizedSAM p=0.5": variant(lambda m, **kw: RandomizedSAM(m.parameters(), torch.optim.SGD, rho=0.05,
                                                                 probability=0.5, seed=0, **kw)),
    "AdaptiveSAM c=0": variant(lambda m, **kw: AdaptiveSAM(m.parameters(), torch.optim.SGD, rho=0.05, c=0.0, **kw)),
}

#: SAM-ON and its two references, on the CNN with BatchNorm (closure steps, BN stats frozen on the perturbed pass).
BN_METHODS = {
    BN_BASE: variant(lambda m, **kw: sgd(m.parameters(), **kw)),
    BN_SAM: variant(lambda m, **kw: SAM(m.parameters(), torch.optim.SGD, rho=0.05, **kw)),
    "BN: SAM-ON rho=0.5": variant(lambda m, **kw: SAM(norm_layer_groups(m, rho=0.5), torch.optim.SGD, **kw)),
}


def step_time(samples, passes):
    """Median seconds per step; for a method with steps of different passes, the medians of each
    kind weighted by their counts (``passes`` aligned with ``samples``; None for fixed methods)."""
    if passes is None or len(set(passes)) == 1:
        return statistics.median(samples), False
    kinds = sorted(set(passes))
    total = sum(statistics.median([t for t, n in zip(samples, passes) if n == k]) * passes.count(k) for k in kinds)
    return total / len(passes), True


def measure(make_model, input_shape, rounds, bn_model=None, warmup=WARMUP, seed=0, clock=time.perf_counter):
    """Every method, each on its own copy of the model (same init), timed in one interleaved run.

    Returns ``{name: (seconds per step, mixed, passes per step, reference names)}``.
    """
    # Step time does not depend on the pixel values, so a fixed random batch stands in for data.
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(BATCH, *input_shape, generator=gen)
    y = torch.randint(0, 10, (BATCH,), generator=gen)
    methods = [(name, factory, make_model) for name, factory in METHODS.items()]
    if bn_model is not None:
        methods += [(name, factory, bn_model) for name, factory in BN_METHODS.items()]
    steps = {}
    for name, factory, build in methods:
        torch.manual_seed(seed)
        steps[name] = factory(build(), x, y, lr=0.01, momentum=0.9)
    times = compare_step_times(steps, rounds, baseline=BASELINE, warmup=warmup, seed=seed, clock=clock)
    results = {}
    for name, factory, _ in methods:
        step = steps[name]
        if isinstance(step, ClosureStep):
            step.check_count(name)
            timed = step.passes[warmup:]
            assert len(timed) == rounds
            seconds, mixed = step_time(times.samples[name], timed)
            passes = sum(timed) / rounds
        else:
            seconds, mixed = step_time(times.samples[name], None)
            passes = factory.passes
        refs = (BN_BASE, BN_SAM) if name.startswith("BN:") else (BASELINE, REFERENCE)
        results[name] = (seconds, mixed, passes, refs)
    return results


def report(title, results, sam_target):
    t = {name: r[0] for name, r in results.items()}
    base, sam, peer = t[BASELINE], t[REFERENCE], t["pytorch_optimizer.SAM"]
    print(f"\n{title}")
    print(f"{'method':<26}{'passes/step':>12}{'median ms':>11}{'x base':>8}{'x SAM':>7}")
    for name, (seconds, mixed, passes, (ref_base, ref_sam)) in results.items():
        mark = "*" if mixed else " "
        print(f"{name:<26}{passes:>12.3f}{1e3 * seconds:>10.2f}{mark}{seconds / t[ref_base]:>8.2f}"
              f"{seconds / t[ref_sam]:>7.2f}")
    if any(name.startswith("BN:") for name in results):
        print("  (BN rows: SmallCNN(batch_norm=True); their ratios are to the BN base and BN SAM rows)")
    if any(r[1] for r in results.values()):
        print("  * steps of different passes: medians of each kind, weighted by their counts")
    checks = [
        (f"SAM <= {sam_target}x base", sam / base <= sam_target),
        ("sam_course.SAM <= 1.03x pytorch_optimizer.SAM", sam <= 1.03 * peer),
        ("m-SAM m=16 <= 1.1x SAM", t["m-SAM m=16"] <= 1.1 * sam),
        ("m-SAM m=4 <= 1.3x SAM", t["m-SAM m=4"] <= 1.3 * sam),
    ]
    for label, ok in checks:
        print(f"  [{'met' if ok else 'MISSED'}] {label}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40, help="timed steps per method (default 40)")
    parser.add_argument("--thread-time", action="store_true",
                        help="one thread, timed by its CPU time (robust on a shared machine)")
    args = parser.parse_args()
    clock = time.perf_counter
    if args.thread_time:
        torch.set_num_threads(1)
        clock = time.thread_time
    what = "CPU time of 1 thread" if args.thread_time else f"wall-clock, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {what}, batch {BATCH}, {args.rounds} rounds, {WARMUP} warm-up steps")
    report("MLP 784-512-512-10", measure(MLP, (1, 28, 28), args.rounds, clock=clock), 2.3)
    report("SmallCNN on 3x32x32", measure(SmallCNN, (3, 32, 32), args.rounds, clock=clock,
                                          bn_model=lambda: SmallCNN(batch_norm=True)), 2.1)


if __name__ == "__main__":
    main()
