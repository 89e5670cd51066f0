"""sam_course.timing.sam_cost_callables: the five steps chapter 5 times to take SAM's cost apart.

No test measures time: each callable is run by hand and the weights it leaves are compared with a
hand-written SGD or SAM update from the same initialization.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sam_course.timing import SAM_COST_LABELS, compare_step_times, sam_cost_callables

LOSS = nn.CrossEntropyLoss()
SEED, LR, MOMENTUM, RHO = 3, 0.1, 0.9, 0.2


def batch():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(12, 5, generator=gen, dtype=torch.float64), torch.randint(0, 3, (12,), generator=gen)


def recording_factory():
    """``make_model`` for the function under test, keeping every model it builds."""
    made = []

    def make_model():
        model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()
        made.append(model)
        return model

    return make_model, made


def flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def initial_weights():
    torch.manual_seed(SEED)
    return nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()


def grads_at(model, x, y):
    return torch.autograd.grad(LOSS(model(x), y), list(model.parameters()))


def sgd_first_step(w0_model, grads):
    """SGD with momentum, first step: the buffer is the gradient itself, w1 = w0 - lr * g."""
    return torch.cat([(p.detach() - LR * g).reshape(-1) for p, g in zip(w0_model.parameters(), grads)])


def callables_and_owners():
    """The callables and, for each label, the one model its call moves (each owns a model)."""
    x, y = batch()
    make_model, made = recording_factory()
    steps = sam_cost_callables(make_model, x, y, LOSS, seed=SEED, lr=LR, momentum=MOMENTUM, rho=RHO)
    owners = {}
    for label, step in steps.items():
        before = [flat(m) for m in made]
        step()
        moved = [i for i, m in enumerate(made) if not torch.equal(flat(m), before[i])]
        assert len(moved) == 1, f"{label!r} moved models {moved}, expected exactly its own"
        owners[label] = made[moved[0]]
    return steps, made, owners, (x, y)


def test_labels_are_the_chapters_in_order():
    x, y = batch()
    steps = sam_cost_callables(recording_factory()[0], x, y, LOSS, seed=SEED)
    assert tuple(steps) == SAM_COST_LABELS == (
        "SGD", "two passes + SGD update", "SAM-SGD", "SGD update alone", "SAM first_step + second_step alone")
    assert all(callable(step) for step in steps.values())


def test_five_models_start_from_the_same_seeded_weights():
    x, y = batch()
    make_model, made = recording_factory()
    sam_cost_callables(make_model, x, y, LOSS, seed=SEED)
    assert len(made) == 5
    for model in made:
        assert torch.equal(flat(model), flat(initial_weights()))


def test_each_callable_moves_only_its_own_model_by_the_update_it_names():
    steps, made, owners, (x, y) = callables_and_owners()
    assert len({id(m) for m in owners.values()}) == 5
    w0 = initial_weights()
    sgd = sgd_first_step(w0, grads_at(w0, x, y))
    # One SGD step, two passes then one update, and the update alone on the gradient at w0 all
    # give w0 - lr * g(w0); so does SAM's bookkeeping alone (first_step then second_step with the
    # gradient at w0 still in .grad): the perturbation is undone exactly.
    for label in ("SGD", "two passes + SGD update", "SGD update alone", "SAM first_step + second_step alone"):
        torch.testing.assert_close(flat(owners[label]), sgd, rtol=0, atol=1e-14, msg=label)


def test_sam_sgd_callable_equals_a_hand_written_sam_step():
    steps, made, owners, (x, y) = callables_and_owners()
    w0 = initial_weights()
    g = grads_at(w0, x, y)
    norm = torch.linalg.vector_norm(torch.cat([t.reshape(-1) for t in g]))
    perturbed = initial_weights()
    with torch.no_grad():
        for p, gi in zip(perturbed.parameters(), g):
            p.add_(RHO * gi / norm)
    expected = sgd_first_step(w0, grads_at(perturbed, x, y))
    torch.testing.assert_close(flat(owners["SAM-SGD"]), expected, rtol=0, atol=1e-12)
    assert not torch.allclose(flat(owners["SAM-SGD"]), flat(owners["SGD"]))  # rho really acted


def test_alone_callables_keep_applying_their_fixed_gradient():
    steps, made, owners, (x, y) = callables_and_owners()
    w0 = initial_weights()
    g = torch.cat([t.reshape(-1) for t in grads_at(w0, x, y)])
    for label in ("SGD update alone", "SAM first_step + second_step alone"):
        steps[label]()  # second call: buffer 0.9 g + g, so w2 = w0 - lr g - lr (1 + momentum) g
        expected = flat(w0) - LR * g - LR * (1 + MOMENTUM) * g
        torch.testing.assert_close(flat(owners[label]), expected, rtol=0, atol=1e-14, msg=label)


def test_callables_run_under_compare_step_times():
    x, y = batch()
    steps = sam_cost_callables(recording_factory()[0], x, y, LOSS, seed=SEED)
    ticks = iter(range(10**6))
    result = compare_step_times(steps, rounds=2, baseline="SGD", warmup=1, clock=lambda: float(next(ticks)))
    assert set(result.samples) == set(SAM_COST_LABELS) and result.rounds == 2


@pytest.mark.parametrize("kwargs, match", [
    (dict(make_model=3), "make_model must be callable"),
    (dict(seed=-1), "seed must be an int >= 0"),
    (dict(seed=1.5), "seed must be an int >= 0"),
    (dict(targets=torch.zeros(3, dtype=torch.long)), "same batch size"),
    (dict(rho=-0.1), "rho must be a finite number >= 0"),
])
def test_bad_arguments_raise_value_errors_naming_them(kwargs, match):
    x, y = batch()
    args = dict(make_model=recording_factory()[0], inputs=x, targets=y, loss_fn=LOSS, seed=SEED) | kwargs
    with pytest.raises(ValueError, match=match):
        sam_cost_callables(**args)


def chapter5_cost_steps(make_model, xb, yb, loss_fn, SEED):
    """The cell chapter 5 used before this function existed, verbatim but for its globals."""
    from sam_course.optim import SAM
    from sam_course.timing import train_step

    def build(sam):
        torch.manual_seed(SEED)
        model = make_model()
        if sam:
            return model, SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.01, momentum=0.9)
        return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    two_model, two_opt = build(sam=False)

    def two_passes():
        for _ in range(2):
            two_opt.zero_grad()
            loss_fn(two_model(xb), yb).backward()
        two_opt.step()

    update_model, update_opt = build(sam=False)
    loss_fn(update_model(xb), yb).backward()
    sam_update_model, sam_update_opt = build(sam=True)
    loss_fn(sam_update_model(xb), yb).backward()
    return {
        "SGD": train_step(*build(sam=False), loss_fn, xb, yb),
        "two passes + SGD update": two_passes,
        "SAM-SGD": train_step(*build(sam=True), loss_fn, xb, yb),
        "SGD update alone": update_opt.step,
        "SAM first_step + second_step alone": lambda: (sam_update_opt.first_step(), sam_update_opt.second_step()),
    }


def test_defaults_reproduce_chapter_5s_former_cell_bit_for_bit():
    x, y = batch()
    runs = []
    builders = (lambda f: chapter5_cost_steps(f, x, y, LOSS, SEED),
                lambda f: sam_cost_callables(f, x, y, LOSS, seed=SEED))
    for build in builders:
        make_model, made = recording_factory()
        steps = build(make_model)
        rng_after = torch.get_rng_state()
        for _ in range(2):
            for step in steps.values():
                step()
        runs.append((list(steps), [flat(m) for m in made], rng_after))
    (labels_a, weights_a, rng_a), (labels_b, weights_b, rng_b) = runs
    assert labels_a == labels_b and torch.equal(rng_a, rng_b)
    for a, b in zip(weights_a, weights_b, strict=True):
        assert torch.equal(a, b)
