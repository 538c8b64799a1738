"""The shift registry: distribution shifts a trained model is scored under.

Five families (lexical corruption, domain transfer, long tail, ambiguous
subsets, held-out classes); each shift is one module in :mod:`shifts.defs`
that registers one :class:`Shift`, whose frozen :class:`ShiftSpec` gives a
versioned id (``name@vN``), the family, what it does and where its data comes
from, the tasks it applies to, its severities and its example cap.

The runner's contract::

    from shifts import shifts
    for name, shift in shifts.items():
        if shift.applies_to(task):                    # no data loaded
            for severity in shift.spec.severities:
                inputs = {"teacher_probs": probs} if "teacher_probs" in shift.spec.requires else {}
                shifted = shift.apply(task, severity, seed=0, splits=scored, **inputs)   # a ShiftedSet

``shifted.kind`` says how to score it: ``labelled`` (texts and labels in the
task's label space: encode the texts, score like the clean test set),
``subset`` (``indices`` into the clean test split: reuse the clean
predictions), ``out-of-scope`` (texts without an in-scope label: out-of-scope
detection against the clean test split). ``scored`` (:class:`ScoredSplits`) is the
suite's capped test split and training labels: corruptions draw from it, buckets count
on it, subsets index it (default: the task's whole splits). A shift whose
``reference_for`` names a scored family (``corruption-clean``) is scored with it.
Applying a shift to a task it does
not fit raises :class:`~cud_bench.errors.CudBenchError` naming the shift, the
task and the tasks it fits. ``seed`` varies only corruptions; pass 0 so every
method and training seed meets the same texts. Corrupted sets are cached
under ``<cache>/shifts/``; a rerun corrupts nothing.

:func:`describe` backs ``cud-bench shifts --format json``;
:func:`applicability_table` is the README's table; :func:`corruption_figures`
derives mean / worst ECE over corruptions and the area under ECE against
severity.
"""

from shifts.base import (
    FAMILIES,
    KINDS,
    ScoredSplits,
    Shift,
    ShiftedSet,
    ShiftSpec,
    TeacherProbs,
    get_shift,
    register_shift,
    shifts,
)
from shifts.catalog import applicability_table, describe
from shifts.figures import CorruptionFigures, corruption_figures

__all__ = [
    "FAMILIES",
    "KINDS",
    "CorruptionFigures",
    "ScoredSplits",
    "Shift",
    "ShiftSpec",
    "ShiftedSet",
    "TeacherProbs",
    "applicability_table",
    "corruption_figures",
    "describe",
    "get_shift",
    "register_shift",
    "shifts",
]
