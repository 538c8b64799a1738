"""Messages that hide nothing and views that embed text safely (issue 13, item 6)."""

from __future__ import annotations

import re

import pytest
from test_leaderboard import _entry, bench_file, records, release  # noqa: F401  (fixtures)

from cud_bench.cli import main
from cud_bench.errors import CudBenchError
from leaderboard import entry as entry_format
from leaderboard import site, views
from leaderboard.release import verify


def test_verify_names_every_problem_not_the_first_20(release, records):  # noqa: F811
    for method in ("kd", "cud", "ce"):
        for seed in (0, 1, 2):
            entry, npz = _entry(records, method, seed)
            for i in range(3):
                entry["sets"]["clean"]["raw"][i] += 0.01
            release.add(entry, npz, replace_reason="test: wrong numbers slip in")
    with pytest.raises(CudBenchError) as caught:
        verify(release)
    message = str(caught.value)
    assert message.startswith("27 problem(s) in release 1.0.0")
    assert len(re.findall(r"clean raw \S+: stored", message)) == 27 and "more" not in message


def test_show_with_an_unknown_task_exits_2_with_did_you_mean(release, capsys):  # noqa: F811
    with pytest.raises(CudBenchError, match=r"release 1.0.0 has no task 'tyo'; did you mean 'toy'\?"):
        site.show(release, site.Filters(task="tyo"))
    root = str(release.path.parent)
    assert main(["leaderboard", "show", "1.0.0", "--root", root, "--task", "tyo"]) == 2
    assert "did you mean 'toy'" in capsys.readouterr().err


def test_markdown_views_and_the_site_escape_the_text_they_embed(release, tmp_path):  # noqa: F811
    entries = release.entries()
    for e in entries:
        if e.get("teacher"):
            e["teacher"]["recipe"] = "ce|x<script>"
    md = views._teachers_markdown(entries)
    rows = [line for line in md.splitlines() if line.startswith("| unit")]
    assert rows and "<script>" not in md
    for row in rows:
        cells = re.split(r"(?<!\\)\|", row.strip().removeprefix("|").removesuffix("|"))
        assert len(cells) == len(views.TEACHER_HEADER)
    teachers = (views.TEACHER_HEADER, views.teacher_rows(entries))
    page = site.render(release, [], views.MAIN_METRICS, {}, tmp_path, claims=[], teachers=teachers, legend="")["index.html"].decode()
    assert "<script>" not in page and "<td>ce|x&lt;script&gt;</td>" in page


def test_md_escape_leaves_plain_names_alone():
    for name in ("rt-polarity", "cud+gamma=5", "dus(alpha=1.0,beta=2.0)", "20newsgroups-15groups"):
        assert views.md_escape(name) == name


def test_entry_stems_are_unchanged(records):  # noqa: F811
    entry, _ = _entry(records)
    assert entry_format.stem(entry["cell"]) == "unit__toy__kd__mlp-l3__cross-fit__seed0"
