"""bench/planner_inputs.py's straight-path bias table: which frames it reads and what it averages."""

import numpy as np

from bench.planner_inputs import signed_means, straight_frames


def test_straight_frames_keep_the_known_paths_within_half_a_metre_at_2_5_s():
  # [B=1, T=4, W=5] sideways metres: straight, a turn, a drift under 0.5 m, straight but unknown.
  recorded_x = np.zeros((1, 4, 5), np.float32)
  recorded_x[0, 1, -1] = -3.0
  recorded_x[0, 2, -1] = 0.49
  known = np.ones((1, 4, 5), bool)
  known[0, 3, -1] = False
  np.testing.assert_array_equal(straight_frames(recorded_x, known), [[True, False, True, False]])


def test_signed_means_average_per_horizon_and_keep_the_sign():
  left = np.array([[-0.06, -0.04, 0.0, 0.02, 0.0]], np.float32)
  right = np.array([[0.02, 0.0, 0.0, 0.0, 0.04]], np.float32)
  means, frames = signed_means([left, np.concatenate([right, right])])
  assert frames == 3
  np.testing.assert_allclose(means, [-0.02 / 3, -0.04 / 3, 0.0, 0.02 / 3, 0.08 / 3], atol=1e-7)


def test_signed_means_of_no_frames_are_nan():
  means, frames = signed_means([np.zeros((0, 5), np.float32)])
  assert frames == 0 and np.isnan(means).all() and means.shape == (5,)
