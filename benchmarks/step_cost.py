"""Cost of one training step: the base optimizer, sam_course.SAM, pytorch_optimizer.SAM and m-SAM.

Every method trains its own copy of the model on the same fixed batch; the methods take turns
(interleaved, in a new random order each round) so that the machine's drift hits all of them
alike, and each is summarized by its median step time. Prints the ratio of each to the base step
and checks the targets of the package (issue 3):

- SAM at most 2.1x the base step on the CNN and 2.3x on the MLP (two passes make 2.0x the floor);
- sam_course.SAM no slower than pytorch_optimizer.SAM (to within 3 %, the noise of a median);
- m-SAM at m = 16 at most 1.1x and at m = 4 at most 1.3x plain SAM.

Run: ``python benchmarks/step_cost.py [--rounds 60]``. Chapter 5 quotes its output.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
from torch import nn

from sam_course.models import MLP, SmallCNN
from sam_course.msharpness import msam_step
from sam_course.optim import SAM

BATCH = 128
LOSS = nn.CrossEntropyLoss()


def base_step(model, x, y, **kwargs):
    opt = torch.optim.SGD(model.parameters(), **kwargs)

    def step():
        opt.zero_grad()
        LOSS(model(x), y).backward()
        opt.step()

    return step


def sam_step(model, x, y, **kwargs):
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.05, **kwargs)

    def step():
        LOSS(model(x), y).backward()
        opt.first_step(zero_grad=True)
        LOSS(model(x), y).backward()
        opt.second_step(zero_grad=True)

    return step


def peer_sam_step(model, x, y, **kwargs):
    import pytorch_optimizer

    opt = pytorch_optimizer.SAM(model.parameters(), torch.optim.SGD, rho=0.05, **kwargs)

    def step():
        LOSS(model(x), y).backward()
        opt.first_step(zero_grad=True)
        LOSS(model(x), y).backward()
        opt.second_step(zero_grad=True)

    return step


def msam(m):
    def make(model, x, y, **kwargs):
        opt = SAM(model.parameters(), torch.optim.SGD, rho=0.05, **kwargs)
        return lambda: msam_step(opt, model, LOSS, x, y, m)

    return make


METHODS = {
    "base (SGD)": base_step,
    "sam_course.SAM": sam_step,
    "pytorch_optimizer.SAM": peer_sam_step,
    "m-SAM m=32": msam(32),
    "m-SAM m=16": msam(16),
    "m-SAM m=4": msam(4),
}


def measure(make_model, input_shape, rounds, warmup=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(BATCH, *input_shape, generator=gen)
    y = torch.randint(0, 10, (BATCH,), generator=gen)
    steps = {}
    for name, factory in METHODS.items():
        torch.manual_seed(seed)
        steps[name] = factory(make_model(), x, y, lr=0.01, momentum=0.9)
    for step in steps.values():
        for _ in range(warmup):
            step()
    times = {name: [] for name in steps}
    order = list(steps)
    rng = random.Random(seed)
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            start = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def report(title, medians, sam_target):
    base, sam, peer = medians["base (SGD)"], medians["sam_course.SAM"], medians["pytorch_optimizer.SAM"]
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
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {BATCH}, {args.rounds} rounds")
    report("MLP 784-512-512-10", measure(MLP, (1, 28, 28), args.rounds), 2.3)
    report("SmallCNN on 3x32x32", measure(SmallCNN, (3, 32, 32), args.rounds), 2.1)


if __name__ == "__main__":
    main()
