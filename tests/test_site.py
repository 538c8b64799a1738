"""The leaderboard site (views/index.html) in a real browser, and its terminal twin.

A small release (two tasks x two students x three methods x three seeds, test_leaderboard's
synthetic records) is built with a claims file; headless Chromium (Debian's, driven over a
DevTools pipe: no port, no download, works in tests/netns.sh) opens the page from file://,
selects a task and a student, sorts a column, opens a drill-down, and checks that the console
shows no error and every figure decodes. ``leaderboard show`` must print what the page shows.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from test_leaderboard import MANIFEST, METHODS, write_run

from cud_bench.cli import main
from leaderboard import site, versions, views
from leaderboard.browser import Browser, find_chromium
from leaderboard.release import import_run
from leaderboard.store import open_release

TASKS = ("toy", "toy2")
STUDENTS = ("mlp-l3", "hashed-bag")
CLAIMS = """claims:
  - {id: kd-beats-ce, a: kd, b: ce, metric: accuracy, direction: higher, sets: [clean], aggregate: mean, n_resamples: 200}
  - {id: cud-calibrated-under-typos, a: cud, b: kd, metric: ece/uniform/15/l1, direction: lower, sets: [pool/corruption], aggregate: mean, n_resamples: 200}
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The release's folder, its views built inside it (so the page's links stay inside the release)."""
    root = tmp_path_factory.mktemp("site")
    bench = root / "benchmark.json"
    bench.write_text(json.dumps({"version": "1.0.0", "specs": MANIFEST}))
    records = write_run(root / "run", tasks=TASKS, students=STUDENTS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(versions, "current_manifest", lambda: json.loads(json.dumps(MANIFEST)))
        release = import_run(records, "1.0.0", root=root / "releases", benchmark_file=bench).release
    (root / "paper.yaml").write_text(CLAIMS)
    views.build(release, n_resamples=40, claims_files=[root / "paper.yaml"])
    return release.path


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_site_rebuilds_byte_for_byte_needs_no_network_and_links_inside_the_release(built, tmp_path):
    release = open_release("1.0.0", built.parent)
    views.build(release, tmp_path / "again", n_resamples=40, claims_files=[built.parent.parent / "paper.yaml"])
    first, again = _snapshot(built / "views"), _snapshot(tmp_path / "again")
    assert first.keys() == again.keys() and {"index.html", "assets/site.js", "assets/site.css", "claims.json"} <= first.keys()
    differ = [n for n in first if first[n] != again[n]]
    assert differ == ["index.html"]  # only the relative links to entries and predictions: the other folder is elsewhere
    views.build(release, n_resamples=40, claims_files=[built.parent.parent / "paper.yaml"])
    assert _snapshot(built / "views") == first  # the same folder: the same bytes
    page = first["index.html"].decode()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page) and "http" not in first["assets/site.js"].decode()
    data = json.loads(page.split('<script type="application/json" id="data">')[1].split("</script>")[0])
    files = [f for row in data["rows"] for f in row["entries"] + row["predictions"]] + [f for b in data["boards"] for f in b["figures"]]
    assert len(data["rows"]) == len(TASKS) * len(STUDENTS) * len(METHODS)
    assert all((built / "views" / f).resolve().is_file() for f in files) and all((built / "views" / f).resolve().is_relative_to(built) for f in files)


def test_claims_json_carries_each_claims_forest_rows(built):
    claims = json.loads((built / "views" / "claims.json").read_text())["claims"]
    assert [c["id"] for c in claims] == ["kd-beats-ce", "cud-calibrated-under-typos"]
    kd = claims[0]
    assert kd["status"] == "holds" and [p["label"] for p in kd["parts"]] == ["unit/toy", "unit/toy2"]
    assert all(p["low"] <= p["effect"] <= p["high"] and p["n_units"] == 2 for p in kd["parts"])  # two students per task
    assert kd["effect"] == pytest.approx(sum(p["effect"] for p in kd["parts"]) / 2, abs=1e-5)  # the mean over tasks
    svg = site.forest(kd)
    assert [r["label"] for r in svg["rows"]] == ["toy", "toy2", "pooled"] and svg["rows"][-1]["pooled"]


def test_show_prints_the_overview_claims_first_with_the_pages_filters(built, capsys):
    root = str(built.parent)
    assert main(["leaderboard", "show", "--root", root, "--task", "toy2", "--student", "hashed-bag", "--metric", "nll"]) == 0
    text = capsys.readouterr().out
    assert text.index("Claims on release 1.0.0") < text.index("by set family") < text.index("NLL on clean")
    assert "kd-beats-ce" in text and "unit · cross-fit targets · hashed-bag student · raw · toy2" in text
    assert main(["leaderboard", "show", "--root", root, "--family", "corruption", "--variant", "ts", "--format", "json"]) == 0
    view = json.loads(capsys.readouterr().out)
    assert view["filters"] == {  # unset filters take the first choice, as on the page
        "suite": "unit", "task": "all", "protocol": "cross-fit", "student": "hashed-bag", "variant": "ts", "family": "corruption", "metric": "accuracy",
    }
    assert [c["id"] for c in view["claims"]] == ["kd-beats-ce", "cud-calibrated-under-typos"]
    assert [(r["task"], r["method"]) for r in view["rows"]] == [(t, m) for t in TASKS for m in ("kd", "ce", "cud")]
    assert main(["leaderboard", "show", "--root", root, "--student", "mlp-l2"]) == 2
    assert "has no student 'mlp-l2'; did you mean 'mlp-l3'?" in capsys.readouterr().err


# -- in the browser ----------------------------------------------------------------------

SETTLE = """new Promise((done, fail) => {{
  const until = Date.now() + 10000;
  (function poll() {{
    if (document.body.dataset.state === {state}) done(true);
    else if (Date.now() > until) fail(new Error("page state " + document.body.dataset.state));
    else setTimeout(poll, 10);
  }})();
}})"""
FIGURES = """(async () => {
  const imgs = Array.from(document.querySelectorAll("#drill-figures img"));
  for (const img of imgs) {
    img.scrollIntoView();
    await Promise.race([img.decode().catch(() => null), new Promise(r => setTimeout(r, 10000))]);
  }
  return imgs.map(i => [i.getAttribute("src"), i.getAttribute("loading"), i.complete, i.naturalWidth]);
})()"""
ROWS = "Array.from(document.querySelectorAll('#rows-table tbody tr')).filter(r => r.offsetParent !== null).map(r => [r.dataset.task, r.dataset.method, r.cells[3].textContent])"


def _select(browser: Browser, name: str, value: str) -> None:
    """Choose ``value`` in a filter's drop-down, as a user does (the change event), and wait for the page."""
    before = browser.js("location.hash")
    browser.js(f"(s => {{ s.value = {json.dumps(value)}; s.dispatchEvent(new Event('change', {{bubbles: true}})); }})(document.getElementById('f-{name}'))")
    _settle(browser, before)


def _settle(browser: Browser, before: str) -> str:
    """Wait until the address changed from ``before`` and the page rendered the new state."""
    browser.js(SETTLE.format(state="location.hash.slice(1)"))
    after = browser.js("location.hash")
    assert after != before
    return after


@pytest.mark.skipif(find_chromium() is None, reason="needs Debian's chromium package (setup.sh installs it)")
def test_the_site_in_headless_chromium_filters_sorts_drills_down_and_loads_every_figure(built):
    index = built / "views" / "index.html"
    claims = json.loads((built / "views" / "claims.json").read_text())["claims"]
    with Browser() as browser:
        browser.open(index.as_uri())
        assert browser.js("document.body.dataset.ready") == "yes"
        # claims first, each with its forest plot
        assert browser.js("document.querySelector('main > section').id") == "claims"
        assert browser.js("Array.from(document.querySelectorAll('#claims article')).map(a => [a.id, a.dataset.status, !!a.querySelector('svg.forest')])") == [
            [f"claim-{c['id']}", c["status"], True] for c in claims
        ]
        # select a task and a student: the rows are that board's, the address says so
        _select(browser, "task", "toy2")
        _select(browser, "student", "mlp-l3")
        state = dict(p.split("=") for p in unquote(browser.js("location.hash"))[1:].split("&"))
        assert state["task"] == "toy2" and state["student"] == "mlp-l3"
        assert [r[:2] for r in browser.js(ROWS)] == [["toy2", m] for m in ("kd", "ce", "cud")]
        # the page prints what `leaderboard show` prints for the same filters
        view = site.show(open_release("1.0.0", built.parent), site.Filters(task="toy2", student="mlp-l3"))
        (_, _, fam_rows), (_, _, rows) = site.sections(view)[1:]
        page_family = browser.js("Array.from(document.querySelectorAll('#family-table tbody tr')).map(r => Array.from(r.cells).map(c => c.textContent))")
        assert page_family == fam_rows and len(page_family) == len(METHODS)
        assert [r[2] for r in browser.js(ROWS)] == [r[3] for r in rows]
        # sort a column by clicking its header (twice: descending)
        before = browser.js("location.hash")
        browser.click("#rows-table th[data-key=mean]")
        before = _settle(browser, before)
        browser.click("#rows-table th[data-key=mean]")
        assert "sort=-mean" in _settle(browser, before)
        means = browser.js("Array.from(document.querySelectorAll('#rows-table tbody td[data-value]')).map(td => parseFloat(td.dataset.value))")
        assert len(means) == 3 and means == sorted(means, reverse=True)
        assert browser.js("document.querySelector('#rows-table th[aria-sort]').dataset.key") == "mean"
        # a shared link opens the same view
        link, shown = browser.js("location.href"), browser.js(ROWS)
        browser.open("about:blank")
        browser.open(link)
        assert browser.js(ROWS) == shown
        # drill down from every task: click the task, see its board with its figures beside it
        _select(browser, "task", "all")
        assert len(browser.js(ROWS)) == len(TASKS) * len(METHODS) and browser.js("document.getElementById('drill').hidden")
        before = browser.js("location.hash")
        browser.click("#rows-table tr[data-task=toy] a.drill")
        assert "board=toy" in _settle(browser, before)
        assert browser.js("document.getElementById('drill').hidden") is False
        assert browser.js("document.getElementById('drill-title').textContent") == "unit / toy / cross-fit / mlp-l3"
        figures = browser.js(FIGURES)
        assert [Path(f[0]).name for f in figures] == [
            "unit__toy__cross-fit__mlp-l3__reliability.png", "unit__toy__cross-fit__mlp-l3__corruption-severity.png"
        ]
        assert all(lazy == "lazy" and complete and width > 0 for _, lazy, complete, width in figures)
        hrefs = browser.js("Array.from(document.querySelectorAll('#drill-table a')).map(a => a.href)")
        assert len(hrefs) == 3 * 6 and all(Path(unquote(urlsplit(h).path)).is_file() for h in hrefs)
        assert {Path(unquote(urlsplit(h).path)).parent.name for h in hrefs} == {"entries", "predictions"}
        # every board's figures load
        for task in TASKS:
            for student in STUDENTS:
                for name, value in (("student", student), ("task", task)):
                    if browser.js(f"document.getElementById('f-{name}').value") != value:
                        _select(browser, name, value)
                assert browser.js("document.getElementById('drill-title').textContent") == f"unit / {task} / cross-fit / {student}"
                loaded = browser.js(FIGURES)
                assert len(loaded) == 2 and all(width > 0 for *_, width in loaded), (task, student, loaded)
        assert browser.errors() == []
