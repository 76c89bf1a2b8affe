"""The checking machinery every chapter's checkers share: cases, the comparison, the verdict,
and the naming of mistakes.

A checker calls the reader's function on a few :class:`Case` inputs, compares each returned
array with an independent reference (PyTorch, finite differences, a hand-computed case), and
returns a :class:`Verdict`: PASS when every relative error is within the tolerance. On a FAIL it
runs each :class:`Mistake` (a reference implementation of one typical mistake, with the reader's
signature) on the same inputs; a mistake is *named* only when the reader's answer matches that
implementation within the same tolerance, never guessed from the size of the error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from bnlib import reference

__all__ = ["Case", "Mistake", "Verdict", "check_answers", "relative_errors"]


@dataclass(frozen=True)
class Verdict:
    """The outcome of a check: ``passed``, the relative error of each compared quantity, and on a
    FAIL the ``mistake`` the answer matches (empty when it matches none) or the ``problem``
    that stopped the comparison (an exception, a wrong shape)."""

    check: str
    passed: bool
    errors: dict[str, float] = field(default_factory=dict)
    tolerance: float = 0.0
    reference: str = ""
    problem: str = ""
    mistake: str = ""

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        """A few short lines: the verdict, the mistake, the reference, one line per error."""
        if self.problem:
            named = f"\n  mistake: {self.mistake}" if self.mistake else ""
            return f"FAIL {self.check}: {self.problem}{named}"
        if self.passed:
            head = [f"PASS {self.check}"]
        else:
            worst = max(self.errors, key=self.errors.get)
            head = [f"FAIL {self.check}: {worst} is off"]
            if self.mistake:
                head.append(f"  mistake: {self.mistake}")
        rows = [f"    {name:24} {err:.1e}" for name, err in self.errors.items()]
        return "\n".join([
            *head, f"  reference: {self.reference}",
            f"  relative errors ({'all below' if self.passed else 'tolerance'} "
            f"{self.tolerance:.0e}):", *rows,
        ])

    __str__ = __repr__


@dataclass(frozen=True)
class Case:
    """One input of a check: ``label`` names it in the error table ("(6, 3)"), ``about`` in
    messages ("x of shape (6, 3)"); ``args`` are passed to the functions compared (copied for
    each call, so a function that writes into its inputs changes nothing)."""

    label: str
    args: tuple
    about: str = ""


@dataclass(frozen=True)
class Mistake:
    """A typical mistake: its ``name`` as the verdict prints it ("the unbiased variance in the
    normalisation") and ``answer``, a function with the reader's signature that makes it."""

    name: str
    answer: Callable[..., object]


def _copy(value: object) -> object:
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, torch.Tensor):
        return value.clone()
    return value


def _call(name: str, fn: Callable, args: tuple) -> tuple[object, str]:
    """``(result, "")``, or ``(None, problem)`` when ``fn`` raises."""
    try:
        return fn(*(_copy(a) for a in args)), ""
    except NotImplementedError:
        return None, (f"{name} raises NotImplementedError: fill in its body, "
                      "then run the check again")
    except Exception as error:  # the reader's code: report, don't crash the notebook
        return None, f"{name} raised {type(error).__name__}: {error}"


def _array(value: object) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
    return np.asarray(value, dtype=np.float64)


def _named(name: str, result: object, outputs: Sequence[str]) -> tuple[dict, str]:
    """The result as ``{output name: float64 array}``, or a problem. The result is a dict with
    those keys, a tuple in that order, or, with a single output, one array (or a tuple whose
    first element is taken: a forward pass may return ``(y, cache)``)."""
    if isinstance(result, Mapping):
        missing = [k for k in outputs if k not in result]
        if missing:
            return {}, f"{name} must return a dict with the keys {', '.join(outputs)}: " \
                       f"{', '.join(missing)} missing"
        values: Sequence = [result[k] for k in outputs]
    elif len(outputs) == 1:
        value = result[0] if isinstance(result, tuple) else result
        values = [value]
    elif isinstance(result, (tuple, list)) and len(result) == len(outputs):
        values = result
    else:
        return {}, (f"{name} must return a tuple ({', '.join(outputs)}), "
                    f"got {type(result).__name__}")
    try:
        return {k: _array(v) for k, v in zip(outputs, values)}, ""
    except (TypeError, ValueError) as error:
        return {}, f"{name} returned something that is not an array: {error}"


def relative_errors(got: dict, want: dict, label: str) -> dict[str, float]:
    """``{"<output> <label>": relative error}`` (:func:`bnlib.reference.relative_error`);
    a NaN or infinite answer counts as an infinite error."""
    errors = {}
    for what, expected in want.items():
        error = reference.relative_error(got[what], expected)
        errors[f"{what} {label}".strip()] = error if math.isfinite(error) else math.inf
    return errors


def check_answers(
    check: str, answer: Callable, cases: Sequence[Case], expected: Callable,
    outputs: Sequence[str], *, tolerance: float, reference_name: str,
    mistakes: Sequence[Mistake] = (),
) -> Verdict:
    """Compare ``answer(*case.args)`` with ``expected(*case.args)`` on every case.

    Both return one array or a tuple of arrays named by ``outputs`` (NumPy arrays, torch
    tensors or numbers). PASS when every relative error is at most ``tolerance``; on a FAIL the
    first of ``mistakes`` whose answers the reader's match within ``tolerance`` is named,
    also when the answer's shape is wrong (a transposed result matches its mistake's code).
    """
    name = getattr(answer, "__name__", "answer")
    errors: dict[str, float] = {}
    answers = []
    for case in cases:
        result, problem = _call(name, answer, case.args)
        got, problem = (None, problem) if problem else _named(name, result, outputs)
        if problem:
            return Verdict(check, False, problem=problem)
        want, _ = _named("the reference", expected(*(_copy(a) for a in case.args)), outputs)
        answers.append(got)
        for what in outputs:
            if got[what].shape != want[what].shape:
                return Verdict(check, False, problem=(
                    f"{what} for {case.about or case.label} has shape "
                    f"{got[what].shape}, expected {want[what].shape}"),
                    mistake=_matching_mistake(answers, cases, outputs, mistakes, tolerance))
        errors.update(relative_errors(got, want, case.label))
    passed = max(errors.values()) <= tolerance
    mistake = "" if passed else _matching_mistake(answers, cases, outputs, mistakes, tolerance)
    return Verdict(check, passed, errors, tolerance, reference_name, mistake=mistake)


def _matching_mistake(answers: list, cases: Sequence[Case], outputs: Sequence[str],
                      mistakes: Sequence[Mistake], tolerance: float) -> str:
    """The name of the first mistake whose outputs equal the reader's on every case."""
    for mistake in mistakes:
        worst = 0.0
        for got, case in zip(answers, cases):
            result, problem = _call(mistake.name, mistake.answer, case.args)
            made, problem = (None, problem) if problem else _named("", result, outputs)
            if problem or any(made[k].shape != got[k].shape for k in outputs):
                worst = math.inf
                break
            worst = max(worst, *relative_errors(got, made, case.label).values())
        if worst <= tolerance:
            return mistake.name
    return ""
