"""SAM on models from outside the course (issue 13): a timm network with BatchNorm, trained with
``frozen_batchnorm_stats`` in the second pass, and a ``torch.compile``'d model, each against a
plain eager loop written out here."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sam_course.optim import SAM, frozen_batchnorm_stats

STEPS = 2


def batches(n: int, shape: tuple[int, ...], classes: int, size: int = 4, seed: int = 4) -> list:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, *shape, generator=g), torch.randint(0, classes, (size,), generator=g)) for _ in range(n)]


def buffers_of(model: nn.Module) -> list[torch.Tensor]:
    return [b for b in model.buffers()]


def sam_with_frozen_stats(model, data):
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.05, momentum=0.9)
    for x, y in data:
        F.cross_entropy(model(x), y).backward()
        opt.first_step(zero_grad=True)
        with frozen_batchnorm_stats(model):
            F.cross_entropy(model(x), y).backward()
        opt.second_step(zero_grad=True)


def sam_restoring_buffers(model, data):
    """The oracle: an unfrozen second pass whose changes to every buffer are undone afterwards."""
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.05, momentum=0.9)
    for x, y in data:
        F.cross_entropy(model(x), y).backward()
        opt.first_step(zero_grad=True)
        saved = [b.clone() for b in buffers_of(model)]
        F.cross_entropy(model(x), y).backward()
        with torch.no_grad():
            for b, s in zip(buffers_of(model), saved):
                b.copy_(s)
        opt.second_step(zero_grad=True)


def test_timm_resnet_with_frozen_batchnorm_stats_in_the_second_pass():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", pretrained=False, num_classes=3)
    ref = copy.deepcopy(model)
    data = batches(STEPS, (3, 32, 32), 3)
    sam_with_frozen_stats(model, data)
    sam_restoring_buffers(ref, data)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert norms and all(int(m.num_batches_tracked) == STEPS for m in norms)  # one update per step, not two
    for (name, a), b in zip(model.state_dict().items(), ref.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)
    assert not torch.equal(norms[0].running_mean, torch.zeros_like(norms[0].running_mean))  # the stats did move


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_a_compiled_model_follows_the_eager_trajectory(backend):
    eager, base = Small(), Small()
    compiled = torch.compile(base, backend=backend)
    data = batches(3, (6,), 3, size=8)
    for model in (eager, compiled):
        opt = SAM(model.parameters(), torch.optim.SGD, rho=0.1, lr=0.1, momentum=0.9)
        for x, y in data:
            def closure(x=x, y=y, model=model, opt=opt):
                ctx = frozen_batchnorm_stats(model) if opt.perturbed else torch.enable_grad()
                with ctx:
                    loss = F.cross_entropy(model(x), y)
                    loss.backward()
                return loss
            opt.step(closure)
    for (name, a), b in zip(eager.state_dict().items(), base.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)
    assert not torch.equal(eager.net[0].weight, Small().net[0].weight)
