"""Tests for sam_course.models: shapes, parameter counts by hand, validation, determinism."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sam_course.models import MLP, SmallCNN, SmallResNet, count_parameters


def conv_params(c_in: int, c_out: int, k: int = 3, bias: bool = True) -> int:
    return c_in * c_out * k * k + (c_out if bias else 0)


def bn_params(channels: int) -> int:
    return 2 * channels  # weight and bias; running statistics are buffers


def test_mlp_shapes_and_parameter_count():
    model = MLP()
    assert model(torch.zeros(5, 1, 28, 28)).shape == (5, 10)
    assert count_parameters(model) == 784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10 == 669_706
    wide_in = MLP(in_features=3 * 32 * 32, hidden=(64,), num_classes=7)
    assert wide_in(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
    assert count_parameters(wide_in) == 3072 * 64 + 64 + 64 * 7 + 7
    assert count_parameters(MLP(hidden=())) == 784 * 10 + 10


def test_mlp_computes_relu_network():
    torch.manual_seed(0)
    model = MLP(in_features=4, hidden=(3,), num_classes=2)
    first, last = model.net[1], model.net[3]
    x = torch.randn(6, 4)
    expected = torch.relu(x @ first.weight.T + first.bias) @ last.weight.T + last.bias
    torch.testing.assert_close(model(x), expected)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_cnn_output_shape(shape):
    model = SmallCNN(in_channels=shape[0], width=8)
    assert model(torch.zeros(4, *shape)).shape == (4, 10)


@pytest.mark.parametrize("in_channels, width, batch_norm", [(3, 32, False), (1, 8, False), (3, 16, True)])
def test_cnn_parameter_count(in_channels, width, batch_norm):
    w = width
    convs = sum(
        conv_params(a, b, bias=not batch_norm) + (2 * b if batch_norm else 0)
        for a, b in ((in_channels, w), (w, 2 * w), (2 * w, 4 * w))
    )
    expected = convs + 4 * w * 16 * 10 + 10
    model = SmallCNN(in_channels=in_channels, width=width, batch_norm=batch_norm)
    assert count_parameters(model) == expected
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == batch_norm


def test_default_cnn_parameter_count():
    assert count_parameters(SmallCNN()) == 896 + 18_496 + 73_856 + 20_490


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
@pytest.mark.parametrize("depth", [8, 14])
def test_resnet_output_shape(shape, depth):
    model = SmallResNet(depth=depth, in_channels=shape[0], width=4)
    assert model(torch.zeros(2, *shape)).shape == (2, 10)


def test_resnet_depth_and_parameter_count():
    # ResNet-8: stem conv + 3 stages x 1 block x 2 convs + classifier = 8 weighted layers.
    model = SmallResNet(depth=8, width=16)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) + 1 == 8
    w = 16
    block1 = 2 * (conv_params(w, w, bias=False) + bn_params(w))
    block2 = conv_params(w, 2 * w, bias=False) + conv_params(2 * w, 2 * w, bias=False) + 2 * bn_params(2 * w)
    block2 += conv_params(w, 2 * w, k=1, bias=False) + bn_params(2 * w)
    block3 = conv_params(2 * w, 4 * w, bias=False) + conv_params(4 * w, 4 * w, bias=False) + 2 * bn_params(4 * w)
    block3 += conv_params(2 * w, 4 * w, k=1, bias=False) + bn_params(4 * w)
    stem = conv_params(3, w, bias=False) + bn_params(w)
    assert count_parameters(model) == stem + block1 + block2 + block3 + 4 * w * 10 + 10
    resnet20 = [m for m in SmallResNet(depth=20).modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(resnet20) + 1 == 20


def test_resnet_has_batchnorm():
    model = SmallResNet()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 1 + 3 * 2 + 2  # stem, two per block, two projection shortcuts
    model.train()
    model(torch.randn(4, 3, 32, 32))
    assert all(int(bn.num_batches_tracked) == 1 for bn in bns)


@pytest.mark.parametrize("depth", [0, 6, 7, 10, 21, 8.0, True])
def test_resnet_rejects_bad_depth(depth):
    with pytest.raises(ValueError, match=r"depth must be 6n \+ 2"):
        SmallResNet(depth=depth)


@pytest.mark.parametrize(
    "factory, name",
    [
        (lambda: MLP(in_features=0), "in_features"),
        (lambda: MLP(hidden=(512, -1)), r"hidden\[1\]"),
        (lambda: MLP(num_classes=0), "num_classes"),
        (lambda: SmallCNN(width=0), "width"),
        (lambda: SmallCNN(in_channels=2.5), "in_channels"),
        (lambda: SmallResNet(width=0), "width"),
    ],
)
def test_bad_sizes_are_rejected(factory, name):
    with pytest.raises(ValueError, match=f"{name} must be an int >= 1"):
        factory()


@pytest.mark.parametrize("factory", [MLP, SmallCNN, SmallResNet])
def test_construction_is_deterministic_under_manual_seed(factory):
    torch.manual_seed(0)
    a = factory().state_dict()
    torch.manual_seed(0)
    b = factory().state_dict()
    torch.manual_seed(1)
    c = factory().state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_count_parameters_trainable_only():
    model = MLP(in_features=4, hidden=(3,), num_classes=2)
    model.net[1].requires_grad_(False)
    assert count_parameters(model) == 3 * 2 + 2
    assert count_parameters(model, trainable_only=False) == 4 * 3 + 3 + 3 * 2 + 2


def test_seeded_builds_the_same_initial_weights_as_a_manual_seed():
    from sam_course.models import seeded

    torch.manual_seed(3)
    oracle = MLP(hidden=(8,))
    first, second = seeded(MLP, 3, hidden=(8,)), seeded(MLP, 3, hidden=(8,))
    for a, b, c in zip(oracle.parameters(), first.parameters(), second.parameters()):
        assert torch.equal(a, b) and torch.equal(b, c)
    other = seeded(MLP, 4, hidden=(8,))
    assert not torch.equal(next(other.parameters()), next(first.parameters()))
    with pytest.raises(ValueError, match="seed must be an int >= 0, got -1"):
        seeded(MLP, -1)
