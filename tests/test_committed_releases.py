"""CI's guard on the committed leaderboard: every stored score must equal what its stored
per-example predictions recompute to (a hand-edited or stale number fails here), and a
release stays under 50 MB.

The verification runs twice: here with numpy's default SIMD dispatch, and in a subprocess
with numpy's AVX-512 paths disabled (``NPY_DISABLE_CPU_FEATURES``), where the scores of
release 1.0.0 as first built differed. On a CPU without AVX-512 that would change nothing,
so there the second pass also disables the AVX2 level (X86_V3): either way, two numpy
code paths recompute every committed score on one machine. The subprocess starts before the
first pass and runs beside it (CI has two cores): each pass takes minutes a release.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from numpy._core._multiarray_umath import __cpu_features__

from leaderboard.release import verify
from leaderboard.store import DEFAULT_ROOT, list_releases, open_release

MAX_RELEASE_BYTES = 50_000_000
AVX512 = ("X86_V4", "AVX512_ICL", "AVX512_SPR")
REPO = Path(__file__).resolve().parents[1]


def disabled_features() -> tuple[str, ...]:
    """numpy's AVX-512 dispatch targets, and AVX2's (X86_V3) when this CPU has no AVX-512 to disable."""
    if any(__cpu_features__.get(f) for f in AVX512):
        return AVX512
    return AVX512 + tuple(f for f in ("X86_V3",) if __cpu_features__.get(f))


@pytest.fixture(scope="module")
def second_pass(tmp_path_factory):
    """The verification with numpy's AVX-512 dispatch disabled, started in a subprocess at once
    (its output goes to files, so that it never waits on a full pipe): (process, stdout, stderr)."""
    features = disabled_features()
    env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": " ".join(features), "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    folder = tmp_path_factory.mktemp("second_pass")
    out, err = folder / "stdout", folder / "stderr"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen([sys.executable, "-c", _SECOND_PASS, *features], cwd=REPO, env=env, stdout=stdout, stderr=stderr, text=True)
    yield process, out, err
    if process.poll() is None:
        process.kill()
        process.wait()


@pytest.mark.parametrize("version", list_releases(DEFAULT_ROOT))
def test_committed_scores_match_their_stored_predictions(version, second_pass):
    # second_pass: requested so that the subprocess's pass runs beside this one
    assert verify(open_release(version, DEFAULT_ROOT)) > 0


# Runs in the subprocess: numpy must report the features off, then every release verifies.
_SECOND_PASS = """
import json, sys
from numpy._core._multiarray_umath import __cpu_features__
from leaderboard.release import verify
from leaderboard.store import DEFAULT_ROOT, list_releases, open_release
still_on = [f for f in sys.argv[1:] if __cpu_features__.get(f)]
assert not still_on, f"numpy still dispatches to {still_on}"
print(json.dumps({v: verify(open_release(v, DEFAULT_ROOT)) for v in list_releases(DEFAULT_ROOT)}))
"""


def test_committed_scores_match_with_numpys_avx512_dispatch_disabled(second_pass):
    process, out, err = second_pass
    assert process.wait() == 0, err.read_text()[-4000:]
    checked = json.loads(out.read_text().strip().splitlines()[-1])
    assert set(checked) == set(list_releases(DEFAULT_ROOT)) and all(n > 0 for n in checked.values())


@pytest.mark.parametrize("version", list_releases(DEFAULT_ROOT))
def test_committed_releases_stay_under_50_mb_with_their_views(version):
    path = open_release(version, DEFAULT_ROOT).path
    assert sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) < MAX_RELEASE_BYTES
