"""Recovery views (sim/view_shift.py): the shift episodes' profile and the shifted pose's side and
turn (the labels in its frame: tests/data/test_recovery_labels.py)."""

import math

import numpy as np
import pytest

from lmgendrive_jax.sim import expert
from lmgendrive_jax.sim import view_shift as view_shift_lib
from lmgendrive_jax.sim.view_shift import ViewShift, ViewShiftConfig

CONFIG = ViewShiftConfig(gap_m=20.0, length_m=(15.0, 30.0), min_offset_m=0.3, max_offset_m=1.5)


def test_off_by_default_and_bad_ranges_refused():
  off = ViewShift(ViewShiftConfig(), seed=0)
  assert all(off.offset(s) == (0.0, 0.0) for s in np.linspace(0, 500, 101))
  with pytest.raises(ValueError, match="length_m"):
    ViewShift(ViewShiftConfig(gap_m=5.0, length_m=(10.0, 5.0)), seed=0)
  with pytest.raises(ValueError, match="min_offset_m"):
    ViewShift(ViewShiftConfig(gap_m=5.0, min_offset_m=2.0, max_offset_m=1.0), seed=0)


def test_episodes_drift_out_and_back_with_the_heading_of_the_shifted_path():
  progress = np.arange(0.0, 2000.0, 0.05)
  shift = ViewShift(CONFIG, seed=3)
  offsets = np.array([shift.offset(s) for s in progress])
  right, yaw = offsets[:, 0], offsets[:, 1]
  assert np.abs(right).max() <= CONFIG.max_offset_m + 1e-9
  # The heading is the shifted path's: atan of d(right)/d(progress).
  slope = np.gradient(right, progress)
  np.testing.assert_allclose(yaw[1:-1], np.arctan(slope[1:-1]), atol=2e-3)
  # Episodes: runs of shifted progress, each reaching its peak in [min, max] on either side, and
  # no jump anywhere (consecutive frames look like a drift).
  shifted = np.abs(right) > 0
  starts = np.flatnonzero(shifted[1:] & ~shifted[:-1])
  assert len(starts) > 20
  assert np.abs(np.diff(right)).max() < 0.05 * math.pi * CONFIG.max_offset_m / 15.0 + 1e-9
  peaks = [right[i:i + int(30 / 0.05)][np.argmax(np.abs(right[i:i + int(30 / 0.05)]))]
           for i in starts[:-1]]
  assert min(np.abs(peaks)) >= CONFIG.min_offset_m - 0.01
  assert any(p > 0 for p in peaks) and any(p < 0 for p in peaks)
  # About length / (gap + length) of the distance is shifted (mean length 22.5, gap 20).
  assert 0.4 < shifted.mean() < 0.65
  again = ViewShift(CONFIG, seed=3)
  assert [again.offset(s) for s in progress[::97]] == [tuple(o) for o in offsets[::97]]


@pytest.mark.parametrize("yaw", [0.0, 0.7, math.pi / 2, -2.5])
def test_the_shifted_pose_lies_to_the_cars_right_and_turns_right(yaw):
  pos = np.array([12.0, -3.0])
  moved, moved_yaw = view_shift_lib.shifted_pose(pos, yaw, 1.25, 0.0)
  np.testing.assert_allclose(expert.world_to_ego(moved, pos, yaw), [1.25, 0.0], atol=1e-12)
  # Turned right: a point straight ahead of the car now lies to the view's left.
  _, turned_yaw = view_shift_lib.shifted_pose(pos, yaw, 0.0, 0.2)
  ahead = pos + 10.0 * np.array([math.cos(yaw), math.sin(yaw)])
  right, forward = expert.world_to_ego(ahead, pos, turned_yaw)
  np.testing.assert_allclose([right, forward], [-10 * math.sin(0.2), 10 * math.cos(0.2)],
                             atol=1e-9)
