"""CI's guard on the committed leaderboard: every stored score must equal what its stored
per-example predictions recompute to (a hand-edited or stale number fails here)."""

from __future__ import annotations

import pytest

from leaderboard.release import verify
from leaderboard.store import DEFAULT_ROOT, list_releases, open_release


@pytest.mark.parametrize("version", list_releases(DEFAULT_ROOT))
def test_committed_scores_match_their_stored_predictions(version):
    assert verify(open_release(version, DEFAULT_ROOT)) > 0
