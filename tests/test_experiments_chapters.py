"""The run configurations of chapters 12-14 moved from notebook cells into sam_course.experiments.

The oracles below are the cells' own definitions as they stood before the move (copied from the
chapters): the package must give equal RunConfigs, so every cached run of those chapters keeps its
cache key (the key hashes the configuration).
"""

import pytest

from sam_course import experiments, train
from sam_course.profiles import ENV_VAR, pick


def chapter12_config(noise_rate=0.0, m=None, seed=0, **changes):
    base = train.RunConfig(
        dataset="fashion_mnist", n_train=pick(ci=256, book=1024, paper=10_000), n_test=pick(ci=200, book=2000, paper=None),
        model="mlp", model_kwargs={"hidden": (256,)}, optimizer="sgd", lr=0.05, momentum=0.9,
        epochs=pick(ci=1, book=20, paper=60), batch_size=32,
    )
    cfg = base.replace(noise_rate=noise_rate, seed=seed, **changes)
    return cfg if m is None else cfg.replace(sam_rho=changes.get("sam_rho", 0.05), msam_m=m)


def chapter13_config(sam_rho=None, epochs=None, seed=0):
    epochs = pick(ci=2, book=40, paper=200) if epochs is None else epochs
    return train.RunConfig(dataset="fashion_mnist", n_train=pick(ci=500, book=4000, paper=None),
                           n_test=pick(ci=200, book=1000, paper=None), model="mlp",
                           model_kwargs={"hidden": pick(ci=(32, 32), book=(256, 256), paper=(512, 512))}, optimizer="sgd",
                           sam_rho=sam_rho, epochs=epochs, batch_size=128, seed=seed, lr=0.05, momentum=0.9)


def chapter14_config(seed=0, **changes):
    fields = dict(dataset="fashion_mnist", n_train=pick(ci=600, book=5000, paper=None),
                  n_test=pick(ci=300, book=2000, paper=None), val_fraction=0.1, model="mlp",
                  model_kwargs={"hidden": (256,)}, optimizer="adam", noise_rate=0.6,
                  epochs=pick(ci=2, book=20, paper=60), batch_size=128, seed=seed, lr=1e-3)
    return train.RunConfig(**{**fields, **changes})


CASES = [
    (experiments.msharpness_run, chapter12_config, {}),
    (experiments.msharpness_run, chapter12_config, {"noise_rate": 0.4, "m": 8, "seed": 1}),
    (experiments.msharpness_run, chapter12_config, {"m": 8, "sam_rho": 0.2}),
    (experiments.msharpness_run, chapter12_config, {"optimizer": "adam", "lr": 1e-3, "momentum": 0.0}),
    (experiments.hessian_run, chapter13_config, {}),
    (experiments.hessian_run, chapter13_config, {"sam_rho": 0.05, "epochs": 3, "seed": 1}),
    (experiments.variants_run, chapter14_config, {}),
    (experiments.variants_run, chapter14_config, {"seed": 1, "sam_rho": 0.05, "sam_every": 5}),
    (experiments.variants_run, chapter14_config, {"sam_rho": 0.05, "sam_every": 5, "sam_variant": "looksam"}),
]


@pytest.mark.parametrize("profile", ["ci", "book", "paper"])
@pytest.mark.parametrize("build, oracle, kwargs", CASES)
def test_chapter_configs_are_the_cells_configs(monkeypatch, profile, build, oracle, kwargs):
    monkeypatch.setenv(ENV_VAR, profile)
    built, expected = build(**kwargs), oracle(**kwargs)
    assert built == expected
    assert train.cache_path(built, "x").name == train.cache_path(expected, "x").name


def test_the_comparison_can_fail(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "book")
    assert experiments.msharpness_run(m=8) != chapter12_config(m=4)
    assert train.cache_path(experiments.variants_run(), "x") != train.cache_path(chapter14_config(seed=1), "x")
