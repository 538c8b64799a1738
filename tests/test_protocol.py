"""Evaluation-protocol pieces that need no trained model: cross-fitted temperature scaling per fold."""

from __future__ import annotations

import numpy as np
import pytest

from cud_bench import calibration
from cud_bench.errors import CudBenchError
from cud_bench.recipes import TeacherOutputs, component


def _logits(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    return rng.normal(size=(n, 3)) * scale


def test_cross_fitted_ts_targets_use_each_fold_teachers_own_temperature():
    """Two fold teachers, one sharp and one flat: each fold's rows get the temperature fitted on that
    teacher's validation logits, not one temperature from the full-data teacher's."""
    rng = np.random.default_rng(0)
    val_labels = rng.integers(0, 3, 200)
    sharp_val = _logits(rng, 200, 1.0) + 6.0 * np.eye(3)[val_labels] * (rng.random(200) < 0.6)[:, None]
    flat_val = sharp_val / 8.0
    full_val = sharp_val / 2.0
    train_logits = _logits(rng, 10, 3.0)
    rows = (np.array([0, 2, 4, 6, 8]), np.array([1, 3, 5, 7, 9]))
    outputs = TeacherOutputs(train_logits, np.zeros(10, dtype=np.int64), full_val, val_labels, ((rows[0], sharp_val), (rows[1], flat_val)))
    result = component("transform", "temperature-scaled").build()(outputs)
    T = [calibration.fit_temperature(v, val_labels, split="validation") for v in (sharp_val, flat_val)]
    assert result.fold_temperatures == pytest.approx(T) and abs(T[0] - T[1]) > 0.5
    assert result.temperature == pytest.approx(np.mean(T))
    for fold in (0, 1):
        expected = calibration.apply_temperature(train_logits[rows[fold]], T[fold])
        assert np.allclose(result.probs[rows[fold]], expected)
    # in-sample: one teacher, one temperature, no folds
    single = component("transform", "temperature-scaled").build()(TeacherOutputs(train_logits, np.zeros(10, dtype=np.int64), full_val, val_labels))
    assert single.fold_temperatures == () and single.temperature == pytest.approx(
        calibration.fit_temperature(full_val, val_labels, split="validation")
    )
    with pytest.raises(CudBenchError, match="every training row exactly once"):
        component("transform", "temperature-scaled").build()(
            TeacherOutputs(train_logits, np.zeros(10, dtype=np.int64), full_val, val_labels, ((rows[0], sharp_val),))
        )
