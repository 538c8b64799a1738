"""The leaderboard as a site (``views/index.html``) and its terminal twin (``leaderboard show``).

The page answers the questions people open a leaderboard for, in that order:

1. **Claims first**: each claim's verdict (holds / fails / inconclusive), effect A - B, interval,
   Holm p, minimum detectable effect and excluded degenerate cells, with a small inline-SVG
   forest plot (the effect per task, the pooled effect last: :attr:`leaderboard.claims.Verdict.parts`);
2. **a method x set-family table** (clean, corruption, domain, ambiguous, long-tail) of means for
   the selected protocol, student, variant and metric, averaged over the selected tasks;
3. **filters and drill-down**: one board at a time, its rows (one per method: mean ± std over
   seeds, the bootstrap interval, the difference from vanilla KD and its p-value where the
   build tested the set), its reliability diagram and ECE-against-severity figures, and links
   to each row's entries (JSON) and predictions, relative inside the release folder.

A set family's value on a board is its pool (``pool/<family>``: every labelled set of the family
concatenated, the set the build bootstraps) when there is one; for families of subsets
(ambiguous, long-tail), the per-seed mean over the family's sets, then mean ± std over seeds.

The page is rendered from Jinja2 templates (``templates/``) with one static script and one style
sheet (``static/``, copied beside it): no server, no network, no CDN; it opens from ``file://``.
The filter state lives in the URL's hash (shareable links). Everything is a function of the
release, the build's statistics and the claims' verdicts, in a fixed order with numbers rounded
to :data:`DIGITS` significant digits, so a rebuild writes the same bytes.

:func:`overview` is the one computation behind both the page's tables and the terminal's
(``cud-bench leaderboard show``, text or ``--format json``); the page's script only filters the
rows and averages the family values over the selected tasks, and a browser test checks it prints
what :func:`overview` does.
"""

from __future__ import annotations

import dataclasses
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

import jinja2
import numpy as np

from cud_bench.errors import CudBenchError
from cud_bench.registry import did_you_mean
from leaderboard import entry as entry_format
from leaderboard.entry import VARIANTS
from leaderboard.stats import HIGHER_IS_BETTER, LEVEL, REFERENCE, Board, Stat, boards, summarize_board
from leaderboard.store import Release

FAMILIES = ("clean", "corruption", "domain", "ambiguous", "long-tail")
FILTERS = ("suite", "task", "protocol", "student", "variant", "family", "metric")
ALL = "all"  # the task filter's "every task" value
DIGITS = 6  # significant digits of the numbers the page (and `leaderboard show`) carries, as in leaderboard.csv
STAT_FIELDS = ("mean", "std", "low", "high", "delta", "delta_low", "delta_high", "p_value", "rank")
ASSETS = ("site.js", "site.css")
CLAIMS_JSON = "claims.json"


@dataclasses.dataclass(frozen=True)
class Filters:
    """What the page's filter bar and ``leaderboard show`` select; None: the first choice there is."""

    suite: str | None = None
    task: str = ALL
    protocol: str | None = None
    student: str | None = None
    variant: str = "raw"
    family: str = "clean"
    metric: str = "accuracy"


# -- the model -------------------------------------------------------------------------


def set_family(set_id: str, shifts: dict[str, dict[str, str]]) -> str | None:
    """The family a set belongs to (clean, a pool's family, or its shift's family)."""
    head, _, rest = set_id.partition("/")
    if head == entry_format.CLEAN:
        return "clean"
    if head == entry_format.POOL:
        return rest
    return shifts[head]["family"] if head in shifts else None


def family_stat(index: dict[tuple, Stat], board: Board, method: str, family: str, variant: str, metric: str, sets: Sequence[str], shifts: dict) -> Stat | None:
    """A board's value for a set family (see the module docstring); None where the board has none."""
    if family == "clean":
        return index.get((board, method, entry_format.CLEAN, variant, metric))
    pooled = index.get((board, method, f"{entry_format.POOL}/{family}", variant, metric))
    if pooled is not None:
        return pooled
    members = [index.get((board, method, s, variant, metric)) for s in sets if "@" in s and set_family(s, shifts) == family]
    members = [m for m in members if m is not None and m.note != "not scored"]
    if not members:
        return None
    usable = [m for m in members if m.mean is not None]
    if len(usable) < len(members) or len({m.seeds for m in usable}) > 1:
        return Stat(board, method, f"family/{family}", variant, metric, note=next((m.note for m in members if m.note), "seeds differ between sets"))
    per_seed = np.mean([m.values for m in usable], axis=0)
    return Stat(
        board, method, f"family/{family}", variant, metric, seeds=usable[0].seeds, values=tuple(float(v) for v in per_seed),
        mean=float(np.mean(per_seed)), std=float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else None,
        note=f"mean of {len(usable)} sets" if len(usable) > 1 else "",
    )


@dataclasses.dataclass(frozen=True)
class Row:
    """One (board, method): its seeds, entry and predictions files, and its family values."""

    board: Board
    method: str
    seeds: tuple[int, ...]
    entries: tuple[str, ...]  # relative to the release folder, one per seed
    predictions: tuple[str, ...]  # distinct files, relative to the release folder
    values: dict[tuple[str, str, str], Stat]  # (family, variant, metric) -> stat


def rows_of(release: Release, stats: Sequence[Stat], metrics: Sequence[str]) -> list[Row]:
    """Every (board, method) of the release with its values for every family, variant and metric."""
    entries = release.entries()
    shas = release.index()["entries"]
    shifts = {sid: info for e in entries for sid, info in e["shifts"].items()}
    index = {(s.board, s.method, s.set_id, s.variant, s.metric): s for s in stats}
    sets_of: dict[Board, list[str]] = {}
    for s in stats:
        sets_of.setdefault(s.board, [])
        if s.set_id not in sets_of[s.board]:
            sets_of[s.board].append(s.set_id)
    out = []
    for board, methods in boards(entries).items():
        for method in sorted(methods, key=lambda m: (m != REFERENCE, m)):
            es = methods[method]
            stems = [entry_format.stem(e["cell"]) for e in es]
            values = {}
            for family in FAMILIES:
                for variant in VARIANTS:
                    for metric in metrics:
                        stat = family_stat(index, board, method, family, variant, metric, sets_of.get(board, []), shifts)
                        if stat is not None:
                            values[family, variant, metric] = stat
            out.append(Row(
                board, method, tuple(e["cell"]["seed"] for e in es),
                tuple(release.entry_path(s, shas[s]).relative_to(release.path).as_posix() for s in stems),
                tuple(dict.fromkeys(f for e in es for f, _ in entry_format.prediction_files(e))), values,
            ))
    return out


def choices(rows: Sequence[Row], metrics: Sequence[str]) -> dict[str, list[str]]:
    """The values each filter offers, in order (the first is the default where one is needed)."""
    return {
        "suite": sorted({r.board.suite for r in rows}),
        "task": [ALL, *sorted({r.board.task for r in rows})],
        "protocol": sorted({r.board.protocol for r in rows}),
        "student": sorted({r.board.student for r in rows}),
        "variant": list(VARIANTS),
        "family": list(FAMILIES),
        "metric": list(metrics),
    }


def resolve(filters: Filters, options: dict[str, list[str]], what: str) -> Filters:
    """``filters`` with defaults filled in; an unknown value is a CudBenchError naming the choices."""
    values = {}
    for name in FILTERS:
        value = getattr(filters, name)
        if value is None:
            value = options[name][0] if options[name] else None
        elif value not in options[name]:
            raise CudBenchError(f"{what} has no {name} {value!r}{did_you_mean(value, options[name])} (its {name}s: {', '.join(options[name])})")
        values[name] = value
    return Filters(**values)


def selected(rows: Sequence[Row], f: Filters) -> list[Row]:
    """The rows the filters select: one suite, protocol and student; one task or all."""
    return [
        r for r in rows
        if (r.board.suite, r.board.protocol, r.board.student) == (f.suite, f.protocol, f.student) and f.task in (ALL, r.board.task)
    ]


def family_table(rows: Sequence[Row], f: Filters) -> dict[str, Any]:
    """Method x family: the mean over the selected tasks of each board's family value, and how
    many tasks have it (a family some tasks lack is averaged over those that have it)."""
    methods = list(dict.fromkeys(r.method for r in rows))
    table = []
    for method in methods:
        cells = []
        for family in FAMILIES:
            means = [r.values[family, f.variant, f.metric].mean for r in rows if r.method == method and (family, f.variant, f.metric) in r.values]
            means = [_round(m) for m in means if m is not None]  # the page's numbers, summed in order as its script does
            cells.append({"mean": sum(means) / len(means) if means else None, "tasks": len(means)})
        table.append({"method": method, "cells": cells})
    return {"families": list(FAMILIES), "rows": table}


def overview(release: Release, stats: Sequence[Stat], metrics: Sequence[str], f: Filters, claims: list[dict[str, Any]]) -> dict[str, Any]:
    """What the page shows first and ``leaderboard show`` prints: claims, the family table, the rows."""
    all_rows = rows_of(release, stats, metrics)
    f = resolve(f, choices(all_rows, metrics), f"release {release.version}")
    rows = selected(all_rows, f)
    return {
        "release": release.version,
        "filters": dataclasses.asdict(f),
        "claims": claims,
        "family_table": family_table(rows, f),
        "rows": [
            {"task": r.board.task, "method": r.method, "seeds": list(r.seeds), **_stat_dict(r.values.get((f.family, f.variant, f.metric)))}
            for r in rows
        ],
    }


def _stat_dict(stat: Stat | None) -> dict[str, Any]:
    if stat is None:
        return {k: None for k in STAT_FIELDS} | {"note": "not scored"}
    return {k: _round(getattr(stat, k)) if k != "rank" else stat.rank for k in STAT_FIELDS} | {"note": stat.note}


def _round(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.{DIGITS}g}")


# -- claims ----------------------------------------------------------------------------


def claim_records(claim_sets: Sequence[tuple[str, list, list]]) -> list[dict[str, Any]]:
    """The verdicts of every claims file, one dict per claim with its definition (what the page,
    ``claims.json`` and ``leaderboard show`` print); ``claim_sets`` is [(file name, claims, verdicts)]."""
    out = []
    for name, claims, verdicts in claim_sets:
        by_id = {c.id: c for c in claims}
        for v in verdicts:
            c = by_id[v.claim]
            out.append({
                "file": name, "id": v.claim, "required": v.required, "description": c.description,
                "comparison": f"{c.a} {c.direction} than {c.b}", "direction": c.direction, "metric": c.metric,
                "variant": c.variant, "aggregate": c.aggregate, "test": c.test, "level": c.level, "sets": list(c.sets),
                "protocols": list(c.protocols), "students": list(c.students),
                "status": v.status, "shown_status": v.shown_status, "resolution": v.resolution,
                **{k: _round(getattr(v, k)) for k in ("effect", "low", "high", "p_value", "p_holm", "mde")},
                "n_tasks": v.n_tasks, "n_seeds": v.n_seeds, "n_units": v.n_units, "n_excluded": v.n_excluded, "note": v.note,
                "parts": [{"label": p.label, "effect": _round(p.effect), "low": _round(p.low), "high": _round(p.high), "n_units": p.n_units} for p in v.parts],
                "kd_gain": v.kd_gain and {"shown_status": v.kd_gain.shown_status,
                                          **{k: _round(getattr(v.kd_gain, k)) for k in ("effect", "low", "high")}},
            })
    return out


def check_claims(release: Release, claims_files: Sequence[Path]) -> list[tuple[str, list, list]]:
    """[(file name, claims, verdicts)] of every claims file on the release."""
    from leaderboard.claims import Results, check, load_claims

    results = Results.from_release(release)
    out = []
    for path in claims_files:
        claims = load_claims(Path(path))
        out.append((Path(path).name, claims, check(claims, results)))
    return out


def claims_json(records: list[dict[str, Any]]) -> str:
    return json.dumps({"claims": records}, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def read_claims(views: Path) -> list[dict[str, Any]]:
    """The verdicts a build wrote beside the page (``claims.json``); none when it checked none."""
    path = Path(views) / CLAIMS_JSON
    if not path.is_file():
        return []
    try:
        return json.loads(path.read_text())["claims"]
    except (OSError, ValueError, KeyError) as exc:
        raise CudBenchError(f"cannot read the built claim verdicts {path}: {exc}") from None


FOREST_WIDTH, FOREST_LABEL, FOREST_ROW = 250, 150, 13


def forest(claim: dict[str, Any]) -> dict[str, Any] | None:
    """Geometry of a claim's forest plot: one row per part, the pooled effect last, a line at zero."""
    rows = [*claim["parts"], {"label": "pooled", "effect": claim["effect"], "low": claim["low"], "high": claim["high"], "pooled": True}]
    rows = [r for r in rows if r["effect"] is not None]
    if not rows:
        return None
    values = [0.0] + [v for r in rows for v in (r["effect"], r["low"], r["high"]) if v is not None]
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.06 or 0.01
    lo, hi = lo - pad, hi + pad

    def x(v: float) -> str:
        return f"{FOREST_LABEL + (v - lo) / (hi - lo) * FOREST_WIDTH:.1f}"

    labels = _short_labels([r["label"] for r in rows if not r.get("pooled")]) + ["pooled"]
    out = []
    for i, (r, label) in enumerate(zip(rows, labels)):
        out.append({
            "y": f"{(i + 1) * FOREST_ROW:.0f}", "label": label[:28], "title": f"{r['label']}: {r['effect']:+.4f}"
            + (f" [{r['low']:+.4f}, {r['high']:+.4f}]" if r.get("low") is not None else ""),
            "x": x(r["effect"]), "low": x(r["low"]) if r.get("low") is not None else None,
            "high": x(r["high"]) if r.get("high") is not None else None, "pooled": bool(r.get("pooled")),
        })
    height = (len(rows) + 1) * FOREST_ROW + 4
    return {
        "width": FOREST_LABEL + FOREST_WIDTH + 10, "height": height, "zero": x(0.0), "rows": out,
        "axis_y": f"{height - 4}", "ticks": [{"x": x(v), "text": f"{v:+.3g}"} for v in (lo + pad, hi - pad) if abs(v) > 1e-12],
    }


def _short_labels(labels: list[str]) -> list[str]:
    """Labels without the parts every one of them shares ("cpu/rt-polarity" -> "rt-polarity";
    "cpu / toy / cross-fit / mlp-l3 / clean" -> "toy / mlp-l3" when only task and student vary)."""
    sep = " / " if any(" / " in x for x in labels) else "/"
    split = [x.split(sep) for x in labels]
    if len(labels) < 2 or len({len(parts) for parts in split}) != 1:
        return [x.split("/", 1)[-1] if sep == "/" and len(labels) == 1 else x for x in labels]
    keep = [i for i in range(len(split[0])) if len({parts[i] for parts in split}) > 1] or [len(split[0]) - 1]
    return [sep.join(parts[i] for i in keep) for parts in split]


# -- the page --------------------------------------------------------------------------


def _env() -> jinja2.Environment:
    loader = jinja2.FileSystemLoader(str(resources.files("leaderboard") / "templates"))
    env = jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.policies["json.dumps_kwargs"] = {"sort_keys": True, "separators": (",", ":"), "allow_nan": False}
    return env


def page_data(release: Release, rows: Sequence[Row], metrics: Sequence[str], figure_files: dict[Board, list[str]], out_dir: Path) -> dict[str, Any]:
    """Everything the page's script filters, compactly: boards, then rows with their values as
    [family][variant][metric] -> :func:`_compact` or null."""
    from leaderboard.views import display  # labels have one home: views

    up = Path(os.path.relpath(release.path, out_dir)).as_posix()
    board_list = sorted({r.board for r in rows})
    number = {b: i for i, b in enumerate(board_list)}
    return {
        "release": release.version,
        "reference": REFERENCE,
        "choices": choices(rows, metrics),
        "metrics": {m: {"label": display(m).label, "scale": display(m).scale, "decimals": display(m).decimals,
                        "higher": m.split("/")[0] in HIGHER_IS_BETTER} for m in metrics},
        "boards": [
            {"suite": b.suite, "task": b.task, "protocol": b.protocol, "student": b.student, "label": b.label,
             "figures": [f"figures/{n}" for n in figure_files.get(b, [])]}
            for b in board_list
        ],
        "rows": [
            {
                "board": number[r.board], "method": r.method, "seeds": list(r.seeds),
                "entries": [f"{up}/{e}" for e in r.entries], "predictions": [f"{up}/{p}" for p in r.predictions],
                "values": [[[_compact(r.values.get((fam, v, m))) for m in metrics] for v in VARIANTS] for fam in FAMILIES],
            }
            for r in rows
        ],
    }


def _compact(stat: Stat | None) -> list | None:
    """[mean, std, low, high, delta, delta_low, delta_high, p, rank, note] without its trailing
    empty fields (most sets are not bootstrapped: two numbers instead of ten keep the page small)."""
    if stat is None or stat.note == "not scored":
        return None
    out = [_round(getattr(stat, k)) if k != "rank" else stat.rank for k in STAT_FIELDS] + [stat.note]
    while out and out[-1] in (None, ""):
        out.pop()
    return out


def render(
    release: Release, stats: Sequence[Stat], metrics: Sequence[str], figure_files: dict[Board, list[str]], out_dir: Path,
    *, claims: list[dict[str, Any]], teachers: tuple[Sequence[str], list[list[str]]], legend: str, level: float = LEVEL,
) -> dict[str, bytes]:
    """index.html and its assets (name -> bytes, relative to ``out_dir``)."""
    rows = rows_of(release, stats, metrics)
    data = page_data(release, rows, metrics, figure_files, out_dir)
    html = _env().get_template("index.html.j2").render(
        version=release.version, claims=[{**c, "forest": forest(c)} for c in claims], data=data, level=level,
        teacher_header=teachers[0], teacher_rows=teachers[1], legend=legend, notes=release.notes(),
        filters=FILTERS, labels=_filter_labels(data), reference=REFERENCE,
    )
    static = resources.files("leaderboard") / "static"
    return {"index.html": html.encode(), **{f"assets/{n}": (static / n).read_bytes() for n in ASSETS}}


def _filter_labels(data: dict[str, Any]) -> dict[str, dict[str, str]]:
    from leaderboard.views import VARIANT_LABELS

    return {
        "task": {ALL: "all tasks"},
        "variant": dict(VARIANT_LABELS),
        "metric": {m: info["label"] for m, info in data["metrics"].items()},
    }


# -- the terminal ----------------------------------------------------------------------


def show(release: Release, f: Filters, *, metrics: Sequence[str] = (), claims_files: Sequence[Path] = ()) -> dict[str, Any]:
    """``leaderboard show``'s overview: claims (from ``claims_files`` checked now, or the verdicts the
    last build wrote), the family table and the rows, from the stored scores (mean ± std over seeds;
    intervals and tests are the build's: the page and leaderboard.csv)."""
    from leaderboard.views import MAIN_METRICS

    entries = release.entries()
    known = sorted({m for e in entries for m in e["metrics"]["classification"]})
    metrics = list(dict.fromkeys([*(metrics or MAIN_METRICS), f.metric]))
    for m in metrics:
        if entries and m not in known:
            raise CudBenchError(f"release {release.version} has no metric {m!r}{did_you_mean(m, known)}; its metrics: {', '.join(known)}")
    stats = []
    for board, methods in boards(entries).items():
        stats += summarize_board(board, methods, release.predictions, metrics=[f.metric])
    claims = claim_records(check_claims(release, claims_files)) if claims_files else read_claims(release.path / "views")
    return overview(release, stats, metrics, f, claims)


def to_json(view: dict[str, Any]) -> str:
    return json.dumps(view, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def sections(view: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """The overview as plain-text tables: [(title, header, rows)] (the CLI prints them)."""
    from leaderboard.views import VARIANT_LABELS, display

    f = view["filters"]
    out = []
    if view["claims"]:
        header = ["claim", "A vs B", "metric", "verdict", "effect", "95% interval", "Holm p", "MDE", "tasks", "excluded"]
        rows = [
            [c["id"] + (" (required)" if c["required"] else ""), c["comparison"], f"{c['metric']} ({c['variant']}, {c['aggregate']})",
             c["shown_status"], _signed(c["effect"]), f"[{_signed(c['low'])}, {_signed(c['high'])}]" if c["low"] is not None else "—",
             _plain(c["p_holm"], ".3g"), _plain(c["mde"], ".4f"), str(c["n_tasks"]), str(c["n_excluded"])]
            for c in view["claims"]
        ]
        out.append((f"Claims on release {view['release']}", header, rows))
    d = display(f["metric"])
    scope = f"{f['suite']} · {f['protocol']} targets · {f['student']} student · {VARIANT_LABELS[f['variant']]} · {'every task' if f['task'] == ALL else f['task']}"
    table = view["family_table"]
    out.append((
        f"{d.label} ({f['metric']}) by set family, mean over tasks [tasks]: {scope}",
        ["method", *table["families"]],
        [[r["method"], *(("–" if c["mean"] is None else f"{d.format(c['mean'])} [{c['tasks']}]") for c in r["cells"])] for r in table["rows"]],
    ))
    rows = [[r["task"], r["method"], str(len(r["seeds"])), _mean_std(d, r), r["note"]] for r in view["rows"]]
    out.append((f"{d.label} on {f['family']}: {scope}", ["task", "method", "seeds", f"{d.label} mean ± std", "note"], rows))
    return out


def _mean_std(d: Any, r: dict[str, Any]) -> str:
    if r["mean"] is None:
        return "n/a"
    return d.format(r["mean"]) + (f" ± {d.format(r['std'])}" if r["std"] is not None else "")


def _signed(value: float | None) -> str:
    return "—" if value is None else f"{value:+.4f}"


def _plain(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)
