"""A table of public functions and bad arguments: each raises the right exception, and its message
names the argument and shows the value received (issue 14).

Wrong kinds (a string, a bool, None where a number is needed) raise
:class:`~sam_course._checks.ArgumentTypeError`, a ``TypeError`` that is also a ``ValueError``;
values of the right kind out of range (NaN, negatives) raise a plain ``ValueError``.

The table is complete: ``test_every_public_callable_has_a_bad_input_entry`` walks ``sam_course.__all__``
and every module it lists, and fails naming each public function or class that takes arguments and
has no entry here. Exempt, by rule: constants, exception and warning classes, Protocols, functions
without arguments; by name: the records the package returns (:data:`RESULT_RECORDS`) and the two
functions that take any value (:data:`ANY_VALUE`).
"""

from __future__ import annotations

import inspect
import math

import matplotlib
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

import sam_course  # noqa: E402
from sam_course import base_optimizers, data, experiments, models, noise, paper, planar, plotting, report, timing, train  # noqa: E402,E501
from sam_course._checks import ArgumentTypeError  # noqa: E402
from sam_course.curvature import hessian, landscape, operator, spectrum  # noqa: E402
from sam_course.optim import (  # noqa: E402
    GSAM,
    SAM,
    LookSAM,
    SAMEveryK,
    SAMStep,
    epsilon_hat,
    forward_backward_passes,
    frozen_batchnorm_stats,
    norm_layer_groups,
    orthogonal_component,
)
from sam_course.optim.friendly import FriendlySAM  # noqa: E402
from sam_course.optim.momentum_sam import MomentumSAM  # noqa: E402
from sam_course.optim.msam import m_sharpness, msam_gradient, msam_step  # noqa: E402
from sam_course.optim.schedules import AdaptiveSAM, RandomizedSAM  # noqa: E402
from sam_course.theory import bound, sam_gradient  # noqa: E402

X, Y = torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)
CE = nn.CrossEntropyLoss()
GOOD = object()  # passed by the good-value test to a call whose kind has no single good value


def pick(value, good):
    """``value``, or ``good`` when the good-value test passes :data:`GOOD`."""
    return good if value is GOOD else value


def linear(seed=0):
    torch.manual_seed(seed)
    return nn.Linear(2, 2)


def bundle():
    ds = data.TensorImageDataset(torch.zeros(10, 1, 2, 2), torch.arange(10), [str(i) for i in range(10)])
    return data.DataBundle("fixture", ds, ds, "fixture")


def axes():
    plt.close("all")
    return plt.figure().add_subplot()


def entered(context):
    with context:
        pass


def sam(model=None):
    return SAM((model or linear()).parameters(), torch.optim.SGD, lr=0.1)


def run_result():
    """A finished tiny run, for the functions that read results (no training: a stored history)."""
    import pandas as pd

    history = pd.DataFrame({"epoch": [0, 1], "train_loss": [1.0, 0.5], "train_acc": [0.1, 0.3], "test_acc": [0.1, 0.2],
                            "val_acc": [0.1, 0.2], "train_clean_acc": [0.1, 0.3], "train_memorized": [0.0, 0.0],
                            "seconds": [0.0, 1.0], "eval_seconds": [0.1, 0.1]})
    return train.RunResult(train.RunConfig(), history, None, 0.2, None, False, "fixture", False, (1, 2, 2), 10, {}, None)


def sam_step(**kwargs):
    model = linear()
    return SAMStep(model, kwargs.pop("optimizer", sam(model)), **kwargs)


def idx_file(path):
    """``path`` when a value is bad; when it is :data:`GOOD`, a two-byte IDX file."""
    if path is not GOOD:
        return path
    import tempfile

    with tempfile.NamedTemporaryFile(suffix="-idx1-ubyte", delete=False) as handle:
        handle.write(bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 9]))
    return handle.name


TINY = train.RunConfig(n_train=10, n_test=10, epochs=1, batch_size=5)


def fit(**kwargs):
    model = linear()
    args = {"epochs": 1, "batch_size": 2, **kwargs}
    epochs = args.pop("epochs")
    return train.fit(model, torch.optim.SGD(model.parameters(), lr=0.1), TensorDataset(X, Y), epochs,
                     progress=False, **args)


def in_temporary_cache(function, *args):
    """``function(*args)`` with the run cache (and so the recorded verdicts) in a fresh folder."""
    import os
    import tempfile
    from unittest import mock

    with tempfile.TemporaryDirectory() as folder, mock.patch.dict(os.environ, {"SAM_COURSE_CACHE": folder}):
        return function(*args)


def msam(argument, value, function=msam_gradient):
    """``msam_gradient`` (or ``msam_step``) on a linear model, with ``argument`` replaced by ``value``."""
    model = linear()
    args = {"optimizer": SAM(model.parameters(), torch.optim.SGD, lr=0.1), "model": model, "loss_fn": CE,
            "inputs": X, "targets": Y, "m": 2}
    if value is not GOOD:
        args[argument] = value
    return function(**args)


# (argument name, call with the bad value, kind: a key of BAD[, a good value when GOOD_VALUES' does not fit])
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
    "optimizer_factory(alpha)": ("alpha", lambda v: planar.optimizer_factory("GSAM-SGD", 0.1, alpha=v), "number"),
}
CALLS.update({
    # optim
    "epsilon_hat(rho)": ("rho", lambda v: epsilon_hat([torch.ones(2)], v), "number"),
    "epsilon_hat(grads)": ("grads", lambda v: epsilon_hat(pick(v, [torch.ones(2)]), 0.1), "tensors"),
    "frozen_batchnorm_stats(model)": ("model", lambda v: entered(frozen_batchnorm_stats(pick(v, linear()))), "object"),
    "LookSAM(k)": ("k", lambda v: LookSAM(linear().parameters(), torch.optim.SGD, k=v, lr=0.1), "int"),
    "LookSAM(alpha)": ("alpha", lambda v: LookSAM(linear().parameters(), torch.optim.SGD, alpha=v, lr=0.1), "number"),
    "SAMEveryK(k)": ("k", lambda v: SAMEveryK(linear().parameters(), torch.optim.SGD, k=v, lr=0.1), "int"),
    # issue 15: GSAM, unnormalized SAM, SAM-ON
    "SAM(normalize)": ("normalize", lambda v: SAM(linear().parameters(), torch.optim.SGD, normalize=v, lr=0.1), "bool"),
    "GSAM(alpha)": ("alpha", lambda v: GSAM(linear().parameters(), torch.optim.SGD, alpha=v, lr=0.1), "number"),
    "GSAM(rho_min)": ("rho_min", lambda v: GSAM(linear().parameters(), torch.optim.SGD, rho=1.0, rho_min=v, lr_max=1.0,
                                                lr=0.1), "optional number"),
    "GSAM(lr_max)": ("lr_max", lambda v: GSAM(linear().parameters(), torch.optim.SGD, lr_max=v, lr=0.1), "optional number"),
    "GSAM(lr_min)": ("lr_min", lambda v: GSAM(linear().parameters(), torch.optim.SGD, lr_min=v, lr=0.1), "number"),
    "norm_layer_groups(model)": ("model", lambda v: norm_layer_groups(pick(v, nn.BatchNorm1d(2))), "object"),
    "norm_layer_groups(rho)": ("rho", lambda v: norm_layer_groups(nn.BatchNorm1d(2), rho=v), "number"),
    # issue 15, items 4-6: F-SAM, Momentum-SAM, the randomized and adaptive schedules
    "FriendlySAM(sigma)": ("sigma", lambda v: FriendlySAM(linear().parameters(), torch.optim.SGD, sigma=v, lr=0.1),
                           "number"),
    "FriendlySAM(lmbda)": ("lmbda", lambda v: FriendlySAM(linear().parameters(), torch.optim.SGD, lmbda=v, lr=0.1),
                           "number"),
    "MomentumSAM(rho)": ("rho", lambda v: MomentumSAM(linear().parameters(), torch.optim.SGD, rho=v, lr=0.1,
                                                      momentum=0.9), "number"),
    "RandomizedSAM(probability)": ("probability", lambda v: RandomizedSAM(linear().parameters(), torch.optim.SGD,
                                                                          probability=v, lr=0.1), "number"),
    "RandomizedSAM(seed)": ("seed", lambda v: RandomizedSAM(linear().parameters(), torch.optim.SGD, seed=v, lr=0.1),
                            "int"),
    "AdaptiveSAM(c)": ("c", lambda v: AdaptiveSAM(linear().parameters(), torch.optim.SGD, c=v, lr=0.1), "real"),
    "AdaptiveSAM(delta)": ("delta", lambda v: AdaptiveSAM(linear().parameters(), torch.optim.SGD, delta=v, lr=0.1),
                           "number"),
    "orthogonal_component(grads)": ("grads", lambda v: orthogonal_component([torch.ones(2)], pick(v, [torch.ones(2)])),
                                    "tensors"),
    "forward_backward_passes(steps)": ("steps", lambda v: forward_backward_passes(v, 2), "int"),
    "SAMStep(optimizer)": ("optimizer", lambda v: sam_step() if v is GOOD else sam_step(optimizer=v),
                           "object"),
    "SAMStep(accumulation_steps)": ("accumulation_steps", lambda v: sam_step(accumulation_steps=v),
                                    "int"),
    "SAMStep(freeze_bn_stats)": ("freeze_bn_stats", lambda v: sam_step(freeze_bn_stats=v), "bool"),
    # data
    "TensorImageDataset(data)": ("data", lambda v: data.TensorImageDataset(pick(v, torch.zeros(2, 1, 2, 2)),
                                                                          torch.arange(2), ["a", "b"]), "tensor"),
    "DataBundle(train)": ("train", lambda v: data.DataBundle("x", pick(v, bundle().train), bundle().test, "src"),
                          "object"),
    "read_idx(path)": ("path", lambda v: data.read_idx(idx_file(v)), "path"),
    "load_fashion_mnist(n_train)": ("n_train", lambda v: data.load_fashion_mnist(n_train=v, download=False), "int"),
    "normalize(mean)": ("mean", lambda v: data.normalize(bundle(), mean=pick(v, [0.5]), std=[1.0]), "numbers"),
    # planar
    "TestFunction(f)": ("f", lambda v: planar.TestFunction("t", pick(v, planar.EASOM.f), ((-1, 1), (-1, 1)),
                                                             ((0.0, 0.0),), 0.0), "object"),
    "TestFunction(min_value)": ("min_value", lambda v: planar.TestFunction("t", planar.EASOM.f, ((-1, 1), (-1, 1)),
                                                                             ((0.0, 0.0),), v), "real"),
    "SharpFlatFunction(sharp_value)": ("sharp_value", lambda v: planar.SharpFlatFunction(
        "t", planar.SHARP_FLAT.f, planar.SHARP_FLAT.domain, planar.SHARP_FLAT.minima, 0.0, (0.0, 0.0), v, (1.0, 1.0), 0.0),
        "real"),
    "grid(n)": ("n", lambda v: planar.grid(planar.EASOM, v), "int"),
    "check_function(function)": ("function", lambda v: planar.check_function(pick(v, planar.EASOM)), "object"),
    "parse_box(window)": ("window", lambda v: planar.parse_box(pick(v, ((0, 1), (0, 1)))), "box"),
    "run_optimizer(steps)": ("steps", lambda v: planar.run_optimizer(planar.EASOM, (3.0, 3.0),
                                                                       planar.optimizer_factory("SGD", 0.1), v), "int"),
    "start_grid(n)": ("n", lambda v: planar.start_grid(planar.EASOM, v), "int"),
    "run_from_starts(steps)": ("steps", lambda v: planar.run_from_starts(planar.EASOM, [(3.0, 3.0)],
                                                                           planar.optimizer_factory("SGD", 0.1), v), "int"),
    "run_bruteforce_sam(rho)": ("rho", lambda v: planar.run_bruteforce_sam(
        planar.EASOM, [(3.0, 3.0)], lambda ps: torch.optim.SGD(ps, lr=0.1), v, 2, n_angles=4, n_radii=2), "number"),
    "distance_to_minima(function)": ("function", lambda v: planar.distance_to_minima(pick(v, planar.EASOM), [(0.0, 0.0)]),
                                     "object"),
    "classify_endpoints(radius)": ("radius", lambda v: planar.classify_endpoints(planar.EASOM, [(0.0, 0.0)], radius=v),
                                   "number"),
    "hessian_eigenvalues(function)": ("function", lambda v: planar.hessian_eigenvalues(pick(v, planar.EASOM),
                                                                                         [(0.0, 0.0)]), "object"),
    # plotting
    "color_for(name)": ("name", lambda v: plotting.color_for(pick(v, "SAM")), "str"),
    "label_axes(ax)": ("ax", lambda v: plotting.label_axes(pick(v, axes()), "t", "x", "y", legend=False), "object"),
    "contour(n)": ("n", lambda v: plotting.contour(axes(), planar.EASOM, n=v, colorbar=False), "int"),
    "trajectory(path)": ("path", lambda v: plotting.trajectory(axes(), pick(v, [(0.0, 0.0), (1.0, 1.0)]), "p"), "box"),
    "compare_trajectories(steps)": ("steps", lambda v: plotting.compare_trajectories(planar.EASOM, (3.0, 3.0), steps=v,
                                                                                       n=10), "int"),
    "outcome_map(outcomes)": ("outcomes", lambda v: plotting.outcome_map(axes(), [(0.0, 0.0)], pick(v, ["a"])), "strs"),
    "plot_histories(histories)": ("histories", lambda v: plotting.plot_histories(axes(), pick(v, {"a": [1.0, 2.0]}),
                                                                                   "t", "x", "y"), "object"),
    "seed_curves(column)": ("column", lambda v: plotting.seed_curves([run_result()], pick(v, "test_acc")), "str"),
    "plot_seed_band(column)": ("column", lambda v: plotting.plot_seed_band(axes(), [run_result()], pick(v, "test_acc"),
                                                                             color="k", label="l"), "str"),
    "animate_trajectories(frames)": ("frames", lambda v: plotting.animate_trajectories(
        planar.EASOM, {"a": [(0.0, 0.0), (1.0, 1.0)]}, frames=v, n=10), "int"),
    "to_html(animation)": ("animation", lambda v: plotting.to_html(pick(v, plotting.animate_trajectories(
        planar.EASOM, {"a": [(0.0, 0.0), (1.0, 1.0)]}, frames=2, n=10))), "object"),
    "explorer(presets)": ("presets", lambda v: plotting.explorer(pick(v, None)), "optional object"),
    # train
    "optimizer_step(model)": ("model", lambda v: train.optimizer_step(pick(v, linear()), torch.optim.SGD(
        linear().parameters(), lr=0.1), CE, X, Y), "object"),
    "MSAMStep(m)": ("m", lambda v: train.MSAMStep(v), "int"),
    "evaluate(batch_size)": ("batch_size", lambda v: train.evaluate(linear(), TensorDataset(X, Y), batch_size=v), "int"),
    "run(cfg)": ("cfg", lambda v: train.run(pick(v, TINY), cache=False, progress=False, verbose=False), "object"),
    "run_seeds(seeds)": ("seeds", lambda v: train.run_seeds(TINY, pick(v, [])), "ints"),
    "results_table(results)": ("results", lambda v: train.results_table(pick(v, [run_result()])), "object"),
    "summarize(metrics)": ("metrics", lambda v: train.summarize([run_result()], pick(v, ("final_test_acc",))), "strs"),
    "runs_summary(wall_seconds)": ("wall_seconds", lambda v: train.runs_summary([run_result()], v), "number"),
    "build_data(cfg)": ("cfg", lambda v: train.build_data(pick(v, TINY), verbose=False), "object"),
    "build_model(num_classes)": ("num_classes", lambda v: train.build_model(train.RunConfig(), (1, 2, 2), v), "int"),
    "build_optimizer(model)": ("model", lambda v: train.build_optimizer(train.RunConfig(), pick(v, linear())), "object"),
    "build_scheduler(optimizer)": ("optimizer", lambda v: train.build_scheduler(train.RunConfig(), pick(v, sam())),
                                   "object"),
    "derive_seed(seed)": ("seed", lambda v: train.derive_seed(v, "order"), "int"),
    "derive_seed(stream)": ("stream", lambda v: train.derive_seed(0, pick(v, "order")), "str"),
    "as_tensors(dataset)": ("dataset", lambda v: train.as_tensors(pick(v, TensorDataset(X, Y))), "object"),
    "cache_key(cfg)": ("cfg", lambda v: train.cache_key(pick(v, train.RunConfig()), "src"), "object"),
    "cache_path(source)": ("source", lambda v: train.cache_path(train.RunConfig(), pick(v, "src")), "str"),
})
def history(**columns):
    import pandas as pd

    return pd.DataFrame({"epoch": [0, 1, 2], "train_memorized": [0.0, 0.3, 0.6], **columns})


DATA = (X, Y)
CALLS.update({
    # base_optimizers, models, noise
    "BaseOptimizer(cls)": ("cls", lambda v: base_optimizers.BaseOptimizer(pick(v, torch.optim.SGD), "SGD"), "object"),
    "base_optimizer(name)": ("optimizer", lambda v: base_optimizers.base_optimizer(pick(v, "sgd")), "choice"),
    "SmallResNet(depth)": ("depth", lambda v: models.SmallResNet(depth=v, width=2), "int", 8),
    "BasicBlock(in_channels)": ("in_channels", lambda v: models.BasicBlock(v, 2), "int"),
    "count_parameters(model)": ("model", lambda v: models.count_parameters(pick(v, linear())), "object"),
    "seeded(seed)": ("seed", lambda v: models.seeded(linear, v), "int"),
    "class_map_noise(rate)": ("rate", lambda v: noise.class_map_noise([0, 1, 2], {0: 1}, v, 0, num_classes=3), "number"),
    "transition_matrix(num_classes)": ("num_classes", lambda v: noise.transition_matrix([0, 1], [0, 1], pick(v, 2)), "int"),
    # paper, report
    "load_table(name)": ("name", lambda v: paper.load_table(pick(v, "cifar")), "choice"),
    "published(name)": ("name", lambda v: paper.published(pick(v, "cifar")), "choice"),
    "paper.compare(name)": ("name", lambda v: paper.compare(pick(v, "cifar")), "choice"),
    "equal_compute(cost_ratio)": ("cost_ratio", lambda v: paper.equal_compute(cost_ratio=pick(v, 2.0)), "number"),
    "as_plain_number(value)": ("value", lambda v: report.as_plain_number(pick(v, 1.5)), "scalar"),
    "glue_number(name)": ("name", lambda v: report.glue_number(pick(v, "n"), 1.0), "str"),
    "glue_numbers(values)": ("values", lambda v: report.glue_numbers(pick(v, {"n": 1.0})), "optional object"),
    "glue_text(text)": ("text", lambda v: report.glue_text("t", pick(v, "words")), "str"),
    "glue_markdown(text)": ("text", lambda v: report.glue_markdown("t", pick(v, "**words**")), "str"),
    "glue_figure(fig)": ("fig", lambda v: report.glue_figure("f", pick(v, plt.figure())), "object"),
    "text_table(table)": ("table", lambda v: report.text_table(pick(v, {"a": "b"})), "object"),
    "readable(table)": ("table", lambda v: report.readable(pick(v, history())), "object"),
    "report.compare(difference)": ("difference", lambda v: report.compare(v, 0.01), "real"),
    "verdict(words)": ("words", lambda v: report.verdict(0.1, 0.01, pick(v, dict.fromkeys(report.COMPARISONS, "w"))),
                       "object"),
    "paired_difference(differences)": ("differences", lambda v: report.paired_difference(pick(v, [0.1, 0.2])), "numbers"),
    "count_verdict(k)": ("k", lambda v: report.count_verdict(v, 3), "int"),
    "trend(values)": ("values", lambda v: report.trend(pick(v, [0.1, 0.2])), "numbers"),
    "number_text(missing)": ("missing", lambda v: report.number_text(1.0, ".1f", pick(v, "words")), "str"),
    "number_text(value)": ("value", lambda v: report.number_text(pick(v, 1.0), ".1f", "words"), "scalar"),
    "with_spread(mean)": ("mean", lambda v: report.with_spread(pick(v, 0.5), 0.1), "scalar"),
    "glue_verdict(name)": ("name", lambda v: in_temporary_cache(report.glue_verdict, pick(v, "ch99_x"), "words"), "str"),
    "recorded_verdict(chapter)": ("chapter", lambda v: in_temporary_cache(
        lambda chapter: (report.glue_verdict("ch99_x", "words"), report.recorded_verdict("ch99_x", chapter)),
        pick(v, "chapter 99")), "str"),
    # experiments
    "mnist_mlp(seed)": ("seed", lambda v: experiments.mnist_mlp(seed=v), "int"),
    "reproduces_seed_gap(gaps)": ("gaps[0]", lambda v: experiments.reproduces_seed_gap(v), "real"),
    "cifar_cnn(sam_rho)": ("RunConfig.sam_rho", lambda v: experiments.cifar_cnn(sam_rho=v), "optional number"),
    "cifar_resnet(optimizer)": ("optimizer", lambda v: experiments.cifar_resnet(optimizer=pick(v, "sgd")),
                                "choice"),
    "landscape_sample(n)": ("n", lambda v: experiments.landscape_sample(TINY, v), "int"),
    "label_noise_run(rate)": ("RunConfig.noise_rate", lambda v: experiments.label_noise_run(v), "number"),
    "pick_rho_on_validation(reading)": ("reading", lambda v: experiments.pick_rho_on_validation(
        {0.05: [run_result()]}, pick(v, "best")), "choice"),
    "memorization_onset(threshold)": ("threshold", lambda v: experiments.memorization_onset(history(), v), "number"),
    "msharpness_run(m)": ("RunConfig.msam_m", lambda v: experiments.msharpness_run(m=v), "int"),
    "hessian_run(epochs)": ("RunConfig.epochs", lambda v: experiments.hessian_run(epochs=v), "int"),
    "variants_run(seed)": ("RunConfig.seed", lambda v: experiments.variants_run(seed=v), "int"),
    # timing
    "compare_step_times(rounds)": ("rounds", lambda v: timing.compare_step_times({"a": lambda: None}, v, warmup=0), "int"),
    "compare_step_times_one_thread(rounds)": ("rounds", lambda v: timing.compare_step_times_one_thread(
        {"a": lambda: None}, v, warmup=0), "int"),
    "train_step(model)": ("model", lambda v: timing.train_step(pick(v, linear()), torch.optim.SGD(linear().parameters(),
                                                                                                lr=0.1), CE, X, Y), "object"),
    "sam_cost_callables(rho)": ("rho", lambda v: timing.sam_cost_callables(linear, X, Y, CE, seed=0, rho=v), "number"),
    # theory
    "posterior_std(rho)": ("rho", lambda v: bound.posterior_std(v, 10, 100), "number"),
    "best_prior_variance(k)": ("k", lambda v: bound.best_prior_variance(v, 0.1, 1.0), "int"),
    "grid_prior(n)": ("n", lambda v: bound.grid_prior(10, v, 0.1, 1.0), "int", 100),
    "kl_upper_bound(sigma_q)": ("sigma_q", lambda v: bound.kl_upper_bound(10, v, 1.0), "number"),
    "union_bound_log_term(delta)": ("delta", lambda v: bound.union_bound_log_term(100, 10, v), "number"),
    "laurent_massart_threshold(t)": ("t", lambda v: bound.laurent_massart_threshold(10, v), "number"),
    "gaussian_norm_tail(radius)": ("radius", lambda v: bound.gaussian_norm_tail(10, 0.1, v), "number"),
    "theorem_constant(n)": ("n", lambda v: bound.theorem_constant(v, 10), "int"),
    "complexity_term(w_norm)": ("w_norm", lambda v: bound.complexity_term(10, 100, v, 0.05), "number"),
    "sam_gradient(rho)": ("rho", lambda v: sam_gradient.sam_gradient(linear(), CE, DATA, v), "number"),
    "sam_gradient_parts(model)": ("model", lambda v: sam_gradient.sam_gradient_parts(pick(v, linear()), CE, DATA, 0.05),
                                  "object"),
    "sam_gradient_step(rho)": ("rho", lambda v: sam_gradient.sam_gradient_step(
        linear(), torch.optim.SGD(linear().parameters(), lr=0.1), CE, X, Y, v), "number"),
    "fit_sam_gradient(epochs)": ("epochs", lambda v: sam_gradient.fit_sam_gradient(
        linear(), torch.optim.SGD(linear().parameters(), lr=0.1), TensorDataset(X, Y), v, batch_size=2, rho=0.05),
        "int"),
    # curvature
    "gradient(model)": ("model", lambda v: hessian.gradient(pick(v, linear()), CE, DATA), "object"),
    "hvp(v)": ("v", lambda v: hessian.hvp(linear(), CE, DATA, pick(v, torch.zeros(6))), "tensor"),
    "dense_hessian(max_dim)": ("max_dim", lambda v: hessian.dense_hessian(linear(), CE, DATA, max_dim=v), "int", 6),
    "HessianOperator(model)": ("model", lambda v: operator.HessianOperator(pick(v, linear()), CE, DATA), "object"),
    "loss_and_accuracy(model)": ("model", lambda v: landscape.loss_and_accuracy(pick(v, linear()), CE, DATA), "object"),
    "loss_along(alphas)": ("alphas", lambda v: landscape.loss_along(linear(), CE, DATA, landscape.random_direction(
        linear(), seed=0), pick(v, [0.0, 1.0])), "numbers"),
    "interpolate(state_a)": ("state_a", lambda v: landscape.interpolate(linear(), pick(v, linear().state_dict()),
                                                                          linear().state_dict(), CE, DATA, [0.0, 1.0]),
                             "object"),
    "surface(alphas)": ("alphas", lambda v: landscape.surface(linear(), CE, DATA, landscape.random_direction(linear(), seed=0),
                                                               landscape.random_direction(linear(), seed=1),
                                                               pick(v, [0.0, 1.0]), [0.0, 1.0]), "numbers"),
    "trajectory_pca(snapshots)": ("snapshots", lambda v: landscape.trajectory_pca(
        pick(v, [linear(0).state_dict(), linear(1).state_dict(), linear(2).state_dict()]), linear()), "object"),
    "top_spectrum(k)": ("k", lambda v: spectrum.top_spectrum({"a": linear()}, CE, DATA, k=v), "int"),
    "spectral_density(steps)": ("steps", lambda v: spectrum.spectral_density(linear(), CE, DATA, steps=v, starts=1), "int"),
    "gaussian_density(sigma)": ("sigma", lambda v: spectrum.gaussian_density(torch.zeros(2), torch.ones(2) / 2,
                                                                              torch.zeros(3), v), "number"),
})
# Bad values per kind, and the exception each must raise.
BAD = {
    "number": [("a", ArgumentTypeError), (True, ArgumentTypeError), (None, ArgumentTypeError),
               (math.nan, ValueError), (-1.0, ValueError)],
    "int": [("a", ArgumentTypeError), (True, ArgumentTypeError), (2.5, ArgumentTypeError), (-1, ValueError)],
    "bool": [("no", ArgumentTypeError), (1, ArgumentTypeError), (None, ArgumentTypeError)],
    # A module, an optimizer, a function: none of these is one.
    "object": [("a", ArgumentTypeError), (None, ArgumentTypeError), (3, ArgumentTypeError)],
    "tensor": [("a", ArgumentTypeError), (None, ArgumentTypeError), ([1.0, 2.0], ArgumentTypeError)],
    "tensors": [("a", ArgumentTypeError), (None, ArgumentTypeError), ([1.0, 2.0], ArgumentTypeError)],
    "numbers": [("a", ArgumentTypeError), (3, ArgumentTypeError), (["a"], ArgumentTypeError)],
    "str": [(3, ArgumentTypeError), (None, ArgumentTypeError)],
    "strs": [("a", ArgumentTypeError), (None, ArgumentTypeError), ([3], ArgumentTypeError)],
    "ints": [("a", ArgumentTypeError), (None, ArgumentTypeError), ([1.5], ArgumentTypeError)],
    "path": [(None, ArgumentTypeError), (3, ArgumentTypeError)],
    "optional object": [("a", ArgumentTypeError), (3, ArgumentTypeError)],
    "optional number": [("a", ArgumentTypeError), (True, ArgumentTypeError), (math.nan, ValueError), (-1.0, ValueError)],
    "scalar": [("a", ArgumentTypeError), (None, ArgumentTypeError), ([1.0, 2.0], ArgumentTypeError)],
    "real": [("a", ArgumentTypeError), (True, ArgumentTypeError), (None, ArgumentTypeError), (math.nan, ValueError)],
    # Points or a box of the wrong shape (a string has no (x, y) to read either).
    "box": [("a", ValueError), (3, ValueError), ([(0.0, 1.0, 2.0)], ValueError)],
    # A name from a fixed list.
    "choice": [("nope", ValueError), (3, ValueError)],
}
GOOD_VALUES = {"number": 0.5, "optional number": 0.5, "real": 0.5, "int": 2, "bool": False}
TABLE = [pytest.param(call, name, value, error, id=f"{call}={value!r}")
         for call, (name, _, kind, *_) in CALLS.items() for value, error in BAD[kind]]


@pytest.mark.parametrize("call", sorted(CALLS))
def test_every_call_of_the_table_accepts_a_good_value(call, monkeypatch, tmp_path):
    # The oracle that the table's calls are right: each works with a good value (so that a bad
    # value, not a broken call, is what raises below). Loaders get an empty offline root.
    monkeypatch.setenv("SAM_COURSE_DATA", str(tmp_path))
    name, run, kind = CALLS[call][:3]
    good = CALLS[call][3] if len(CALLS[call]) > 3 else GOOD_VALUES.get(kind, GOOD)
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
    # The value received, or for a list the entry that is wrong (``seeds[0] must be ..., got 1.5``).
    shown = [repr(value)] + ([repr(item) for item in value] if isinstance(value, list) else [])
    assert any(s in message for s in shown) or (value is True and "True" in message), message


# --------------------------------------------------------------------------- every public name has an entry

# Records the package returns (results, registry entries), never built by a user from values of
# their own: nothing to refuse.
RESULT_RECORDS = {"FitResult", "RunData", "RunResult", "RunsSummary", "DatasetTensors", "SAMGradient", "Slice",
                  "Surface", "TrajectoryPlane", "EigenResult", "TraceEstimate", "SpectralDensity", "StepTimes",
                  "PriorChoice", "BoundTerms", "TableInfo", "Profile"}
# Take any value by design: no input is bad.
ANY_VALUE = {"readable_name",  # returns a name that is not snake case unchanged (a tuple, a number)
             "pick"}  # returns one of the values it is given, whatever they are


def public_api(module=sam_course):
    """``{qualified name: object}`` for every name in ``module.__all__``, through every module it lists.

    The qualified name is ``module.name`` with the module's last component (``report.compare``,
    ``planar.grid``); a name re-exported by a package is counted once, under the package.
    """
    names = {}
    for name in getattr(module, "__all__", ()):  # sam_course.examples: scripts, no API
        obj = getattr(module, name)
        if inspect.ismodule(obj):
            if obj.__name__.startswith("sam_course."):
                names.update({k: v for k, v in public_api(obj).items() if all(v is not w for w in names.values())})
            continue
        if all(obj is not w for w in names.values()):
            names[f"{module.__name__.rpartition('.')[2]}.{name}"] = obj
    return names


def needs_an_entry(obj) -> bool:
    """A function or class that takes arguments; not an exception or warning class, not a Protocol."""
    if not (inspect.isfunction(obj) or inspect.isclass(obj)):
        return False  # a constant (FUNCTIONS, COLORS, the named TestFunction instances...)
    if inspect.isclass(obj) and (issubclass(obj, BaseException) or getattr(obj, "_is_protocol", False)):
        return False
    return bool(inspect.signature(obj).parameters)


def test_every_public_callable_has_a_bad_input_entry():
    covered = {call.split("(")[0] for call in CALLS}
    api = public_api()
    short = [q.rpartition(".")[2] for q in api]
    # An entry is labelled by the short name, or by module.name where two modules share it (compare).
    missing = sorted(q for q, obj in api.items() if needs_an_entry(obj) and q.rpartition(".")[2] not in
                     RESULT_RECORDS | ANY_VALUE and q not in covered
                     and not (short.count(q.rpartition(".")[2]) == 1 and q.rpartition(".")[2] in covered))
    assert not missing, f"public names without a bad-input entry in CALLS: {', '.join(missing)}"


def test_the_enumeration_sees_the_subpackages_and_the_exemptions_are_real():
    api = {q.rpartition(".")[2] for q in public_api()}
    assert {"SAM", "SAMStep", "fit", "load_mnist", "run_optimizer", "plot_histories", "gaussian_kl", "glue_number",
            "HessianOperator", "count_parameters"} <= api
    assert RESULT_RECORDS | ANY_VALUE <= api, "an exempted name is no longer public: drop it from the exemptions"
    assert not needs_an_entry(data.DataSourceWarning) and not needs_an_entry(train.Step)
    assert not needs_an_entry(data.data_root) and not needs_an_entry(planar.EASOM)
