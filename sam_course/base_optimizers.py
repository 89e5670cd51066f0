"""The one registry of base optimizers the course names: key, class and display name.

``RunConfig(optimizer="sgd")`` (chapters 7-14), the planar runners' labels ``"SGD"`` and
``"SAM-Adagrad"`` (chapters 1 and 6) and the plots' colours all read it, so a base optimizer
added here is known everywhere at once. Imports torch only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch

from ._checks import check_instance, wrong_kind

__all__ = ["BaseOptimizer", "BASE_OPTIMIZERS", "base_optimizer", "display_names"]


@dataclass(frozen=True)
class BaseOptimizer:
    """A base optimizer the course names: its ``torch.optim`` class and how figures label it."""

    cls: type[torch.optim.Optimizer]
    display: str

    def __post_init__(self) -> None:
        if not (isinstance(self.cls, type) and issubclass(self.cls, torch.optim.Optimizer)):
            raise wrong_kind("cls", self.cls, "torch.optim.Optimizer subclass")
        check_instance("display", self.display, str)


#: Keys (lower case, as in ``RunConfig.optimizer``) to base optimizers, in the order figures use.
BASE_OPTIMIZERS: Mapping[str, BaseOptimizer] = MappingProxyType({
    "sgd": BaseOptimizer(torch.optim.SGD, "SGD"),
    "adam": BaseOptimizer(torch.optim.Adam, "Adam"),
    "adagrad": BaseOptimizer(torch.optim.Adagrad, "Adagrad"),
})


def base_optimizer(name: str, *, argument: str = "optimizer") -> BaseOptimizer:
    """The entry for ``name``, given as its key (``"sgd"``) or display name (``"SGD"``).

    Raises:
        ValueError: naming ``argument``, the allowed names and the value received.
    """
    for key, entry in BASE_OPTIMIZERS.items():
        if name == key or name == entry.display:
            return entry
    allowed = ", ".join(repr(k) for k in BASE_OPTIMIZERS)
    raise ValueError(f"{argument} must be one of {allowed} (or their display names), got {name!r}")


def display_names() -> tuple[str, ...]:
    """The display names (``"SGD"``, ``"Adam"``, ``"Adagrad"``), in registry order."""
    return tuple(entry.display for entry in BASE_OPTIMIZERS.values())
