"""Interleaved, median-based timing of training steps (chapter 5; ``benchmarks/step_cost.py``).

A SAM step costs two forward-backward passes where the base optimizer needs one, so its time per
step should be a little over twice the base step. Measuring such a ratio on a shared machine is
easy to get wrong: the clock speed, other processes and the caches drift over a run, and a method
timed in one block would absorb whatever drift happened during its block. Here the methods take
turns: every round calls each step once, in a new random order, and each method is summarized by
the median of its rounds, which ignores the occasional slow outlier. Ratios are taken against a
named baseline, both as the ratio of medians and as quartiles of the per-round (paired) ratios.
On a busy machine, wall-clock time also counts the moments another process holds the processor;
:func:`compare_step_times_one_thread` runs PyTorch on one thread and reads that thread's CPU time
instead (chapters 5, 12, 14 and 15 do this). :func:`sam_cost_callables` builds the five steps
chapter 5 times to take a SAM step's cost apart (two passes versus SAM's own bookkeeping).

Example::

    from sam_course.timing import compare_step_times, train_step

    steps = {
        "SGD": train_step(model_a, torch.optim.SGD(model_a.parameters(), lr=0.1), loss_fn, x, y),
        "SAM": train_step(model_b, SAM(model_b.parameters(), torch.optim.SGD, lr=0.1), loss_fn, x, y),
    }
    result = compare_step_times(steps, rounds=40, baseline="SGD")
    result.table()          # median ms, quartiles, ratio to SGD
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from ._checks import check_choice, check_instance, check_int
from ._params import LossFn
from .optim.sam import SAM

if TYPE_CHECKING:  # pandas is imported only when a table is asked for
    import pandas as pd

__all__ = [
    "StepTimes",
    "compare_step_times",
    "compare_step_times_one_thread",
    "train_step",
    "SAM_COST_LABELS",
    "sam_cost_callables",
]


def _quantile(values: list[float], fraction: float) -> float:
    """Linear-interpolation quantile (numpy's default), without numpy."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


@dataclass(frozen=True)
class StepTimes:
    """The result of :func:`compare_step_times`.

    Attributes:
        samples: for each method, its ``rounds`` step times in seconds, in the order of the rounds
            (``samples[name][k]`` and ``samples[other][k]`` were measured in the same round).
        baseline: the method the ratios divide by.
        orders: the order in which the methods ran in each round.
        warmup: untimed calls of each method before the first round.
        seed: seed of the random orders.
    """

    samples: dict[str, tuple[float, ...]]
    baseline: str
    orders: tuple[tuple[str, ...], ...]
    warmup: int
    seed: int

    @property
    def rounds(self) -> int:
        """Number of timed rounds."""
        return len(self.orders)

    def medians(self) -> dict[str, float]:
        """Median step time of each method, in seconds."""
        return {name: statistics.median(times) for name, times in self.samples.items()}

    def ratios(self) -> dict[str, float]:
        """Median step time of each method divided by the baseline's median (the baseline is 1)."""
        medians = self.medians()
        return {name: t / medians[self.baseline] for name, t in medians.items()}

    def paired_ratios(self, name: str) -> list[float]:
        """Per-round ratios ``samples[name][k] / samples[baseline][k]`` (same-round pairs)."""
        check_choice("name", name, self.samples)
        return [t / b for t, b in zip(self.samples[name], self.samples[self.baseline])]

    def table(self) -> pd.DataFrame:
        """One row per method: median and quartiles in milliseconds, ratio to the baseline.

        Columns: ``median_ms``, ``q25_ms``, ``q75_ms`` (quartiles of the step time),
        ``ratio`` (ratio of medians) and ``ratio_q25``, ``ratio_q75`` (quartiles of the per-round
        paired ratios, a measure of how far the ratio can be trusted).
        """
        import pandas as pd

        rows = {}
        for name, times in self.samples.items():
            paired = self.paired_ratios(name)
            rows[name] = {
                "median_ms": 1e3 * statistics.median(times),
                "q25_ms": 1e3 * _quantile(list(times), 0.25),
                "q75_ms": 1e3 * _quantile(list(times), 0.75),
                "ratio": statistics.median(times) / statistics.median(self.samples[self.baseline]),
                "ratio_q25": _quantile(paired, 0.25),
                "ratio_q75": _quantile(paired, 0.75),
            }
        frame = pd.DataFrame.from_dict(rows, orient="index")
        frame.index.name = "method"
        return frame


def compare_step_times(
    steps: Mapping[str, Callable[[], object]],
    rounds: int,
    baseline: str | None = None,
    warmup: int = 3,
    seed: int = 0,
    clock: Callable[[], float] = time.perf_counter,
    sync: Callable[[], object] | None = None,
) -> StepTimes:
    """Time several step functions against each other, interleaved, and summarize by medians.

    First every step runs ``warmup`` times (untimed; lazy initialization, caches, optimizer state).
    Then, for each of ``rounds`` rounds, the steps run once each in a random order drawn from
    ``random.Random(seed)``, each call timed alone with ``clock``. Chapter 5 uses it to measure
    SAM's cost per step against its base optimizer.

    Args:
        steps: name -> a callable taking no argument that performs one step (its return value is
            ignored). Each should own its model and optimizer, so the steps do not interact.
        rounds: timed calls of each step, >= 1.
        baseline: the name the ratios divide by; default the first name of ``steps``.
        warmup: untimed calls of each step before timing, >= 0.
        seed: seed of the random order of each round.
        clock: returns the time in seconds; default ``time.perf_counter`` (the tests inject a fake).
        sync: called right before each clock reading, e.g. ``torch.cuda.synchronize`` so that
            queued GPU work is counted in the step that launched it.

    Returns:
        A :class:`StepTimes` with every sample, the orders, medians and ratios.

    Raises:
        ValueError: on an empty ``steps``, a non-callable step, a ``baseline`` not among the
            names, or ``rounds`` / ``warmup`` / ``seed`` out of range.
    """
    if not isinstance(steps, Mapping) or not steps:
        raise ValueError(f"steps must be a non-empty mapping of name -> callable, got {steps!r}")
    for name, step in steps.items():
        if not isinstance(name, str):
            raise ValueError(f"step names must be strings, got {name!r}")
        if not callable(step):
            raise ValueError(f"steps[{name!r}] must be callable, got {step!r}")
    rounds = check_int("rounds", rounds, 1)
    warmup = check_int("warmup", warmup, 0)
    seed = check_int("seed", seed, 0)
    if baseline is None:
        baseline = next(iter(steps))
    check_choice("baseline", baseline, steps)
    if not callable(clock):
        raise ValueError(f"clock must be callable, got {clock!r}")
    if sync is not None and not callable(sync):
        raise ValueError(f"sync must be callable or None, got {sync!r}")
    wait = sync if sync is not None else (lambda: None)

    names = list(steps)
    for _ in range(warmup):
        for name in names:
            steps[name]()
    wait()
    rng = random.Random(seed)
    samples: dict[str, list[float]] = {name: [] for name in names}
    orders = []
    for _ in range(rounds):
        order = names[:]
        rng.shuffle(order)
        orders.append(tuple(order))
        for name in order:
            wait()
            start = clock()
            steps[name]()
            wait()
            samples[name].append(clock() - start)
    return StepTimes(
        samples={name: tuple(t) for name, t in samples.items()},
        baseline=baseline,
        orders=tuple(orders),
        warmup=warmup,
        seed=seed,
    )


def compare_step_times_one_thread(steps: Mapping[str, Callable[[], object]], rounds: int,
                                  baseline: str | None = None, warmup: int = 3, seed: int = 0) -> StepTimes:
    """:func:`compare_step_times` on one PyTorch thread, timed by that thread's CPU time.

    With one thread, all of a CPU step's work runs in the calling thread, so ``time.thread_time``
    counts it and nothing else: the moments another process holds the processor are left out,
    which makes the ratios steady on a shared machine. The thread count is restored afterwards,
    even when a step raises. Arguments and result as in :func:`compare_step_times`.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return compare_step_times(steps, rounds, baseline=baseline, warmup=warmup, seed=seed, clock=time.thread_time)
    finally:
        torch.set_num_threads(threads)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn,
               inputs: Tensor, targets: Tensor) -> Callable[[], float]:
    """A callable doing one training step of ``model`` on the fixed batch ``(inputs, targets)``.

    With an optimizer that has ``first_step`` and ``second_step`` (:class:`~sam_course.optim.sam.SAM`, or a
    peer implementation with the same two-step API) the step is SAM's: backward at ``w``,
    ``first_step``, backward at ``w + eps_hat``, ``second_step``. Otherwise it is the usual
    ``zero_grad``, backward, ``step``. The callable returns the loss at ``w`` as a float. Made for
    :func:`compare_step_times` (chapter 5, ``benchmarks/step_cost.py``).

    Raises:
        ValueError: when ``inputs`` and ``targets`` have different batch sizes.
    """
    check_instance("model", model, nn.Module, "torch.nn.Module")
    check_instance("optimizer", optimizer, torch.optim.Optimizer, "torch.optim.Optimizer")
    check_instance("inputs", inputs, Tensor, "torch.Tensor")
    check_instance("targets", targets, Tensor, "torch.Tensor")
    if inputs.shape[0] != targets.shape[0]:
        raise ValueError(
            f"inputs and targets must have the same batch size, got {inputs.shape[0]} and {targets.shape[0]}"
        )
    two_step = callable(getattr(optimizer, "first_step", None)) and callable(getattr(optimizer, "second_step", None))

    if two_step:
        def step() -> float:
            optimizer.zero_grad()
            loss = loss_fn(model(inputs), targets)
            loss.backward()
            optimizer.first_step(zero_grad=True)
            loss_fn(model(inputs), targets).backward()
            optimizer.second_step(zero_grad=True)
            return loss.item()
    else:
        def step() -> float:
            optimizer.zero_grad()
            loss = loss_fn(model(inputs), targets)
            loss.backward()
            optimizer.step()
            return loss.item()

    return step


# ----------------------------------------------------------------------------- SAM's cost, taken apart

#: The labels of :func:`sam_cost_callables`, in its order (the rows of chapter 5's cost table).
SAM_COST_LABELS = (
    "SGD",
    "two passes + SGD update",
    "SAM-SGD",
    "SGD update alone",
    "SAM first_step + second_step alone",
)


def _seeded_model_and_optimizer(make_model: Callable[[], nn.Module], seed: int, sam: bool, lr: float,
                                momentum: float, rho: float) -> tuple[nn.Module, torch.optim.Optimizer]:
    """A fresh ``make_model()`` built right after ``torch.manual_seed(seed)``, with its optimizer:
    ``SAM`` over SGD with momentum when ``sam``, else SGD with momentum."""
    torch.manual_seed(seed)
    model = make_model()
    if sam:
        return model, SAM(model.parameters(), torch.optim.SGD, rho=rho, lr=lr, momentum=momentum)
    return model, torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)


def _two_passes_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn,
                     inputs: Tensor, targets: Tensor) -> Callable[[], None]:
    """A callable doing SAM's work without SAM's bookkeeping: two forward-backward passes at the
    same weights (the first one's gradient discarded), then one SGD update."""

    def step() -> None:
        for _ in range(2):
            optimizer.zero_grad()
            loss_fn(model(inputs), targets).backward()
        optimizer.step()

    return step


def sam_cost_callables(make_model: Callable[[], nn.Module], inputs: Tensor, targets: Tensor, loss_fn: LossFn, *,
                       seed: int, lr: float = 0.01, momentum: float = 0.9,
                       rho: float = 0.05) -> dict[str, Callable[[], object]]:
    """The timed callables that take a SAM-SGD step's cost apart, for :func:`compare_step_times`. Chapter 5.

    A SAM step costs two forward-backward passes plus SAM's own work (the norm of the gradient,
    the perturbation and its undoing). Timing these five callables against each other on the
    same fixed batch ``(inputs, targets)`` separates the two (keys in :data:`SAM_COST_LABELS`
    order):

    * ``"SGD"``: one SGD-with-momentum training step (:func:`train_step`), the baseline;
    * ``"two passes + SGD update"``: two forward-backward passes and one SGD update, SAM's cost
      without its bookkeeping (the floor a SAM step cannot go below);
    * ``"SAM-SGD"``: one :class:`~sam_course.optim.sam.SAM` step over SGD with momentum
      (:func:`train_step`: backward, ``first_step``, backward, ``second_step``);
    * ``"SGD update alone"``: ``optimizer.step()`` on a gradient computed once, beforehand;
    * ``"SAM first_step + second_step alone"``: ``first_step()`` then ``second_step()`` on a
      gradient computed once, beforehand: SAM's bookkeeping without any pass.

    Each callable owns its model and optimizer, so the callables do not interact. Every model is
    built by ``make_model()`` right after ``torch.manual_seed(seed)``, so all five start from the
    same weights; this re-seeds PyTorch's global generator (as a chapter's cell would). The two
    "alone" callables keep applying their fixed gradient: each call moves their model again.

    Args:
        make_model: builds a fresh model; called five times.
        inputs, targets: the batch every call uses, ``(B, ...)`` and ``(B,)``.
        loss_fn: ``loss_fn(model(inputs), targets)`` returns the mean loss of the batch.
        seed: the seed set before each model is built, an int >= 0.
        lr, momentum: SGD's learning rate and momentum (every optimizer here).
        rho: SAM's radius, in parameter units.

    Returns:
        ``{label: callable}`` with the labels of :data:`SAM_COST_LABELS`, in that order; each
        callable takes no argument (its return value means nothing).

    Raises:
        ValueError: when ``make_model`` is not callable, ``seed`` is not an int >= 0, or
            ``inputs`` and ``targets`` have different batch sizes; SAM and SGD refuse a bad
            ``rho``, ``lr`` or ``momentum``.
    """
    if not callable(make_model):
        raise ValueError(f"make_model must be callable (it builds a fresh model), got {make_model!r}")
    seed = check_int("seed", seed, 0)
    if inputs.shape[0] != targets.shape[0]:
        raise ValueError(
            f"inputs and targets must have the same batch size, got {inputs.shape[0]} and {targets.shape[0]}"
        )

    def build(sam: bool) -> tuple[nn.Module, torch.optim.Optimizer]:
        return _seeded_model_and_optimizer(make_model, seed, sam, lr, momentum, rho)

    # The build order is the chapter's: it fixes the global generator's state afterwards.
    two_passes = _two_passes_step(*build(sam=False), loss_fn, inputs, targets)
    update_model, update_opt = build(sam=False)
    loss_fn(update_model(inputs), targets).backward()
    sam_update_model, sam_update_opt = build(sam=True)
    loss_fn(sam_update_model(inputs), targets).backward()
    return {
        "SGD": train_step(*build(sam=False), loss_fn, inputs, targets),
        "two passes + SGD update": two_passes,
        "SAM-SGD": train_step(*build(sam=True), loss_fn, inputs, targets),
        "SGD update alone": update_opt.step,
        "SAM first_step + second_step alone": lambda: (sam_update_opt.first_step(), sam_update_opt.second_step()),
    }
