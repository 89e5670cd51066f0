"""What one run ``seed`` controls: independent sub-seeds, one per use (chapters 7-14).

A run's single ``seed`` decides several unrelated random choices: the model's initialization, which
labels are corrupted, the order of the training examples, the randomness drawn during training
(dropout). Using the seed itself for all of them would couple them (the first epoch's order would
be the permutation that chose the corrupted labels), so each use draws from its own stream.
"""

from __future__ import annotations

import hashlib

from .._checks import check_instance, check_int

__all__ = ["derive_seed"]


def derive_seed(seed: int, stream: str) -> int:
    """An independent seed in ``[0, 2**63)`` for one use (``stream``) of a run's ``seed``.

    The first 63 bits of ``sha256("sam_course:{stream}:{seed}")``: stable across processes and
    machines, and unrelated between streams. Streams used by :mod:`sam_course.train`:
    ``"model"`` (initialization), ``"noise"`` (label noise), ``"order"`` (data order), ``"train"``
    (torch's global generator during training) and ``"val"`` (the validation split, from
    ``RunConfig.data_seed``).

    Raises:
        ValueError: if ``seed`` is not an int >= 0.
    """
    check_int("seed", seed, low=0)
    check_instance("stream", stream, str)
    digest = hashlib.sha256(f"sam_course:{stream}:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1
