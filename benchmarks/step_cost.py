"""Cost of one training step: the base optimizer, sam_course.SAM, pytorch_optimizer.SAM and m-SAM.

Every method trains its own copy of the model on the same fixed batch; the methods take turns
(interleaved, in a new random order each round, by ``sam_course.timing.compare_step_times``) so
that the machine's drift hits all of them alike, and each is summarized by its median step time.
Prints the ratio of each to the base step and checks the targets of the package (issue 3):

- SAM at most 2.1x the base step on the CNN and 2.3x on the MLP (two passes make 2.0x the floor);
- sam_course.SAM no slower than pytorch_optimizer.SAM (to within 3 %, the noise of a median);
- m-SAM at m = 16 at most 1.1x and at m = 4 at most 1.3x plain SAM.

m-SAM runs with ``msam_step``'s default method: on the MLP that is the low-rank form of
``sam_course.optim.msam_lowrank``, on the CNN the per-chunk loop; "m-SAM m=4, loop" forces the loop on
both, for comparison.

Run: ``python benchmarks/step_cost.py [--rounds 60] [--thread-time]``. By default it measures
wall-clock time on all of PyTorch's threads; on a shared machine ``--thread-time`` measures the CPU
time of a single thread instead (``torch.set_num_threads(1)``, ``clock=time.thread_time``), which
other processes do not disturb, as chapter 5 does.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from sam_course.models import MLP, SmallCNN
from sam_course.optim import SAM
from sam_course.optim.msam import msam_step
from sam_course.timing import compare_step_times, train_step

BATCH = 128
LOSS = nn.CrossEntropyLoss()
BASELINE = "base (SGD)"


def peer_sam(params, **kwargs):
    import pytorch_optimizer

    return pytorch_optimizer.SAM(params, torch.optim.SGD, rho=0.05, **kwargs)


def msam(m, method="auto"):
    def make(model, x, y, **kwargs):
        opt = SAM(model.parameters(), torch.optim.SGD, rho=0.05, **kwargs)
        return lambda: msam_step(opt, model, LOSS, x, y, m, method)

    return make


METHODS = {
    BASELINE: lambda model, x, y, **kw: train_step(model, torch.optim.SGD(model.parameters(), **kw), LOSS, x, y),
    "sam_course.SAM": lambda model, x, y, **kw: train_step(
        model, SAM(model.parameters(), torch.optim.SGD, rho=0.05, **kw), LOSS, x, y),
    "pytorch_optimizer.SAM": lambda model, x, y, **kw: train_step(model, peer_sam(model.parameters(), **kw), LOSS, x, y),
    "m-SAM m=32": msam(32),
    "m-SAM m=16": msam(16),
    "m-SAM m=4": msam(4),
    "m-SAM m=4, loop": msam(4, "loop"),
}


def measure(make_model, input_shape, rounds, warmup=5, seed=0, clock=time.perf_counter):
    """Median seconds per step of every method, each on its own copy of the model (same init)."""
    # Step time does not depend on the pixel values, so a fixed random batch stands in for data.
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(BATCH, *input_shape, generator=gen)
    y = torch.randint(0, 10, (BATCH,), generator=gen)
    steps = {}
    for name, factory in METHODS.items():
        torch.manual_seed(seed)
        steps[name] = factory(make_model(), x, y, lr=0.01, momentum=0.9)
    return compare_step_times(steps, rounds, baseline=BASELINE, warmup=warmup, seed=seed, clock=clock).medians()


def report(title, medians, sam_target):
    base, sam, peer = medians[BASELINE], medians["sam_course.SAM"], medians["pytorch_optimizer.SAM"]
    print(f"\n{title}")
    print(f"{'method':<24}{'median ms':>10}{'x base':>9}{'x SAM':>8}")
    for name, t in medians.items():
        print(f"{name:<24}{1e3 * t:>10.2f}{t / base:>9.2f}{t / sam:>8.2f}")
    checks = [
        (f"SAM <= {sam_target}x base", sam / base <= sam_target),
        ("sam_course.SAM <= 1.03x pytorch_optimizer.SAM", sam <= 1.03 * peer),
        ("m-SAM m=16 <= 1.1x SAM", medians["m-SAM m=16"] <= 1.1 * sam),
        ("m-SAM m=4 <= 1.3x SAM", medians["m-SAM m=4"] <= 1.3 * sam),
    ]
    for label, ok in checks:
        print(f"  [{'met' if ok else 'MISSED'}] {label}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60, help="timed steps per method (default 60)")
    parser.add_argument("--thread-time", action="store_true",
                        help="one thread, timed by its CPU time (robust on a shared machine)")
    args = parser.parse_args()
    clock = time.perf_counter
    if args.thread_time:
        torch.set_num_threads(1)
        clock = time.thread_time
    what = "CPU time of 1 thread" if args.thread_time else f"wall-clock, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {what}, batch {BATCH}, {args.rounds} rounds")
    report("MLP 784-512-512-10", measure(MLP, (1, 28, 28), args.rounds, clock=clock), 2.3)
    report("SmallCNN on 3x32x32", measure(SmallCNN, (3, 32, 32), args.rounds, clock=clock), 2.1)


if __name__ == "__main__":
    main()
