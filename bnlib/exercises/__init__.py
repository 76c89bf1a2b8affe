"""Exercises' checkers: a reader's code against an independent reference, with a verdict.

One module per chapter topic, on one shared machinery:

==========================  ==========================================================
module                      checks
==========================  ==========================================================
``checking``                the machinery: :class:`Case`, :class:`Mistake`,
                            :class:`Verdict`, :func:`check_answers`
``ics``                     chapter 01, internal covariate shift
``equations``               chapter 02, the forward and backward passes (and the
                            comparisons the chapter's measurements use)
``inference``               chapter 03, running statistics, precise BN, folding
``variants``                chapter 04, layer, group and instance norm
``hindi_digits``            chapter 05, the article's network
``benefits``                chapter 06, the claimed benefits
``distributed``             chapter 07, merging shards' statistics, the per-update
                            momentum
``doctor``                  chapter 08, when batch norm goes wrong
``popular``                 the departures from PyTorch found in popular tutorials,
                            as named layers, and the module checker that names them
                            (their measurements: ``bnlib.experiments.popular``)
``catalogue``               the list of every exercise, read from the chapters
==========================  ==========================================================

How a chapter's checker is written (``distributed.py`` and ``doctor.py`` follow the same
pattern)::

    from bnlib.exercises.checking import Case, Mistake, Verdict, check_answers

    #: Each typical mistake as the code that makes it, with the reader's signature.
    MISTAKES = (Mistake("eps left out", lambda x, eps: my_thing(x, 0.0)), ...)

    def check_my_thing(answer) -> Verdict:
        \"\"\"Check ``answer(x, eps) -> y`` against <the independent reference>.\"\"\"
        cases = [Case("(4, 3)", (x, 1e-5), "x of shape (4, 3)"), ...]
        return check_answers("check_my_thing", answer, cases, expected=torch_reference,
                             outputs=("y",), tolerance=1e-10, mistakes=MISTAKES,
                             reference_name="torch.nn.functional.<...>")

* ``expected`` is independent of the code under test (PyTorch, finite differences, a
  hand-computed case) and takes the same arguments as the reader's function.
* Inputs make every mistake's error far above the tolerance: batches of 4, variances of the
  order of eps, channels that differ, shapes that make a transposed answer visible.
* A FAIL names a mistake only when the answer matches that mistake's code within the
  tolerance; otherwise it reports the errors alone.
* Each checker gets a test (``tests/test_exercises*.py``): a correct solution,
  written independently, PASSes; each mistake of its tuple FAILs naming that mistake.
* Re-export the checker here. In the chapter, an exercise is a sphinx-exercise directive with
  a title and a ``:label:`` ``ex-chNN-<name>``: a ``{exercise}`` holding the ``my_*`` template
  as a ``python`` block (not executed) and the checker call, then the solution between
  ``{solution-start} <label>`` (``:class: dropdown``) and ``{solution-end}``, a code cell
  that runs the checker on a correct answer; a question answered in words is an
  ``{exercise}`` with a ``{solution}``. The page ``book/exercises.md`` lists them all
  (:mod:`~bnlib.exercises.catalogue`).
"""

from bnlib.exercises.checking import Case, Mistake, Verdict, check_answers
from bnlib.exercises.distributed import (
    MERGE_MISTAKES,
    MOMENTUM_MISTAKES,
    check_merge_moments,
    check_per_update_momentum,
)
from bnlib.exercises.benefits import check_ghost_batch_norm, check_variance_shift
from bnlib.exercises.hindi_digits import check_oscillation, check_parameter_counts
from bnlib.exercises.ics import check_noisy_batch_norm, check_percentiles
from bnlib.exercises.inference import (
    check_fold_batch_norm,
    check_population_statistics,
    check_running_statistics,
)
from bnlib.exercises.popular import check_batch_norm_module
from bnlib.exercises.variants import check_group_norm, check_group_norm_backward
from bnlib.exercises.equations import (
    BACKWARD_MISTAKES,
    FORWARD_MISTAKES,
    check_batch_norm_backward,
    check_batch_norm_forward,
    check_staged_backward,
    compare_modules,
    compare_with_finite_differences,
    compare_with_torch,
    finite_difference_gradients,
    gradient_sums,
    module_differences,
    scale_invariance,
)
from bnlib.exercises.doctor import (
    check_mode_table,
    check_momentum_for_updates,
    check_recalibration,
)

__all__ = [
    "BACKWARD_MISTAKES",
    "FORWARD_MISTAKES",
    "MERGE_MISTAKES",
    "MOMENTUM_MISTAKES",
    "Case",
    "Mistake",
    "Verdict",
    "check_answers",
    "check_batch_norm_backward",
    "check_batch_norm_forward",
    "check_batch_norm_module",
    "check_fold_batch_norm",
    "check_ghost_batch_norm",
    "check_group_norm",
    "check_group_norm_backward",
    "check_merge_moments",
    "check_mode_table",
    "check_momentum_for_updates",
    "check_noisy_batch_norm",
    "check_oscillation",
    "check_parameter_counts",
    "check_per_update_momentum",
    "check_percentiles",
    "check_population_statistics",
    "check_recalibration",
    "check_running_statistics",
    "check_staged_backward",
    "check_variance_shift",
    "compare_modules",
    "compare_with_finite_differences",
    "compare_with_torch",
    "finite_difference_gradients",
    "gradient_sums",
    "module_differences",
    "scale_invariance",
]
