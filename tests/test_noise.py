"""Tests for sam_course.noise: exact counts, uniformity, determinism, errors."""

import math

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from sam_course import noise


def balanced_labels(n, num_classes):
    """n labels cycling through the classes, so every class count is known."""
    return torch.arange(n) % num_classes


# --------------------------------------------------------------------------
# symmetric_noise
# --------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 7, 100, 1001])
@pytest.mark.parametrize("rate", [0.0, 0.2, 0.5, 0.8, 0.999])
def test_symmetric_changes_exactly_round_rate_n(n, rate):
    clean = balanced_labels(n, 10)
    noisy = noise.symmetric_noise(clean, 10, rate, seed=3)
    assert noisy.dtype == torch.long and noisy.shape == (n,)
    assert int((noisy != clean).sum()) == round(rate * n)
    assert int(noisy.min()) >= 0 and int(noisy.max()) < 10


def test_symmetric_leaves_input_untouched_and_accepts_sequences():
    clean = balanced_labels(50, 5)
    before = clean.clone()
    from_tensor = noise.symmetric_noise(clean, 5, 0.4, seed=0)
    assert torch.equal(clean, before)
    from_list = noise.symmetric_noise(clean.tolist(), 5, 0.4, seed=0)
    from_numpy = noise.symmetric_noise(clean.numpy().astype(np.int32), 5, 0.4, seed=0)
    assert torch.equal(from_tensor, from_list)
    assert torch.equal(from_tensor, from_numpy)


def test_symmetric_wrong_labels_are_uniform_over_other_classes():
    num_classes, n, rate = 10, 50_000, 0.8
    clean = balanced_labels(n, num_classes)
    noisy = noise.symmetric_noise(clean, num_classes, rate, seed=1234)
    changed = noisy != clean
    # The offset (noisy - clean) mod C of a corrupted label is uniform on {1..C-1}.
    offsets = ((noisy[changed] - clean[changed]) % num_classes).numpy()
    assert offsets.min() >= 1  # never the clean class
    observed = np.bincount(offsets, minlength=num_classes)[1:]
    expected = changed.sum().item() / (num_classes - 1)
    chi2 = ((observed - expected) ** 2 / expected).sum()
    # 8 degrees of freedom: P(chi2 > 30) is about 2e-4; the seed is fixed anyway.
    assert chi2 < 30.0
    # Per clean class as well: each row of T is (1 - rate) on the diagonal and
    # rate / (C - 1) elsewhere, within five binomial standard deviations.
    T = noise.transition_matrix(clean, noisy, num_classes)
    per_class = n // num_classes
    off = rate / (num_classes - 1)
    tol = 5 * math.sqrt(off * (1 - off) / per_class)
    off_diagonal = T[~torch.eye(num_classes, dtype=torch.bool)]
    assert torch.all((off_diagonal - off).abs() < tol)


def test_symmetric_determinism():
    clean = balanced_labels(5000, 10)
    a = noise.symmetric_noise(clean, 10, 0.5, seed=7)
    b = noise.symmetric_noise(clean, 10, 0.5, seed=7)
    c = noise.symmetric_noise(clean, 10, 0.5, seed=8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_symmetric_does_not_touch_global_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    noise.symmetric_noise(balanced_labels(100, 10), 10, 0.5, seed=1)
    assert torch.equal(torch.rand(3), expected)


def test_symmetric_two_classes_flips_to_the_other_class():
    clean = balanced_labels(100, 2)
    noisy = noise.symmetric_noise(clean, 2, 0.3, seed=0)
    changed = noisy != clean
    assert torch.equal(noisy[changed], 1 - clean[changed])


# --------------------------------------------------------------------------
# transition_matrix
# --------------------------------------------------------------------------

def test_transition_matrix_by_hand():
    clean = [0, 0, 0, 0, 1, 1, 2]
    noisy = [0, 0, 1, 2, 1, 0, 2]
    T = noise.transition_matrix(clean, noisy, num_classes=4)
    expected = torch.tensor(
        [
            [0.5, 0.25, 0.25, 0.0],
            [0.5, 0.5, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 0.0],  # class 3 never occurs: all zeros
        ],
        dtype=torch.float64,
    )
    assert T.dtype == torch.float64
    assert torch.equal(T, expected)


@pytest.mark.parametrize("rate", [0.2, 0.5, 0.8])
def test_transition_matrix_of_symmetric_noise(rate):
    num_classes, n = 10, 20_000
    clean = balanced_labels(n, num_classes)
    noisy = noise.symmetric_noise(clean, num_classes, rate, seed=42)
    T = noise.transition_matrix(clean, noisy, num_classes)
    torch.testing.assert_close(T.sum(dim=1), torch.ones(num_classes, dtype=torch.float64))
    # Exactly round(rate * n) flips overall; per class the number is
    # hypergeometric with standard deviation below sqrt(rate (1 - rate) / n_c).
    per_class = n // num_classes
    tol = 5 * math.sqrt(rate * (1 - rate) / per_class)
    assert torch.all((T.diagonal() - (1 - rate)).abs() < tol)
    # The mean of the diagonal is exact, because the total count is.
    assert T.diagonal().mean().item() == pytest.approx(1 - rate, abs=1e-12)


# --------------------------------------------------------------------------
# class_map_noise
# --------------------------------------------------------------------------

@pytest.mark.parametrize("rate", [0.0, 0.3, 0.45, 0.8])
def test_class_map_counts_per_class_exact(rate):
    # Unequal class sizes: class c has 50 + 13 c examples.
    counts = [50 + 13 * c for c in range(10)]
    clean = torch.cat([torch.full((k,), c) for c, k in enumerate(counts)])
    clean = clean[torch.randperm(clean.numel(), generator=torch.Generator().manual_seed(0))]
    noisy = noise.class_map_noise(clean, noise.CIFAR10_CLASS_MAP, rate, seed=5, num_classes=10)
    for c in range(10):
        members = clean == c
        flipped = noisy[members] != c
        if c in noise.CIFAR10_CLASS_MAP:
            assert int(flipped.sum()) == round(rate * counts[c])
            assert torch.all(noisy[members][flipped] == noise.CIFAR10_CLASS_MAP[c])
        else:
            assert not flipped.any()


def test_class_map_swap_flips_disjoint_sets():
    # cat <-> dog: flips chosen from clean labels, so none is flipped back.
    clean = torch.tensor([3] * 10 + [5] * 20)
    noisy = noise.class_map_noise(clean, {3: 5, 5: 3}, 0.5, seed=0, num_classes=10)
    assert int((noisy[:10] == 5).sum()) == 5
    assert int((noisy[10:] == 3).sum()) == 10


def test_class_map_infers_num_classes_and_is_deterministic():
    clean = balanced_labels(300, 3)
    a = noise.class_map_noise(clean, {0: 4}, 0.5, seed=1)
    b = noise.class_map_noise(clean, {0: 4}, 0.5, seed=1, num_classes=5)
    c = noise.class_map_noise(clean, {0: 4}, 0.5, seed=2, num_classes=5)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert int((a == 4).sum()) == 50


def test_cifar10_class_map_is_the_standard_one():
    assert dict(noise.CIFAR10_CLASS_MAP) == {9: 1, 2: 0, 3: 5, 5: 3, 4: 7}


# --------------------------------------------------------------------------
# NoisyLabels
# --------------------------------------------------------------------------

class LabelsOnly(Dataset):
    """A dataset without .targets: labels only reachable by indexing."""

    def __init__(self, labels):
        self.labels = list(labels)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return torch.tensor([float(i)]), self.labels[i]


class WithTargets(LabelsOnly):
    """Like torchvision: a list in .targets."""

    @property
    def targets(self):
        return self.labels


def test_wrapper_returns_noisy_labels_and_keeps_clean_ones():
    labels = balanced_labels(200, 10)
    dataset = WithTargets(labels.tolist())
    wrapped = noise.NoisyLabels.symmetric(dataset, rate=0.4, seed=0, num_classes=10)
    expected = noise.symmetric_noise(labels, 10, 0.4, seed=0)
    assert len(wrapped) == 200
    assert torch.equal(wrapped.clean_targets, labels)
    assert torch.equal(wrapped.targets, expected)
    assert torch.equal(wrapped.noise_mask, labels != expected)
    assert wrapped.noise_mask.dtype == torch.bool
    assert wrapped.rate == pytest.approx(0.4)
    for i in (0, 17, 199):
        x, y = wrapped[i]
        assert torch.equal(x, dataset[i][0])
        assert isinstance(y, int) and y == int(expected[i])


def test_wrapper_reads_labels_by_indexing_and_through_subsets():
    labels = balanced_labels(60, 3).tolist()
    by_index = noise.NoisyLabels.symmetric(LabelsOnly(labels), 0.5, seed=2, num_classes=3)
    with_targets = noise.NoisyLabels.symmetric(WithTargets(labels), 0.5, seed=2, num_classes=3)
    assert torch.equal(by_index.clean_targets, with_targets.clean_targets)
    assert torch.equal(by_index.targets, with_targets.targets)

    subset = Subset(WithTargets(labels), [5, 0, 7])
    wrapped = noise.NoisyLabels(subset, [0, 1, 1])
    assert wrapped.clean_targets.tolist() == [2, 0, 1]
    assert wrapped.noise_mask.tolist() == [True, True, False]
    assert wrapped.rate == pytest.approx(2 / 3)


def test_wrapper_class_map_and_tensor_dataset():
    labels = balanced_labels(100, 10)
    dataset = TensorDataset(torch.randn(100, 2), labels)
    wrapped = noise.NoisyLabels.class_map(
        dataset, noise.CIFAR10_CLASS_MAP, 0.5, seed=0, num_classes=10
    )
    # 5 mapped classes of 10 examples each, half of each flipped.
    assert int(wrapped.noise_mask.sum()) == 25
    assert wrapped.rate == pytest.approx(0.25)
    assert torch.equal(wrapped.noise_mask, wrapped.clean_targets != wrapped.targets)


def test_wrapper_rejects_wrong_length():
    with pytest.raises(ValueError, match="noisy_targets"):
        noise.NoisyLabels(WithTargets([0, 1, 2]), [0, 1])


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------

@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan"), "0.5", True])
def test_bad_rate(rate):
    with pytest.raises(ValueError, match="rate"):
        noise.symmetric_noise([0, 1], 2, rate, seed=0)
    with pytest.raises(ValueError, match="rate"):
        noise.class_map_noise([0, 1], {0: 1}, rate, seed=0)


@pytest.mark.parametrize("num_classes", [1, 0, -3, 2.0, True])
def test_bad_num_classes(num_classes):
    with pytest.raises(ValueError, match="num_classes"):
        noise.symmetric_noise([0, 0], num_classes, 0.5, seed=0)
    with pytest.raises(ValueError, match="num_classes"):
        noise.transition_matrix([0], [0], num_classes)
    with pytest.raises(ValueError, match="num_classes"):
        noise.class_map_noise([0, 0], {0: 1}, 0.5, seed=0, num_classes=num_classes)


@pytest.mark.parametrize("targets", [[0, 3], [-1, 0], [[0, 1], [1, 0]], [0.0, 1.0], 1])
def test_bad_targets(targets):
    with pytest.raises(ValueError, match="targets"):
        noise.symmetric_noise(targets, 3, 0.5, seed=0)


def test_bad_transition_inputs():
    with pytest.raises(ValueError, match="clean"):
        noise.transition_matrix([0, 5], [0, 1], 3)
    with pytest.raises(ValueError, match="noisy"):
        noise.transition_matrix([0, 1], [0, 3], 3)
    with pytest.raises(ValueError, match="same length"):
        noise.transition_matrix([0, 1], [0], 3)


@pytest.mark.parametrize(
    "class_map, pattern",
    [
        ({2: 2}, "different class"),
        ({2: 10}, r"\[0, 10\)"),
        ({-1: 2}, r"\[0, 10\)"),
        ({1.5: 2}, "integer"),
        ([(1, 2)], "mapping"),
    ],
)
def test_bad_class_map(class_map, pattern):
    with pytest.raises(ValueError, match="class_map") as info:
        noise.class_map_noise([0, 1, 2], class_map, 0.5, seed=0, num_classes=10)
    assert info.match(pattern)


@pytest.mark.parametrize("seed", [-1, 1.0, None, 2**63])
def test_bad_seed(seed):
    with pytest.raises(ValueError, match="seed"):
        noise.symmetric_noise([0, 1], 2, 0.5, seed=seed)
