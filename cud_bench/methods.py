"""The method registry: a method is a named composition of three pinned components.

Adding a method is one module with one decorated function that returns a
:class:`MethodSpec` (see ``baselines/kd.py``), or, for code outside this
repository, an entry point in the group ``cud_bench.methods`` that points at
such a function (or at a module that registers itself on import).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from cud_bench.errors import CudBenchError
from cud_bench.recipes import Component, component
from cud_bench.registry import Registry
from cud_bench.specs import Spec


@dataclasses.dataclass(frozen=True)
class MethodSpec(Spec):
    """``teacher`` is None for methods that train the student on labels alone.

    ``teacher_by_task`` ((task, recipe) pairs) gives some tasks a teacher recipe of their own
    (the default ``cud`` takes its DUS setting per task: docs/cud-method.md, section 7.3);
    ``teacher`` is then the recipe's registered default, which no task of the table trains.
    A method with a table trains no task outside it (:meth:`for_task` says so).
    """

    name: str
    teacher: Component | None
    transform: Component | None
    student: Component
    description: str = dataclasses.field(default="", metadata={"hash": False})
    teacher_by_task: tuple[tuple[str, Component], ...] = dataclasses.field(default=(), metadata={"hash": "unless-default"})

    def __post_init__(self) -> None:
        if (self.teacher is None) != (self.transform is None):
            raise ValueError(f"method {self.name!r}: a teacher recipe and a target transform go together")
        if self.teacher is None and self.student.name != "ce":
            raise ValueError(f"method {self.name!r}: student recipe {self.student.name!r} needs a teacher")

    def for_task(self, task: str) -> MethodSpec:
        """The method as it runs on ``task``: its teacher is the task's own where the table has one."""
        if not self.teacher_by_task:
            return self
        per_task = dict(self.teacher_by_task)
        if task not in per_task:
            raise CudBenchError(
                f"method {self.name!r} takes its teacher setting per task and has none for task {task!r} "
                f"(it has: {', '.join(per_task)}); judge the task with `cud-bench faithfulness --tasks {task}` "
                "(docs/cud-method.md, section 7.3), or run a method with one setting for every task (cud-lamce0 or a "
                "variant of it)"
            )
        return dataclasses.replace(self, teacher=per_task[task], teacher_by_task=())

    @property
    def parts(self) -> dict[str, str | None]:
        return {
            "teacher": self._teacher_label(),
            "transform": self.transform.label if self.transform else None,
            "student": self.student.label,
        }

    def _teacher_label(self) -> str | None:
        """The teacher recipe; with a per-task table, the values every task shares and which vary."""
        if not self.teacher_by_task:
            return self.teacher.label if self.teacher else None
        recipes = [c for _, c in self.teacher_by_task]
        shared = {k: v for k, v in sorted(recipes[0].params.items()) if all(c.params[k] == v for c in recipes)}
        varying = sorted(set(recipes[0].params) - set(shared))
        args = ",".join(f"{k}={v}" for k, v in shared.items())
        return f"{recipes[0].name}({args}; per task: {','.join(varying)})"


methods: Registry[Callable[[], MethodSpec]] = Registry(
    "method", entry_point_group="cud_bench.methods", discover=("baselines", "cud_bench.method_defs")
)


def register_method(name: str) -> Callable[[Callable[[], MethodSpec]], Callable[[], MethodSpec]]:
    """Decorator: register a zero-argument function that returns the method's spec."""
    return methods.register(name)  # type: ignore[return-value]


VARIANT_SEP = "+"


def get_method(name: str) -> MethodSpec:
    """A registered method, or a variant of one: ``cud+gamma=5+transform.eta=0.3`` is ``cud``
    with those hyperparameters changed. A parameter is named bare when one part of the
    method has it, else ``part.param`` (part: teacher, transform, student). A variant
    is a method like any other: its own spec hash, resolvable in any process."""
    base, *overrides = name.split(VARIANT_SEP)
    spec = methods.get(base)()
    if spec.name != base:
        raise ValueError(f"method registered as {base!r} calls itself {spec.name!r}")
    if not overrides:
        return spec
    parts = {part: getattr(spec, part) for part in ("teacher", "transform", "student") if getattr(spec, part) is not None}
    changes: dict[str, dict[str, Any]] = {}
    for override in overrides:
        key, sep, raw = override.partition("=")
        part, _, param = key.rpartition(".")
        owners = [p for p in ([part] if part else parts) if p in parts and param in parts[p].params]
        if not sep or len(owners) != 1:
            found = ", ".join(f"{p}.{k}" for p, c in parts.items() for k in c.params) or "none"
            why = "is ambiguous" if len(owners) > 1 else "matches no hyperparameter" if sep else "is not param=value"
            raise CudBenchError(f"method variant {name!r}: {override!r} {why}; {base}'s hyperparameters: {found}")
        default = parts[owners[0]].params[param]
        changes.setdefault(owners[0], {})[param] = _parse_value(raw, default, name)
    replaced: dict[str, Any] = {p: _override(parts[p], c) for p, c in changes.items()}
    if "teacher" in changes and spec.teacher_by_task:  # a variant's teacher overrides apply on every task
        replaced["teacher_by_task"] = tuple((task, _override(c, changes["teacher"])) for task, c in spec.teacher_by_task)
    for part, pinned in [*((p, replaced[p]) for p in changes), *replaced.get("teacher_by_task", ())]:
        try:
            pinned.build()  # each factory checks its ranges: a bad value fails here, before any training
        except (ValueError, TypeError) as exc:
            raise CudBenchError(f"method variant {name!r}: {part} {pinned.label} is out of range: {exc}") from None
    return dataclasses.replace(spec, name=name, **replaced, description=f"{spec.description} (variant: {', '.join(overrides)})")


def _override(pinned: Component, changes: dict[str, Any]) -> Component:
    return component(pinned.kind, pinned.name, **{**pinned.params, **changes})


def variant_name(base: str, overrides: dict[str, Any]) -> str:
    """The method name of ``base`` with ``overrides`` ({param or part.param: value}), in the given order."""
    return VARIANT_SEP.join([base, *(f"{k}={v}" for k, v in overrides.items())])


def _parse_value(raw: str, default: Any, name: str) -> Any:
    """``raw`` as the type of the default it replaces (so gamma=5 pins the float 5.0)."""
    try:
        if isinstance(default, bool):
            if raw not in ("true", "false"):
                raise ValueError(raw)
            return raw == "true"
        return type(default)(raw) if isinstance(default, (int, float)) else raw
    except ValueError:
        raise CudBenchError(f"method variant {name!r}: {raw!r} is not a {type(default).__name__}") from None


def describe_methods() -> list[dict]:
    """One row per method for `cud-bench methods`: its parts and spec hash."""
    rows = []
    for name in methods.names():
        spec = get_method(name)
        rows.append({"method": name, **spec.parts, "spec_hash": spec.spec_hash(), "description": spec.description})
    return rows
