"""Helpers that several test modules share (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sam_course import planar


def mlp(seed: int = 0) -> nn.Module:
    """A 784-16-10 ReLU network with its initial weights drawn from ``seed``."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10))


def closure_for(model, x, y, counter=None):
    """The closure SAM's ``step`` calls: cross-entropy forward and backward on ``(x, y)``; each
    call appends to ``counter`` when one is given (to count the passes)."""
    def closure():
        if counter is not None:
            counter.append(1)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss
    return closure


def batches(digits, n: int, batch_size: int = 32) -> list:
    """``n`` batches cycling through the digits in order (the tests compare optimizers, not data)."""
    out = []
    for i in range(n):
        start = (i * batch_size) % len(digits)
        out.append((digits.data[start:start + batch_size], digits.targets[start:start + batch_size]))
    return out


def state(model: nn.Module) -> dict:
    """A copy of ``model.state_dict()`` (parameters and buffers)."""
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_states_equal(a: dict, b: dict) -> None:
    """Two state dicts hold the same keys and bit-identical tensors."""
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def legend_texts(ax) -> list[str]:
    """The legend entries of a matplotlib axis (none when it has no legend)."""
    legend = ax.get_legend()
    return [] if legend is None else [t.get_text() for t in legend.get_texts()]


def quadratic_with_cross_term(a: float, b: float, c: float) -> planar.TestFunction:
    """f = (a x² + b y²) / 2 + c x y on [-5, 5]², Hessian [[a, c], [c, b]] everywhere."""
    return planar.TestFunction(
        name="quadratic",
        f=lambda p: 0.5 * (a * p[..., 0] ** 2 + b * p[..., 1] ** 2) + c * p[..., 0] * p[..., 1],
        domain=((-5.0, 5.0), (-5.0, 5.0)),
        minima=((0.0, 0.0),),
        min_value=0.0,
    )


def isolate_data_sources(monkeypatch, tmp_path) -> None:
    """No network, no user data root, no Debian files: a data test sees only what it writes."""
    import socket
    import urllib.request

    from sam_course.data import sources

    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(urllib.request, "getproxies", lambda: {})
    monkeypatch.setenv("SAM_COURSE_DATA", str(tmp_path / "default-root"))
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "no-debian")


def tiny_net64(seed: int = 0) -> nn.Module:
    """A float64 MLP 5-4-3 with tanh, seeded: the optimizer-variant tests' model."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).to(torch.float64)


def batches64(n: int, seed: int = 1) -> list:
    """``n`` float64 batches of 8 examples (5 features, 3 classes) from a seeded generator."""
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (8,), generator=g))
            for _ in range(n)]


def loss_closure(model, x, y, calls=None, optimizer=None):
    """A closure for ``opt.step``: cross-entropy backward; optionally counts its calls and zeroes first."""
    def closure():
        if calls is not None:
            calls.append(1)
        if optimizer is not None:
            optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss
    return closure
