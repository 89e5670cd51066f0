"""sam_course.train.run and its cache, RunConfig and the builders, against oracles: a second call
that must not train, the recorded accuracy reproduced by the rebuilt model, the hash of the
documented key fields, hand counts of the validation split, and mean/std by hand."""

import dataclasses
import math

import pandas as pd
import pytest
import torch
from helpers import assert_states_equal, state

from sam_course import train
from sam_course.noise import NoisyLabels
from sam_course.optim import SAM
from sam_course.optim.variants import SAMEveryK

# --------------------------------------------------------------------------- run and its cache


def tiny_config(**changes):
    fields = dict(dataset="mnist", n_train=100, n_test=50, model="mlp", model_kwargs={"hidden": (16,)},
                  optimizer="adam", lr=1e-3, epochs=1, batch_size=50, seed=0)
    return train.RunConfig(**{**fields, **changes})


def test_run_is_cached_and_a_second_call_does_not_train(fast_loader, monkeypatch):
    cfg = tiny_config(sam_rho=0.05, noise_rate=0.5, val_fraction=0.2)
    first = train.run(cfg, progress=False, verbose=False)
    assert not first.from_cache and first.path.exists() and first.path.parent == fast_loader
    assert [p.name for p in fast_loader.iterdir()] == [first.path.name]  # no checkpoint, no temp file

    def no_training(*args, **kwargs):
        raise AssertionError("fit was called")

    monkeypatch.setattr(train.cache, "fit", no_training)  # the name run() calls
    second = train.run(cfg, progress=False, verbose=False)
    assert second.from_cache
    pd.testing.assert_frame_equal(first.history, second.history)
    assert_states_equal(first.state_dict, second.state_dict)
    assert_states_equal(first.best_state_dict, second.best_state_dict)
    assert (second.best_epoch, second.final_test_acc, second.best_test_acc) == (
        first.best_epoch, first.final_test_acc, first.best_test_acc)
    assert second.source == first.source and second.is_standin is False
    # The rebuilt model reproduces the recorded test accuracy.
    test = train.build_data(cfg, verbose=False).test
    assert train.evaluate(second.model(), test)["acc"] == second.final_test_acc
    with pytest.raises(AssertionError, match="fit was called"):
        train.run(cfg, cache=False, progress=False, verbose=False)


def test_run_records_the_best_epoch_and_its_test_accuracy(fast_loader):
    result = train.run(tiny_config(epochs=3, val_fraction=0.2, noise_rate=0.5), progress=False, verbose=False)
    h = result.history
    assert result.best_epoch == int(h["val_acc"].idxmax())
    assert result.best_test_acc == h["test_acc"][result.best_epoch]
    assert result.final_test_acc == h["test_acc"].iloc[-1]
    assert result.label == "Adam" and result.train_seconds > 0


ALTERNATIVES = dict(
    dataset="fashion_mnist", n_train=90, n_test=40, data_seed=1, val_fraction=0.1, model="cnn",
    model_kwargs={"hidden": (8,)}, optimizer="adagrad", lr=2e-3, momentum=0.5, weight_decay=1e-4,
    lr_schedule="cosine", sam_rho=0.1, sam_p=math.inf, sam_adaptive=True, msam_m=10, sam_every=2, sam_variant="looksam",
    looksam_alpha=0.2, noise_rate=0.2, noise_kind="class_map", epochs=2, batch_size=10, patience=2, seed=1,
)


def test_every_config_field_changes_the_cache_key(monkeypatch, tmp_path):
    monkeypatch.setenv(train.CACHE_ENV_VAR, str(tmp_path))
    base = tiny_config(optimizer="sgd", lr=0.1, sam_rho=0.05, val_fraction=0.2)
    assert set(ALTERNATIVES) == {f.name for f in dataclasses.fields(train.RunConfig)}
    paths = {train.cache_path(base, "src")}
    for name, value in ALTERNATIVES.items():
        changes = {name: value, **({"model_kwargs": {}} if name == "model" else {})}
        if name == "looksam_alpha":  # only LookSAM has an alpha; compared with sam_variant's own key below
            changes["sam_variant"] = "looksam"
        paths.add(train.cache_path(base.replace(**changes), "src"))
    paths.add(train.cache_path(base, "STAND-IN src"))
    # Equal values spelled differently are the same run.
    assert train.cache_path(base.replace(lr=1e-1, sam_rho=5e-2, momentum=0), "src") == train.cache_path(base, "src")
    assert train.cache_path(tiny_config(sam_rho=0), "src") == train.cache_path(tiny_config(sam_rho=None), "src")
    monkeypatch.setattr(train.cache, "CACHE_VERSION", train.CACHE_VERSION + 1)  # the name cache_key reads
    paths.add(train.cache_path(base, "src"))
    assert len(paths) == len(ALTERNATIVES) + 3
    assert all(p.parent == tmp_path for p in paths)


@pytest.mark.parametrize("field, value", [
    ("dataset", "imagenet"), ("model", "vit"), ("optimizer", "rmsprop"), ("noise_kind", "pairflip"),
    ("lr_schedule", "step"), ("lr", 0.0), ("lr", float("nan")), ("momentum", 1.0), ("weight_decay", -1.0),
    ("sam_rho", -0.1), ("sam_p", 0.5), ("sam_adaptive", 1), ("noise_rate", 1.0), ("val_fraction", 1.0),
    ("epochs", 0), ("batch_size", 2.5), ("n_train", 0), ("seed", -1), ("data_seed", True),
    ("patience", 2), ("msam_m", 7), ("sam_every", 0), ("sam_every", 2), ("model_kwargs", {"depth": 8}),
    ("sam_variant", "gsam"), ("sam_variant", "looksam"), ("looksam_alpha", 0.2), ("looksam_alpha", -1.0),
])
def test_bad_config_values_raise_naming_the_field(field, value):
    # msam_m=7 fails with SAM on (7 does not divide 128); sam_every=2 and sam_variant='looksam'
    # fail with SAM off.
    with pytest.raises(ValueError, match=rf"RunConfig\.{field}"):
        train.RunConfig(**{field: value, **({"sam_rho": 0.05} if field == "msam_m" else {})})


def test_default_sam_variant_leaves_the_cache_key_of_older_runs_unchanged():
    """The key of a run with sam_variant='sam' is the key computed before the LookSAM fields existed."""
    import hashlib
    import json

    cfg = tiny_config(sam_rho=0.05, sam_every=2)
    fields = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("sam_variant", "looksam_alpha")}
    text = json.dumps({"config": fields, "cache_version": train.CACHE_VERSION, "source": "src"}, sort_keys=True)
    assert train.cache_path(cfg, "src").stem.endswith(hashlib.sha256(text.encode()).hexdigest()[:20])
    look = cfg.replace(sam_variant="looksam")
    assert train.cache_path(look, "src") != train.cache_path(cfg, "src")
    assert train.cache_path(look.replace(looksam_alpha=0.2), "src") != train.cache_path(look, "src")


def test_config_error_lists_the_allowed_values():
    with pytest.raises(ValueError, match="'mnist', 'fashion_mnist', 'cifar10'"):
        train.RunConfig(dataset="MNIST")


def test_build_data_holds_out_a_clean_balanced_validation_split(fast_loader):
    cfg = tiny_config(n_train=200, val_fraction=0.1, noise_rate=0.5)
    parts = train.build_data(cfg, verbose=False)
    assert isinstance(parts.train, NoisyLabels) and parts.train.rate == 0.5
    assert torch.equal(torch.bincount(parts.val.targets, minlength=10), torch.full((10,), 2))
    assert len(parts.train) + len(parts.val) == 200
    # Validation images are not training images, and the split ignores the run's seed.
    train_rows = {tuple(x.flatten()[::7].tolist()) for x in parts.train.dataset.data}
    assert not any(tuple(x.flatten()[::7].tolist()) in train_rows for x in parts.val.data)
    again = train.build_data(cfg.replace(seed=5), verbose=False)
    assert torch.equal(again.val.data, parts.val.data)
    assert not torch.equal(again.train.targets, parts.train.targets)  # the noise does follow the seed


def test_build_model_is_seeded_and_leaves_the_global_generator_alone():
    cfg = tiny_config()
    outside = torch.get_rng_state()
    a, b = (train.build_model(cfg, (1, 28, 28), 10) for _ in range(2))
    c = train.build_model(cfg.replace(seed=1), (1, 28, 28), 10)
    assert torch.equal(torch.get_rng_state(), outside)
    assert_states_equal(state(a), state(b))
    assert not torch.equal(a.net[1].weight, c.net[1].weight)


def fake_result(seed, label_rho, test_acc):
    cfg = tiny_config(seed=seed, sam_rho=label_rho)
    history = pd.DataFrame({"epoch": [0, 1], "train_acc": [0.1, 0.9], "train_clean_acc": [0.1, 0.9],
                            "train_memorized": [math.nan] * 2, "test_acc": [0.1, test_acc], "seconds": [0.0, 1.0]})
    return train.RunResult(cfg, history, None, test_acc, None, False, "src", False, (1, 28, 28), 10, {}, None)


def test_summarize_gives_mean_and_sample_std_per_configuration():
    results = [fake_result(s, rho, acc) for s, (rho, acc) in
               enumerate([(None, 0.5), (None, 0.7), (None, 0.9), (0.05, 0.8), (0.05, 0.6)])]
    table = train.summarize(results).set_index("label")
    assert table.loc["Adam", "final_test_acc_mean"] == pytest.approx(0.7)
    assert table.loc["Adam", "final_test_acc_std"] == pytest.approx(0.2)
    assert table.loc["SAM-Adam", "final_test_acc_std"] == pytest.approx(math.sqrt(0.02))
    assert list(table["n"]) == [3, 2]
    assert "sam_rho" in table.columns  # the field that varies is part of the grouping


def test_msam_runs_get_a_new_key_and_other_runs_keep_theirs():
    """m-SAM runs trained before the low-rank m-SAM gradient are not reused; plain runs are."""
    import hashlib
    import json

    def old_key(cfg):
        fields = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("sam_variant", "looksam_alpha")}
        text = json.dumps({"config": fields, "cache_version": train.CACHE_VERSION, "source": "src"}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    plain = tiny_config(sam_rho=0.05)
    msam = plain.replace(msam_m=5)
    assert train.cache_path(plain, "src").stem.endswith(old_key(plain))
    assert not train.cache_path(msam, "src").stem.endswith(old_key(msam))


def test_build_optimizer_follows_sam_every_and_the_base_optimizer_registry():
    model = train.build_model(tiny_config(), (1, 28, 28), 10)
    plain = train.build_optimizer(tiny_config(optimizer="sgd", lr=0.2, momentum=0.5), model)
    assert type(plain) is torch.optim.SGD and plain.param_groups[0]["momentum"] == 0.5
    sam = train.build_optimizer(tiny_config(sam_rho=0.05), model)
    assert type(sam) is SAM and type(sam.base_optimizer) is torch.optim.Adam
    every = train.build_optimizer(tiny_config(optimizer="adagrad", lr=0.01, sam_rho=0.1, sam_every=3, sam_p=1.0), model)
    assert type(every) is SAMEveryK and every.k == 3 and type(every.base_optimizer) is torch.optim.Adagrad
    group = every.param_groups[0]
    assert (group["rho"], group["p"], group["lr"]) == (0.1, 1.0, 0.01)
    assert tiny_config(optimizer="adagrad", lr=0.01).label == "Adagrad"


def test_runs_summary_counts_cached_runs_and_training_minutes(fast_loader):
    cfg = train.RunConfig(dataset="mnist", n_train=64, n_test=32, model="mlp", model_kwargs={"hidden": (8,)},
                          epochs=1, batch_size=32)
    first = train.run_seeds(cfg, [0, 1], progress=False, verbose=False)
    again = train.run_seeds(cfg, [0, 1, 2], progress=False, verbose=False)
    summary = train.runs_summary(again, wall_seconds=2.4)
    assert (summary.n_runs, summary.n_cached) == (3, 2)
    expected = sum(float(r.history["seconds"].sum() + r.history["eval_seconds"].sum()) for r in again) / 60
    assert summary.trained_minutes == pytest.approx(expected)
    assert summary.text("ci") == (f"ci | 3 runs, 2 loaded from the cache, 2 s in this cell; {expected:.1f} min of training "
                                  "and evaluation when they were trained (wall time on the machine that trained them)")
    assert train.runs_summary(first, 0.0).n_cached == 0
