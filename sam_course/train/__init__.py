"""One training loop for every chapter that trains (1, 2, 4, 7, 8, 9, 11-14), and a cache of runs.

Two levels:

:func:`fit`
    trains a given model with a given optimizer, a plain ``torch.optim`` optimizer or one of the
    SAM family (:class:`~sam_course.optim.SAM`, :class:`~sam_course.optim.variants.SAMEveryK`,
    :class:`~sam_course.optim.variants.LookSAM`; m-SAM with ``msam_m``; any per-batch update with
    ``step``), and returns the history as a pandas DataFrame, one row per epoch plus row 0 (before
    training): loss and accuracy on the labels trained on, accuracy on the clean labels of the same
    images, the fraction of corrupted examples predicted as their noisy label (memorization), and
    each evaluation set. It seeds the data order, checkpoints and resumes bit-for-bit, and stops
    early on a clean validation split.
:func:`run`
    builds everything from a :class:`RunConfig` (data, label noise, validation split, model,
    optimizer), calls :func:`fit` and returns a :class:`RunResult` with the history and the final
    and best-epoch weights. Results are cached on disk, keyed by the configuration, so a second
    call (or a rebuild of the book) loads instead of training::

        from sam_course import train
        cfg = train.RunConfig(dataset="mnist", model="mlp", optimizer="adam", lr=1e-3,
                              sam_rho=0.05, noise_rate=0.8, epochs=30, n_train=4000)
        result = train.run(cfg)
        result.history            # one row per epoch

What one ``seed`` controls (:func:`derive_seed` turns it into independent sub-seeds, so that,
e.g., the first epoch's order is not the permutation that chose the corrupted labels): in
:func:`run`, the model's initialization (``"model"``), which labels are corrupted and how
(``"noise"``); in :func:`fit`, the order of the training examples (``"order"``, a private
``torch.Generator``) and any randomness drawn during training from torch's global generator, such as
dropout (``"train"``; the caller's global generator is saved and restored around :func:`fit`).
Which examples form the training subset and the validation split is fixed by
``RunConfig.data_seed`` (default 0), so runs with different seeds see the same images.
On the CPU, the same configuration gives the same weights and history bit for bit.

The package re-exports its submodules' public names:

* :mod:`~sam_course.train.seeds`: :func:`derive_seed`;
* :mod:`~sam_course.train.tensors`: datasets as whole tensors (:func:`as_tensors`);
* :mod:`~sam_course.train.evaluation`: :func:`evaluate`;
* :mod:`~sam_course.train.steps`: the per-batch updates :func:`fit` plugs in (:data:`Step`);
* :mod:`~sam_course.train.loop`: :func:`fit`, :class:`FitResult`;
* :mod:`~sam_course.train.checkpoint`: checkpoints and atomic writes;
* :mod:`~sam_course.train.config`: :class:`RunConfig` and the names it accepts;
* :mod:`~sam_course.train.build`: data, model, optimizer and schedule of a configuration;
* :mod:`~sam_course.train.cache`: :func:`run`, :class:`RunResult` and the cache key;
* :mod:`~sam_course.train.tables`: :func:`results_table`, :func:`summarize`, :func:`runs_summary`.

``train.CACHE_VERSION`` and ``train.DATASETS`` are the objects of :mod:`~sam_course.train.cache`
and :mod:`~sam_course.train.config`: ``train.DATASETS`` may be updated in place (tests serve a
small MNIST that way), but rebinding a name must happen in the submodule that reads it
(``train.cache.CACHE_VERSION``, ``train.cache.fit``).
"""

from .build import RunData, build_data, build_model, build_optimizer, build_scheduler
from .cache import CACHE_ENV_VAR, CACHE_VERSION, RunResult, cache_dir, cache_key, cache_path, run, run_seeds
from .config import DATASETS, MODELS, SAM_VARIANTS, RunConfig
from .evaluation import evaluate
from .loop import FitResult, fit
from .seeds import derive_seed
from .steps import MSAMStep, Step, optimizer_step
from .tables import RunsSummary, results_table, runs_summary, summarize
from .tensors import DatasetTensors, as_tensors

__all__ = [
    "CACHE_VERSION",
    "CACHE_ENV_VAR",
    "DATASETS",
    "MODELS",
    "SAM_VARIANTS",
    "RunConfig",
    "RunData",
    "RunResult",
    "FitResult",
    "Step",
    "optimizer_step",
    "MSAMStep",
    "fit",
    "evaluate",
    "run",
    "run_seeds",
    "results_table",
    "summarize",
    "RunsSummary",
    "runs_summary",
    "build_data",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "derive_seed",
    "DatasetTensors",
    "as_tensors",
    "cache_dir",
    "cache_key",
    "cache_path",
]
