"""sam_course.train.fit against oracles: hand counts of accuracy and memorization, a hand-written SAM
loop, hand-written steps, an uninterrupted run (for resume) and argmax of the validation curve.

run(), its cache and RunConfig are tested in test_train_run.py, the frozen cache keys in
test_train_cache_keys.py, SAM every k steps in test_sam_every_k.py."""

import math

import pandas as pd
import pytest
import torch
from helpers import assert_states_equal, state
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from sam_course import data, train
from sam_course.noise import NoisyLabels
from sam_course.optim import SAM, frozen_batchnorm_stats
from sam_course.optim.msam import msam_step

TIMING_COLUMNS = ["seconds", "eval_seconds"]


@pytest.fixture
def small(mnist):
    """200 training and 100 test digits: enough to learn something in a few steps."""
    return data.subset(mnist, n_train=200, n_test=100, seed=1)


def mlp(seed=0, hidden=32, dropout=0.0):
    torch.manual_seed(seed)
    layers = [nn.Flatten(), nn.Linear(784, hidden), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers, nn.Linear(hidden, 10))


def bn_cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=2), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 13 * 13, 10)
    )


# --------------------------------------------------------------------------- history


def test_history_has_one_row_per_epoch_and_the_documented_columns(small):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    fitted = train.fit(model, opt, small.train, 3, batch_size=64, eval_sets={"test": small.test}, progress=False)
    h = fitted.history
    assert list(h["epoch"]) == [0, 1, 2, 3]
    assert list(h["steps"]) == [0, 4, 8, 12]  # 200 images in batches of 64: 3 full ones and 8 left
    expected = {"epoch", "steps", "train_loss", "train_acc", "train_clean_acc", "train_memorized", "test_loss",
                "test_acc", "batch_loss", "lr", "seconds", "eval_seconds"}
    assert set(h.columns) == expected
    assert math.isnan(h["batch_loss"][0]) and h["batch_loss"][1:].notna().all()
    # Without noise the clean labels are the labels, and nothing can be memorized.
    assert (h["train_clean_acc"] == h["train_acc"]).all() and h["train_memorized"].isna().all()
    assert h["seconds"][0] == 0 and (h["seconds"][1:] > 0).all()
    assert fitted.best_epoch is None and fitted.best_state is None  # no val set, no monitor


def test_accuracies_loss_and_memorization_equal_a_hand_count(small):
    noisy = NoisyLabels.symmetric(small.train, rate=0.5, seed=3, num_classes=10)
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    h = train.fit(model, opt, noisy, 2, batch_size=50, eval_sets={"test": small.test}, progress=False).history
    last = h.iloc[-1]
    with torch.no_grad():
        logits = model.eval()(small.train.data)
        predictions = logits.argmax(1)
        test_predictions = model(small.test.data).argmax(1)
    mask = noisy.noise_mask
    n, corrupted = len(noisy), int(mask.sum())
    assert corrupted == 100
    hits = sum(int(p == y) for p, y in zip(predictions.tolist(), noisy.targets.tolist()))
    clean_hits = sum(int(p == y) for p, y in zip(predictions.tolist(), noisy.clean_targets.tolist()))
    memorized = sum(int(predictions[i] == noisy.targets[i]) for i in range(n) if mask[i])
    assert last["train_acc"] == hits / n
    assert last["train_clean_acc"] == clean_hits / n
    assert last["train_memorized"] == memorized / corrupted
    test_hits = sum(int(p == y) for p, y in zip(test_predictions.tolist(), small.test.targets.tolist()))
    assert last["test_acc"] == test_hits / 100
    assert last["train_loss"] == pytest.approx(F.cross_entropy(logits, noisy.targets).item(), rel=1e-5)


def test_evaluate_reports_noisy_views_and_restores_train_mode(small):
    noisy = NoisyLabels.symmetric(small.train, rate=0.3, seed=0, num_classes=10)
    model = mlp().train()
    stats = train.evaluate(model, noisy, batch_size=7)
    assert model.training
    with torch.no_grad():
        predictions = model(small.train.data).argmax(1)
    assert stats["acc"] == (predictions == noisy.targets).sum().item() / len(noisy)
    assert stats["clean_acc"] == (predictions == noisy.clean_targets).sum().item() / len(noisy)
    assert set(train.evaluate(model, small.test)) == {"loss", "acc"}


# --------------------------------------------------------------------------- optimizers


@pytest.mark.parametrize("make_opt", [
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
    lambda p: torch.optim.Adam(p, lr=3e-3),
    lambda p: SAM(p, torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9),
    lambda p: SAM(p, torch.optim.Adam, rho=0.05, lr=3e-3),
], ids=["sgd", "adam", "sam-sgd", "sam-adam"])
def test_plain_and_sam_optimizers_both_train(small, make_opt):
    model = mlp()
    h = train.fit(model, make_opt(model.parameters()), small.train, 3, batch_size=32,
                  eval_sets={"test": small.test}, progress=False).history
    # About 20 steps on 200 real digits: from chance (10 %) to well above it, on held-out digits too.
    assert h["train_loss"].iloc[-1] < 0.7 * h["train_loss"].iloc[0]
    assert h["train_acc"].iloc[-1] > 0.6 and h["test_acc"].iloc[-1] > 0.5


def hand_order(n, batch_size, seed):
    order = torch.Generator().manual_seed(train.derive_seed(seed, "order"))
    return torch.randperm(n, generator=order).split(batch_size)


def test_fit_with_sam_equals_a_hand_written_two_step_loop(small):
    """3 steps of SAM-SGD with momentum on a BatchNorm net: weights AND running statistics match."""
    x_all, y_all = small.train.data[:96], small.train.targets[:96]
    subset = data.TensorImageDataset(x_all, y_all, small.train.classes)
    fitted_model, hand_model = bn_cnn(), bn_cnn()
    opt = SAM(fitted_model.parameters(), torch.optim.SGD, rho=0.1, lr=0.05, momentum=0.9)
    train.fit(fitted_model, opt, subset, 1, batch_size=32, seed=5, progress=False)

    hand_opt = SAM(hand_model.parameters(), torch.optim.SGD, rho=0.1, lr=0.05, momentum=0.9)
    hand_model.train()
    steps = 0
    for index in hand_order(96, 32, seed=5):
        x, y = x_all[index], y_all[index]
        F.cross_entropy(hand_model(x), y).backward()
        hand_opt.first_step(zero_grad=True)
        with frozen_batchnorm_stats(hand_model):
            F.cross_entropy(hand_model(x), y).backward()
        hand_opt.second_step(zero_grad=True)
        steps += 1
    assert steps == 3
    assert_states_equal(state(fitted_model), state(hand_model))
    assert int(fitted_model[1].num_batches_tracked) == 3  # the second passes were not counted


def test_fit_with_msam_equals_a_loop_of_msam_steps(small):
    x_all, y_all = small.train.data[:100], small.train.targets[:100]
    subset = data.TensorImageDataset(x_all, y_all, small.train.classes)
    a, b = mlp(), mlp()
    opt_a = SAM(a.parameters(), torch.optim.SGD, rho=0.05, lr=0.1)
    train.fit(a, opt_a, subset, 1, batch_size=40, msam_m=8, progress=False)
    opt_b = SAM(b.parameters(), torch.optim.SGD, rho=0.05, lr=0.1)
    for index in hand_order(100, 40, seed=0):
        keep = len(index) - len(index) % 8  # the last batch of 20 is cut to 16
        msam_step(opt_b, b, nn.CrossEntropyLoss(), x_all[index[:keep]], y_all[index[:keep]], 8)
    assert_states_equal(state(a), state(b))


# --------------------------------------------------------------------------- pluggable steps


def test_a_custom_step_is_called_once_per_batch_and_its_losses_make_batch_loss(small):
    """A hand-written SGD step through fit equals the same step in a hand loop; batch_loss is the
    example-weighted mean of the returned losses (100 images: batches of 32, 32, 32 and 4)."""
    x_all, y_all = small.train.data[:100], small.train.targets[:100]
    subset = data.TensorImageDataset(x_all, y_all, small.train.classes)
    calls = []

    def sgd_step(model, optimizer, loss_fn, x, y):
        calls.append(len(y))
        loss = loss_fn(model(x), y)
        grads = torch.autograd.grad(loss, list(model.parameters()))
        with torch.no_grad():
            for p, g in zip(model.parameters(), grads):
                p -= 0.1 * g
        return loss

    a, b = mlp(), mlp()
    unused = torch.optim.SGD(a.parameters(), lr=0.0)  # fit reads its lr; the step does the update
    h = train.fit(a, unused, subset, 2, batch_size=32, seed=4, step=sgd_step, progress=False).history
    hand_losses = []
    order = torch.Generator().manual_seed(train.derive_seed(4, "order"))
    for _ in range(2):
        epoch = []
        for index in torch.randperm(100, generator=order).split(32):
            epoch.append((sgd_step(b, None, F.cross_entropy, x_all[index], y_all[index]).item(), len(index)))
        hand_losses.append(sum(loss * n for loss, n in epoch) / 100)
    assert calls == [32, 32, 32, 4] * 4  # fit's two epochs, then the hand loop's two
    assert_states_equal(state(a), state(b))
    assert list(h["steps"]) == [0, 4, 8]
    assert h["batch_loss"][1:].tolist() == pytest.approx(hand_losses, rel=1e-6)


def test_train_mode_false_keeps_the_mode_the_caller_set(small):
    """With dropout in eval mode and train_mode=False, training is deterministic: it equals plain
    SGD steps on the eval-mode network by hand; by default fit switches to train mode."""
    x_all, y_all = small.train.data[:64], small.train.targets[:64]
    subset = data.TensorImageDataset(x_all, y_all, small.train.classes)
    modes = []

    def recording_step(model, optimizer, loss_fn, x, y):
        modes.append(model.training)
        return train.optimizer_step(model, optimizer, loss_fn, x, y)

    a, b = mlp(dropout=0.5).eval(), mlp(dropout=0.5).eval()
    train.fit(a, torch.optim.SGD(a.parameters(), lr=0.1), subset, 1, batch_size=32, step=recording_step,
              train_mode=False, progress=False)
    assert modes == [False, False] and not a.training
    opt_b = torch.optim.SGD(b.parameters(), lr=0.1)
    for index in hand_order(64, 32, seed=0):
        opt_b.zero_grad()
        F.cross_entropy(b(x_all[index]), y_all[index]).backward()
        opt_b.step()
    assert_states_equal(state(a), state(b))
    modes.clear()
    train.fit(a, torch.optim.SGD(a.parameters(), lr=0.1), subset, 1, batch_size=32, step=recording_step,
              progress=False)
    assert modes == [True, True]


def test_msam_step_checks_its_chunk_size():
    with pytest.raises(ValueError, match="m must be an int >= 1, got 0"):
        train.MSAMStep(0)
    assert train.MSAMStep(4).m == 4


# --------------------------------------------------------------------------- resume


def test_resumed_run_equals_uninterrupted_run_bit_for_bit(small, tmp_path):
    """SAM-Adam, dropout (global RNG), noise, a validation set and a cosine schedule: 4 epochs vs 2 + 2."""
    noisy = NoisyLabels.symmetric(small.train, rate=0.4, seed=1, num_classes=10)
    val = data.subset(small, n_test=50, seed=2).test
    evals = {"val": val, "test": small.test}

    def setup(init_seed):
        model = mlp(init_seed, dropout=0.2)
        opt = SAM(model.parameters(), torch.optim.Adam, rho=0.05, lr=2e-3)
        return model, opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4)

    kwargs = dict(batch_size=32, eval_sets=evals, seed=7, progress=False)
    model, opt, sched = setup(0)
    straight = train.fit(model, opt, noisy, 4, scheduler=sched, **kwargs)

    path = tmp_path / "run.ckpt"
    first, opt1, sched1 = setup(0)
    torch.rand(3)  # moves the global generator: dropout must still draw the same masks (fit seeds it)
    train.fit(first, opt1, noisy, 2, scheduler=sched1, checkpoint=path, **kwargs)
    resumed_model, opt2, sched2 = setup(123)  # different init: everything must come from the file
    outside = torch.get_rng_state()
    resumed = train.fit(resumed_model, opt2, noisy, 4, scheduler=sched2, checkpoint=path, resume=True, **kwargs)

    assert torch.equal(torch.get_rng_state(), outside)  # fit leaves the caller's generator alone
    assert_states_equal(state(model), state(resumed_model))
    pd.testing.assert_frame_equal(straight.history.drop(columns=TIMING_COLUMNS),
                                  resumed.history.drop(columns=TIMING_COLUMNS))
    assert straight.best_epoch == resumed.best_epoch
    assert_states_equal(straight.best_state, resumed.best_state)
    assert opt.base_optimizer.state_dict()["state"][0]["step"] == opt2.base_optimizer.state_dict()["state"][0]["step"]
    assert sched.get_last_lr() == sched2.get_last_lr()


def test_resume_restores_a_dataloaders_own_generator(small, tmp_path):
    def loader():
        return DataLoader(small.train, batch_size=50, shuffle=True, generator=torch.Generator().manual_seed(3))

    straight = mlp()
    train.fit(straight, torch.optim.SGD(straight.parameters(), lr=0.1), loader(), 2, progress=False)
    path = tmp_path / "run.ckpt"
    first = mlp()
    train.fit(first, torch.optim.SGD(first.parameters(), lr=0.1), loader(), 1, checkpoint=path, progress=False)
    resumed = mlp()
    train.fit(resumed, torch.optim.SGD(resumed.parameters(), lr=0.1), loader(), 2, checkpoint=path, resume=True,
              progress=False)
    assert_states_equal(state(straight), state(resumed))


def test_resume_rejects_a_checkpoint_of_another_seed(small, tmp_path):
    path = tmp_path / "run.ckpt"
    model = mlp()
    train.fit(model, torch.optim.SGD(model.parameters(), lr=0.1), small.train, 1, batch_size=64,
              checkpoint=path, seed=0, progress=False)
    with pytest.raises(ValueError, match="seed"):
        train.fit(model, torch.optim.SGD(model.parameters(), lr=0.1), small.train, 2, batch_size=64,
                  checkpoint=path, resume=True, seed=1, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["run.ckpt"]  # atomic writes leave no temporary file


# --------------------------------------------------------------------------- early stopping


def test_early_stopping_stops_after_patience_epochs_without_improvement(small):
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # validation accuracy never moves
    fitted = train.fit(model, opt, small.train, 10, batch_size=64, eval_sets={"val": small.test},
                       patience=3, progress=False)
    assert fitted.stopped_early
    assert list(fitted.history["epoch"]) == [0, 1, 2, 3]
    assert fitted.best_epoch == 0  # ties go to the earliest epoch


def test_best_epoch_is_the_argmax_of_validation_accuracy_and_its_weights_are_kept(small):
    noisy = NoisyLabels.symmetric(small.train, rate=0.6, seed=0, num_classes=10)
    val = data.subset(small, n_test=50, seed=3).test
    model = mlp(hidden=64)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    fitted = train.fit(model, opt, noisy, 12, batch_size=25, eval_sets={"val": val}, patience=3, progress=False)
    h = fitted.history
    assert fitted.best_epoch == int(h["val_acc"].idxmax())  # idxmax returns the first maximum
    last = int(h["epoch"].iloc[-1])
    if fitted.stopped_early:
        assert last == fitted.best_epoch + 3
    else:
        assert last == 12 and last - fitted.best_epoch < 3
    best = mlp(hidden=64)
    best.load_state_dict(fitted.best_state)
    assert train.evaluate(best, val)["acc"] == h["val_acc"][fitted.best_epoch]


def test_patience_needs_the_monitored_column(small):
    model = mlp()
    with pytest.raises(ValueError, match="val_acc"):
        train.fit(model, torch.optim.SGD(model.parameters(), lr=0.1), small.train, 2, batch_size=64,
                  eval_sets={"test": small.test}, patience=2, progress=False)


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=None), "batch_size"),
    (dict(batch_size=0), "batch_size"),
    (dict(batch_size=32, msam_m=8), "SAM"),
    (dict(batch_size=32, msam_m=8, step=train.optimizer_step), "step must be None with msam_m"),
    (dict(batch_size=32, step="sgd"), "step must be a callable"),
    (dict(batch_size=32, train_mode="no"), "train_mode"),
    (dict(batch_size=32, patience=0), "patience"),
    (dict(batch_size=32, eval_sets={"train": None}), "eval_sets"),
    (dict(batch_size=32, resume=True), "checkpoint"),
    (dict(batch_size=32, monitor="val"), "monitor"),
    (dict(batch_size=32, seed=-1), "seed"),
])
def test_fit_rejects_bad_arguments(small, kwargs, match):
    model = mlp()
    with pytest.raises(ValueError, match=match):
        train.fit(model, torch.optim.SGD(model.parameters(), lr=0.1), small.train, 1, progress=False, **kwargs)


def test_fit_accepts_a_seeded_dataloader_reproducibly(small):
    histories = []
    for _ in range(2):
        model = mlp()
        loader = DataLoader(small.train, batch_size=50, shuffle=True, generator=torch.Generator().manual_seed(0))
        histories.append(train.fit(model, torch.optim.SGD(model.parameters(), lr=0.1), loader, 2,
                                   progress=False).history.drop(columns=TIMING_COLUMNS))
    pd.testing.assert_frame_equal(*histories)
    assert histories[0]["train_loss"].iloc[-1] < histories[0]["train_loss"].iloc[0]
