"""CI's guard on the committed leaderboard: every stored score must equal what its stored
per-example predictions recompute to (a hand-edited or stale number fails here), and a
release stays under 50 MB."""

from __future__ import annotations

import pytest

from leaderboard.release import verify
from leaderboard.store import DEFAULT_ROOT, list_releases, open_release


MAX_RELEASE_BYTES = 50_000_000


@pytest.mark.parametrize("version", list_releases(DEFAULT_ROOT))
def test_committed_scores_match_their_stored_predictions(version):
    assert verify(open_release(version, DEFAULT_ROOT)) > 0


@pytest.mark.parametrize("version", list_releases(DEFAULT_ROOT))
def test_committed_releases_stay_under_50_mb_with_their_views(version):
    path = open_release(version, DEFAULT_ROOT).path
    assert sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) < MAX_RELEASE_BYTES
