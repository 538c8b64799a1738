"""What ``cud-bench shifts`` shows: every registered shift as a plain dict, or as a Markdown table."""

from __future__ import annotations

from typing import Any

from shifts.base import EVERY_TASK, FAMILIES, Shift, shifts


def describe(task: str | None = None) -> list[dict[str, Any]]:
    """One JSON-ready dict per shift, sorted by name: the spec's fields plus ``id`` and ``spec_hash``.

    ``params`` becomes a mapping; ``tasks`` is ``["*"]`` for a shift that applies to every task.
    With ``task`` (a registered task; an unknown name is an error), only the shifts that apply to it.
    """
    if task is not None:
        from cud_bench.data.tasks import get_task

        task = get_task(task).spec.name
    return [_describe(shift) for _, shift in shifts.items() if task is None or shift.applies_to(task)]


def _describe(shift: Shift) -> dict[str, Any]:
    spec = shift.spec
    fields = spec.to_dict()
    fields["params"] = {key: value for key, value in fields["params"]}
    return {"id": spec.id, **fields, "spec_hash": spec.spec_hash()}


def applicability_table() -> str:
    """A Markdown table: each shift (grouped by family), its number of severities, and the tasks it applies to."""
    lines = ["| shift | family | severities | applies to |", "|---|---|---|---|"]
    for spec in sorted((shift.spec for _, shift in shifts.items()), key=lambda s: (FAMILIES.index(s.family), s.name)):
        tasks = "every task" if EVERY_TASK in spec.tasks else ", ".join(f"`{t}`" for t in spec.tasks)
        lines.append(f"| `{spec.id}` | {spec.family} | {len(spec.severities)} | {tasks} |")
    return "\n".join(lines) + "\n"
