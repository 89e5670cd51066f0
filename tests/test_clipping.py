"""Gradient clipping with SAM (issue 13): ``SAMStep(max_grad_norm=...)`` clips the gradient the base
optimizer applies, after the second pass (unscaled first under a GradScaler), and equals a plain
loop with ``torch.nn.utils.clip_grad_norm_`` placed there."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sam_course import SAM
from sam_course.optim import SAMStep

MAX_NORM = 0.05


def net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def batches(n: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(3)
    return [(torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(n)]


def sam(model) -> SAM:
    return SAM(model.parameters(), torch.optim.SGD, rho=0.1, lr=0.5, momentum=0.9)


def plain_loop(model, data, accumulation: int = 1, max_norm: float | None = MAX_NORM) -> list[float]:
    """SAM on each whole batch, clipping between the second backward and second_step; returns the
    norms the clip saw (so a test can check it was active)."""
    opt, seen = sam(model), []
    for x, y in data:
        parts = list(zip(x.chunk(accumulation), y.chunk(accumulation)))
        for xs, ys in parts:
            (F.cross_entropy(model(xs), ys) / accumulation).backward()
        opt.first_step(zero_grad=True)
        for xs, ys in parts:
            (F.cross_entropy(model(xs), ys) / accumulation).backward()
        if max_norm is not None:
            seen.append(float(nn.utils.clip_grad_norm_(model.parameters(), max_norm)))
        opt.second_step(zero_grad=True)
    return seen


@pytest.mark.parametrize("accumulation", [1, 2])
@pytest.mark.parametrize("with_scaler", [False, True])
def test_max_grad_norm_clips_the_second_gradient_like_a_plain_loop(accumulation, with_scaler):
    ours, ref = net(), net()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10) if with_scaler else None
    step = SAMStep(ours, sam(ours), accumulation_steps=accumulation, scaler=scaler, max_grad_norm=MAX_NORM)
    for x, y in batches():
        step(x, y, F.cross_entropy)
        assert not step.last_step_skipped
    seen = plain_loop(ref, batches(), accumulation)
    assert min(seen) > MAX_NORM  # the clip was active on every step, so the comparison means something
    for p, q in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0)


def test_without_max_grad_norm_nothing_is_clipped():
    ours, ref, clipped = net(), net(), net()
    step = SAMStep(ours, sam(ours))
    for x, y in batches():
        step(x, y, F.cross_entropy)
    plain_loop(ref, batches(), max_norm=None)
    plain_loop(clipped, batches())
    for p, q in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=0)
    assert any(not torch.allclose(p, q) for p, q in zip(ours.parameters(), clipped.parameters()))


def test_clipping_the_first_gradient_by_its_norm_changes_nothing_for_p2():
    """Why SAMStep clips only the second gradient: eps_hat is normalized, so a global-norm clip of
    the first gradient leaves the step as it was."""
    a, b = net(), net()
    (x, y), = batches(1)
    for model, clip in ((a, False), (b, True)):
        opt = sam(model)
        F.cross_entropy(model(x), y).backward()
        if clip:
            assert float(nn.utils.clip_grad_norm_(model.parameters(), MAX_NORM)) > MAX_NORM
        opt.first_step(zero_grad=True)
        F.cross_entropy(model(x), y).backward()
        opt.second_step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, atol=1e-7, rtol=0)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "1"])
def test_bad_max_grad_norm_is_refused(bad):
    model = net()
    with pytest.raises(ValueError, match="max_grad_norm must be a finite number > 0"):
        SAMStep(model, sam(model), max_grad_norm=bad)
