"""Sphinx extension: napoleon reads no type out of prose before a colon.

Google-style docstrings put a type before a colon in two places, and napoleon splits there:

- the first line of a constant's or attribute's docstring: ``EASOM``'s docstring starting
  ``"Easom: -cos x cos y ..."`` became the type ``Easom`` followed by the rest;
- the first line of a ``Returns:`` section: ``"A DataFrame with one row per epoch, row 0 before
  training: ``epoch``, ..."`` became a return type made of that sentence.

Such "types" are unresolvable cross-references, so the strict build (-n -W) failed, and the
rendered text lost its first words. In this project types come from annotations (autodoc shows
them), so this extension keeps a constant's first line as plain text, and a Returns line's text
before the colon is taken as a type only when it looks like one (at most three identifiers outside
brackets, not starting with an article: ``int``, ``list[Tensor]``, ``int or None``); otherwise the
line stays prose. Napoleon is
otherwise unchanged. Loaded from _config.yml (sphinx.local_extensions); written against Sphinx
7.4 (pinned in requirements.txt).
"""

from __future__ import annotations

import re

from sphinx.ext.napoleon import docstring

_BRACKETED = re.compile(r"\[[^\]]*\]|\([^)]*\)|``[^`]*``")
_MAX_TYPE_WORDS = 3


_ARTICLES = {"a", "an", "the", "one", "each", "every", "its", "their"}
_TYPE_WORD = re.compile(r"^[A-Za-z_][\w.]*,?$")


def looks_like_prose(text: str) -> bool:
    """True when `text` (before a colon) reads as a sentence rather than a type.

    A type here is at most three words outside brackets, each a (dotted) identifier, the first
    not an article: ``int``, ``list[Tensor]``, ``int or None``, ``torch.Tensor``.
    """
    words = _BRACKETED.sub("", text).split()
    return (len(words) > _MAX_TYPE_WORDS or (bool(words) and words[0].lower() in _ARTICLES)
            or not all(_TYPE_WORD.match(w) for w in words))


def _consume_inline_attribute(self) -> tuple[str, list[str]]:
    """Like napoleon's, but the whole first line is description: no type."""
    line = self._lines.next()
    descs = [line, *self._dedent(self._consume_to_end())]
    return "", self.__class__(descs, self._config).lines()


# napoleon's own method (also when this module is loaded twice in one process).
_original_returns = getattr(docstring.GoogleDocstring._consume_returns_section, "napoleon_original",
                            docstring.GoogleDocstring._consume_returns_section)


def _consume_returns_section(self, preprocess_types: bool = False):
    """Like napoleon's, but a long sentence before the first colon is not a type."""
    raw = self._consume_to_next_section()
    lines = self._dedent(raw)
    if lines:
        before, colon, _ = self._partition_field_on_colon(lines[0])
        if colon and looks_like_prose(before):
            return [("", "", self.__class__(lines, self._config).lines())]
    # Otherwise napoleon's own parsing, on the very same lines.
    self._lines = docstring.Deque([*raw, *self._lines])
    return _original_returns(self, preprocess_types)


_consume_returns_section.napoleon_original = _original_returns


def setup(app):
    app.setup_extension("sphinx.ext.napoleon")
    docstring.GoogleDocstring._consume_inline_attribute = _consume_inline_attribute
    docstring.GoogleDocstring._consume_returns_section = _consume_returns_section
    return {"parallel_read_safe": True, "parallel_write_safe": True}
