"""Find the book's quotations of its sources and check them against ``book/quotations.yml``.

A passage in double quotes ("..." or “...”) is a *quotation of a source* when the sentence it
stands in cites one: a ``{cite}`` role (``{cite}`key```, ``{cite:p}``, ``{cite:t}``) in the
chapters, their figure captions and tables; an author-year reference ("Li et al. (2019)",
"Wu & He's (2018)", "Ioffe 2017", "Santurkar et al.") in bnlib's docstrings and strings, where
roles do not render. Its key is the first citation after the closing quote in that sentence,
else the last one before it. A quoted passage in a sentence without a citation is the book's
own term or a scare quote and is not a quotation; but if its words appear in a registered source
sentence it is reported as an uncited quotation.

Each quotation must be registered: the chapter's words lie within an entry's ``quote``, which
lies within that entry's ``sentence`` (the whole source sentence, copied from the source), under
the same key. Comparison ignores case, typographic quote and dash forms, line breaks and
runs of spaces, and an ellipsis ("...") in the chapter stands for omitted words.

``python tools/quotations.py`` prints every quotation found, its key and its registry entry.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = ROOT / "book" / "quotations.yml"
QUOTE = re.compile(r'"([^"]+)"|“([^”]+)”')
CITE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")
#: Abbreviations after which a full stop does not end a sentence.
_ABBREVIATIONS = ("et al.", "e.g.", "i.e.", "Fig.", "Eq.", "vs.", "cf.", "Sec.", "resp.")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"”)]?\s+(?=[\"“(*{\[A-Z0-9])")
#: Words by which a sentence refers back to the source the paragraph named last.
_BACK_REFERENCE = re.compile(r"\b(?:[Tt]heir|[Tt]hey|the authors|the paper)\b")


@dataclasses.dataclass(frozen=True)
class Quotation:
    """One quoted passage attributed to a source: where it is, its words, its citation key."""

    path: str
    line: int
    text: str
    key: str | None
    sentence: str

    def where(self) -> str:
        return f"{self.path}:{self.line}"


def normalise(text: str) -> str:
    """Lower case, plain quotes and dashes, one space between words, no hyphenated breaks."""
    for mark in "’‘“”\"":
        text = text.replace(mark, "'")
    text = text.replace("–", "-").replace("—", "-").replace("\u00ad", "").replace("\\", "")
    return re.sub(r"\s+", " ", text).strip().lower()


def within(part: str, whole: str) -> bool:
    """True if ``part`` occurs in ``whole`` (normalised); "..." in ``part`` skips words."""
    pieces = [normalise(p).strip(" .,;:") for p in re.split(r"\.\.\.|…", part)]
    pieces = [p for p in pieces if p]
    position, whole = 0, normalise(whole)
    for piece in pieces:
        found = whole.find(piece, position)
        if found < 0:
            return False
        position = found + len(piece)
    return bool(pieces)


# --------------------------------------------------------------------------- finding them


def sentences(paragraph: str) -> Iterator[tuple[int, str]]:
    """(offset, sentence) of a paragraph, not split after the abbreviations above."""
    protected = paragraph
    for abbreviation in _ABBREVIATIONS:
        protected = protected.replace(abbreviation, abbreviation.replace(".", "\0"))
    start = 0
    for match in _SENTENCE_END.finditer(protected):
        yield start, paragraph[start:match.start()]
        start = match.end()
    yield start, paragraph[start:]


def _key_after_or_before(sentence: str, start: int, end: int,
                         keys: list[tuple[int, str]]) -> str | None:
    after = [k for pos, k in keys if pos >= end]
    before = [k for pos, k in keys if pos < start]
    return after[0] if after else before[-1] if before else None


def _masked(text: str) -> str:
    """Inline code and math replaced by spaces of the same length (offsets kept)."""
    blank = lambda m: " " * len(m.group())  # noqa: E731
    text = re.sub(r"\{[a-z:]+\}`[^`]*`", blank, text)  # roles: {cite}`key`, {glue:text}`x`
    text = re.sub(r"``.*?``", blank, text, flags=re.S)  # reST literals in docstrings
    text = re.sub(r"`[^`]*`", blank, text)
    return re.sub(r"\$\$?[^$]*\$\$?", blank, text)


def quotations_in(paragraph: str, line_of, path: str, keys_of) -> Iterator[Quotation]:
    """The attributed quotations of one paragraph; ``line_of(offset)`` gives a line number,
    ``keys_of(sentence)`` the (offset, key) citations of a sentence."""
    masked, last = _masked(paragraph), None
    for offset, sentence in sentences(masked):
        keys = keys_of(paragraph[offset:offset + len(sentence)])
        if not keys and last and _BACK_REFERENCE.search(sentence):
            keys = [(len(sentence), last)]  # "Their ... (their Section 2.1)": the last source
        last = keys[-1][1] if keys else last
        for match in QUOTE.finditer(sentence):
            text = match.group(1) or match.group(2)
            key = _key_after_or_before(sentence, match.start(), match.end(), keys)
            yield Quotation(path, line_of(offset + match.start()), text, key,
                            paragraph[offset:offset + len(sentence)])


def _role_keys(sentence: str) -> list[tuple[int, str]]:
    return [(m.start(), k.strip()) for m in CITE.finditer(sentence)
            for k in m.group(1).split(",")[:1]]


_SKIPPED = ("code-cell", "math", "raw", "")  # fenced blocks whose body is not prose


def chapter_paragraphs(text: str) -> Iterator[tuple[int, str]]:
    """(first line, text) of each prose paragraph, table and caption of a MyST notebook: code
    cells, math and front matter left out; a directive's title line (a table's caption) and a
    figure caption in a code cell's header are paragraphs of their own."""
    lines = text.splitlines()
    block: list[tuple[int, str]] = []
    fences: list[tuple[str, bool]] = []  # (backticks, body is prose)

    def flush() -> Iterator[tuple[int, str]]:
        if block:
            yield block[0][0], "\n".join(t for _, t in block)
        block.clear()

    number = 0
    if lines and lines[0].strip() == "---":  # front matter
        number = next(i for i in range(1, len(lines)) if lines[i].strip() == "---") + 1
    while number < len(lines):
        line, lineno = lines[number], number + 1
        stripped = line.strip()
        fence = re.match(r"(`{3,}|~{3,})\s*(?:\{([a-z-]+)\})?\s*(.*)$", stripped)
        prose = all(is_prose for _, is_prose in fences)
        if fences and stripped == fences[-1][0]:  # a closing fence
            yield from flush()
            fences.pop()
        elif fence and (not fences or prose):  # an opening fence
            yield from flush()
            kind = fence.group(2) or ""
            fences.append((fence.group(1), kind not in _SKIPPED))
            if fence.group(3) and kind not in _SKIPPED:
                yield lineno, fence.group(3)
        elif not prose:
            caption = re.match(r"\s*caption:\s*\"(.*)", line)
            if caption and fences[-1][0].startswith("`"):  # a YAML caption string
                parts, row = [caption.group(1)], number
                while not re.search(r'(?<!\\)"\s*$', parts[-1]) and row + 1 < len(lines):
                    row += 1
                    parts.append(lines[row].strip())
                body = re.sub(r'(?<!\\)"\s*$', "", " ".join(parts)).replace('\\"', '"')
                yield lineno, body
                number = row
        elif stripped.startswith("$$") or stripped.endswith("$$"):
            yield from flush()
            if stripped.count("$$") == 1:  # a display block over several lines
                number += 1
                while number < len(lines) and "$$" not in lines[number]:
                    number += 1
        elif not stripped or stripped.startswith((":", "(sec-", "(fig-", "(tbl-", "+++",
                                                  "<!--", "#")):
            yield from flush()
            if stripped.startswith("#"):
                yield lineno, stripped.lstrip("# ")
        else:
            block.append((lineno, line))
        number += 1
    yield from flush()


def chapter_quotations(path: Path) -> list[Quotation]:
    """Every attributed quotation in one chapter (``book/*.md``)."""
    found, keys_of = [], author_keys()
    for first, paragraph in chapter_paragraphs(path.read_text()):
        starts = [0] + [i + 1 for i, c in enumerate(paragraph) if c == "\n"]

        def line_of(offset: int, first=first, starts=starts) -> int:
            return first + sum(1 for s in starts[1:] if s <= offset)
        found += [q for q in quotations_in(paragraph, line_of, _relative(path), keys_of)
                  if q.key is not None or _uncited_candidate(q)]
    return found


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- bnlib


def bibliography_keys(bib: Path = ROOT / "references.bib") -> list[str]:
    """Every key in references.bib, in order."""
    return re.findall(r"^@\w+\{([^,]+),", bib.read_text(), flags=re.M)


def _bib_authors(bib: Path = ROOT / "references.bib") -> dict[str, tuple[list[str], str]]:
    """key -> (authors' surnames, lower case, in order; year) from references.bib."""
    out = {}
    for entry in re.split(r"\n(?=@)", bib.read_text()):
        key = re.match(r"@\w+\{([^,]+),", entry.strip())
        authors = re.search(r"author\s*=\s*\{(.*?)\},?\s*\n", entry, flags=re.S)
        year = re.search(r"year\s*=\s*\{([^}]*)\}", entry)
        if key and authors:
            names = [a.split(",")[0].strip(" {}").split()[-1].lower()
                     for a in re.split(r"\s+and\s+", authors.group(1))]
            out[key.group(1)] = (names, year.group(1) if year else "")
    return out


_AUTHORS = re.compile(
    r"\b([A-Z][a-z]+)(?:( et al\.)|(?: (?:&|and) ([A-Z][a-z]+)))?(?:'s)?"
    r"(?:,?\s*\(?((?:19|20)\d\d))?")


def author_keys(bib: Path = ROOT / "references.bib"):
    """``keys_of(sentence)``: (offset, key) of every source the sentence names: a ``{cite}``
    role, or its authors ("Ioffe and Szegedy", "Wu & He's", "Li et al. (2019)", "Ioffe
    2017"), resolved through references.bib (a name that fits two entries names neither)."""
    authors = _bib_authors(bib)

    def keys_of(sentence: str) -> list[tuple[int, str]]:
        out = _role_keys(sentence)
        for m in _AUTHORS.finditer(sentence):
            first, et_al, second, year = (m.group(1).lower(), m.group(2), m.group(3),
                                          m.group(4))
            if not (et_al or second or year or m.group().endswith("'s")):
                continue
            fits = [k for k, (names, y) in authors.items() if names[0] == first
                    and (not second or (len(names) > 1 and names[1] == second.lower()))
                    and (not et_al or len(names) > 2) and (not year or y == year)]
            if len(fits) == 1:
                out.append((m.start(), fits[0]))
        return sorted(out)
    return keys_of


def code_quotations(path: Path, keys: list[str]) -> list[Quotation]:
    """Attributed quotations in the string literals (docstrings included) of a Python file."""
    keys_of, found = author_keys(), []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            for paragraph in re.split(r"\n\s*\n", text):
                base = node.lineno + text[: text.find(paragraph)].count("\n")

                def line_of(offset: int, base=base, paragraph=paragraph) -> int:
                    return base + paragraph[:offset].count("\n")
                found += [q for q in quotations_in(paragraph, line_of, _relative(path), keys_of)
                          if q.key is not None or _uncited_candidate(q)]
    return found


# --------------------------------------------------------------------------- the registry


def load_registry(path: Path = REGISTRY) -> list[dict]:
    """The registered quotations: key, location, quote, sentence, verified."""
    return yaml.safe_load(path.read_text())["quotations"]


def load_exceptions(path: Path = REGISTRY) -> list[dict]:
    """Quoted passages next to a citation that quote no source: path, text, why."""
    return yaml.safe_load(path.read_text()).get("not_quotations") or []


def is_exception(q: Quotation, exceptions: list[dict]) -> bool:
    return any(q.path == e["path"] and normalise(q.text) == normalise(e["text"])
               for e in exceptions)


_SENTENCES: list[str] = []


def _uncited_candidate(q: Quotation) -> bool:
    """An uncited quoted passage of three or more words that a registered source sentence
    contains: a quotation whose sentence lacks its citation."""
    if not _SENTENCES:
        _SENTENCES.extend(e["sentence"] for e in load_registry())
    return len(q.text.split()) >= 3 and any(within(q.text, s) for s in _SENTENCES)


def book_files() -> list[Path]:
    """Every chapter in book/ (any that exist, so new chapters are scanned as they come)."""
    return sorted((ROOT / "book").glob("*.md"))


def code_files() -> list[Path]:
    return sorted((ROOT / "bnlib").rglob("*.py"))


def all_quotations() -> list[Quotation]:
    """Every attributed quotation in the chapters, their captions and tables, and bnlib."""
    keys = bibliography_keys()
    found = [q for path in book_files() for q in chapter_quotations(path)]
    return found + [q for path in code_files() for q in code_quotations(path, keys)]


def problems(quotations: list[Quotation], registry: list[dict],
             exceptions: list[dict] = ()) -> list[str]:
    """One line per quotation that is uncited or not within a registered entry of its key."""
    out = []
    for q in quotations:
        if is_exception(q, exceptions):
            continue
        if q.key is None:
            out.append(f'{q.where()}: "{q.text}" quotes a registered source sentence but its '
                       "sentence cites no source: add the citation")
            continue
        entries = [e for e in registry if e["key"] == q.key]
        if not any(within(q.text, e["quote"]) for e in entries):
            near = [e["location"] for e in registry if within(q.text, e["quote"])]
            hint = f" (registered under another key, at {near[0]})" if near else ""
            out.append(f'{q.where()}: "{q.text}" is not a registered quotation of '
                       f"{q.key}{hint}: copy the source sentence into book/quotations.yml")
    return out


def entry_problems(registry: list[dict], keys: list[str]) -> list[str]:
    """Registry entries that are incomplete, not within their sentence or of an unknown key."""
    out = []
    for number, e in enumerate(registry, 1):
        missing = [f for f in ("key", "location", "quote", "sentence", "verified") if not e.get(f)]
        if missing:
            out.append(f"entry {number}: missing {', '.join(missing)}")
        elif e["key"] not in keys:
            out.append(f"entry {number}: key {e['key']} is not in references.bib")
        elif not within(e["quote"], e["sentence"]):
            out.append(f"entry {number} ({e['key']}): the quote is not within its sentence")
    return out


def stale_exceptions(quotations: list[Quotation], exceptions: list[dict]) -> list[str]:
    """not_quotations entries that no longer match a quoted passage."""
    return [f"not_quotations: {e['path']}: \"{e['text']}\" is no longer in the book"
            for e in exceptions if not any(is_exception(q, [e]) for q in quotations)]


def checked(quotations: list[Quotation], exceptions: list[dict]) -> list[Quotation]:
    """The quotations the registry must cover (the listed exceptions left out)."""
    return [q for q in quotations if not is_exception(q, exceptions)]


def main() -> int:
    registry, exceptions = load_registry(), load_exceptions()
    found = checked(all_quotations(), exceptions)
    for q in found:
        entry = next((e for e in registry if e["key"] == q.key and within(q.text, e["quote"])),
                     None)
        print(f'{q.where()}  [{q.key}]  "{q.text}"  ->  '
              f"{entry['location'] if entry else 'UNREGISTERED'}")
    bad = (problems(found, registry) + entry_problems(registry, bibliography_keys())
           + stale_exceptions(all_quotations(), exceptions))
    print(f"{len(found)} quotations, {len(registry)} registry entries, {len(bad)} problems")
    print("\n".join(bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
