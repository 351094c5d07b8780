"""Ego-frame geometry of the LMDrive format and the dense BEV detection targets (pure numpy).

Used at build time (`data_pipelines/lmdrive_tfds` stores ego-frame labels) and in the grain
pipelines (the BEV grid is re-rasterised when the model's grid differs from the stored one).

Conventions (CARLA's, which the LMDrive dataset and our simulator share):
- world frame: `x, y` measurement keys and `actors_data[*]["loc"]`, CARLA's left-handed frame
  (x east, y south, metres); `ori` is an actor's unit forward vector, `box` its half extents,
  `vel` its velocity, all in that frame.
- GPS frame: `gps_x` (north, metres), `gps_y` (east, metres); `x_command, y_command` (the route
  target point) and the LMDrive future waypoints live in this frame.
- `theta`: compass heading in radians, 0 = north, clockwise positive (pi/2 = east).
- **ego frame** (every label we produce): x = metres to the right, y = metres forward. This is the
  frame of `specs/langauto.md`'s PID (`angle = pi/2 - atan2(aim_y, aim_x)`, 0 = straight ahead).
"""

from __future__ import annotations

import dataclasses

import numpy as np

# Per-cell target layout; the order of `models/perception_heads.DETECTION_CHANNELS`.
BEV_CHANNELS = ("objectness", "dx", "dy", "sin_yaw", "cos_yaw", "length", "width", "speed")
# actors_data "tpe": 0 vehicle, 1 walker, 2 traffic light. Only the first two are detected.
DETECTED_ACTOR_TYPES = (0, 1)
TRAFFIC_LIGHT_TYPE = 2
# Per-object layout of the ego-frame boxes stored per frame.
OBJECT_FIELDS = ("x", "y", "yaw", "length", "width", "speed", "type")


def gps_to_ego(points: np.ndarray, ego_gps: np.ndarray, theta: float) -> np.ndarray:
  """GPS-frame points f32[..., 2] (north, east) -> ego frame f32[..., 2] (right, forward)."""
  d = np.asarray(points, np.float64) - np.asarray(ego_gps, np.float64)
  s, c = np.sin(theta), np.cos(theta)
  right = -s * d[..., 0] + c * d[..., 1]
  forward = c * d[..., 0] + s * d[..., 1]
  return np.stack([right, forward], axis=-1).astype(np.float32)


def world_to_ego(points: np.ndarray, ego_world: np.ndarray, theta: float) -> np.ndarray:
  """World-frame points f32[..., 2] (CARLA x east, y south) -> ego frame (right, forward)."""
  d = np.asarray(points, np.float64) - np.asarray(ego_world, np.float64)
  s, c = np.sin(theta), np.cos(theta)
  right = c * d[..., 0] + s * d[..., 1]
  forward = s * d[..., 0] - c * d[..., 1]
  return np.stack([right, forward], axis=-1).astype(np.float32)


def world_vector_to_ego(vectors: np.ndarray, theta: float) -> np.ndarray:
  """World-frame directions f32[..., 2] -> ego frame (right, forward), no translation."""
  return world_to_ego(vectors, np.zeros(2), theta)


def turn_ego(points: np.ndarray, yaw: float) -> np.ndarray:
  """Ego-frame points f32[..., 2] (right, forward) as seen from the ego turned `yaw` radians to
  the right about its origin: a point straight ahead of the turned ego lands on (0, d)."""
  c, s = np.cos(yaw), np.sin(yaw)
  points = np.asarray(points, np.float32)
  right = c * points[..., 0] - s * points[..., 1]
  forward = s * points[..., 0] + c * points[..., 1]
  return np.stack([right, forward], axis=-1).astype(np.float32)


def project_onto_polyline(polyline: np.ndarray, points: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray]:
  """Each of `points` f[N, 2] onto the polyline f[P, 2] (P >= 2), in any one frame: (nearest
  f64[N, 2], the polyline's point nearest to it; along f64[N], that point's arc length from
  polyline[0])."""
  start = np.asarray(polyline, np.float64)[:-1]
  segment = np.diff(np.asarray(polyline, np.float64), axis=0)  # [P-1, 2]
  points = np.asarray(points, np.float64)
  t = np.clip(np.einsum("nsk,sk->ns", points[:, None] - start[None], segment) / np.maximum(
      np.einsum("sk,sk->s", segment, segment), 1e-12), 0.0, 1.0)  # [N, P-1]
  candidates = start[None] + t[..., None] * segment[None]
  best = np.argmin(np.linalg.norm(candidates - points[:, None], axis=-1), axis=1)
  rows = np.arange(len(points))
  length = np.linalg.norm(segment, axis=-1)
  segment_start_s = np.concatenate([[0.0], np.cumsum(length)[:-1]])
  return candidates[rows, best], segment_start_s[best] + t[rows, best] * length[best]


def actors_to_objects(actors: dict, ego_world: np.ndarray, theta: float) -> np.ndarray:
  """actors_data of one frame -> f32[N, 7] ego-frame boxes in `OBJECT_FIELDS` order.

  yaw: the actor's heading relative to ego, radians, 0 = same direction, +pi/2 = pointing right.
  length, width: full box sizes (twice CARLA's half extents). speed: |vel| in m/s. Traffic lights
  are not objects (their state is the frame's `traffic_light` label).
  """
  rows = []
  for actor in actors.values():
    kind = int(actor["tpe"])
    if kind not in DETECTED_ACTOR_TYPES:
      continue
    loc = np.asarray(actor["loc"], np.float64)[:2]
    ori = np.asarray(actor["ori"], np.float64)[:2]
    box = np.asarray(actor["box"], np.float64)
    vel = np.asarray(actor.get("vel", (0.0, 0.0, 0.0)), np.float64)
    x, y = world_to_ego(loc, ego_world, theta)
    ori_right, ori_forward = world_vector_to_ego(ori, theta)
    yaw = np.arctan2(ori_right, ori_forward)
    rows.append((x, y, yaw, 2 * box[0], 2 * box[1], np.linalg.norm(vel[:2]), kind))
  return np.asarray(rows, np.float32).reshape(-1, len(OBJECT_FIELDS))


@dataclasses.dataclass(frozen=True)
class BevGrid:
  """The detection grid: `rows` x `cols` cells covering `ahead` m in front of the ego, `behind` m
  behind it and `side` m to each side. Row 0 is the farthest ahead, column 0 the farthest left."""
  rows: int = 50
  cols: int = 50
  ahead: float = 30.0
  behind: float = 20.0
  side: float = 25.0

  @property
  def cell_forward(self) -> float:
    return (self.ahead + self.behind) / self.rows

  @property
  def cell_lateral(self) -> float:
    return 2 * self.side / self.cols


def bev_targets(objects: np.ndarray, grid: BevGrid) -> np.ndarray:
  """Ego-frame boxes f32[N, 7] -> dense targets f32[rows, cols, 8] in `BEV_CHANNELS` order.

  The cell holding an object's centre gets objectness 1, the centre's offset from the cell's
  middle (dx along columns, + right; dy along rows, + backward; metres, the convention of
  `models/perception_heads.decode_detections`), sin/cos of the relative yaw, full length and
  width, and speed. Two objects in one cell: the nearer to ego wins (it matters most to driving).
  """
  targets = np.zeros((grid.rows, grid.cols, len(BEV_CHANNELS)), np.float32)
  if len(objects) == 0:
    return targets
  objects = np.asarray(objects, np.float32)
  row_pos = (grid.ahead - objects[:, 1]) / grid.cell_forward   # cells down from the top edge
  col_pos = (objects[:, 0] + grid.side) / grid.cell_lateral    # cells right of the left edge
  rows, cols = np.floor(row_pos).astype(np.int64), np.floor(col_pos).astype(np.int64)
  inside = (rows >= 0) & (rows < grid.rows) & (cols >= 0) & (cols < grid.cols)
  distance = np.hypot(objects[:, 0], objects[:, 1])
  # Farthest first, so the nearest object in a cell is written last and wins.
  for i in sorted(np.nonzero(inside)[0], key=lambda i: -distance[i]):
    x, y, yaw, length, width, speed = objects[i, :6]
    targets[rows[i], cols[i]] = (
        1.0, (col_pos[i] - cols[i] - 0.5) * grid.cell_lateral,
        (row_pos[i] - rows[i] - 0.5) * grid.cell_forward, np.sin(yaw), np.cos(yaw), length, width,
        speed)
  return targets
