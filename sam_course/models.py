"""The small networks the chapters train: an MLP, a plain CNN and a CIFAR-style ResNet.

All take image batches ``(B, C, H, W)`` and return logits ``(B, num_classes)``.
The CNN and ResNet end in adaptive pooling, so 28x28 (MNIST, Fashion-MNIST) and
32x32 (CIFAR-10) inputs both work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ._checks import ArgumentTypeError, check_bool, check_instance, check_int, is_int

__all__ = ["MLP", "SmallCNN", "SmallResNet", "BasicBlock", "count_parameters", "seeded"]


class MLP(nn.Module):
    """Fully connected ReLU network on flattened inputs. Chapters 7 and 11 (MNIST at high label noise).

    Layers: ``Linear(in_features, hidden[0])``, ReLU, ..., ``Linear(hidden[-1],
    num_classes)``. ``hidden=()`` gives multinomial logistic regression.

    Args:
        in_features: input size after flattening (784 for 1x28x28).
        hidden: widths of the hidden layers.
        num_classes: number of logits.

    Shape: input ``(B, *)`` with ``in_features`` elements per example, output
    ``(B, num_classes)``.
    """

    # forward is self.net's forward: m-SAM's low-rank path (sam_course.optim.msam_lowrank) may
    # look through this wrapper.
    forwards_to_only_child = True

    def __init__(self, in_features: int = 784, hidden: Sequence[int] = (512, 512), num_classes: int = 10) -> None:
        super().__init__()
        in_features = check_int("in_features", in_features, 1)
        num_classes = check_int("num_classes", num_classes, 1)
        hidden = tuple(check_int(f"hidden[{i}]", width, 1) for i, width in enumerate(hidden))
        widths = (in_features, *hidden)
        layers: list[nn.Module] = [nn.Flatten()]
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
        layers.append(nn.Linear(widths[-1], num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _conv_block(in_channels: int, out_channels: int, batch_norm: bool) -> list[nn.Module]:
    # With BatchNorm right after, a conv bias would be cancelled by the mean subtraction.
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.ReLU())
    return layers


class SmallCNN(nn.Module):
    """A three-convolution network. Chapters 8, 9 and 11-14 (CIFAR-10 or its stand-in).

    Layers (``w = width``): conv3x3(in_channels -> w), ReLU, maxpool 2;
    conv3x3(w -> 2w), ReLU, maxpool 2; conv3x3(2w -> 4w), ReLU; adaptive
    average pool to 4x4; ``Linear(4w * 16, num_classes)``. With
    ``batch_norm=True`` every conv is followed by BatchNorm and has no bias.
    No BatchNorm by default, so SAM's two gradient passes see the same function.

    Args:
        in_channels: 3 for CIFAR-10, 1 for (Fashion-)MNIST.
        num_classes: number of logits.
        width: channels of the first convolution.
        batch_norm: add BatchNorm2d after each convolution.

    Shape: input ``(B, in_channels, H, W)`` with ``H, W >= 4``, output ``(B, num_classes)``.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 32, batch_norm: bool = False) -> None:
        super().__init__()
        in_channels = check_int("in_channels", in_channels, 1)
        num_classes = check_int("num_classes", num_classes, 1)
        width = check_int("width", width, 1)
        batch_norm = check_bool("batch_norm", batch_norm)
        self.features = nn.Sequential(
            *_conv_block(in_channels, width, batch_norm),
            nn.MaxPool2d(2),
            *_conv_block(width, 2 * width, batch_norm),
            nn.MaxPool2d(2),
            *_conv_block(2 * width, 4 * width, batch_norm),
            # 8x8 maps (32x32 input) and 7x7 maps (28x28 input) both become 4x4.
            nn.AdaptiveAvgPool2d(4),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(4 * width * 16, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    """ResNet basic block (He et al., 2016): two 3x3 conv-BN layers plus a shortcut.

    The shortcut is the identity, or a 1x1 conv + BN when the stride or the
    number of channels changes (He et al.'s option B).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        in_channels = check_int("in_channels", in_channels, 1)
        out_channels = check_int("out_channels", out_channels, 1)
        stride = check_int("stride", stride, 1)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class SmallResNet(nn.Module):
    """CIFAR-style ResNet of depth ``6n + 2`` (ResNet-8, 14, 20, 32, ...). Chapters 5, 12-14.

    A 3x3 conv-BN-ReLU stem with ``width`` channels, then three stages of ``n``
    :class:`BasicBlock` with ``width``, ``2 * width`` and ``4 * width``
    channels (the last two halve the resolution), global average pooling and
    a linear classifier. ``depth=20, width=16`` is He et al.'s ResNet-20; the
    default ResNet-8 fits the book's CPU budgets. Contains BatchNorm, so SAM's
    second pass should freeze its running statistics (``sam_course.optim``).

    Args:
        depth: number of weighted layers, ``6n + 2`` with ``n >= 1``.
        num_classes: number of logits.
        in_channels: 3 for CIFAR-10, 1 for (Fashion-)MNIST.
        width: channels of the stem and the first stage.

    Shape: input ``(B, in_channels, H, W)``, output ``(B, num_classes)``.
    """

    def __init__(self, depth: int = 8, num_classes: int = 10, in_channels: int = 3, width: int = 16) -> None:
        super().__init__()
        if not is_int(depth) or depth < 8 or (depth - 2) % 6:
            message = f"depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, ...), got {depth!r}"
            raise ValueError(message) if is_int(depth) else ArgumentTypeError(message)
        num_classes = check_int("num_classes", num_classes, 1)
        in_channels = check_int("in_channels", in_channels, 1)
        width = check_int("width", width, 1)
        blocks_per_stage = (depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        stages: list[nn.Module] = []
        channels = width
        for stage, out_channels in enumerate((width, 2 * width, 4 * width)):
            for block in range(blocks_per_stage):
                stride = 2 if stage > 0 and block == 0 else 1
                stages.append(BasicBlock(channels, out_channels, stride))
                channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                # He initialization, as in the paper that introduced these networks.
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of scalar parameters in ``model`` (only those with ``requires_grad`` by default).

    BatchNorm running statistics are buffers, not parameters, and are not counted.
    """
    check_instance("model", model, nn.Module, "torch.nn.Module")
    trainable_only = check_bool("trainable_only", trainable_only)
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def seeded(build: Callable[..., nn.Module], seed: int, *args, **kwargs) -> nn.Module:
    """``build(*args, **kwargs)`` right after ``torch.manual_seed(seed)``: the same initial weights
    on every call, for comparisons that start several optimizers from one network (chapters 4, 5).

    Seeds PyTorch's global generator, as a chapter's own ``torch.manual_seed`` would.
    """
    torch.manual_seed(check_int("seed", seed, 0))
    return build(*args, **kwargs)
