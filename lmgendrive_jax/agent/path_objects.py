"""The hazard rule's path reading: does the hazard detector's object map see a vehicle or
pedestrian on the ground the planner's own waypoints will drive over, close ahead?

Why: the hazard detector's frame-level head learnt `hazard_ahead`, an object in the corridor of
the expert's *future* route (`configs/hazard_detector.py`), which one front image does not show
at a junction: which branch the car takes is the instruction's and the planner's business. The
big preset's planner lost most of its vehicle-collision points turning across a junction at
~4 m/s into a crossing or oncoming car that had stopped 4-6 m ahead and 1-3 m to the side, while
the detector's P(hazard) stayed at 0.00-0.01 (docs/experiments.md, 22nd). Its object head
(`models/light_detector.py: object_map`, per cell of the last feature map: the share of the
cell's rays that meet a vehicle or walker) says where the objects are, and the planner's
waypoints say where the car goes; this module puts the two together on the ground plane:

1. once per detector: every cell's samples x samples image points are cast onto the flat ground
   through the detector view's part of the front camera (`camera_rig.ground_points`; the view is
   the centred `crop_scale` crop the agent's preprocessing cuts);
2. each model step: the corridor is the ground within `half_width_m` of the path from the car's
   centre through its waypoints, `length_m` long (extended along its last direction, or straight
   ahead, where the waypoints stop short: a planner that asks to stand still still has the road
   ahead of its bumper); a cell is on the path when at least `min_share` of its ground points
   lie in the corridor;
3. the reading is the largest object probability among the cells on the path (0 when none).

Only the image rows below the horizon whose ground lies near enough can be on the path, so a
car far ahead in the lane (its whole body above those rows) does not count; one that stands in
the corridor covers the cells of the ground it stands on.

  path = PathObjects(camera="front", window=(u0, u1, v0, v1), aspect=1.0, rows=8, cols=8)
  p = path.reading(object_probs, waypoints)   # f32[8, 8], f32[N, 2] (right, forward) -> float
  path = for_detector(detector, camera_size=(64, 64))   # a hazard detector run's ViewDetector
"""

from __future__ import annotations

import numpy as np

from lmgendrive_jax.data import camera_rig
from lmgendrive_jax.data import view_layout
from lmgendrive_jax.errors import ConfigError

# A car is ~2 m wide: its own half, plus a margin for the PID's tracking error.
HALF_WIDTH_M = 1.3
# From the car's centre: its front bumper ~2.4 m, then the hazard label's 10 m.
LENGTH_M = 12.5
MIN_SHARE = 0.5


def path_polyline(waypoints: np.ndarray, length_m: float) -> np.ndarray:
  """Ego-frame waypoints f32[N, 2] (right, forward) -> f32[M, 2]: the path from the car's centre
  (0, 0) through the waypoints, cut or extended along its last direction (straight ahead where
  it has none) to `length_m` metres."""
  points = [np.zeros(2, np.float64)]
  for point in np.asarray(waypoints, np.float64).reshape(-1, 2):
    if np.linalg.norm(point - points[-1]) > 1e-3:
      points.append(point)
  path = np.stack(points)
  steps = np.linalg.norm(np.diff(path, axis=0), axis=1)
  along = np.concatenate([[0.0], np.cumsum(steps)])
  if along[-1] >= length_m:
    end = int(np.searchsorted(along, length_m))  # the first point at or past the length
    cut = path[end - 1] + (path[end] - path[end - 1]) * (
        (length_m - along[end - 1]) / steps[end - 1])
    return np.concatenate([path[:end], cut[None]]).astype(np.float32)
  direction = (path[-1] - path[-2]) / steps[-1] if len(path) > 1 else np.array([0.0, 1.0])
  extended = path[-1] + direction * (length_m - along[-1])
  return np.concatenate([path, extended[None]]).astype(np.float32)


def distance_to_polyline(points: np.ndarray, polyline: np.ndarray) -> np.ndarray:
  """f32[..., 2] points, f32[M, 2] polyline (M >= 2) -> f32[...]: each point's distance to it."""
  start, end = polyline[:-1], polyline[1:]
  segment = end - start
  rel = points[..., None, :] - start  # [..., M-1, 2]
  t = np.clip((rel * segment).sum(-1) / np.maximum((segment * segment).sum(-1), 1e-9), 0.0, 1.0)
  nearest = start + t[..., None] * segment
  return np.linalg.norm(points[..., None, :] - nearest, axis=-1).min(axis=-1)


class PathObjects:
  """The path reading of one detector's object map (see the module docstring).

  camera: the `camera_rig` camera the detector's view comes from; window: the part of that
  camera's image the view shows (u0, u1, v0, v1); aspect: the camera image's height / width;
  rows, cols: the object map's size.
  """

  def __init__(self, camera: str, window: tuple[float, float, float, float], aspect: float,
               rows: int, cols: int, samples: int = 4, half_width_m: float = HALF_WIDTH_M,
               length_m: float = LENGTH_M, min_share: float = MIN_SHARE):
    self.rows, self.cols, self.samples = int(rows), int(cols), int(samples)
    self.half_width_m, self.length_m = float(half_width_m), float(length_m)
    self.min_share = float(min_share)
    u, v = view_layout.cell_sample_points(window, self.rows, self.cols, self.samples)
    # [rows * samples, cols * samples, 2] (right, forward) metres; rays at or above the horizon
    # never meet the ground and are never on the path.
    self.ground, self.hits = camera_rig.ground_points(camera, u, v, aspect)

  def cells(self, waypoints: np.ndarray) -> np.ndarray:
    """Ego-frame waypoints f32[N, 2] -> bool[rows, cols]: the cells on the path."""
    polyline = path_polyline(waypoints, self.length_m)
    inside = self.hits & (distance_to_polyline(self.ground, polyline) <= self.half_width_m)
    share = inside.reshape(self.rows, self.samples, self.cols, self.samples).mean(axis=(1, 3))
    return share >= self.min_share

  def reading(self, object_probs: np.ndarray, waypoints: np.ndarray) -> float:
    """f32[rows, cols] object probabilities, f32[N, 2] waypoints -> the largest probability on
    the path (0.0 when no cell is)."""
    object_probs = np.asarray(object_probs, np.float32)
    if object_probs.shape != (self.rows, self.cols):
      raise ValueError(f"object map of shape {object_probs.shape}, expected "
                       f"{(self.rows, self.cols)}")
    on_path = self.cells(waypoints)
    return float(object_probs[on_path].max()) if on_path.any() else 0.0


def for_detector(detector, camera_size: tuple[int, int], name: str = "the hazard detector"
                 ) -> PathObjects:
  """The path reading of a `detector.ViewDetector`'s object map on cameras of `camera_size`
  (W, H); `name` says which run in the error for a detector without an object map."""
  if detector.object_map_size is None:
    raise ConfigError(f"hazard_path_threshold needs a hazard detector with an object map "
                      f"(configs/hazard_detector.py: model.light_detector.object_map); {name} "
                      f"has none")
  camera, window = detector.view_window(camera_size)
  width, height = camera_size
  return PathObjects(camera, window, height / width, *detector.object_map_size)
