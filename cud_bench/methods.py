"""The method registry: a method is a named composition of three pinned components.

Adding a method is one module with one decorated function that returns a
:class:`MethodSpec` (see ``baselines/kd.py``), or, for code outside this
repository, an entry point in the group ``cud_bench.methods`` that points at
such a function (or at a module that registers itself on import).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from cud_bench.recipes import Component
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


def get_method(name: str) -> MethodSpec:
    spec = methods.get(name)()
    if spec.name != name:
        raise ValueError(f"method registered as {name!r} calls itself {spec.name!r}")
    return spec


def describe_methods() -> list[dict]:
    """One row per method for `cud-bench methods`: its parts and spec hash."""
    rows = []
    for name in methods.names():
        spec = get_method(name)
        rows.append({"method": name, **spec.parts, "spec_hash": spec.spec_hash(), "description": spec.description})
    return rows
