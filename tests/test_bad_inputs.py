"""A table of public functions and bad arguments: each raises the right exception, and its message
names the argument and shows the value received (issue 14).

Wrong kinds (a string, a bool, None where a number is needed) raise
:class:`~sam_course._checks.ArgumentTypeError`, a ``TypeError`` that is also a ``ValueError``;
values of the right kind out of range (NaN, negatives) raise a plain ``ValueError``.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from sam_course import data, models, noise, planar, train
from sam_course._checks import ArgumentTypeError
from sam_course.curvature import landscape, spectrum
from sam_course.optim import SAM
from sam_course.optim.msam import m_sharpness, msam_gradient, msam_step
from sam_course.theory import bound

X, Y = torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)
CE = nn.CrossEntropyLoss()
GOOD = object()  # passed by the good-value test to a call whose kind has no single good value


def pick(value, good):
    """``value``, or ``good`` when the good-value test passes :data:`GOOD`."""
    return good if value is GOOD else value


def linear():
    torch.manual_seed(0)
    return nn.Linear(2, 2)


def bundle():
    ds = data.TensorImageDataset(torch.zeros(10, 1, 2, 2), torch.arange(10), [str(i) for i in range(10)])
    return data.DataBundle("fixture", ds, ds, "fixture")


def fit(**kwargs):
    model = linear()
    args = {"epochs": 1, "batch_size": 2, **kwargs}
    epochs = args.pop("epochs")
    return train.fit(model, torch.optim.SGD(model.parameters(), lr=0.1), TensorDataset(X, Y), epochs,
                     progress=False, **args)


def msam(argument, value, function=msam_gradient):
    """``msam_gradient`` (or ``msam_step``) on a linear model, with ``argument`` replaced by ``value``."""
    model = linear()
    args = {"optimizer": SAM(model.parameters(), torch.optim.SGD, lr=0.1), "model": model, "loss_fn": CE,
            "inputs": X, "targets": Y, "m": 2}
    if value is not GOOD:
        args[argument] = value
    return function(**args)


# (argument name, call with the bad value, kind: a key of BAD)
CALLS = {
    "SAM(rho)": ("rho", lambda v: SAM(linear().parameters(), torch.optim.SGD, rho=v, lr=0.1), "number"),
    "m_sharpness(rho)": ("rho", lambda v: m_sharpness(linear(), nn.CrossEntropyLoss(), X, Y, 2, rho=v), "number"),
    "m_sharpness(m)": ("m", lambda v: m_sharpness(linear(), nn.CrossEntropyLoss(), X, Y, v), "int"),
    "m_sharpness(steps)": ("steps", lambda v: m_sharpness(linear(), CE, X, Y, 2, steps=v), "int"),
    "m_sharpness(model)": ("model", lambda v: m_sharpness(pick(v, linear()), CE, X, Y, 2), "object"),
    "m_sharpness(loss_fn)": ("loss_fn", lambda v: m_sharpness(linear(), pick(v, CE), X, Y, 2), "object"),
    "m_sharpness(inputs)": ("inputs", lambda v: m_sharpness(linear(), CE, pick(v, X), Y, 2), "tensor"),
    "m_sharpness(targets)": ("targets", lambda v: m_sharpness(linear(), CE, X, pick(v, Y), 2), "tensor"),
    "msam_gradient(optimizer)": ("optimizer", lambda v: msam("optimizer", v), "object"),
    "msam_gradient(model)": ("model", lambda v: msam("model", v), "object"),
    "msam_gradient(inputs)": ("inputs", lambda v: msam("inputs", v), "tensor"),
    "msam_gradient(m)": ("m", lambda v: msam("m", pick(v, 2)), "int"),
    "msam_gradient(method)": ("method", lambda v: msam("method", pick(v, "loop")), "choice"),
    "msam_step(targets)": ("targets", lambda v: msam("targets", v, msam_step), "tensor"),
    "msam_step(loss_fn)": ("loss_fn", lambda v: msam("loss_fn", v, msam_step), "object"),
    "symmetric_noise(rate)": ("rate", lambda v: noise.symmetric_noise([0, 1, 2], 3, v, 0), "number"),
    "symmetric_noise(num_classes)": ("num_classes", lambda v: noise.symmetric_noise([0, 1, 1], v, 0.1, 0), "int"),
    "symmetric_noise(seed)": ("seed", lambda v: noise.symmetric_noise([0, 1, 2], 3, 0.1, v), "int"),
    "NoisyLabels(num_classes)": ("num_classes",
                                 lambda v: noise.NoisyLabels(TensorDataset(X, Y), [0, 0, 0, 0], num_classes=v), "int"),
    "subset(seed)": ("seed", lambda v: data.subset(bundle(), seed=v), "int"),
    "loaders(batch_size)": ("batch_size", lambda v: data.loaders(bundle(), batch_size=v), "int"),
    "load_mnist(seed)": ("seed", lambda v: data.load_mnist(seed=v, download=False), "int"),
    "load_cifar10(allow_standin)": ("allow_standin", lambda v: data.load_cifar10(allow_standin=v, download=False),
                                    "bool"),
    "MLP(hidden)": ("hidden[0]", lambda v: models.MLP(4, (v,), 2), "int"),
    "SmallCNN(width)": ("width", lambda v: models.SmallCNN(width=v), "int"),
    "SmallCNN(batch_norm)": ("batch_norm", lambda v: models.SmallCNN(batch_norm=v), "bool"),
    "RunConfig(lr)": ("RunConfig.lr", lambda v: train.RunConfig(lr=v), "number"),
    "RunConfig(epochs)": ("RunConfig.epochs", lambda v: train.RunConfig(epochs=v), "int"),
    "RunConfig(sam_adaptive)": ("RunConfig.sam_adaptive", lambda v: train.RunConfig(sam_adaptive=v), "bool"),
    "fit(epochs)": ("epochs", lambda v: fit(epochs=v), "int"),
    "fit(batch_size)": ("batch_size", lambda v: fit(batch_size=v), "int"),
    "gaussian_kl(k)": ("k", lambda v: bound.gaussian_kl(v, 1.0, 1.0, 1.0), "int"),
    "gaussian_kl(sigma_q)": ("sigma_q", lambda v: bound.gaussian_kl(2, v, 1.0, 1.0), "number"),
    "mcallester_bound(delta)": ("delta", lambda v: bound.mcallester_bound(0.1, 1.0, 100, v), "number"),
    "sharpness_bound(rho)": ("rho", lambda v: bound.sharpness_bound(0.1, 10, 100, 1.0, v), "number"),
    "power_iteration(tol)": ("tol", lambda v: spectrum.power_iteration(linear(), nn.CrossEntropyLoss(), (X, Y), tol=v),
                             "number"),
    "hutchinson_trace(samples)": ("samples", lambda v: spectrum.hutchinson_trace(linear(), nn.CrossEntropyLoss(),
                                                                                 (X, Y), samples=v), "int"),
    "top_eigenvalues(k)": ("k", lambda v: spectrum.top_eigenvalues(linear(), nn.CrossEntropyLoss(), (X, Y), k=v), "int"),
    "random_direction(seed)": ("seed", lambda v: landscape.random_direction(linear(), seed=v), "int"),
    "optimizer_factory(lr)": ("lr", lambda v: planar.optimizer_factory("SGD", v), "number"),
    "optimizer_factory(rho)": ("rho", lambda v: planar.optimizer_factory("SAM-SGD", 0.1, rho=v), "number"),
}
# Bad values per kind, and the exception each must raise.
BAD = {
    "number": [("a", ArgumentTypeError), (True, ArgumentTypeError), (None, ArgumentTypeError),
               (math.nan, ValueError), (-1.0, ValueError)],
    "int": [("a", ArgumentTypeError), (True, ArgumentTypeError), (2.5, ArgumentTypeError), (-1, ValueError)],
    "bool": [("no", ArgumentTypeError), (1, ArgumentTypeError), (None, ArgumentTypeError)],
    # A module, an optimizer, a function: none of these is one.
    "object": [("a", ArgumentTypeError), (None, ArgumentTypeError), (3, ArgumentTypeError)],
    "tensor": [("a", ArgumentTypeError), (None, ArgumentTypeError), ([1.0, 2.0], ArgumentTypeError)],
    # A name from a fixed list.
    "choice": [("nope", ValueError), (3, ValueError)],
}
GOOD_VALUES = {"number": 0.5, "int": 2, "bool": False}
TABLE = [pytest.param(call, name, value, error, id=f"{call}={value!r}")
         for call, (name, _, kind) in CALLS.items() for value, error in BAD[kind]]


@pytest.mark.parametrize("call", sorted(CALLS))
def test_every_call_of_the_table_accepts_a_good_value(call, monkeypatch, tmp_path):
    # The oracle that the table's calls are right: each works with a good value (so that a bad
    # value, not a broken call, is what raises below). Loaders get an empty offline root.
    monkeypatch.setenv("SAM_COURSE_DATA", str(tmp_path))
    name, run, kind = CALLS[call]
    good = GOOD_VALUES.get(kind, GOOD)
    try:
        run(good)
    except data.DatasetUnavailable:
        pass  # no data here: the argument was accepted, the loader went on to look for files


@pytest.mark.parametrize("call, name, value, error", TABLE)
def test_a_bad_argument_raises_naming_the_argument_and_the_value(call, name, value, error, monkeypatch, tmp_path):
    monkeypatch.setenv("SAM_COURSE_DATA", str(tmp_path))
    run = CALLS[call][1]
    with pytest.raises(error) as raised:
        run(value)
    if error is ValueError:
        assert not isinstance(raised.value, TypeError), f"{call}: {value!r} is of the right kind"
    message = str(raised.value)
    assert message.startswith(name) or f" {name} " in message or f"{name} must" in message, message
    assert repr(value) in message or (value is True and "True" in message), message
