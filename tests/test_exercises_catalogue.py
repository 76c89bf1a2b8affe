"""bnlib.exercises.catalogue: exercises found in MyST text, and in the book's chapters."""

from __future__ import annotations

from pathlib import Path

import pytest

from bnlib.exercises import catalogue

BOOK = Path(__file__).resolve().parent.parent / "book"

TEXT = '''
````{exercise} The forward pass
:label: ex-a

```python
check_batch_norm_forward(my_forward)
```
````

```{solution-start} ex-a
```

```{code-cell} ipython3
check_other(x)
```

```{solution-end}
```

```{exercise} A question
:label: ex-b

Why?
```

```{exercise-start} Gated
:label: ex-c
```

```{code-cell} ipython3
check_gated(x)
```

```{exercise-end}
```
'''


def test_exercises_are_found_with_title_label_and_checker():
    found = catalogue.exercises(TEXT, "02_x")
    assert [(e.label, e.title, e.checker) for e in found] == [
        ("ex-a", "The forward pass", "check_batch_norm_forward"),
        ("ex-b", "A question", ""),
        ("ex-c", "Gated", "check_gated")]
    table = catalogue.markdown(found)
    assert "| {numref}`ex-a` | The forward pass | `check_batch_norm_forward` |" in table
    assert "| {numref}`ex-b` | A question | a question, answered in words |" in table


def test_an_exercise_without_a_label_is_an_error():
    with pytest.raises(ValueError, match="without a :label:"):
        catalogue.exercises("```{exercise} Untitled\nWhy?\n```\n", "01_x")


def test_every_chapter_has_three_to_six_exercises_with_unique_labels():
    items = catalogue.catalogue(sorted(BOOK.glob("0*.md")))
    by_chapter = {}
    for item in items:
        by_chapter.setdefault(item.chapter[:2], []).append(item)
    assert set(by_chapter) >= {"01", "02", "03", "04", "05", "06"}
    assert all(3 <= len(v) <= 6 for v in by_chapter.values()), {
        k: len(v) for k, v in by_chapter.items()}
    labels = [item.label for item in items]
    assert len(labels) == len(set(labels))
    assert all(label.startswith(f"ex-ch{item.chapter[:2]}-")
               for label, item in zip(labels, items))
