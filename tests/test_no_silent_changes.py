"""Arguments that used to be truncated or ignored are refused, naming the argument (issue 14)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from sam_course import data, train
from sam_course.models import SmallCNN
from sam_course.noise import NoisyLabels
from sam_course.optim.msam import m_sharpness


def small_fit(train_data):
    torch.manual_seed(0)
    model = nn.Linear(3, 3)
    return train.fit(model, torch.optim.SGD(model.parameters(), lr=0.1), train_data, 1, batch_size=4, progress=False)


def test_fit_refuses_float_targets_instead_of_truncating():
    x = torch.randn(8, 3)
    with pytest.raises(ValueError, match=r"a TensorDataset's targets must be a 1-D tensor of integer class "
                                         r"indices, got torch.float32"):
        small_fit(TensorDataset(x, torch.tensor([0.0, 1.0, 2.0, 0.5, 1.0, 2.0, 0.0, 1.9])))
    with pytest.raises(ValueError, match="got torch.bool"):
        small_fit(TensorDataset(x, torch.zeros(8, dtype=torch.bool)))
    # Integer targets of any integer dtype train, and equal their int64 copies' run.
    as_int32 = small_fit(TensorDataset(x, torch.arange(8, dtype=torch.int32) % 3))
    as_int64 = small_fit(TensorDataset(x, torch.arange(8) % 3))
    timings = ["seconds", "eval_seconds"]
    assert as_int32.history.drop(columns=timings).equals(as_int64.history.drop(columns=timings))


class FloatLabels(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return torch.zeros(3), 0.5 + i % 3


def test_fit_refuses_float_labels_of_a_plain_dataset():
    with pytest.raises(ValueError, match=r"the dataset's labels must be .*integer class indices, got torch.float32"):
        small_fit(FloatLabels())


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_norm": "no"}, r"RunConfig.model_kwargs\['batch_norm'\] must be True or False, got 'no'"),
    ({"batch_norm": 1}, r"RunConfig.model_kwargs\['batch_norm'\] must be True or False, got 1"),
    ({"width": 2.5}, r"RunConfig.model_kwargs\['width'\] must be an int >= 1, got 2.5"),
    ({"width": 0}, r"RunConfig.model_kwargs\['width'\] must be an int >= 1, got 0"),
])
def test_run_config_checks_model_kwargs_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        train.RunConfig(dataset="cifar10", model="cnn", model_kwargs=kwargs)


def test_run_config_checks_hidden_widths():
    with pytest.raises(ValueError, match=r"RunConfig.model_kwargs\['hidden'\]\[1\] must be an int >= 1, got 0"):
        train.RunConfig(model="mlp", model_kwargs={"hidden": [8, 0]})
    with pytest.raises(ValueError, match=r"RunConfig.model_kwargs\['hidden'\] must be a sequence"):
        train.RunConfig(model="mlp", model_kwargs={"hidden": 8})
    assert train.RunConfig(model="mlp", model_kwargs={"hidden": [8, 4]}).model_kwargs == (("hidden", (8, 4)),)


def test_small_cnn_refuses_a_string_for_batch_norm():
    with pytest.raises(TypeError, match="batch_norm must be True or False, got 'no'"):
        SmallCNN(batch_norm="no")
    assert any(isinstance(m, nn.BatchNorm2d) for m in SmallCNN(width=2, batch_norm=True).modules())


def test_noisy_labels_refuse_labels_beyond_the_classes():
    ds = TensorDataset(torch.zeros(6, 2), torch.tensor([0, 1, 2, 0, 1, 2]))
    with pytest.raises(ValueError, match=r"noisy_targets must lie in \[0, 3\) \(the classes of the clean labels\), "
                                         r"found label 7"):
        NoisyLabels(ds, [0, 1, 7, 0, 1, 2])
    with pytest.raises(ValueError, match=r"noisy_targets must lie in \[0, 3\), found label 7"):
        NoisyLabels(ds, [0, 1, 7, 0, 1, 2], num_classes=3)
    assert NoisyLabels(ds, [0, 1, 7, 0, 1, 2], num_classes=8).rate == pytest.approx(1 / 6)
    images = data.TensorImageDataset(torch.zeros(3, 1, 2, 2), torch.tensor([0, 1, 0]), ("a", "b", "c"))
    with pytest.raises(ValueError, match=r"noisy_targets must lie in \[0, 3\), found label 3"):
        NoisyLabels(images, [0, 3, 0])  # three class names, label 2 allowed although no clean label is 2
    assert NoisyLabels(images, [2, 1, 0]).targets.tolist() == [2, 1, 0]


class FloatLabelPairs(Dataset):
    def __len__(self):
        return 3

    def __getitem__(self, i):
        return torch.zeros(2), [0.0, 1.7, 2.0][i]


def test_noisy_labels_refuse_float_clean_labels_instead_of_truncating():
    with pytest.raises(ValueError, match="dataset labels must hold integer labels, got dtype torch.float32"):
        NoisyLabels(FloatLabelPairs(), [0, 1, 2])


@pytest.mark.parametrize("rho", [True, "a", float("nan"), -0.1])
def test_m_sharpness_refuses_bad_rho(rho):
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"^rho must be a finite number >= 0, got "):
        m_sharpness(model, nn.CrossEntropyLoss(), torch.zeros(4, 2), torch.zeros(4, dtype=torch.long), 2, rho=rho)
