"""What each worker is doing now, for the progress bar between records.

Why: a task's first record comes after its data, shifted sets and teachers are ready, and a
stack's records after all its students are trained: half an hour of a cold ``cpu`` run in
which a bar that counts records says nothing. A worker (a process of the local executor or a
Ray task) rewrites one small file per task and student architecture under
``<out>/<suite>/stages/`` at each stage of its cells and removes it when they are done; the
executor's progress loop shows the files that changed since the run started. Files, because
workers share only the output folder, as they do for the records; compared by each file's
own earlier modification time, not a clock, so nodes with skewed clocks show right.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from cud_bench.io import write_bytes_atomic


def _folder(out_dir: Path, suite: str) -> Path:
    return Path(out_dir) / suite / "stages"


def report(out_dir: Path, suite: str, task: str, student: str, text: str) -> None:
    """Say that the worker on ``task``'s ``student`` cells is at ``text`` (one short line)."""
    write_bytes_atomic(_folder(out_dir, suite) / f"{task}.{student}.txt", f"{task} {student}: {text}".encode())


def finished(out_dir: Path, suite: str, task: str, student: str) -> None:
    (_folder(out_dir, suite) / f"{task}.{student}.txt").unlink(missing_ok=True)


def stamps(out_dir: Path, suite: str) -> dict[Path, float]:
    """Every stage file's modification time now (see :func:`current`)."""
    folder = _folder(out_dir, suite)
    return {path: path.stat().st_mtime for path in folder.glob("*.txt")} if folder.is_dir() else {}


def current(out_dir: Path, suite: str, before: dict[Path, float]) -> str:
    """The stages written since ``before`` (:func:`stamps` at the run's start), joined for a bar's postfix."""
    lines = []
    for path, mtime in sorted(stamps(out_dir, suite).items()):
        if before.get(path) != mtime:
            try:
                lines.append(path.read_text())
            except FileNotFoundError:  # its worker just finished
                continue
    return " | ".join(lines)


class Telling:
    """A part of a worker (the teacher store, the encoder's inputs) whose long steps the stage line
    follows: inside ``reporting(listen)``, what it starts is told to ``listen``; outside, to no one."""

    _listen: Callable[[str], None] | None = None

    def tell(self, what: str) -> None:
        if self._listen is not None:
            self._listen(what)

    @contextlib.contextmanager
    def reporting(self, listen: Callable[[str], None]) -> Iterator[None]:
        saved, self._listen = self._listen, listen
        try:
            yield
        finally:
            self._listen = saved
