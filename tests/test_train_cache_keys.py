"""The run cache keeps its keys: the file names of representative runs, frozen.

A cached run is found again only if its key (a hash of the RunConfig, the cache version and the
data source; module paths are not part of it) is unchanged. The digests below were computed on the
pre-restructuring code (sam_course/train as one 1,183-line module, before SAMEveryK replaced
fit's ``sam_every`` argument), with ``train.cache_path(cfg, source).name``. A change that alters one
of them makes every book build retrain that run: bump ``train.CACHE_VERSION`` deliberately instead.
"""

import pytest

from sam_course import experiments, train
from sam_course.profiles import ENV_VAR


def config(name: str) -> train.RunConfig:
    """The representative runs: each canonical run of experiments, m-SAM, SAM every k, LookSAM."""
    e = experiments
    return {
        "mnist_mlp": lambda: e.mnist_mlp(),
        "mnist_mlp_sam": lambda: e.mnist_mlp(sam_rho=e.SAM_RHO),
        "mnist_mlp_sgd_sam_seed1": lambda: e.mnist_mlp("sgd", 0.1, seed=1),
        "cifar_cnn": lambda: e.cifar_cnn(),
        "cifar_cnn_sam": lambda: e.cifar_cnn(sam_rho=e.SAM_RHO),
        "cifar_resnet_sam": lambda: e.cifar_resnet(sam_rho=e.SAM_RHO, seed=2),
        "label_noise_run": lambda: e.label_noise_run(0.8),
        "label_noise_run_sam": lambda: e.label_noise_run(0.4, 0.1, seed=1),
        "msam": lambda: e.mnist_mlp(sam_rho=e.SAM_RHO).replace(msam_m=16),
        "sam_every": lambda: e.cifar_cnn(sam_rho=e.SAM_RHO).replace(sam_every=5),
        "msam_sam_every": lambda: e.mnist_mlp(sam_rho=e.SAM_RHO).replace(msam_m=16, sam_every=2),
        "looksam": lambda: e.cifar_cnn(sam_rho=e.SAM_RHO).replace(sam_every=5, sam_variant="looksam"),
        "looksam_alpha": lambda: e.cifar_cnn(sam_rho=e.SAM_RHO).replace(sam_every=2, sam_variant="looksam",
                                                                         looksam_alpha=0.2),
        "asam_pinf_cosine": lambda: train.RunConfig(
            dataset="fashion_mnist", n_train=90, n_test=40, data_seed=1, model="cnn",
            model_kwargs={"width": 8, "batch_norm": True}, optimizer="adagrad", lr=2e-3, weight_decay=1e-4,
            lr_schedule="cosine", sam_rho=0.1, sam_p=float("inf"), sam_adaptive=True, noise_rate=0.2,
            noise_kind="class_map", epochs=2, batch_size=10, seed=1),
    }[name]()


#: (profile, run, data source) -> cache file name, computed on the pre-restructuring code.
FROZEN_NAMES = {
    ("ci", "mnist_mlp", "src"): "mnist-mlp-Adam-3dca97d035d86f6d94a6.pt",
    ("ci", "mnist_mlp", "STAND-IN src"): "mnist-mlp-Adam-bd25bca4f39fddc1a683.pt",
    ("ci", "mnist_mlp_sam", "src"): "mnist-mlp-SAM-Adam-e83c6c97de7a79a5138f.pt",
    ("ci", "mnist_mlp_sam", "STAND-IN src"): "mnist-mlp-SAM-Adam-9e9453cf5a39636a377d.pt",
    ("ci", "mnist_mlp_sgd_sam_seed1", "src"): "mnist-mlp-SAM-SGD-fac6cc42779275fd3fba.pt",
    ("ci", "mnist_mlp_sgd_sam_seed1", "STAND-IN src"): "mnist-mlp-SAM-SGD-a2afbd18675bf25c3ed7.pt",
    ("ci", "cifar_cnn", "src"): "cifar10-cnn-Adam-8843e9c4b983e71984a2.pt",
    ("ci", "cifar_cnn", "STAND-IN src"): "cifar10-cnn-Adam-6bf8086f9be2b171173a.pt",
    ("ci", "cifar_cnn_sam", "src"): "cifar10-cnn-SAM-Adam-a595778876d9c90aa2fb.pt",
    ("ci", "cifar_cnn_sam", "STAND-IN src"): "cifar10-cnn-SAM-Adam-874ee1ab02a4423267dc.pt",
    ("ci", "cifar_resnet_sam", "src"): "cifar10-resnet-SAM-Adam-5a81ce2d4c0288e4a71c.pt",
    ("ci", "cifar_resnet_sam", "STAND-IN src"): "cifar10-resnet-SAM-Adam-fd1afef1491775248d4a.pt",
    ("ci", "label_noise_run", "src"): "fashion_mnist-mlp-SGD-a5c01034ae773f764624.pt",
    ("ci", "label_noise_run", "STAND-IN src"): "fashion_mnist-mlp-SGD-63ce09198194a8d8e867.pt",
    ("ci", "label_noise_run_sam", "src"): "fashion_mnist-mlp-SAM-SGD-6bd42251cef098b8a158.pt",
    ("ci", "label_noise_run_sam", "STAND-IN src"): "fashion_mnist-mlp-SAM-SGD-1a48aca01cccd4610905.pt",
    ("ci", "msam", "src"): "mnist-mlp-SAM-Adam-a8ef6a288de057e5107a.pt",
    ("ci", "msam", "STAND-IN src"): "mnist-mlp-SAM-Adam-84a7d86c87e47e5a4b99.pt",
    ("ci", "sam_every", "src"): "cifar10-cnn-SAM-Adam-d7d5118c21e0a63d4ea6.pt",
    ("ci", "sam_every", "STAND-IN src"): "cifar10-cnn-SAM-Adam-94ce347afd380d289d76.pt",
    ("ci", "msam_sam_every", "src"): "mnist-mlp-SAM-Adam-64589691c52339fdbe1b.pt",
    ("ci", "msam_sam_every", "STAND-IN src"): "mnist-mlp-SAM-Adam-5e73ba0e187d82e0fbe2.pt",
    ("ci", "looksam", "src"): "cifar10-cnn-SAM-Adam-be92c56f79bcebbfa94a.pt",
    ("ci", "looksam", "STAND-IN src"): "cifar10-cnn-SAM-Adam-13c709afeed5ae0986bf.pt",
    ("ci", "looksam_alpha", "src"): "cifar10-cnn-SAM-Adam-3caee0b68ea7aa73252f.pt",
    ("ci", "looksam_alpha", "STAND-IN src"): "cifar10-cnn-SAM-Adam-6b3f1fe9baec449c2ec5.pt",
    ("ci", "asam_pinf_cosine", "src"): "fashion_mnist-cnn-SAM-Adagrad-d43acb1745ccff795e05.pt",
    ("ci", "asam_pinf_cosine", "STAND-IN src"): "fashion_mnist-cnn-SAM-Adagrad-437d78d3a083a25d0de8.pt",
    ("book", "mnist_mlp", "src"): "mnist-mlp-Adam-05c9cc1209352c5e5b0e.pt",
    ("book", "mnist_mlp", "STAND-IN src"): "mnist-mlp-Adam-13950073379208ad5eec.pt",
    ("book", "mnist_mlp_sam", "src"): "mnist-mlp-SAM-Adam-5ee78e2e36513dbe32e3.pt",
    ("book", "mnist_mlp_sam", "STAND-IN src"): "mnist-mlp-SAM-Adam-31e2a8c17c7473c776eb.pt",
    ("book", "mnist_mlp_sgd_sam_seed1", "src"): "mnist-mlp-SAM-SGD-ff56879dcfcb5624c94e.pt",
    ("book", "mnist_mlp_sgd_sam_seed1", "STAND-IN src"): "mnist-mlp-SAM-SGD-2a6cd63fe9803f5d239d.pt",
    ("book", "cifar_cnn", "src"): "cifar10-cnn-Adam-b14ed12b90e19c538f34.pt",
    ("book", "cifar_cnn", "STAND-IN src"): "cifar10-cnn-Adam-baae6bbdb251f0eb2ca8.pt",
    ("book", "cifar_cnn_sam", "src"): "cifar10-cnn-SAM-Adam-9750c4ad57d8e728f582.pt",
    ("book", "cifar_cnn_sam", "STAND-IN src"): "cifar10-cnn-SAM-Adam-7dcae6c2212ce677d9ac.pt",
    ("book", "cifar_resnet_sam", "src"): "cifar10-resnet-SAM-Adam-c19353159a33118c35e2.pt",
    ("book", "cifar_resnet_sam", "STAND-IN src"): "cifar10-resnet-SAM-Adam-192fb60af843b17898ca.pt",
    ("book", "label_noise_run", "src"): "fashion_mnist-mlp-SGD-9a2439e441407fea0bd3.pt",
    ("book", "label_noise_run", "STAND-IN src"): "fashion_mnist-mlp-SGD-d7d660a4f09a4de250d8.pt",
    ("book", "label_noise_run_sam", "src"): "fashion_mnist-mlp-SAM-SGD-8e5aa105a8e5258b0114.pt",
    ("book", "label_noise_run_sam", "STAND-IN src"): "fashion_mnist-mlp-SAM-SGD-7e543aa10311452d1646.pt",
    ("book", "msam", "src"): "mnist-mlp-SAM-Adam-bf83e4c55de1be9fd38a.pt",
    ("book", "msam", "STAND-IN src"): "mnist-mlp-SAM-Adam-dcccdc571576f9fb9793.pt",
    ("book", "sam_every", "src"): "cifar10-cnn-SAM-Adam-9a645e17a7d46c054198.pt",
    ("book", "sam_every", "STAND-IN src"): "cifar10-cnn-SAM-Adam-24dcd95ea888576ed3a6.pt",
    ("book", "msam_sam_every", "src"): "mnist-mlp-SAM-Adam-7850724c97d01a57b539.pt",
    ("book", "msam_sam_every", "STAND-IN src"): "mnist-mlp-SAM-Adam-30c53419414b7c0b25e2.pt",
    ("book", "looksam", "src"): "cifar10-cnn-SAM-Adam-dd4a82394c33d4ef0115.pt",
    ("book", "looksam", "STAND-IN src"): "cifar10-cnn-SAM-Adam-956b865fff3e8c890e6b.pt",
    ("book", "looksam_alpha", "src"): "cifar10-cnn-SAM-Adam-f9250dfbb74ef7606346.pt",
    ("book", "looksam_alpha", "STAND-IN src"): "cifar10-cnn-SAM-Adam-caeed7f58e337fda75d1.pt",
    ("book", "asam_pinf_cosine", "src"): "fashion_mnist-cnn-SAM-Adagrad-d43acb1745ccff795e05.pt",
    ("book", "asam_pinf_cosine", "STAND-IN src"): "fashion_mnist-cnn-SAM-Adagrad-437d78d3a083a25d0de8.pt",
}


@pytest.mark.parametrize("profile, name, source", sorted(FROZEN_NAMES))
def test_cache_file_names_are_those_of_the_pre_restructuring_code(monkeypatch, profile, name, source):
    monkeypatch.setenv(ENV_VAR, profile)
    cfg = config(name)
    expected = FROZEN_NAMES[profile, name, source]
    assert train.cache_path(cfg, source).name == expected
    assert expected.endswith(f"-{train.cache_key(cfg, source)}.pt")


def test_the_frozen_names_cover_distinct_runs():
    """Every representative run has its own key (a test of the table itself: no copy-paste duplicates)."""
    assert len(set(FROZEN_NAMES.values())) == len(FROZEN_NAMES) - 2  # asam_pinf_cosine ignores the profile
    assert {name for _, name, _ in FROZEN_NAMES} >= {"mnist_mlp", "cifar_cnn", "label_noise_run", "msam",
                                                      "sam_every", "looksam"}
