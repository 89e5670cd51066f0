"""Run budgets: how much compute a chapter spends, chosen by ``SAM_COURSE_PROFILE``.

Every chapter of the course runs in one of three profiles, read from the environment variable
``SAM_COURSE_PROFILE`` (chapter "How to use this book"):

``ci``
    Seconds per chapter. Used by the tests (nbval) and by the continuous-integration build of the
    book: it checks that every cell runs, not that the numbers mean anything.
``book`` (the default)
    The budget of the rendered book: the whole build stays under an hour on 2 CPU cores.
``paper``
    Long runs meant for a GPU, as close to the paper's settings as the chapter allows.

A chapter asks for its budget with :func:`pick` and prints :func:`describe` next to each result::

    from sam_course.profiles import pick, describe

    epochs = pick(ci=1, book=20, paper=200)
    print(describe())  # profile=book (default; set SAM_COURSE_PROFILE to ci, book or paper)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["ENV_VAR", "PROFILES", "DEFAULT_PROFILE", "Profile", "current_profile", "pick", "describe"]

T = TypeVar("T")

#: The environment variable that selects the profile.
ENV_VAR = "SAM_COURSE_PROFILE"


@dataclass(frozen=True)
class Profile:
    """One run budget.

    Attributes:
        name: ``"ci"``, ``"book"`` or ``"paper"``.
        summary: what the profile is for, in one sentence.
        seconds_per_chapter: the wall-clock time a chapter aims for on 2 CPU cores
            (``None`` for ``paper``, which is meant for a GPU and has no cap).
    """

    name: str
    summary: str
    seconds_per_chapter: float | None


#: The profiles, by name, in increasing order of cost.
PROFILES: dict[str, Profile] = {
    "ci": Profile("ci", "smoke test: every cell runs in seconds, numbers are not meaningful", 60.0),
    "book": Profile("book", "the rendered book: whole build under an hour on 2 CPU cores", 600.0),
    "paper": Profile("paper", "long runs close to the paper's settings, meant for a GPU", None),
}

#: The profile used when ``SAM_COURSE_PROFILE`` is unset or empty.
DEFAULT_PROFILE = "book"


def _requested_name() -> str | None:
    """The profile name set in the environment, normalized, or ``None`` when unset or empty."""
    raw = os.environ.get(ENV_VAR, "").strip().lower()
    return raw or None


def current_profile() -> Profile:
    """The profile selected by ``SAM_COURSE_PROFILE`` (``book`` when unset or empty).

    The variable is read on every call, so a notebook can change it with ``os.environ``.
    Case and surrounding white space are ignored.

    Raises:
        ValueError: when the variable names no profile; the message lists the allowed names.
    """
    name = _requested_name() or DEFAULT_PROFILE
    try:
        return PROFILES[name]
    except KeyError:
        allowed = ", ".join(PROFILES)
        raise ValueError(
            f"{ENV_VAR}={os.environ.get(ENV_VAR)!r} is not a profile; allowed: {allowed} "
            f"(unset means {DEFAULT_PROFILE!r})"
        ) from None


def pick(*, ci: T, book: T, paper: T | None = None) -> T:
    """The value for the current profile: ``pick(ci=1, book=20, paper=200)``.

    Args:
        ci: value under the ``ci`` profile (tests: seconds per chapter).
        book: value under the ``book`` profile (the rendered book).
        paper: value under the ``paper`` profile; defaults to ``book``'s value when omitted.

    Returns:
        The argument named after :func:`current_profile`.

    Raises:
        ValueError: when ``SAM_COURSE_PROFILE`` names no profile.
    """
    values = {"ci": ci, "book": book, "paper": book if paper is None else paper}
    return values[current_profile().name]


def describe() -> str:
    """A one-line description of the budget in force, to print next to each result.

    For example ``"profile=ci (SAM_COURSE_PROFILE)"`` when the variable is set, or
    ``"profile=book (default; set SAM_COURSE_PROFILE to ci, book or paper)"`` when it is not.
    """
    profile = current_profile()
    if _requested_name() is None:
        names = ", ".join(list(PROFILES)[:-1]) + " or " + list(PROFILES)[-1]
        return f"profile={profile.name} (default; set {ENV_VAR} to {names})"
    return f"profile={profile.name} ({ENV_VAR})"
