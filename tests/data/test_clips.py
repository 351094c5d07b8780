"""Clip windows drawn towards junctions and pulling away (data/clips.py): which starts count as
deciding a junction or holding a pull-away, and that draws follow the weights."""

import numpy as np

from lmgendrive_jax.data import clips


def test_junction_start_weights_mark_windows_with_a_junction_within_the_lookahead():
  # 20 frames, a junction (RoadOption 1 = left) at frames 12..13; windows of 3 frames at stride 2
  # span 5 frames (starts 0..15); a lookahead of 4 frames past the window's last frame.
  option = np.full(20, 4)
  option[12:14] = 1
  weights = clips.junction_start_weights(option, window=3, stride=2, lookahead=4, boost=3.0)
  assert weights.shape == (16,)
  # Start s covers frames s .. s + 4 + 4: it reaches frame 12 from s = 4 and holds frame 13
  # up to s = 13.
  np.testing.assert_array_equal(np.flatnonzero(weights > 1), np.arange(4, 14))
  np.testing.assert_array_equal(np.unique(weights), [1.0, 4.0])
  # Lane follow (4) and lane changes (5, 6) are not junctions; no junction: uniform.
  lane = np.array([4, 5, 6, 4, 4, 4])
  np.testing.assert_array_equal(clips.junction_start_weights(lane, 2, 1, 2, 3.0), np.ones(5))
  # A clip shorter than the window has the one start.
  np.testing.assert_array_equal(clips.junction_start_weights(np.array([3, 4]), 4, 1, 0, 3.0),
                                [4.0])


def test_pull_away_frames_are_standing_frames_whose_car_moves_off_within_1_5_s():
  # Ego-frame waypoints (right, forward) at 0.5 s steps: standing, about to pull away, rolling
  # slowly, braking to a stop.
  forward = np.array([[0.0, 0.0, 0.0, 0.0, 0.0],
                      [0.2, 1.0, 2.5, 4.5, 7.0],
                      [0.6, 1.2, 1.8, 2.4, 3.0],
                      [1.5, 2.5, 3.0, 3.0, 3.0]])
  waypoints = np.stack([np.zeros_like(forward), forward], -1)
  np.testing.assert_array_equal(clips.pull_away_frames(waypoints), [False, True, False, False])
  # Of the same four, only the car braking to a stop slows down (the slow roller keeps 0.6 m
  # per step, under the 1-m "moving" floor); cruising at 5 m/s does not slow.
  cruising = np.stack([np.zeros(5), 2.5 * np.arange(1, 6)], -1)[None]
  np.testing.assert_array_equal(clips.slowing_frames(np.concatenate([waypoints, cruising])),
                                [False, False, False, True, False])
  # A window of 2 frames at stride 1 over 6 frames holds the pull-away at frame 3 from starts 2, 3.
  events = np.zeros(6, bool)
  events[3] = True
  np.testing.assert_array_equal(clips.window_holds_event(events, 2, 1, 0),
                                [False, False, True, True, False])


def test_sample_window_draws_starts_in_proportion_to_the_weights():
  weights = np.array([1.0, 0.0, 3.0, 0.0, 4.0])
  rng = np.random.default_rng(0)
  starts = np.array([clips.sample_window(8, 4, 1, (1,), rng, start_weights=weights).positions[0]
                     for _ in range(4000)])
  counts = np.bincount(starts, minlength=5) / len(starts)
  np.testing.assert_allclose(counts, weights / weights.sum(), atol=0.03)
  # start_jitter still caps the start: only starts 0..2 remain, 0 and 2 at 1 : 3.
  capped = np.array([clips.sample_window(8, 4, 1, (1,), rng, 2, weights).positions[0]
                     for _ in range(2000)])
  assert set(capped) == {0, 2}
  np.testing.assert_allclose((capped == 2).mean(), 0.75, atol=0.04)
  # Without weights the draw is the uniform one of before (same stream).
  a = clips.sample_window(30, 4, 2, (1,), np.random.default_rng(7))
  b = np.random.default_rng(7).integers(0, 30 - 7 + 1)
  assert a.positions[0] == b


def test_labelled_start_weights_are_the_share_of_unmasked_targets_per_window():
  # 8 frames of 5 waypoints: the learner drove frames 0-3 (all masked), frame 4 keeps 2 of 5.
  mask = np.ones((8, 5), bool)
  mask[:4] = False
  mask[4, 2:] = False
  weights = clips.labelled_start_weights(mask, window=2, stride=2)  # windows span 3 frames
  np.testing.assert_allclose(weights, [0.0, 0.0, 0.2, 0.5, 0.7, 1.0])
  # A clip shorter than the window: padded slots count as unlabelled.
  np.testing.assert_allclose(clips.labelled_start_weights(np.ones((1, 5), bool), 2, 1), [0.5])
