"""The views of a release: LEADERBOARD.md, leaderboard.csv (+ leaderboard-all.csv.gz), claims.json, and
the site (index.html with its assets and figures: :mod:`leaderboard.site`).

Every view is a function of the release alone (entries and predictions), in a
fixed order, with no timestamps and with bootstrap seeds derived from what each
statistic is about, so ``build`` regenerates the same bytes every time.

The main table is task × method with accuracy, ECE, NLL and Brier on the clean
test set and under shift, raw and after temperature scaling. "Under shift" is
the corruption pool: every corruption shift at every severity, concatenated
(per-shift numbers are in leaderboard-all.csv.gz and the severity figures).
leaderboard.csv holds every statistic of the clean test set and the pooled
sets; leaderboard-all.csv.gz every statistic of every set (gzip, no timestamp).
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from cud_bench.io import write_bytes_atomic
from cud_bench.metrics import reliability_bins
from leaderboard import entry as entry_format
from leaderboard import figures
from leaderboard.entry import VARIANTS
from leaderboard.stats import LEVEL, REFERENCE, Board, Stat, boards, summarize_board
from leaderboard.store import Release

MAIN_METRICS = ("accuracy", "ece/uniform/15/l1", "nll", "brier")
DETECTION_METRICS = ("ood_auroc/msp", "ood_auroc/entropy", "ood_mean_confidence")
MAIN_SETS = (entry_format.CLEAN, f"{entry_format.POOL}/corruption")
SEVERITY_METRIC = "ece/uniform/15/l1"
VARIANT_LABELS = {"raw": "raw", "ts": "after temperature scaling"}
CSV_FIELDS = (
    "suite", "task", "protocol", "student", "method", "set", "variant", "metric", "n_seeds", "seeds",
    "mean", "std", "ci_low", "ci_high", "delta", "delta_low", "delta_high", "p_value", "rank", "note",
)


@dataclasses.dataclass(frozen=True)
class Display:
    """How a metric is printed: a short label, a scale (100 for percentages) and decimals."""

    label: str
    scale: float
    decimals: int

    def format(self, value: float | None) -> str:
        return "" if value is None else f"{self.scale * value:.{self.decimals}f}"


DISPLAY = {  # by metric name (the first part of its id)
    "accuracy": Display("Acc %", 100, 1),
    "macro_f1": Display("macro-F1 %", 100, 1),
    "ece": Display("ECE %", 100, 2),
    "classwise_ece": Display("cw-ECE %", 100, 2),
    "mce": Display("MCE %", 100, 1),
    "nll": Display("NLL", 1, 3),
    "brier": Display("Brier", 1, 3),
    "aurc": Display("AURC %", 100, 2),
    "mean_confidence": Display("conf %", 100, 1),
    "ood_auroc": Display("OOD AUROC %", 100, 1),
    "ood_mean_confidence": Display("OOD conf %", 100, 1),
}


def display(metric: str) -> Display:
    return DISPLAY.get(metric.split("/")[0], Display(metric, 1, 4))


def metric_label(metric: str) -> str:
    d = display(metric)
    return d.label if metric in MAIN_METRICS or d.label == metric else f"{d.label} ({metric})"


def set_label(set_id: str) -> str:
    head, _, rest = set_id.partition("/")
    return f"under {rest} (pooled)" if head == entry_format.POOL else set_id


# -- build -----------------------------------------------------------------------------
def build(
    release: Release,
    out_dir: Path | None = None,
    *,
    n_resamples: int = 1000,
    level: float = LEVEL,
    claims_files: Sequence[Path] = (),
) -> list[Path]:
    """Render every view of ``release`` into ``out_dir`` (default ``<release>/views``); returns the files.

    Figures no longer produced are removed, so the folder is exactly the build's output.
    The verdicts of ``claims_files`` on the release are part of the Markdown view, the site and
    claims.json (which ``leaderboard show`` prints).
    """
    from leaderboard import site

    out_dir = Path(out_dir) if out_dir is not None else release.path / "views"
    entries = release.entries()
    all_stats: list[Stat] = []
    figure_files: dict[Board, list[str]] = {}
    for board, methods in boards(entries).items():
        methods = dict(sorted(methods.items(), key=lambda m: (m[0] != REFERENCE, m[0])))
        board_stats = summarize_board(
            board, methods, release.predictions, metrics=MAIN_METRICS + DETECTION_METRICS,
            tested_sets=MAIN_SETS, n_resamples=n_resamples, level=level,
        )
        all_stats += board_stats
        figure_files[board] = _board_figures(release, board, methods, board_stats, out_dir / "figures")
    written = [out_dir / "figures" / name for names in figure_files.values() for name in names]
    for stale in sorted(set((out_dir / "figures").glob("*.*")) - set(written)):
        stale.unlink()
    return sorted(write_views(release, out_dir, all_stats, figure_files, site.check_claims(release, claims_files), level) + written)


def write_views(
    release: Release, out_dir: Path, all_stats: list[Stat], figure_files: dict[Board, list[str]],
    claim_sets: Sequence[tuple[str, list, list]], level: float = LEVEL,
) -> list[Path]:
    """Write every view but the figures from the build's statistics, figure names and claim verdicts."""
    from leaderboard import site

    entries = release.entries()
    claims = site.claim_records(claim_sets)
    extra = _teachers_markdown(entries) + _claims_markdown(release, claim_sets)
    main_sets = [s for s in all_stats if s.set_id.split("/")[0] in (entry_format.CLEAN, entry_format.POOL)]
    legend = _legend(level, f"Below the mean: its {level:.0%} bootstrap interval (seeds × examples) where the build tested the set "
                            f"(clean and pooled corruption), and Δ, the difference from {REFERENCE} on shared seeds, with its p-value.")
    views = {
        "LEADERBOARD.md": (markdown(release, all_stats, level) + extra).encode(),
        "leaderboard.csv": to_csv(main_sets).encode(),
        ALL_CSV: gzip.compress(to_csv(all_stats).encode(), mtime=0),
        site.CLAIMS_JSON: site.claims_json(claims).encode(),
        **site.render(
            release, all_stats, MAIN_METRICS, figure_files, out_dir, claims=claims,
            teachers=(TEACHER_HEADER, teacher_rows(entries)), legend=legend, level=level,
        ),
    }
    for name, data in views.items():
        write_bytes_atomic(out_dir / name, data)
    return [out_dir / name for name in views]


def _board_figures(
    release: Release, board: Board, methods: dict[str, list[dict[str, Any]]], stats: list[Stat], folder: Path
) -> list[str]:
    """The board's reliability diagrams (clean test set, seeds pooled, raw) and ECE-against-severity curves."""
    stem = "__".join(dataclasses.astuple(board))
    names = []
    bins = {}
    for method, entries in methods.items():
        parts = [entry_format.set_probs(release.predictions(e), entry_format.CLEAN, e["shifts"]) for e in entries]
        bins[method] = reliability_bins(np.concatenate([p for p, _ in parts]), np.concatenate([y for _, y in parts]))
    name = f"{stem}__reliability{figures.SUFFIX}"
    figures.reliability_figure(f"{board.label}: clean test set, raw, seeds pooled", bins, folder / name)
    names.append(name)
    for family, curves in _severity_curves(methods, stats).items():
        name = f"{stem}__{family}-severity{figures.SUFFIX}"
        figures.severity_figure(f"{board.label}: mean ECE over {family} shifts", curves, folder / name)
        names.append(name)
    return names


def _severity_curves(methods: dict[str, list[dict[str, Any]]], stats: list[Stat]) -> dict[str, dict[str, dict[str, dict[int, float]]]]:
    """{family: {variant label: {method: {severity: mean ECE over the family's shifts}}}} for every
    family whose labelled shifts have several severities; severity 0 is the clean test set."""
    shifts = {sid: info for es in methods.values() for e in es for sid, info in e["shifts"].items()}
    ece = {(s.method, s.set_id, s.variant): s.mean for s in stats if s.metric == SEVERITY_METRIC and s.mean is not None}
    families: dict[str, dict[int, set[str]]] = {}
    for _, set_id, _ in ece:
        shift, _, severity = set_id.partition("/")
        if shift in shifts and shifts[shift]["kind"] == "labelled":
            families.setdefault(shifts[shift]["family"], {}).setdefault(int(severity), set()).add(set_id)
    return {
        family: {
            VARIANT_LABELS[v]: {m: _curve(ece, m, v, by_severity) for m in methods if (m, entry_format.CLEAN, v) in ece}
            for v in VARIANTS
        }
        for family, by_severity in sorted(families.items())
        if len(by_severity) > 1
    }


def _curve(ece: dict[tuple, float], method: str, variant: str, by_severity: dict[int, set[str]]) -> dict[int, float]:
    """Severity -> mean ECE over the shifts at that severity (0: clean); a severity missing a shift is left out."""
    curve = {0: ece[(method, entry_format.CLEAN, variant)]}
    for severity, set_ids in sorted(by_severity.items()):
        values = [ece.get((method, s, variant)) for s in sorted(set_ids)]
        if None not in values:
            curve[severity] = float(np.mean(values))
    return curve


ALL_CSV = "leaderboard-all.csv.gz"


# -- teachers and claims ---------------------------------------------------------------
TEACHER_METRICS = ("accuracy", "ece/uniform/15/l1", "mean_confidence")


def teacher_rows(entries: list[dict[str, Any]]) -> list[list[str]]:
    """Per suite, task and teacher recipe: clean-test scores as the runner reported them (mean
    over seeds) and training throughput, with its cost relative to the CE teacher's."""
    seen: dict[tuple, dict[int, dict[str, Any]]] = {}
    for e in entries:
        t = e.get("teacher") or {}
        if t.get("clean"):
            key = (e["cell"]["suite"], e["cell"]["task"], t["recipe"].split("(")[0])
            seen.setdefault(key, {})[e["cell"]["seed"]] = {**t, "metrics": e["metrics"]["classification"]}
    speed = {k: float(np.mean([t["train_examples_per_s"] for t in by_seed.values()])) for k, by_seed in seen.items()}
    rows = []
    for (suite, task, recipe), by_seed in sorted(seen.items()):
        values = [
            display(m).format(float(np.mean([t["clean"]["raw"][t["metrics"].index(m)] for t in by_seed.values()])))
            for m in TEACHER_METRICS
        ]
        ce = speed.get((suite, task, "ce"))
        cost = f"{ce / speed[(suite, task, recipe)]:.2f}×" if ce else "–"
        rows.append([suite, task, recipe, str(len(by_seed)), *values, f"{speed[(suite, task, recipe)]:,.0f}", cost])
    return rows


TEACHER_HEADER = ("suite", "task", "teacher recipe", "seeds", "accuracy %", "ECE %", "mean confidence %", "train examples/s", "time vs ce")


def _teachers_markdown(entries: list[dict[str, Any]]) -> str:
    rows = teacher_rows(entries)
    if not rows:
        return ""
    lines = [
        "## Teachers",
        "",
        "The full-data teachers on the clean test set (raw, mean over seeds), as the runner reported them: teacher "
        "predictions are not stored, so these are not recomputed from the release. Training throughput is examples "
        "seen per second of a teacher's training run (one core); 'time vs ce' is the training time a recipe costs "
        "relative to cross-entropy at the same epochs.",
        "",
        "| " + " | ".join(TEACHER_HEADER) + " |",
        "|" + "---|" * len(TEACHER_HEADER),
    ]
    return "\n".join(lines + ["| " + " | ".join(md_escape(c) for c in r) + " |" for r in rows] + [""]) + "\n"


def _claims_markdown(release: Release, claim_sets: Sequence[tuple[str, list, list]]) -> str:
    from leaderboard.claims import to_markdown

    parts = []
    for name, claims, verdicts in claim_sets:
        parts += [f"## Claims: {name}", "", to_markdown(verdicts, claims, f"release {release.version}")]
    return "\n".join(parts)


# -- Markdown --------------------------------------------------------------------------
def markdown(release: Release, stats: list[Stat], level: float = LEVEL) -> str:
    """LEADERBOARD.md: per suite, protocol, student and variant, a task × method table."""
    index = _index(stats)
    notes: list[str] = []
    lines = [
        f"# cud-bench leaderboard, release {release.version}",
        "",
        f"Generated by `cud-bench leaderboard build` from `{release.path.name}` ({len(release.stems())} entries); do not edit.",
        "",
        _legend(level, f"The {level:.0%} bootstrap intervals, differences from {REFERENCE} and p-values are in "
                "leaderboard.csv (clean and pooled sets), leaderboard-all.csv.gz (every set) and index.html."),
        "",
    ]
    for section, rows in _sections(index):
        suite, protocol, student, variant = section
        header = ["task", "method"] + [f"{set_label(s)} {display(m).label}" for s in MAIN_SETS for m in MAIN_METRICS]
        lines += [f"## {md_escape(suite)} · {md_escape(protocol)} targets · {md_escape(student)} student · {VARIANT_LABELS[variant]}", ""]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for board, method in rows:
            cells = [_md_cell(index.get((board, method, s, variant, m)), notes) for s in MAIN_SETS for m in MAIN_METRICS]
            lines.append("| " + " | ".join([md_escape(board.task), md_escape(method), *cells]) + " |")
        lines.append("")
    if notes:
        lines += ["## Notes", ""] + [f"{i}. {md_escape(note)}" for i, note in enumerate(notes, 1)] + [""]
    return "\n".join(lines)


def md_escape(text: Any) -> str:
    """Text embedded in a Markdown view: a ``|`` cannot break its table row, a ``<`` cannot open HTML."""
    return (
        str(text).replace("\\", "\\\\").replace("|", "\\|").replace("&", "&amp;")
        .replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")
    )  # fmt: skip


def _legend(level: float, details: str) -> str:
    return (
        f"Each cell: mean ± std over seeds. #k: rank among the methods by mean (1 = best), shown only where the "
        f"paired bootstrap over seeds × examples distinguishes the method from vanilla KD ({REFERENCE}) at "
        f"p < {1 - level:.2g}. Accuracy and ECE (15 equal-width bins, L1) in %, NLL in nats, Brier in [0, 2]. "
        f"'under corruption' pools every corruption shift at every severity. {details}"
    )


def _md_cell(stat: Stat | None, notes: list[str]) -> str:
    if stat is None:
        return "–"
    if stat.mean is None:
        return _footnote(f"{stat.board.label} / {stat.method} / {set_label(stat.set_id)}: {stat.note}", notes)
    d = display(stat.metric)
    text = d.format(stat.mean) + (f" ± {d.format(stat.std)}" if stat.std is not None else "")
    if stat.rank is not None:
        text += f" #{stat.rank}"
    if stat.note:
        text += " " + _footnote(f"{stat.board.label} / {stat.method} / {set_label(stat.set_id)}: {stat.note}", notes)
    return text


def _footnote(note: str, notes: list[str]) -> str:
    if note not in notes:
        notes.append(note)
    return f"n/a [{notes.index(note) + 1}]" if "incompatible" in note or "not scored" in note else f"[{notes.index(note) + 1}]"


# -- CSV -------------------------------------------------------------------------------
def to_csv(stats: list[Stat]) -> str:
    """Every statistic the build computed, one row each (numbers to 6 significant digits)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for s in stats:
        if s.note == "not scored":
            continue
        writer.writerow([
            *dataclasses.astuple(s.board), s.method, s.set_id, s.variant, s.metric, len(s.seeds),
            ";".join(map(str, s.seeds)),
            *(_num(v) for v in (s.mean, s.std, s.low, s.high, s.delta, s.delta_low, s.delta_high, s.p_value)),
            "" if s.rank is None else s.rank, s.note,
        ])
    return out.getvalue()


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


# -- shared ----------------------------------------------------------------------------
def _index(stats: list[Stat]) -> dict[tuple, Stat]:
    return {(s.board, s.method, s.set_id, s.variant, s.metric): s for s in stats}


def _sections(index: dict[tuple, Stat]) -> list[tuple[tuple[str, str, str, str], list[tuple[Board, str]]]]:
    """Table sections (suite, protocol, student, variant), each with its (board, method) rows:
    tasks in order, the reference method first."""
    rows = sorted({(b, m) for b, m, *_ in index}, key=lambda r: (r[0], r[1] != REFERENCE, r[1]))
    sections: dict[tuple[str, str, str, str], list[tuple[Board, str]]] = {}
    for variant in VARIANTS:
        for board, method in rows:
            sections.setdefault((board.suite, board.protocol, board.student, variant), []).append((board, method))
    return sorted(sections.items(), key=lambda s: (s[0][:3], VARIANTS.index(s[0][3])))
