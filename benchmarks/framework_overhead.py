"""What a training framework adds to a SAM step: Lightning and the Hugging Face Trainer against a plain loop.

Three methods train their own copy of the same model (same initialization) on the same fixed
batch, with SAM around ``torch.optim.AdamW(fused=True)`` (the Trainer's default base; constant
learning rate, no clipping, no logger, progress bar or checkpoints):

- ``plain SAM``: the loop a user writes, ``opt.zero_grad(); opt.step(closure)`` with
  :class:`sam_course.optim.SAM` and a closure doing forward and backward;
- ``Lightning``: a ``LightningModule`` with :class:`sam_course.integrations.lightning.SAMMixin`,
  trained by ``Trainer.fit`` (automatic optimization);
- ``HF SAMTrainer``: :class:`sam_course.integrations.transformers.SAMTrainer` around the
  Trainer's own AdamW, trained by ``train()``.

How a framework's step is timed. ``fit`` and ``train`` own their loops, so one of their steps
cannot be called alone. Each runs in its own thread instead, and a callback at the start of every
step (Lightning's ``on_train_batch_start``, the Trainer's ``on_step_begin``) parks the loop there
until the benchmark lets it take one more step; the step is timed from that release to the moment
the loop parks again at the next step's start. So a framework's step counts everything the loop
does between two steps: its hooks, the closure and both passes, the optimizer step, its
bookkeeping and fetching the next batch (the same tensors every step: a data loader with
``batch_size=None`` for Lightning, a one-item batch handed through by the collator for the
Trainer, so that no method pays for collation the others do not do). Setup (building the
trainer, the first steps' lazy initialization) falls in the warm-up steps, which are not timed.
After the run, the three models must have equal weights (printed: the largest difference), which
shows that each framework took the same SAM steps as the plain loop. Only one thread computes at
any time: the benchmark waits while a framework steps, and a parked framework waits while the
others step. The hand-over costs two semaphore operations, some tens of microseconds against
steps of tens of milliseconds.

The three then take turns (``sam_course.timing.compare_step_times``: interleaved, in a new random
order each round, so that the machine's drift hits all of them alike) and each is summarized by
its median step time. Printed: the medians, the ratio framework / plain SAM, and whether each is
within the target of issue 13 (framework overhead at most 10 % of the plain SAM step, on a model
whose plain SAM step takes at least 20 ms; the script says if the model is too small for that).

Runs offline (``HF_HUB_OFFLINE=1``; the model is a plain ``nn.Module``, nothing is downloaded),
on the CPU, in well under a minute (about 10 s on 2 CPU cores). Run:
``python benchmarks/framework_overhead.py [--rounds 40] [--threads 1] [--width 1024] [--batch 128]``.
By default PyTorch uses one thread, which keeps the samples steady on a shared machine; the
frameworks' overhead is Python work on one thread anyway. Wall-clock time: the thread-CPU clock
of chapter 5 would miss the work done in the framework's thread.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from sam_course.optim import SAM  # noqa: E402
from sam_course.timing import compare_step_times  # noqa: E402

PLAIN = "plain SAM"
RHO, LR, TARGET, MIN_STEP_S = 0.05, 1e-3, 1.10, 0.020


class Net(nn.Module):
    """An MLP ``inputs -> width -> width -> 10`` whose forward returns the loss as the Trainer wants it."""

    def __init__(self, inputs: int, width: int, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Linear(inputs, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                                  nn.Linear(width, 10))

    def forward(self, x, labels=None):
        logits = self.body(x)
        return {"loss": F.cross_entropy(logits, labels), "logits": logits}


def make_sam(params) -> SAM:
    # fused=True: the AdamW the Trainer builds by default (optim="adamw_torch_fused"), so all three
    # methods apply the same base update and differ only in the loop around it.
    return SAM(params, torch.optim.AdamW, rho=RHO, lr=LR, weight_decay=0.0, fused=True)


class StopBenchmark(Exception):
    """Raised in a parked training loop to end it once the benchmark is done."""


class SteppedLoop:
    """A training loop running in its own thread, released one step at a time.

    ``run(pause)`` trains; it must call ``pause()`` at the start of every step. Calling this
    object lets the loop take one step and returns when it reaches the next step's start.
    """

    def __init__(self, run):
        self._go, self._parked = threading.Semaphore(0), threading.Semaphore(0)
        self._stop, self._done, self._error = False, False, None
        self._thread = threading.Thread(target=self._target, args=(run,), daemon=True)
        self._thread.start()
        self._parked.acquire()  # setup and the first batch happen here, before any timing
        self._check()

    def _target(self, run) -> None:
        try:
            run(self.pause)
        except StopBenchmark:
            pass
        except BaseException as error:  # handed to the benchmark's thread
            self._error = error
        finally:
            self._done = True
            self._parked.release()

    def pause(self) -> None:
        self._parked.release()
        self._go.acquire()
        if self._stop:
            raise StopBenchmark

    def __call__(self) -> None:
        self._go.release()
        self._parked.acquire()
        self._check()

    def _check(self) -> None:
        if self._error is not None:
            raise RuntimeError("the framework's training loop failed") from self._error
        if self._done and not self._stop:
            raise RuntimeError("the framework's training loop ended before the benchmark (raise its max_steps)")

    def close(self) -> None:
        self._stop = True
        self._go.release()
        self._thread.join(timeout=60)


class RepeatedBatch(torch.utils.data.Dataset):
    """The same item ``length`` times (the fixed batch, already built)."""

    def __init__(self, item, length: int):
        self.item, self.length = item, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index):
        return self.item


def plain_step(inputs: int, width: int, x, y):
    model = Net(inputs, width)
    opt = make_sam(model.parameters())

    def closure():
        loss = model(x, y)["loss"]
        loss.backward()
        return loss

    def step():
        opt.zero_grad()
        opt.step(closure)

    return step, model


def lightning_step(inputs: int, width: int, x, y, steps: int) -> tuple[SteppedLoop, nn.Module]:
    import lightning.pytorch as L

    from sam_course.integrations.lightning import SAMMixin

    net = Net(inputs, width)

    class Module(SAMMixin, L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = net

        def training_step(self, batch, batch_idx):
            return self.net(*batch)["loss"]

        def configure_optimizers(self):
            return make_sam(self.parameters())

    class Park(L.Callback):
        def __init__(self, pause):
            self.pause = pause

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.pause()

    def run(pause):
        data = torch.utils.data.DataLoader(RepeatedBatch((x, y), steps), batch_size=None)
        trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, callbacks=[Park(pause)])
        trainer.fit(Module(), data)

    return SteppedLoop(run), net


def hf_step(inputs: int, width: int, x, y, steps: int, out: str) -> tuple[SteppedLoop, nn.Module]:
    import transformers

    from sam_course.integrations.transformers import SAMTrainer

    class Park(transformers.TrainerCallback):
        def __init__(self, pause):
            self.pause = pause

        def on_step_begin(self, args, state, control, **kwargs):
            self.pause()

    net = Net(inputs, width)

    def run(pause):
        args = transformers.TrainingArguments(
            output_dir=out, per_device_train_batch_size=1, learning_rate=LR, lr_scheduler_type="constant",
            warmup_steps=0, weight_decay=0.0, max_grad_norm=0.0, max_steps=steps, report_to="none", use_cpu=True,
            save_strategy="no", disable_tqdm=True, logging_strategy="no", seed=0, dataloader_num_workers=0)
        trainer = SAMTrainer(model=net, args=args, train_dataset=RepeatedBatch({"x": x, "labels": y}, steps),
                             data_collator=lambda items: items[0], rho=RHO, callbacks=[Park(pause)])
        trainer.train()

    return SteppedLoop(run), net


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40, help="timed steps per method (default 40)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per method first (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="PyTorch threads (default 1)")
    parser.add_argument("--width", type=int, default=1024, help="hidden width of the MLP (default 1024)")
    parser.add_argument("--inputs", type=int, default=784, help="input features (default 784)")
    parser.add_argument("--batch", type=int, default=128, help="examples per step (default 128)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")  # the frameworks' advice (workers, litlogger...) is not the benchmark's
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(args.batch, args.inputs, generator=gen), torch.randint(0, 10, (args.batch,), generator=gen)
    steps = args.warmup + args.rounds + 2  # the frameworks must not end before the benchmark
    with tempfile.TemporaryDirectory() as out:
        built = {PLAIN: plain_step(args.inputs, args.width, x, y),
                 "Lightning": lightning_step(args.inputs, args.width, x, y, steps),
                 "HF SAMTrainer": hf_step(args.inputs, args.width, x, y, steps, out)}
        methods = {name: step for name, (step, _) in built.items()}
        try:
            times = compare_step_times(methods, args.rounds, baseline=PLAIN, warmup=args.warmup)
        finally:
            for step in methods.values():
                if isinstance(step, SteppedLoop):
                    step.close()
    # Every method took warmup + rounds steps from the same start on the same batch: equal weights
    # show that the frameworks' steps are the same SAM steps as the plain loop's, nothing skipped.
    models = {name: model for name, (_, model) in built.items()}
    gaps = {name: max(float((p - q).abs().max()) for p, q in zip(models[name].parameters(), models[PLAIN].parameters()))
            for name in models if name != PLAIN}
    medians = times.medians()
    params = sum(p.numel() for p in Net(args.inputs, args.width).parameters())
    print(f"torch {torch.__version__}, wall-clock, {args.threads} thread(s); MLP {args.inputs}-{args.width}-"
          f"{args.width}-10 ({params / 1e6:.2f} M parameters), batch {args.batch}, SAM around AdamW(fused=True); "
          f"{args.rounds} rounds after {args.warmup} warm-up steps")
    print(f"{'method':<16}{'median ms':>10}{'x plain':>9}")
    for name, t in medians.items():
        print(f"{name:<16}{1e3 * t:>10.2f}{t / medians[PLAIN]:>9.3f}")
    plain = medians[PLAIN]
    if plain < MIN_STEP_S:
        print(f"  the plain SAM step takes {1e3 * plain:.1f} ms < {1e3 * MIN_STEP_S:.0f} ms: "
              "the model is too small for the target (raise --width or --batch)")
    print("  max |weights - plain SAM's| after the run: " + ", ".join(f"{n} {g:.1e}" for n, g in gaps.items()))
    for name in ("Lightning", "HF SAMTrainer"):
        ratio = medians[name] / plain
        print(f"  [{'met' if ratio <= TARGET else 'MISSED'}] {name} <= {TARGET:.2f}x plain SAM "
              f"(overhead {100 * (ratio - 1):+.1f} %, {1e3 * (medians[name] - plain):+.2f} ms a step)")


if __name__ == "__main__":
    main()
