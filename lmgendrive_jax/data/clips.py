"""Clip sampling for stages 2-3: which frames of an instruction clip a training window holds.

Pure numpy, no I/O: given a clip of n frames, a window of T frames at `stride`, pick the start
(random jitter, optionally weighted towards junctions and pulling away), the frames' positions
in the clip, the valid-frame mask (a clip shorter than the window is padded), the future targets
of the world generator per frame, and where a notice goes.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# CARLA RoadOption values of a route inside a junction (left, right, straight): where the
# instruction decides which branch the car takes.
JUNCTION_OPTIONS = (1, 2, 3)


@dataclasses.dataclass(frozen=True)
class Window:
  positions: np.ndarray     # int64[T]: index into the clip's frames (clamped for padded slots)
  frame_mask: np.ndarray    # bool[T]: slot holds a real frame
  future_index: np.ndarray  # int32[T, F]: window slot of each frame's future targets
  future_mask: np.ndarray   # bool[T, F]: that future exists inside the window


def window_holds_event(events: np.ndarray, window: int, stride: int,
                       lookahead: int) -> np.ndarray:
  """bool[max_start + 1]: whether the window starting at each start of a clip holds an event
  frame, or has one within `lookahead` frames after its last frame. events: bool[n] per frame."""
  events = np.asarray(events, bool)
  n = len(events)
  span = (window - 1) * stride + 1
  starts = np.arange(max(0, n - span) + 1)
  # Event frames at or after index i: a window [s, s + span - 1 + lookahead] holds one iff the
  # count at s exceeds the count past its end.
  after = np.concatenate([np.cumsum(events[::-1])[::-1], [0]])
  ends = np.minimum(starts + span + lookahead, n)
  return after[starts] > after[ends]


def junction_start_weights(road_option: np.ndarray, window: int, stride: int, lookahead: int,
                           boost: float) -> np.ndarray:
  """f64[max_start + 1] relative weights of a clip's window starts: 1 + boost for a window that
  holds a junction frame (road option in JUNCTION_OPTIONS) or has one within `lookahead` frames
  after its last frame (its waypoints' horizon: the frames where the branch is chosen), else 1.

  road_option: int[n], the route's option at each clip frame (clips' `road_option`).
  """
  junction = np.isin(road_option, JUNCTION_OPTIONS)
  return 1.0 + boost * window_holds_event(junction, window, stride, lookahead)


def labelled_start_weights(waypoint_mask: np.ndarray, window: int, stride: int) -> np.ndarray:
  """f64[max_start + 1]: the share of unmasked waypoints in the window starting at each start
  (0 for a window whose every target is masked). waypoint_mask: bool[n, W] per clip frame.

  On-policy data (agent/takeover.py) masks the frames the learner drove, often most of a clip;
  a window drawn there trains the planner on nothing.
  """
  labelled = np.asarray(waypoint_mask, bool).mean(axis=-1)
  n = len(labelled)
  span = (window - 1) * stride + 1
  starts = np.arange(max(0, n - span) + 1)
  positions = starts[:, None] + stride * np.arange(window)[None, :]
  valid = positions < n
  return np.where(valid, labelled[np.minimum(positions, n - 1)], 0.0).sum(1) / window


def pull_away_frames(waypoints: np.ndarray, still_m: float = 0.5,
                     moving_m: float = 2.0) -> np.ndarray:
  """bool[n]: frames where the car stands and is about to pull away: its first waypoint (0.5 s)
  less than `still_m` from it, its third (1.5 s) more than `moving_m`. waypoints f[n, W, 2],
  ego frame, metres.

  The expert's data stands still in ~30% of its frames (red lights, crossing pedestrians) but
  pulls away in ~1.5%: a planner trained on uniform windows learns to stay where it stopped.
  """
  distance = np.linalg.norm(np.asarray(waypoints, np.float64), axis=-1)
  return (distance[:, 0] < still_m) & (distance[:, 2] > moving_m)


def slowing_frames(waypoints: np.ndarray, moving_m: float = 1.0,
                   ratio: float = 0.5) -> np.ndarray:
  """bool[n]: frames where the car moves and its plan slows down: its first 0.5-s step is longer
  than `moving_m` (>= 2 m/s) and its last (2.0-2.5 s) shorter than `ratio` times that.
  waypoints f[n, W, 2], ego frame, metres.

  Braking for a car, a pedestrian, a light or a turn ahead: ~10% of the bigger run's frames, ~12%
  of its 4-frame windows. A planner trained on uniform windows asked 4.5 m/s with a car standing
  6 m ahead at 5 m/s, 4.7 with none (bench/lead_car_response.py). Drawn 4x as often
  (`data.slowing_window_boost=3`) they taught it to stop, not when: -8.4 DS (README).
  """
  points = np.asarray(waypoints, np.float64)
  steps = np.linalg.norm(np.diff(points, axis=-2, prepend=0.0), axis=-1)  # [n, W]
  return (steps[:, 0] > moving_m) & (steps[:, -1] < ratio * steps[:, 0])


def sample_window(num_frames: int, window: int, stride: int, future_offsets: tuple[int, ...],
                  rng: np.random.Generator | None, start_jitter: int = -1,
                  start_weights: np.ndarray | None = None) -> Window:
  """Window over a clip of `num_frames` frames.

  The start is drawn over [0, min(last valid start, start_jitter)] (start_jitter < 0: no cap;
  rng None: start 0): uniformly, or in proportion to `start_weights` (one per start from 0, e.g.
  `junction_start_weights`). future_offsets are in window slots (1 = the next window frame, i.e.
  `stride` source frames later).
  """
  span = (window - 1) * stride + 1
  max_start = max(0, num_frames - span)
  if start_jitter >= 0:
    max_start = min(max_start, start_jitter)
  if rng is None:
    start = 0
  elif start_weights is None:
    start = int(rng.integers(0, max_start + 1))
  else:
    weights = np.asarray(start_weights, np.float64)[:max_start + 1]
    start = int(rng.choice(len(weights), p=weights / weights.sum()))
  positions = start + stride * np.arange(window)
  frame_mask = positions < num_frames
  positions = np.minimum(positions, num_frames - 1)
  valid = int(frame_mask.sum())
  offsets = np.asarray(future_offsets, np.int32).reshape(1, -1)
  future_index = np.arange(window, dtype=np.int32)[:, None] + offsets
  future_mask = (future_index < valid) & frame_mask[:, None]
  future_index = np.where(future_mask, future_index, 0).astype(np.int32)
  return Window(positions.astype(np.int64), frame_mask, future_index, future_mask)


def notice_slot(notice_frames: np.ndarray, window_frames: np.ndarray, frame_mask: np.ndarray,
                rng: np.random.Generator | None, probability: float) -> tuple[int, int]:
  """(which notice, window slot it is inserted before), or (-1, -1) for none.

  notice_frames: int[K] route frame numbers of the clip's notices; window_frames: int[T] route
  frame numbers of the window's slots. A notice is eligible when it falls inside the valid part of
  the window; it goes before the first slot at or after its frame. Drawn with `probability`.
  """
  if rng is None or len(notice_frames) == 0 or rng.random() >= probability:
    return -1, -1
  valid_frames = window_frames[frame_mask]
  if len(valid_frames) == 0:
    return -1, -1
  eligible = [k for k, f in enumerate(notice_frames) if valid_frames[0] <= f <= valid_frames[-1]]
  if not eligible:
    return -1, -1
  k = eligible[int(rng.integers(len(eligible)))]
  slot = int(np.argmax(valid_frames >= notice_frames[k]))
  return k, slot
