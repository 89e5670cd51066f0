"""Shared fixtures of the unit tests."""

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
