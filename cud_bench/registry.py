"""One generic, typed registry for every pluggable concept (tasks, shifts, methods, ...).

Why one class: adding a task, a shift or a method must be one new file with a
decorator, never an edit to a central list. Entries are registered by decorator
or directly, can come from an entry-point group (code outside this repository),
duplicate names are refused, and an unknown name raises an error that lists the
closest names.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from importlib.metadata import entry_points
from typing import Callable, Generic, Iterable, Iterator, TypeVar

from cud_bench.errors import CudBenchError

T = TypeVar("T")


class RegistryError(CudBenchError, KeyError):
    """An unknown, duplicate or wrongly versioned registry name; its message is meant for the user."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """A name -> object map with decorator registration and helpful errors.

    ``kind`` names what is registered (used in error messages). ``entry_point_group``
    is an optional ``importlib.metadata`` group whose entry points are loaded the
    first time the registry is read. ``discover`` names modules or packages (with
    every submodule) imported on first read, so each module holding a ``@register`` is seen.
    """

    def __init__(
        self,
        kind: str,
        *,
        entry_point_group: str | None = None,
        discover: tuple[str, ...] = (),
        base: type | None = None,
    ) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self.discover = discover
        self.base = base
        self._entries: dict[str, T] = {}
        self._loaded = False

    # -- registration -------------------------------------------------------------
    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; without ``obj``, return a decorator."""
        if obj is not None:
            self._add(name, obj)
            return obj

        def decorator(o: T) -> T:
            self._add(name, o)
            return o

        return decorator

    def _add(self, name: str, obj: T) -> None:
        if not isinstance(name, str) or not name:
            raise RegistryError(f"{self.kind} names must be non-empty strings, got {name!r}")
        if name in self._entries and self._entries[name] is not obj:
            raise RegistryError(f"{self.kind} {name!r} is already registered")
        if self.base is not None and isinstance(obj, type) and not issubclass(obj, self.base):
            raise RegistryError(f"{self.kind} {name!r} must subclass {self.base.__name__}")
        self._entries[name] = obj

    def unregister(self, name: str) -> None:
        """Remove an entry (used by tests that register temporary plugins)."""
        self._entries.pop(name, None)

    # -- lookup -------------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for package in self.discover:
            import_submodules(package)
        if self.entry_point_group:
            for ep in entry_points(group=self.entry_point_group):
                if ep.name not in self._entries:
                    loaded = ep.load()
                    # An entry point may point at an object, at a module that registers
                    # itself on import, or at a decorated function whose decorator
                    # registered it (a task's ``read``) when its module was imported;
                    # only an object not registered yet is added here.
                    if ep.name in self._entries:
                        continue
                    if not hasattr(loaded, "__path__") and not isinstance(loaded, type(importlib)):
                        self._add(ep.name, loaded)

    def get(self, name: str) -> T:
        self._ensure_loaded()
        try:
            return self._entries[name]
        except KeyError:
            raise RegistryError(self.unknown_message(name)) from None

    def get_versioned(self, name: str) -> T:
        """The entry named ``name`` or ``name@vN``; N must be the registered entry's ``spec.version``."""
        base, _, version = name.partition("@v")
        entry = self.get(base)
        current = entry.spec.version  # type: ignore[attr-defined]
        if version and version != str(current):
            raise RegistryError(f"{self.kind} {base!r} is at version {current}; version {version} is not available")
        return entry

    def unknown_message(self, name: str) -> str:
        return f"unknown {self.kind} {name!r}{did_you_mean(name, self._entries)} (known: {', '.join(sorted(self._entries))})"

    def names(self) -> list[str]:
        self._ensure_loaded()
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._entries[n]) for n in self.names()]

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` naming the closest of ``known`` (empty when none is close)."""
    close = difflib.get_close_matches(str(name), list(known), n=3, cutoff=0.5)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def import_submodules(name: str) -> None:
    """Import a module, or a package and every module below it, so their registrations run."""
    module = importlib.import_module(name)
    for info in pkgutil.walk_packages(getattr(module, "__path__", []), prefix=module.__name__ + "."):
        importlib.import_module(info.name)
