"""Tests for sam_course.profiles: the run budgets chosen by SAM_COURSE_PROFILE."""

import dataclasses

import pytest

from sam_course import profiles
from sam_course.profiles import ENV_VAR, Profile, current_profile, describe, pick


@pytest.fixture
def profile_env(monkeypatch):
    """Set (or, with None, unset) SAM_COURSE_PROFILE for one test."""

    def set_profile(value):
        if value is None:
            monkeypatch.delenv(ENV_VAR, raising=False)
        else:
            monkeypatch.setenv(ENV_VAR, value)

    return set_profile


def test_default_is_book(profile_env):
    profile_env(None)
    assert current_profile().name == "book"
    profile_env("")
    assert current_profile().name == "book"


@pytest.mark.parametrize("name", ["ci", "book", "paper"])
def test_each_profile_is_selected(profile_env, name):
    profile_env(name)
    assert current_profile() is profiles.PROFILES[name]
    assert current_profile().name == name


def test_case_and_whitespace_are_ignored(profile_env):
    profile_env("  CI \n")
    assert current_profile().name == "ci"


@pytest.mark.parametrize("bad", ["fast", "c i", "books", "0"])
def test_bad_name_lists_the_allowed_ones(profile_env, bad):
    profile_env(bad)
    with pytest.raises(ValueError) as info:
        current_profile()
    message = str(info.value)
    assert ENV_VAR in message and repr(bad) in message
    for name in ("ci", "book", "paper"):
        assert name in message
    with pytest.raises(ValueError):
        pick(ci=1, book=2)
    with pytest.raises(ValueError):
        describe()


def test_pick_returns_the_value_of_the_current_profile(profile_env):
    for name, expected in [("ci", 1), ("book", 20), ("paper", 200)]:
        profile_env(name)
        assert pick(ci=1, book=20, paper=200) == expected


def test_pick_paper_defaults_to_book(profile_env):
    profile_env("paper")
    assert pick(ci=1, book=20) == 20
    # A falsy paper value is still a value, not "omitted".
    assert pick(ci=1, book=20, paper=0) == 0


def test_pick_is_keyword_only_and_needs_ci_and_book():
    with pytest.raises(TypeError):
        pick(1, 20, 200)  # type: ignore[misc]
    with pytest.raises(TypeError):
        pick(book=20)  # type: ignore[call-arg]


def test_pick_reads_the_environment_on_every_call(profile_env):
    profile_env("ci")
    assert pick(ci="small", book="big") == "small"
    profile_env("book")
    assert pick(ci="small", book="big") == "big"


def test_describe(profile_env):
    profile_env("ci")
    assert describe() == "profile=ci (SAM_COURSE_PROFILE)"
    profile_env(None)
    line = describe()
    assert line.startswith("profile=book (default")
    assert ENV_VAR in line and "\n" not in line


def test_profile_is_frozen():
    profile = profiles.PROFILES["ci"]
    assert isinstance(profile, Profile)
    with pytest.raises(dataclasses.FrozenInstanceError):
        profile.name = "book"  # type: ignore[misc]


def test_budgets_grow_from_ci_to_paper():
    ci, book, paper = (profiles.PROFILES[n] for n in ("ci", "book", "paper"))
    assert ci.seconds_per_chapter < book.seconds_per_chapter
    assert paper.seconds_per_chapter is None
    assert list(profiles.PROFILES) == ["ci", "book", "paper"]
