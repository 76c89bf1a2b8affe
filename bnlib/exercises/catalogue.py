"""The list of every exercise of the book, read from the chapters' MyST sources.

An exercise is a sphinx-exercise directive, ``{exercise}`` or (when its body holds code cells)
``{exercise-start}``, with a title argument and a ``:label:``. :func:`exercises` finds them in
a chapter's text, with the checker its body calls (``check_...``), if any; :func:`markdown`
writes the list as a MyST table whose references Sphinx numbers (Exercise 2.1, ...), for the
book's page of exercises.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Exercise", "catalogue", "exercises", "markdown"]

_OPENING = re.compile(r"^(?P<fence>`{3,})\{exercise(?P<gated>-start)?\}[ \t]*(?P<title>[^\n]*)$",
                      re.M)
_LABEL = re.compile(r"^:label:[ \t]*(\S+)", re.M)
_CHECKER = re.compile(r"\b(check_[a-z_]+)\(")


@dataclass(frozen=True)
class Exercise:
    """One exercise: the chapter file's stem, its label, its title and the checker it calls
    (empty for a question answered in words)."""

    chapter: str
    label: str
    title: str
    checker: str


def exercises(text: str, chapter: str) -> list[Exercise]:
    """The exercises of one chapter's MyST text, in order."""
    found = []
    for match in _OPENING.finditer(text):
        if match.group("gated"):  # the body runs to the {exercise-end} directive
            end = text.find("{exercise-end}", match.end())
        else:  # the body runs to the closing fence of the same length
            closing = re.compile(rf"^{match.group('fence')}[ \t]*$", re.M)
            end = closing.search(text, match.end()).start()
        body = text[match.end():end]
        label = _LABEL.search(body)
        if label is None:
            raise ValueError(f"{chapter}: an exercise without a :label: ({match.group(0)!r})")
        checker = _CHECKER.search(body)
        found.append(Exercise(chapter, label.group(1), match.group("title").strip(),
                              checker.group(1) if checker else ""))
    return found


def catalogue(chapters: Iterable[Path]) -> list[Exercise]:
    """The exercises of every chapter file, in the order given."""
    return [e for path in chapters
            for e in exercises(Path(path).read_text(encoding="utf-8"), Path(path).stem)]


def markdown(items: Sequence[Exercise]) -> str:
    """A MyST table of ``items``: the numbered reference to each exercise, its title and its
    checker."""
    rows = ["| exercise | title | checked by |", "|---|---|---|"]
    for item in items:
        checker = f"`{item.checker}`" if item.checker else "a question, answered in words"
        rows.append(f"| {{numref}}`{item.label}` | {item.title} | {checker} |")
    return "\n".join(rows) + "\n"
