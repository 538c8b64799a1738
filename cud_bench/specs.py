"""Frozen spec dataclasses and their stable content hashes.

Every stored number names the spec that produced it. A spec is a frozen
dataclass; its hash is the sha256 of its canonical JSON, so it changes exactly
when a field that defines the meaning of the number changes. Concept-specific
specs (TaskSpec, ShiftSpec, MethodSpec, SuiteSpec) subclass :class:`Spec` in the
module that owns the concept; MetricSpec lives here because every module uses it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the input of every spec hash."""
    return json.dumps(_plain(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if _hashed(obj, f)}
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, float) and obj != obj:
        return "nan"
    return obj


def _hashed(obj: Any, field: dataclasses.Field) -> bool:
    """Whether ``field`` enters the hash: always, never (``hash: False``), or only when set away from its
    default (``hash: "unless-default"``: a field added later leaves every existing spec's hash as it was)."""
    rule = field.metadata.get("hash", True)
    if rule == "unless-default":
        return getattr(obj, field.name) != field.default
    return bool(rule)


def _stored(obj: Any, field: dataclasses.Field) -> bool:
    """Whether :meth:`Spec.to_dict` writes ``field``: every field but an unset ``"unless-default"`` one."""
    return field.metadata.get("hash") != "unless-default" or _hashed(obj, field)


def content_hash(obj: Any, length: int = 12) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


@dataclasses.dataclass(frozen=True)
class Spec:
    """Base for frozen specs: ``spec_hash`` and ``to_dict`` for records.

    Fields declared with ``metadata={"hash": False}`` (descriptions, citations)
    are informative only and do not change the hash; ``{"hash": "unless-default"}``
    enters the hash only when set (see :func:`_hashed`).
    """

    def spec_hash(self) -> str:
        return content_hash(self)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if _stored(self, f)}


@dataclasses.dataclass(frozen=True)
class MetricSpec(Spec):
    """What a metric value means: its name and, for calibration errors, the binning.

    ``id`` is a readable, unique string such as ``ece/uniform/15/l1``; every metric
    value carries it so that two numbers are compared only when their ids match.
    """

    name: str
    binning: str | None = None  # "uniform" (equal width) | "quantile" (equal mass)
    n_bins: int | None = None
    norm: str | None = None  # "l1" (ECE), "max" (MCE)

    @classmethod
    def from_id(cls, metric_id: str) -> MetricSpec:
        """The spec whose :attr:`id` is ``metric_id`` (ece/uniform/15/l1 -> ece, uniform, 15, l1)."""
        name, *rest = metric_id.split("/")
        binning, n_bins, norm = (rest + [None, None, None])[:3]
        return cls(name, binning, int(n_bins) if n_bins is not None else None, norm)

    @property
    def id(self) -> str:
        parts = [self.name] + [str(p) for p in (self.binning, self.n_bins, self.norm) if p is not None]
        return "/".join(parts)
