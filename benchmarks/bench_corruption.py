"""Character corruption, deterministic per example, against calling nlpaug directly on the same texts.

Target: ours is no slower than nlpaug. For each character corruption, on the
same 1,000 rt-polarity test snippets at severity 3, three timings share a group:

* ``nlpaug``: the same nlpaug augmenter and options, called as nlpaug intends
  (``augment(texts)``, its own tokenizer, the global ``random`` generator);
* ``nlpaug-whitespace``: the same, with our whitespace tokenizer, which isolates
  what per-example determinism costs;
* ``ours``: :meth:`shifts.corruption.Corruption.corrupt` (fresh draws per
  example from its own generator, whatever the batch, order or process).

Run with

    pytest benchmarks/bench_corruption.py --benchmark-group-by=group --benchmark-columns=min,mean,max
"""

from __future__ import annotations

import importlib

import pytest

from shifts import get_shift, shifts
from shifts.selection import capped, task_rows

CHAR = [name for name, shift in shifts.items() if name.startswith("char-")]
SEVERITY = 3


@pytest.fixture(scope="module")
def sample() -> tuple[list[str], list[str]]:
    rows = capped(task_rows("rt-polarity", ("test",)), 1000)
    return rows["id"].tolist(), rows["text"].tolist()


def nlpaug_augmenter(name: str, whitespace: bool):
    """nlpaug's augmenter with the shift's own options and severity-3 rate."""
    params = dict(get_shift(name).spec.params)
    module, _, cls = params.pop("augmenter").partition(":")
    rate_option = params.pop("rate_option")
    tokenizers = {"tokenizer": str.split, "reverse_tokenizer": " ".join} if whitespace else {}
    return getattr(importlib.import_module(module), cls)(
        **params, **{rate_option: get_shift(name).level(SEVERITY)}, **tokenizers
    )


def run(benchmark, fn, *args):
    return benchmark.pedantic(fn, args=args, rounds=5, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("name", CHAR)
@pytest.mark.parametrize("whitespace", [False, True], ids=["nlpaug", "nlpaug-whitespace"])
def test_baseline_nlpaug(benchmark, sample, name, whitespace):
    benchmark.group = name
    texts = sample[1]
    out = run(benchmark, nlpaug_augmenter(name, whitespace).augment, texts)
    assert len(out) == len(texts) and out != texts


@pytest.mark.parametrize("name", CHAR)
def test_ours(benchmark, sample, name):
    benchmark.group = name
    ids, texts = sample
    shift = get_shift(name)
    out = run(benchmark, shift.corrupt, ids, texts, SEVERITY)
    assert out == shift.corrupt(ids, texts, SEVERITY) and out != texts
