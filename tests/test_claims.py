"""Claims as tests: claim files are validated, and verdicts follow the evidence (both ways).

The records are test_leaderboard's synthetic run: ``kd`` is far more accurate
than ``ce``; ``cud`` has exactly ``kd``'s predictions (indistinguishable).
"""

from __future__ import annotations

import json
import textwrap

import pytest
from test_leaderboard import bench_file, records, release, write_run  # noqa: F401 - fixtures

from cud_bench.cli import main
from cud_bench.errors import CudBenchError
from leaderboard.claims import ClaimSpec, Results, Side, _expand_sets, check, exit_code, load_claims, to_markdown


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Results:
    return Results.from_records(write_run(tmp_path_factory.mktemp("run")))


def claim(**fields) -> ClaimSpec:
    values = {"id": "c", "a": Side("kd"), "b": Side("ce"), "metric": "accuracy", "direction": "higher", "n_resamples": 300}
    return ClaimSpec(**{**values, **fields})


def test_a_true_claim_holds_and_its_reverse_fails(results):
    holds, fails = check([claim(), claim(id="reverse", direction="lower")], results)
    assert (holds.status, fails.status) == ("holds", "fails")
    assert holds.effect == fails.effect > 0.2  # the effect is A - B whatever the claimed direction
    assert holds.low > 0 and holds.p_value < 0.01 and holds.n_seeds == 3 and holds.n_units == 1
    assert exit_code([holds]) == 0 and exit_code([fails]) == 0  # neither is required
    assert exit_code([check([claim(required=True, direction="lower")], results)[0]]) == 1


def test_identical_methods_are_inconclusive(results):
    (verdict,) = check([claim(a=Side("cud"), b=Side("kd"))], results)
    assert verdict.status == "inconclusive" and verdict.effect == 0.0 and verdict.note.startswith("the interval straddles zero")
    assert verdict.resolution == "below resolution" and verdict.mde == 0.0 and verdict.shown_status == "inconclusive (below resolution)"
    assert exit_code([dataclass_required(verdict)]) == 1  # a required claim must hold, not just not fail


def dataclass_required(verdict):
    import dataclasses

    return dataclasses.replace(verdict, required=True)


def test_too_few_seeds_and_sign_tests_are_inconclusive_not_failed(results):
    few, sign = check([claim(min_seeds=4), claim(id="sign", test="sign-test")], results)
    assert few.status == "inconclusive" and "3 seed(s), the claim needs 4" in few.note
    assert sign.status == "inconclusive" and sign.p_value == pytest.approx(0.25)
    assert "3 of 3 (task, seed) pairs in the claimed direction" in sign.note and "cannot reach p < 0.05" in sign.note


def test_each_mean_and_worst_aggregations_over_shift_sets(results):
    each, mean, worst = check(
        [
            claim(sets=("family:corruption",)),
            claim(id="mean", sets=("family:corruption",), aggregate="mean"),
            claim(id="worst", sets=("family:corruption",), aggregate="worst"),
        ],
        results,
    )
    assert each.n_units == 2 and [u.label.rsplit(" / ", 1)[1] for u in each.units] == ["typo@v1/1", "typo@v1/2"]
    assert each.status == "holds" and mean.status == "holds" and worst.status == "holds"
    assert mean.effect == pytest.approx(sum(u.effect for u in each.units) / 2)
    assert worst.effect == pytest.approx(min(u.effect for u in each.units), abs=0.1)  # kd's worst minus ce's worst


def test_teacher_claims_use_stored_teacher_scores(results):
    (verdict,) = check([claim(a=Side("kd", "teacher"), b=Side("cud", "teacher"), test="sign-test", metric="nll")], results)
    assert verdict.status == "inconclusive" and verdict.effect == 0.0  # the fixture gives both the same teacher scores
    (boot,) = check([claim(a=Side("kd", "teacher"), b=Side("cud", "teacher"))], results)  # no teacher predictions stored
    assert boot.status == "inconclusive" and "stores no teacher predictions" in boot.note
    with pytest.raises(CudBenchError, match="teachers are compared on the clean test set only"):
        claim(a=Side("kd", "teacher"), sets=("pool/corruption",))


def test_a_method_against_itself_after_temperature_scaling(results):
    (verdict,) = check([claim(a=Side("ce", variant="ts"), b=Side("ce", variant="raw"), metric="nll", direction="lower")], results)
    assert verdict.status == "holds"  # the fixture's ce is over-confident and its temperature is > 1


def test_robust_claims_count_the_settings_that_hold(results):
    (verdict,) = check([claim(a=Side("*d"), robust=0.5)], results)  # kd and cud match; both beat ce
    assert verdict.status == "holds" and [u.label for u in verdict.units] == ["cud", "kd"]
    effects = sorted(u.effect for u in verdict.units)
    assert f"effects range from {effects[0]:+.4f} to {effects[1]:+.4f}" in verdict.note
    assert (verdict.n_tasks, verdict.n_seeds) == (max(u.n_tasks for u in verdict.units), max(u.n_seeds for u in verdict.units)) > (0, 0)
    (none,) = check([claim(a=Side("nothing*"), robust=0.5)], results)
    assert none.status == "inconclusive" and "no method matches" in none.note


CLAIM = "{id: x, a: kd, b: ce, metric: nll, direction: lower%s}"


def one(extra: str = "", head: str = "") -> str:
    """A claims file of one valid claim with ``extra`` fields (and a ``head`` before 'claims')."""
    return head + "claims: [" + CLAIM % extra + "]"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("claims: []", "non-empty list 'claims'"),
        ("claims: [{id: x, a: kd, b: ce, metric: accuracy}]", r"missing field\(s\) \['direction'\]"),
        ("claims: [{id: x, a: kd, b: ce, metric: accuracy, direction: up}]", "direction' 'up' is not one of lower, higher"),
        ("claims: [{id: x, a: kd, b: ce, metric: accuracy, direction: lower, colour: red}]", r"unknown field\(s\) \['colour'\]"),
        ("claims: [{id: x, a: kd/coach, b: ce, metric: accuracy, direction: lower}]", "roles are student, teacher"),
        ("claims: [" + CLAIM % "" + ", " + CLAIM % "" + "]", "duplicate claim id 'x'"),
        (one(', level: 2'), r"level must be in \[0.5, 1\)"),
        ("claims: [unclosed", "cannot read claims file"),
        ("claims: [{id: x, a: !!python/name:os.system , b: ce, metric: m, direction: lower}]", "cannot read claims file"),
        # issue 13: every field typed, every name known (did-you-mean), before any work
        (one(', required: "no"'), "claim 'x': field 'required' must be true or false, got 'no' \\(str\\)"),
        (one(', required: 1'), "field 'required' must be true or false, got 1 \\(int\\)"),
        (one(', level: "0.95"'), "claim 'x': field 'level' must be a number.*got '0.95' \\(str\\)"),
        (one(', level: 0'), "field 'level'"),
        (one(', min_seeds: 2.5'), "field 'min_seeds' must be an integer >= 1"),
        (one(', robust: "1"'), "field 'robust'"),
        (one(', sets: 5'), "field 'sets' must be a list of names, got 5"),
        (one(', sets: [clean, clean]'), "field 'sets' lists clean more than once"),
        ("claims: [{id: x, a: cdu, b: ce, metric: nll, direction: lower}]", "claim 'x': field 'a': unknown method 'cdu'; did you mean 'cud'"),
        ("claims: [{id: x, a: kd, b: 'cud+gama=5', metric: nll, direction: lower}]", "field 'b': method variant 'cud\\+gama=5': 'gama=5' matches no"),
        ("claims: [{id: x, a: 'kd+T=0', b: ce, metric: nll, direction: lower}]", "field 'a': method variant 'kd\\+T=0'.*out of range"),
        ("claims: [{id: x, a: 'cdu+*', b: ce, metric: nll, direction: lower, robust: 0.5}]", "field 'a': unknown method 'cdu'"),
        ("claims: [{id: x, a: ce/teacher, b: kd/teacher, metric: nll, direction: lower}]", "field 'a': method 'ce' trains no teacher"),
        ("claims: [{id: x, a: 'kd:tss', b: ce, metric: nll, direction: lower}]", "unknown variant 'tss'; did you mean 'ts'"),
        (one(', sets: [clen]'), "claim 'x': field 'sets': unknown set 'clen'; did you mean 'clean'"),
        (one(', sets: [pool/corruptoin]'), "unknown set 'pool/corruptoin'; did you mean 'pool/corruption'"),
        (one(', sets: ["family:domian"]'), "unknown set 'family:domian'; did you mean 'family:domain'"),
        (one(', sets: [char-swp@v2/1]'), "unknown set 'char-swp@v2/1'; did you mean 'char-swap'"),
        (one(', sets: [char-swap]'), "needs its version and severity, e.g. char-swap@v2/1"),
        (one(', sets: ["char-swap@*"]'), "needs its version and severity, e.g. char-swap@v2/1"),
        (one(', sets: ["char-swp@*/1"]'), "unknown set 'char-swp@./1'; did you mean 'char-swap',"),
        (one(', tasks: [rt-polarty]'), "field 'tasks': unknown task 'rt-polarty'; did you mean 'rt-polarity'"),
        (one(', students: [mlp-l4]'), "field 'students': unknown model preset 'mlp-l4'; did you mean"),
        (one(', protocols: [crossfit]'), "field 'protocols' 'crossfit' is not one of in-sample, cross-fit; did you mean 'cross-fit'"),
        (one(', metric: eec'), "field 'metric': unknown metric 'eec'; did you mean 'ece'"),
        (one(', aggregate: men'), "field 'aggregate' 'men' is not one of each, mean, worst; did you mean 'mean'"),
        (one(', lvl: 0.9'), r"unknown field\(s\) \['lvl'\]; did you mean 'level'"),
        (one(head="defaults: {lvl: 0.9}\n"), r"defaults: unknown or per-claim field\(s\) \['lvl'\]; did you mean 'level'"),
        (one(head="default: {level: 0.9}\n"), r"unknown top-level key\(s\) \['default'\]; did you mean 'defaults'"),
    ],
)
def test_bad_claim_files_are_one_clear_error(tmp_path, text, message):
    path = tmp_path / "claims.yaml"
    path.write_text(text)
    with pytest.raises(CudBenchError, match=message):
        load_claims(path)


def test_valid_claims_load_with_variants_patterns_and_shift_sets(tmp_path):
    path = tmp_path / "claims.yaml"
    path.write_text(
        "defaults: {metric: ece/uniform/15/l1, direction: lower, required: true, level: 0.9}\n"
        "claims:\n"
        "  - {id: v, a: 'cud+gamma=5', b: kd, sets: [class-frequency@v1/3, 'class-frequency@*/3', pool/corruption, 'family:domain'], tasks: rt-polarity}\n"
        "  - {id: r, a: 'cud+*', b: kd, robust: 0.5, students: [mlp-l3], protocols: [cross-fit], metric: ood_auroc/msp, direction: higher}\n"
        "  - {id: t, a: cud/teacher, b: 'kd:ts', test: sign-test, min_seeds: 2, required: false}\n"
    )
    v, r, t = load_claims(path)
    assert (v.a.method, v.sets, v.tasks, v.required, v.level) == ("cud+gamma=5", ("class-frequency@v1/3", "class-frequency@*/3", "pool/corruption", "family:domain"), ("rt-polarity",), True, 0.9)
    assert (r.robust, r.students, r.protocols) == (0.5, ("mlp-l3",), ("cross-fit",))
    assert (t.a.role, t.b.variant, t.required) == ("teacher", "ts", False)


def test_a_version_free_set_selects_the_version_the_results_hold():
    entries = [{"sets": {"clean": {}, "class-frequency@v2/3": {}, "class-frequency@v2/1": {}, "class-frequency-x@v2/3": {}}}]
    assert _expand_sets(("class-frequency@*/3",), entries) == ["class-frequency@v2/3"]
    assert _expand_sets(("class-frequency@*/4",), entries) == []  # nothing to test: the claim is inconclusive, not wrong


@pytest.mark.parametrize("typo", ["a: cdu", "sets: [clen]"])
def test_a_typo_in_a_claim_exits_2_naming_claim_field_and_near_name(results, tmp_path, capsys, typo):
    """Issue 13: a typo was "inconclusive: no unit to test" (exit 1, or 0 when tracked); it is bad input."""
    claims = tmp_path / "claims.yaml"
    fields = f"a: cud, {typo}" if typo.startswith("sets") else typo
    claims.write_text("claims:\n  - {id: typo, " + fields + ", b: kd, metric: accuracy, direction: higher}\n")
    records = tmp_path / "run"
    write_run(records)
    assert main(["check", str(claims), "--results", str(records), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    field, near = ("a", "'cud'") if typo.startswith("a") else ("sets", "'clean'")
    assert f"claim 'typo': field '{field}'" in err and f"did you mean {near}" in err
    assert not (tmp_path / "out").exists()  # refused before any work


def test_claims_against_kd_carry_kd_s_own_gain_over_ce_on_the_same_units(results):
    against_kd, against_ce, teachers = check(
        [claim(id="x", a=Side("cud"), b=Side("kd")), claim(id="y"), claim(id="t", a=Side("cud", "teacher"), b=Side("kd", "teacher"))],
        results,
    )
    gain = against_kd.kd_gain
    # kd is far more accurate than ce in this run, cud equals kd: the claim is inconclusive, KD itself helps
    assert against_kd.status == "inconclusive" and (gain.claim, gain.status) == ("x:kd-gain", "holds")
    assert gain.effect > 0.2 and gain.low > 0 and not gain.required and gain.n_units == against_kd.n_units
    assert against_ce.kd_gain is None and teachers.kd_gain is None  # only claims against kd's student get one
    alone = check([claim(id="x:kd-gain")], results)[0]  # the companion is that claim itself (draws seeded by the id)
    assert (gain.effect, gain.low, gain.high) == (alone.effect, alone.low, alone.high)
    assert against_kd.to_dict()["kd_gain"]["status"] == "holds"
    md = to_markdown([against_kd, against_ce], [claim(id="x", a=Side("cud"), b=Side("kd")), claim(id="y")], "run")
    assert "KD gain (kd - ce, same units)" in md and f"holds: {gain.effect:+.4f}" in md and md.rstrip().endswith("| — |")
    assert "KD gain" not in to_markdown([against_ce], [claim(id="y")], "run")  # no claim against kd, no column


def test_check_command_exit_status_and_reports(results, tmp_path, capsys):
    records = tmp_path / "run"
    write_run(records)
    claims = tmp_path / "claims.yaml"
    body = """
        defaults: {{metric: accuracy, sets: [clean], n_resamples: 200}}
        claims:
          - {{id: kd-beats-ce, a: kd, b: ce, direction: higher, required: true}}
          - {{id: tracked-false, a: kd, b: ce, direction: lower}}
          {extra}
    """
    claims.write_text(textwrap.dedent(body.format(extra="")))
    out = tmp_path / "report"
    assert main(["check", str(claims), "--results", str(records), "--out", str(out)]) == 0
    assert "check claims" in (err := capsys.readouterr().err) and "2/2" in err  # a bar over the claims
    verdicts = json.loads((out / "claims.json").read_text())["verdicts"]
    assert [(v["claim"], v["status"]) for v in verdicts] == [("kd-beats-ce", "holds"), ("tracked-false", "fails")]
    assert main(["check", str(claims), "--results", str(records), "--out", str(out), "--no-progress"]) == 0
    assert "check claims" not in capsys.readouterr().err
    assert "| kd-beats-ce (required) | kd higher than ce |" in (out / "claims.md").read_text()
    claims.write_text(textwrap.dedent(body.format(extra="- {id: required-false, a: kd, b: ce, direction: lower, required: true}")))
    assert main(["check", str(claims), "--results", str(records), "--out", str(out)]) == 1
    assert main(["check", str(tmp_path / "missing.yaml"), "--results", str(records)]) == 2
    assert main(["check", str(claims), "--results", str(tmp_path / "nothing-here")]) == 2
    assert "no result records" in capsys.readouterr().err


def test_views_show_teacher_costs_and_claim_verdicts(release, tmp_path):
    from leaderboard.views import build

    claims = tmp_path / "paper.yaml"
    claims.write_text("claims: [{id: kd-beats-ce, a: kd, b: ce, metric: accuracy, direction: higher, sets: [clean], n_resamples: 200}]")
    build(release, tmp_path / "views", n_resamples=100, claims_files=[claims])
    md = (tmp_path / "views" / "LEADERBOARD.md").read_text()
    # the fixture's teachers report accuracy 0.50, 0.51, 0.52 over seeds 0-2 and 1000-1002 examples/s
    assert "| unit | toy | ce | 3 | 51.0 | 51.00 | 51.0 | 1,001 | 1.00× |" in md
    assert "## Claims: paper.yaml" in md and "| kd-beats-ce | kd higher than ce | accuracy (raw, each) | **holds** |" in md
    page = (tmp_path / "views" / "index.html").read_text()
    assert "<h2>Teachers</h2>" in page and '<span class="verdict holds">holds</span> <b>kd-beats-ce</b>' in page


def test_verdicts_carry_their_forest_plot_rows_per_task_unit_and_sign_test_task(results):
    mean, each, sign = check(
        [
            claim(id="mean", sets=("family:corruption",), aggregate="mean"),
            claim(id="each", sets=("family:corruption",)),
            claim(id="sign", test="sign-test"),
        ],
        results,
    )
    (task,) = mean.parts  # one task: its row is the pooled estimate, from the same replicates
    assert task.label == "unit/toy" and task.n_units == 2
    assert (task.effect, task.low, task.high) == (mean.effect, mean.low, mean.high)
    assert [p.label for p in each.parts] == [u.label for u in each.units] and [p.effect for p in each.parts] == [u.effect for u in each.units]
    assert sign.parts[0].label == "unit/toy" and sign.parts[0].effect == sign.effect and sign.parts[0].low is None
    assert check([claim(id="mean", sets=("family:corruption",), aggregate="mean")], results)[0].parts == mean.parts  # deterministic
