"""What the doctor found: ``Finding`` (one problem at one layer) and ``Report``.

A report renders as an HTML table in a notebook (``_repr_html_``) and as plain text in a
terminal (``str``).
"""

from __future__ import annotations

import dataclasses
import html
import textwrap
from collections.abc import Iterator

__all__ = ["SEVERITIES", "Finding", "Report"]

#: From worst to mildest: an ``error`` changes what the network computes; a ``warning`` is
#: usually a bug but can be intended; ``info`` is correct code that deserves a look.
SEVERITIES = ("error", "warning", "info")


@dataclasses.dataclass(frozen=True)
class Finding:
    """One problem: a short ``code`` (e.g. ``"non-finite-statistics"``), the ``layer`` (the
    module's qualified name as ``model.named_modules()`` gives it; ``""`` for the model
    itself), what is wrong (``message``) and what to do (``fix``)."""

    code: str
    layer: str
    message: str
    fix: str
    severity: str = "warning"

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")


#: Characters per line of a report printed as text (a terminal, a notebook's column).
TEXT_WIDTH = 79


@dataclasses.dataclass
class Report:
    """The findings of ``bnlib.doctor.examine`` or ``bnlib.doctor.watch``, worst first.

    ``len(report)`` counts findings; ``report.codes()`` lists (code, layer) pairs.
    """

    findings: list[Finding] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        self.findings = sorted(self.findings, key=lambda f: SEVERITIES.index(f.severity))

    def __len__(self) -> int:
        return len(self.findings)

    def __iter__(self) -> Iterator[Finding]:
        return iter(self.findings)

    def codes(self) -> list[tuple[str, str]]:
        """``(code, layer)`` of every finding, worst first."""
        return [(f.code, f.layer) for f in self.findings]

    def __str__(self) -> str:
        if not self.findings:
            return "bnlib.doctor: no findings."
        lines = [f"bnlib.doctor: {len(self.findings)} finding(s)"]
        for f in self.findings:
            where = f.layer or "(model)"
            lines += textwrap.wrap(f"- [{f.severity}] {f.code} at {where}: {f.message}",
                                   TEXT_WIDTH, subsequent_indent="  ")
            lines += textwrap.wrap(f"fix: {f.fix}", TEXT_WIDTH, initial_indent="  ",
                                   subsequent_indent="       ")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        if not self.findings:
            return "<p>bnlib.doctor: no findings.</p>"
        head = "".join(f"<th>{h}</th>" for h in ("severity", "code", "layer", "what", "fix"))
        rows = "".join(
            "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in
                             (f.severity, f.code, f.layer or "(model)", f.message, f.fix))
            + "</tr>" for f in self.findings)
        return f'<table class="bnlib-doctor"><tr>{head}</tr>{rows}</table>'
