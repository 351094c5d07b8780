"""LMDrive's camera rig (specs/lmdrive_format.md), shared by the simulator that renders it and the
data pipeline that projects labels into it.

Poses are in the ego frame: x metres forward of the vehicle's centre, y metres right, z metres up,
yaw in degrees (+ towards the right). Every camera has zero pitch and roll and a 100-degree
horizontal field of view; the focus view is a centre crop of the front image (`BuildConfig.
focus_fraction` of its height, square).
"""

from __future__ import annotations

import math

import numpy as np

CAMERA_POSES = {
    "front": (1.3, 0.0, 2.3, 0.0),
    "left": (1.3, 0.0, 2.3, -60.0),
    "right": (1.3, 0.0, 2.3, 60.0),
    "rear": (-1.3, 0.0, 2.3, 180.0),
}
FOV_DEG = 100.0


def rays(camera: str, u: np.ndarray, v: np.ndarray, aspect: float
         ) -> tuple[np.ndarray, np.ndarray]:
  """The rays of image points, in the ego frame.

  camera: a `CAMERA_POSES` name; u, v: f[...] positions in the camera image as fractions of its
  width and height (0 = left / top edge, 1 = right / bottom edge); aspect: the camera image's
  height / width. -> (origin f64[3], directions f64[..., 3]), both as (right, forward, up)
  metres; a direction is scaled to one metre of depth along the camera's axis.
  """
  if camera not in CAMERA_POSES:
    raise ValueError(f"unknown camera {camera!r}; known: {sorted(CAMERA_POSES)}")
  x, y, z, yaw_deg = CAMERA_POSES[camera]
  tan_half = math.tan(math.radians(FOV_DEG / 2))
  right_per_depth = (np.asarray(u, np.float64) - 0.5) * 2 * tan_half
  down_per_depth = (np.asarray(v, np.float64) - 0.5) * 2 * tan_half * aspect
  right_per_depth, down_per_depth = np.broadcast_arrays(right_per_depth, down_per_depth)
  yaw = math.radians(yaw_deg)
  directions = np.stack([math.sin(yaw) + right_per_depth * math.cos(yaw),
                         math.cos(yaw) - right_per_depth * math.sin(yaw),
                         -down_per_depth], axis=-1)
  return np.asarray((y, x, z), np.float64), directions


def ground_points(camera: str, u: np.ndarray, v: np.ndarray, aspect: float
                  ) -> tuple[np.ndarray, np.ndarray]:
  """Where the rays of image points meet the flat ground.

  Arguments as `rays`. -> (points f32[..., 2] as (right, forward) metres in the ego frame, hits
  bool[...]: False for rays at or above the horizon, which never meet the ground).
  """
  origin, directions = rays(camera, u, v, aspect)
  down = -directions[..., 2]
  hits = down > 1e-6
  depth = np.where(hits, origin[2] / np.maximum(down, 1e-6), 0.0)
  points = origin[:2] + depth[..., None] * directions[..., :2]
  return points.astype(np.float32), hits


def crop_yaw(window: tuple[float, float, float, float]) -> float:
  """The yaw (radians, + right) of the ray through a crop's centre column, from its camera's axis.

  window: the part of a camera image a view shows, (u0, u1, v0, v1) as fractions of its width
  and height (`data/view_layout.sub_window`). A view cropped off-centre looks like the camera
  turned by this angle (to first order: the crop keeps the camera's principal point, a turned
  camera would re-project), which is what a random crop teaches when its labels stay put.
  """
  centre = 0.5 * (window[0] + window[1])
  return math.atan((centre - 0.5) * 2 * math.tan(math.radians(FOV_DEG / 2)))
