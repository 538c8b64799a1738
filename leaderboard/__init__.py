"""The versioned leaderboard: releases of verified results, their statistics and their views.

- :mod:`leaderboard.entry`: one cell's entry, scored from its stored predictions
  (layout documented field by field in ``schema/entry-v2.json``);
- :mod:`leaderboard.upgrade`: reading entries of older layouts;
- :mod:`leaderboard.store`: a release folder, append-only, atomic, locked;
- :mod:`leaderboard.versions`: the benchmark version and its spec manifest;
- :mod:`leaderboard.release`: importing a run, verifying a release;
- :mod:`leaderboard.stats`: mean ± std, bootstrap intervals, paired tests against
  vanilla KD, ranks;
- :mod:`leaderboard.views` and :mod:`leaderboard.figures`: LEADERBOARD.md, CSV, figures;
  :mod:`leaderboard.site`: the site (index.html) and ``leaderboard show``'s overview;
  :mod:`leaderboard.browser`: headless Chromium for its test and screenshots;
  :mod:`leaderboard.diff`: what changed between releases.

Committed releases live in ``leaderboard/releases/<version>/``.
"""
