"""Throughput of SAM with DistributedDataParallel: 1 process against 2 on this machine (issue 8).

Both set-ups train the same MLP 784-512-512-10 with :class:`sam_course.optim.distributed.SAMStep` on the
same global batch (default 256 examples a step) and use the same CPU cores: one process with all
of the machine's threads, or two processes (gloo) with half the threads each and half the batch
each. The two set-ups take turns for several rounds (so that the machine's drift hits both alike),
and each is summarized by its median examples per second. Printed: a table and the ratio
2-process / 1-process, for per-worker and for synchronized perturbations.

What the ratio means: on a CPU both set-ups share the same cores, so the ratio measures the
overhead of splitting the work (all-reduce through gloo, two smaller matrix products instead of
one, and, for synchronized perturbations, one all-reduce more per step), not a speed-up; 1.0 is
the ceiling. On GPUs each process has its own device and the same ratio would approach 2 minus
the all-reduce cost; the synchronized perturbation then costs one extra all-reduce of every
gradient per step, the per-worker one none.

Run: ``python benchmarks/ddp_scaling.py [--rounds 3] [--steps 30] [--batch 256]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from sam_course.models import MLP
from sam_course.optim import SAM
from sam_course.optim.distributed import SAMStep


def _worker(rank: int, world: int, store: str, threads: int, batch: int, steps: int, sync: bool, out: str) -> None:
    torch.set_num_threads(threads)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = MLP(hidden=(512, 512))
        net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
        step = SAMStep(net, SAM(model.parameters(), torch.optim.SGD, lr=0.05, momentum=0.9), sync_perturbation=sync)
        gen = torch.Generator().manual_seed(rank)
        x = torch.rand(batch // world, 1, 28, 28, generator=gen)   # timing only: the values do not matter
        y = torch.randint(0, 10, (batch // world,), generator=gen)
        loss_fn = nn.CrossEntropyLoss()
        for _ in range(3):                                          # warm-up
            step(x, y, loss_fn)
        if world > 1:
            dist.barrier()
        start = time.perf_counter()
        for _ in range(steps):
            step(x, y, loss_fn)
        if world > 1:
            dist.barrier()
        if rank == 0:
            with open(out, "w") as f:
                f.write(str(steps * batch / (time.perf_counter() - start)))
    finally:
        if world > 1:
            dist.destroy_process_group()


def measure(world: int, batch: int, steps: int, sync: bool) -> float:
    """Examples per second of ``world`` processes sharing the machine's cores."""
    threads = max(1, (os.cpu_count() or 1) // world)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "rate")
        mp.spawn(_worker, args=(world, os.path.join(tmp, "store"), threads, batch, steps, sync, out),
                 nprocs=world, join=True)
        with open(out) as f:
            return float(f.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    setups = [("1 process", 1, False), ("2 processes, per-worker eps", 2, False), ("2 processes, synchronized eps", 2, True)]
    rates = {name: [] for name, _, _ in setups}
    for _ in range(args.rounds):
        for name, world, sync in setups:
            rates[name].append(measure(world, args.batch, args.steps, sync))
    cores = os.cpu_count()
    print(f"SAM-SGD steps of an MLP 784-512-512-10, global batch {args.batch}, {cores} cores, "
          f"median of {args.rounds} rounds x {args.steps} steps")
    print(f"{'set-up':32s} {'examples/s':>11s} {'ratio to 1 process':>19s}")
    single = statistics.median(rates["1 process"])
    for name, _, _ in setups:
        rate = statistics.median(rates[name])
        print(f"{name:32s} {rate:11.0f} {rate / single:19.2f}")


if __name__ == "__main__":
    main()
