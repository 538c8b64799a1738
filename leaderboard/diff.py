"""What changed between two releases: the benchmark's specs, and entries added, removed or changed."""

from __future__ import annotations

from typing import Any

from leaderboard.entry import VARIANTS, scoring_of, stem
from leaderboard.store import Release
from leaderboard.versions import diff_manifests

MAX_SCORES = 5  # changed scores listed per entry; the rest are counted


def diff_releases(a: Release, b: Release) -> list[str]:
    """Human-readable lines, in a fixed order: spec changes, then entries by stem."""
    lines = [f"release {a.version} -> {b.version}"]
    specs = diff_manifests(a.index()["benchmark"], b.index()["benchmark"])
    lines += [f"spec {change}" for change in specs]
    old = {stem(e["cell"]): e for e in a.entries()}
    new = {stem(e["cell"]): e for e in b.entries()}
    for name in sorted(set(old) | set(new)):
        if name not in new:
            lines.append(f"- {name}")
        elif name not in old:
            lines.append(f"+ {name}")
        else:
            changes = _entry_changes(old[name], new[name])
            if changes:
                lines.append(f"~ {name}")
                lines += [f"    {c}" for c in changes]
    if len(lines) == 1:
        lines.append("no differences")
    return lines


def _entry_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    changes = [f"spec {k}: {old['specs'][k]} -> {new['specs'][k]}" for k in sorted(new["specs"]) if old["specs"][k] != new["specs"][k]]
    changes += [f"replaced: {r['reason']}" for r in new.get("replaces", [])[len(old.get("replaces", [])):]]
    if old["predictions"] != new["predictions"]:
        changes.append("predictions changed")
    scores = _scores(new)
    before = _scores(old)
    moved = [(k, before[k], v) for k, v in sorted(scores.items()) if k in before and before[k] != v]
    changes += [f"{' '.join(k)}: {x!r} -> {y!r}" for k, x, y in moved[:MAX_SCORES]]
    if len(moved) > MAX_SCORES:
        changes.append(f"... and {len(moved) - MAX_SCORES} more changed scores")
    gone, added = sorted(set(before) - set(scores)), sorted(set(scores) - set(before))
    if gone:
        changes.append(f"{len(gone)} scores no longer present (e.g. {' '.join(gone[0])})")
    if added:
        changes.append(f"{len(added)} new scores (e.g. {' '.join(added[0])})")
    return changes


def _scores(entry: dict[str, Any]) -> dict[tuple[str, str, str], float]:
    """(set, variant, metric) -> stored value."""
    out = {}
    for set_id, s in entry["sets"].items():
        for variant in VARIANTS:
            for metric, value in zip(entry["metrics"][scoring_of(s)], s[variant]):
                out[(set_id, variant, metric)] = value
    return out
