"""Tests of sam_course.timing: the bookkeeping of interleaved timing, checked with a fake clock.

No test measures real time: every step advances a fake clock by a scripted amount, so medians,
ratios and quartiles have exact expected values.
"""

import statistics

import pytest
import torch
from torch import nn

from sam_course.optim import SAM
from sam_course.timing import StepTimes, compare_step_times, train_step


class FakeClock:
    """A clock that only moves when a fake step advances it."""

    def __init__(self):
        self.now = 100.0
        self.calls = []

    def __call__(self):
        return self.now

    def step(self, name, costs):
        """A step that logs its call and advances the clock by the next of ``costs``."""
        remaining = iter(costs)

        def run():
            self.calls.append(name)
            self.now += next(remaining)

        return run


def scripted(clock, costs_by_name, warmup):
    # Warm-up calls cost 1000 s each: if any were timed, the medians below would be huge.
    return {name: clock.step(name, [1000.0] * warmup + list(costs)) for name, costs in costs_by_name.items()}


def test_medians_and_ratios_match_the_scripted_costs():
    clock = FakeClock()
    costs = {"base": [1.0, 3.0, 2.0, 50.0, 2.0], "sam": [4.0, 4.5, 100.0, 3.5, 4.0]}
    result = compare_step_times(scripted(clock, costs, warmup=2), rounds=5, warmup=2, clock=clock)
    assert result.samples == {name: tuple(c) for name, c in costs.items()}
    assert result.medians() == {"base": 2.0, "sam": 4.0}
    assert result.ratios() == {"base": 1.0, "sam": 2.0}
    assert result.baseline == "base" and result.rounds == 5 and result.warmup == 2


def test_baseline_can_be_named_and_paired_ratios_pair_rounds():
    clock = FakeClock()
    costs = {"a": [2.0, 4.0, 6.0], "b": [1.0, 1.0, 2.0]}
    result = compare_step_times(scripted(clock, costs, warmup=0), rounds=3, baseline="b", warmup=0, clock=clock)
    assert result.ratios() == {"a": 4.0, "b": 1.0}
    assert result.paired_ratios("a") == [2.0, 4.0, 3.0]
    with pytest.raises(ValueError, match="name"):
        result.paired_ratios("c")


def test_table_has_milliseconds_quartiles_and_ratios():
    clock = FakeClock()
    costs = {"base": [0.001, 0.002, 0.003, 0.004, 0.005], "sam": [0.002, 0.004, 0.006, 0.008, 0.010]}
    table = compare_step_times(scripted(clock, costs, warmup=0), rounds=5, warmup=0, clock=clock).table()
    assert list(table.index) == ["base", "sam"]
    assert table.loc["base", "median_ms"] == pytest.approx(3.0)
    assert table.loc["base", "q25_ms"] == pytest.approx(2.0)
    assert table.loc["base", "q75_ms"] == pytest.approx(4.0)
    assert table.loc["sam", "ratio"] == pytest.approx(2.0)
    # Every paired ratio is exactly 2, so are its quartiles.
    assert table.loc["sam", "ratio_q25"] == pytest.approx(2.0)
    assert table.loc["sam", "ratio_q75"] == pytest.approx(2.0)


def test_rounds_are_interleaved_in_seeded_random_orders():
    names = ["a", "b", "c", "d"]
    clock = FakeClock()
    steps = {n: clock.step(n, [1.0] * 40) for n in names}
    result = compare_step_times(steps, rounds=30, warmup=1, seed=7, clock=clock)
    # The warm-up runs each step once in the given order, then each round holds each name once.
    assert clock.calls[:4] == names
    rounds = [tuple(clock.calls[4 + 4 * k: 8 + 4 * k]) for k in range(30)]
    assert rounds == list(result.orders)
    assert all(sorted(r) == names for r in rounds)
    assert len(set(rounds)) > 5  # 24 possible orders: a fixed order would give 1
    again = compare_step_times({n: FakeClock().step(n, [1.0] * 40) for n in names}, rounds=30, warmup=1, seed=7,
                               clock=FakeClock())
    other = compare_step_times({n: FakeClock().step(n, [1.0] * 40) for n in names}, rounds=30, warmup=1, seed=8,
                               clock=FakeClock())
    assert again.orders == result.orders
    assert other.orders != result.orders


def test_sync_is_called_around_every_timed_call():
    clock = FakeClock()
    events = []
    fakes = {"a": clock.step("a", [1.0] * 5), "b": clock.step("b", [1.0] * 5)}
    steps = {name: (lambda f=fake, n=name: (events.append(n), f())) for name, fake in fakes.items()}
    compare_step_times(steps, rounds=2, warmup=1, clock=clock, sync=lambda: events.append("sync"))
    timed = events[2:]  # after the two warm-up calls
    # One sync after the warm-up, then sync, step, sync for each of the 4 timed calls.
    assert timed[0] == "sync"
    assert timed[1:] == [x for call in timed[2::3] for x in ("sync", call, "sync")]
    assert len(timed) == 1 + 3 * 4


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(steps={}, rounds=3), "steps"),
        (dict(steps={"a": 1}, rounds=3), "callable"),
        (dict(steps={1: lambda: None}, rounds=3), "names"),
        (dict(steps={"a": lambda: None}, rounds=0), "rounds"),
        (dict(steps={"a": lambda: None}, rounds=2.5), "rounds"),
        (dict(steps={"a": lambda: None}, rounds=3, warmup=-1), "warmup"),
        (dict(steps={"a": lambda: None}, rounds=3, seed=-2), "seed"),
        (dict(steps={"a": lambda: None}, rounds=3, baseline="b"), "baseline"),
        (dict(steps={"a": lambda: None}, rounds=3, clock=3.0), "clock"),
        (dict(steps={"a": lambda: None}, rounds=3, sync="no"), "sync"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        compare_step_times(**kwargs)


def _model_and_batch(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3))
    x = torch.linspace(-1, 1, 40).reshape(8, 5)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    return model, x, y


def test_train_step_plain_matches_a_hand_written_step():
    loss_fn = nn.CrossEntropyLoss()
    model, x, y = _model_and_batch()
    reference, _, _ = _model_and_batch()
    step = train_step(model, torch.optim.SGD(model.parameters(), lr=0.1), loss_fn, x, y)
    loss = step()
    opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    expected = loss_fn(reference(x), y)
    expected.backward()
    opt.step()
    assert loss == pytest.approx(expected.item())
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b)


def test_train_step_with_sam_matches_sam_step_closure():
    loss_fn = nn.CrossEntropyLoss()
    model, x, y = _model_and_batch()
    reference, _, _ = _model_and_batch()
    step = train_step(model, SAM(model.parameters(), torch.optim.SGD, rho=0.1, lr=0.1), loss_fn, x, y)
    step()
    step()
    opt = SAM(reference.parameters(), torch.optim.SGD, rho=0.1, lr=0.1)

    def closure():
        loss = loss_fn(reference(x), y)
        loss.backward()
        return loss

    opt.step(closure)
    opt.step(closure)
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b)
    # The perturbation really happened: SAM's weights differ from plain SGD's.
    sgd_model, _, _ = _model_and_batch()
    sgd_step = train_step(sgd_model, torch.optim.SGD(sgd_model.parameters(), lr=0.1), loss_fn, x, y)
    sgd_step()
    sgd_step()
    assert not torch.allclose(next(model.parameters()), next(sgd_model.parameters()))


def test_train_step_rejects_mismatched_batch():
    model, x, y = _model_and_batch()
    with pytest.raises(ValueError, match="batch size"):
        train_step(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), x, y[:3])


def test_step_times_is_frozen():
    result = StepTimes(samples={"a": (1.0,)}, baseline="a", orders=(("a",),), warmup=0, seed=0)
    assert result.medians() == {"a": 1.0} and statistics.median(result.samples["a"]) == 1.0
    with pytest.raises(AttributeError):
        result.baseline = "b"


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_one_thread_timing_counts_cpu_work_not_sleep_and_restores_the_thread_count(two_threads):
    import time

    from sam_course.timing import compare_step_times_one_thread

    seen = []

    def sleeping():
        seen.append(torch.get_num_threads())
        time.sleep(0.02)

    def busy():
        end = time.thread_time() + 0.01
        while time.thread_time() < end:
            pass

    result = compare_step_times_one_thread({"sleep": sleeping, "busy": busy}, rounds=3, warmup=0)
    assert set(seen) == {1}
    assert torch.get_num_threads() == 2
    medians = result.medians()
    assert medians["sleep"] < 0.005 < 0.01 <= medians["busy"]


def test_one_thread_timing_restores_the_thread_count_when_a_step_raises(two_threads):
    from sam_course.timing import compare_step_times_one_thread


    def failing():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        compare_step_times_one_thread({"fail": failing}, rounds=1, warmup=0)
    assert torch.get_num_threads() == 2
