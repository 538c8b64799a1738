"""The shift registry: specs, sets, errors, the listing, and the derived corruption figures."""

from __future__ import annotations

import dataclasses
import json

import pytest

from cud_bench.errors import CudBenchError
from cud_bench.registry import RegistryError
from shifts import (
    CorruptionFigures,
    ShiftedSet,
    ShiftSpec,
    applicability_table,
    corruption_figures,
    describe,
    get_shift,
    shifts,
)
from shifts.corruption import LEVELS


def _spec(**changes) -> ShiftSpec:
    fields = dict(
        name="x", version=1, family="corruption", kind="labelled", tasks=("*",), severities=(1, 2),
        levels=(0.1, 0.2), max_examples=10, source="here",
    )  # fmt: skip
    return ShiftSpec(**{**fields, **changes})


def test_registry_holds_what_the_issue_asks_for():
    by_family: dict[str, list] = {}
    for _, shift in shifts.items():
        by_family.setdefault(shift.spec.family, []).append(shift.spec)
    corruptions = by_family["corruption"]
    assert len(corruptions) >= 8
    assert all(spec.severities == (1, 2, 3, 4, 5) and spec.levels == LEVELS for spec in corruptions)
    assert all(spec.tasks == ("*",) for spec in corruptions)
    assert len(by_family["domain"]) >= 4
    assert {"class-frequency", "tweets-low-agreement", "teacher-disagreement"} <= set(shifts.names())
    assert len(by_family["held-out"]) >= 1


def test_every_shift_is_consistent():
    for name, shift in shifts.items():
        spec = shift.spec
        assert spec.name == name and spec.id == f"{name}@v{spec.version}"
        assert spec.description and spec.source


def test_spec_validation_names_the_problem():
    with pytest.raises(ValueError, match="family 'typo'"):
        _spec(family="typo")
    with pytest.raises(ValueError, match="severities must be 1, 2"):
        _spec(severities=(0, 1))
    with pytest.raises(ValueError, match="levels must be empty or one per severity"):
        _spec(levels=(0.1,))
    with pytest.raises(ValueError, match="strictly monotone"):
        _spec(severities=(1, 2, 3), levels=(0.1, 0.3, 0.2))
    with pytest.raises(ValueError, match="runner only provides"):
        _spec(requires=("gpu",))


def test_spec_hash_follows_meaning_not_prose():
    base = _spec()
    assert dataclasses.replace(base, description="other words").spec_hash() == base.spec_hash()
    assert dataclasses.replace(base, params=(("aug_char_p", 0.2),)).spec_hash() != base.spec_hash()
    assert dataclasses.replace(base, max_examples=11).spec_hash() != base.spec_hash()


def test_shifted_set_checks_its_shape():
    ok = ShiftedSet("s@v1", "t@v1", 1, "labelled", ids=("a", "b"), texts=("x", "y"), labels=(0, 1))
    assert len(ok) == 2
    with pytest.raises(ValueError, match="labelled set of 2 ids"):
        ShiftedSet("s@v1", "t@v1", 1, "labelled", ids=("a", "b"), texts=("x", "y"))
    with pytest.raises(ValueError, match="subset set of 1 ids"):
        ShiftedSet("s@v1", "t@v1", 1, "subset", ids=("a",), texts=("x",))
    assert len(ShiftedSet("s@v1", "t@v1", 1, "out-of-scope", ids=(), texts=())) == 0


def test_applies_to_and_clear_errors():
    shift = get_shift("rt-polarity-to-tweets")
    assert shift.applies_to("rt-polarity") and shift.applies_to("rt-polarity@v1")
    assert not shift.applies_to("bbc-news")
    with pytest.raises(CudBenchError) as err:
        shift.apply("bbc-news", 1)
    assert all(word in str(err.value) for word in ("rt-polarity-to-tweets@v1", "'bbc-news'", "rt-polarity"))
    with pytest.raises(CudBenchError, match="has no severity 6"):
        get_shift("char-keyboard").apply("rt-polarity", 6)
    with pytest.raises(CudBenchError, match="needs the test probabilities"):
        get_shift("teacher-disagreement").apply("rt-polarity", 1)


def test_get_shift_by_versioned_id():
    assert get_shift("char-keyboard@v2") is get_shift("char-keyboard")
    with pytest.raises(CudBenchError, match="version 9 is not available"):
        get_shift("char-keyboard@v9")
    with pytest.raises(RegistryError, match="did you mean 'char-keyboard'"):
        get_shift("char-keybord")


def test_describe_is_json_and_complete():
    listed = json.loads(json.dumps(describe()))
    assert [d["name"] for d in listed] == shifts.names()
    keyboard = next(d for d in listed if d["name"] == "char-keyboard")
    assert keyboard["id"] == "char-keyboard@v2" and keyboard["family"] == "corruption"
    assert keyboard["params"]["augmenter"] == "nlpaug.augmenter.char:KeyboardAug"
    assert keyboard["params"]["aug_word_max"] is None  # nlpaug's cap of 10 edits is lifted
    assert keyboard["spec_hash"] == get_shift("char-keyboard").spec.spec_hash()


def test_applicability_table_lists_every_shift_once():
    table = applicability_table()
    rows = [line for line in table.splitlines()[2:]]
    assert len(rows) == len(shifts.names())
    assert "| `rt-polarity-to-tweets@v1` | domain | 1 | `rt-polarity` |" in rows
    assert "| `char-ocr@v2` | corruption | 5 | every task |" in rows


def test_corruption_figures_by_hand():
    ece = {("a", 1): 0.1, ("a", 2): 0.3, ("b", 1): 0.2, ("b", 2): 0.5}
    figures = corruption_figures(ece)
    assert figures == CorruptionFigures(
        mean=pytest.approx(0.275), worst=0.5, worst_at=("b", 2),
        by_severity=((1, pytest.approx(0.15)), (2, pytest.approx(0.4))), auc=pytest.approx(0.275),
    )  # fmt: skip
    # with the clean value as severity 0: area (0.05+0.15)/2 + (0.15+0.4)/2 = 0.375 over a width of 2
    with_clean = corruption_figures(ece, clean=0.05)
    assert with_clean.by_severity[0] == (0, 0.05)
    assert with_clean.auc == pytest.approx(0.1875)


def test_corruption_figures_refuse_bad_grids():
    with pytest.raises(ValueError, match="incomplete"):
        corruption_figures({("a", 1): 0.1, ("a", 2): 0.2, ("b", 1): 0.3})
    with pytest.raises(ValueError, match="finite"):
        corruption_figures({("a", 1): float("nan")})
    with pytest.raises(ValueError, match="no"):
        corruption_figures({})
