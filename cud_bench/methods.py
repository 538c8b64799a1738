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
    """``teacher`` is None for methods that train the student on labels alone."""

    name: str
    teacher: Component | None
    transform: Component | None
    student: Component
    description: str = dataclasses.field(default="", metadata={"hash": False})

    def __post_init__(self) -> None:
        if (self.teacher is None) != (self.transform is None):
            raise ValueError(f"method {self.name!r}: a teacher recipe and a target transform go together")
        if self.teacher is None and self.student.name != "ce":
            raise ValueError(f"method {self.name!r}: student recipe {self.student.name!r} needs a teacher")

    @property
    def parts(self) -> dict[str, str | None]:
        return {
            "teacher": self.teacher.label if self.teacher else None,
            "transform": self.transform.label if self.transform else None,
            "student": self.student.label,
        }


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
    replaced = {p: component(parts[p].kind, parts[p].name, **{**parts[p].params, **c}) for p, c in changes.items()}
    for part, pinned in replaced.items():
        try:
            pinned.build()  # each factory checks its ranges: a bad value fails here, before any training
        except (ValueError, TypeError) as exc:
            raise CudBenchError(f"method variant {name!r}: {part} {pinned.label} is out of range: {exc}") from None
    return dataclasses.replace(spec, name=name, **replaced, description=f"{spec.description} (variant: {', '.join(overrides)})")


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
