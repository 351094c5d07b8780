"""Per-pixel road layout of each camera view: stage 1's image-space target (pure numpy).

Why: the road-layout target of `data/topdown.py` asks the BEV cells where the lanes are, but its
gradient reaches the from-scratch backbone only through the BEV decoder's cross-attention, which
is slow to train from scratch (DETR's lesson). After a 400-step stage 1 on the embedded default
the encoder's outputs hardly depended on the images (README: bench/planner_inputs.py), and no
planner on top of it could read the lane. A dense target aligned with each image, on the
backbone's own feature map (TransFuser's semantic auxiliary loss), gives every view's features a
direct reason to hold where the lane, its markings and the junctions are.

How: LMDrive's cameras have zero pitch and roll (`data/camera_rig.py`), so over flat ground the
point a pixel's ray meets is analytic; it is looked up in the frame's ego-centred road map (the
`topdown/` of our collector). No new data is needed, and the label follows any resize and crop
of the view exactly. A ray at or above the horizon, or one meeting the ground outside the map
(50 x 50 m around the ego), is `beyond_map`.

Objects: a ray that meets a vehicle's or pedestrian's box (the frame's ego-frame `objects`, with
`OBJECT_HEIGHT_M` as their heights) is `object`, whatever lies behind it. Why: the BEV detection
head reaches the backbone only through the BEV decoder's cross-attention, and from scratch it
stayed at its loss's best constant (P(object) 0.04-0.06 at every cell, occupied or not, after
400 and 1200 steps and at output stride 16: docs/experiments.md); the planner on top never slowed
for a car standing 3 m ahead (bench/lead_car_response.py). As the road layout did, the cars get a
dense target on each view's own feature map.

Label: f32[rows, cols, len(VIEW_LAYOUT_CLASSES)] per view, each cell the share of each class
among samples x samples rays spread over it (soft targets: a cell across a lane marking or a
car's edge says so).
"""

from __future__ import annotations

import numpy as np

from lmgendrive_jax.data import camera_rig, geometry, topdown

VIEW_LAYOUT_CLASSES = topdown.ROAD_CLASSES + ("beyond_map", "object")
BEYOND_MAP = len(topdown.ROAD_CLASSES)
OBJECT = BEYOND_MAP + 1
# Box heights by actors_data type, metres: the stored objects have no height. Our renderer draws
# vehicles 1.5 m and pedestrians 1.8 m tall (sim/render.py, sim/world.py's PED_HALF); CARLA's
# cars are 1.4-1.6 m.
OBJECT_HEIGHT_M = {0: 1.5, 1: 1.8}
_FIELD = {name: i for i, name in enumerate(geometry.OBJECT_FIELDS)}

Window = tuple[float, float, float, float]  # (u0, u1, v0, v1): fractions of a camera image
FULL_IMAGE: Window = (0.0, 1.0, 0.0, 1.0)


def camera_window(view: str, camera_size: tuple[int, int], focus_fraction: float
                  ) -> tuple[str, Window]:
  """The camera a stored view comes from and the part of its image the stored view shows.

  The focus view is the centre square of side round(focus_fraction * height) of the full-size
  front image (as `data_pipelines/lmdrive_tfds/reader.py` cuts it); the other views are whole.
  camera_size: the source cameras' (width, height).
  """
  if view != "focus":
    return view, FULL_IMAGE
  width, height = camera_size
  side = max(1, round(focus_fraction * height))
  top, left = (height - side) // 2, (width - side) // 2
  return "front", (left / width, (left + side) / width, top / height, (top + side) / height)


def sub_window(window: Window, inner: Window) -> Window:
  """`inner` (fractions of the image `window` shows) as fractions of the camera image."""
  u0, u1, v0, v1 = window
  return (u0 + inner[0] * (u1 - u0), u0 + inner[1] * (u1 - u0),
          v0 + inner[2] * (v1 - v0), v0 + inner[3] * (v1 - v0))


def object_hits(objects: np.ndarray, origin: np.ndarray, directions: np.ndarray) -> np.ndarray:
  """Which rays meet an object's box.

  objects: f32[N, 7] ego-frame boxes (`geometry.OBJECT_FIELDS`; boxes stand on the ground, their
  heights `OBJECT_HEIGHT_M` by type); origin f[3], directions f[..., 3]: rays as (right, forward,
  up), as `camera_rig.rays` gives them. -> bool[...].
  """
  objects = np.asarray(objects, np.float64).reshape(-1, len(geometry.OBJECT_FIELDS))
  hit = np.zeros(directions.shape[:-1], bool)
  for box in objects:
    kind = int(box[_FIELD["type"]])
    if kind not in OBJECT_HEIGHT_M:
      raise ValueError(f"object of type {kind}; known types: {sorted(OBJECT_HEIGHT_M)}")
    yaw = box[_FIELD["yaw"]]  # 0 = facing as the ego, +pi/2 = facing right
    along = np.array([np.sin(yaw), np.cos(yaw), 0.0])   # the box's length axis, ego frame
    across = np.array([np.cos(yaw), -np.sin(yaw), 0.0])
    centre = np.array([box[_FIELD["x"]], box[_FIELD["y"]], 0.0])
    if (abs(-centre @ along) < box[_FIELD["length"]] / 2
        and abs(-centre @ across) < box[_FIELD["width"]] / 2):
      continue  # the ego itself (CARLA's actor lists may hold it): no other box covers its centre
    # Slab test in the box's frame: the ray's entry and exit along each axis.
    t_in = np.full(hit.shape, -np.inf)
    t_out = np.full(hit.shape, np.inf)
    for axis, low, high in ((along, -box[_FIELD["length"]] / 2, box[_FIELD["length"]] / 2),
                            (across, -box[_FIELD["width"]] / 2, box[_FIELD["width"]] / 2),
                            (np.array([0.0, 0.0, 1.0]), 0.0, OBJECT_HEIGHT_M[kind])):
      start = float((origin - centre) @ axis)
      rate = directions @ axis
      parallel = np.abs(rate) < 1e-12
      with np.errstate(divide="ignore", invalid="ignore"):
        t0, t1 = (low - start) / rate, (high - start) / rate
      enter = np.where(parallel, np.where((low <= start) & (start <= high), -np.inf, np.inf),
                       np.minimum(t0, t1))
      leave = np.where(parallel, np.where((low <= start) & (start <= high), np.inf, -np.inf),
                       np.maximum(t0, t1))
      t_in, t_out = np.maximum(t_in, enter), np.minimum(t_out, leave)
    hit |= (t_in <= t_out) & (t_out > 0)
  return hit


def view_layout(road_map: np.ndarray, camera: str, window: Window, aspect: float, rows: int,
                cols: int, samples: int = 4, objects: np.ndarray | None = None) -> np.ndarray:
  """Road map uint8[200, 200] (`topdown.TOPDOWN_GRID`) and the frame's objects f32[N, 7]
  (ego-frame boxes, `geometry.OBJECT_FIELDS`; None: none) -> f32[rows, cols, C]: per cell of the
  view (`window` of `camera`'s image, whose height / width is `aspect`), the share of each of
  `VIEW_LAYOUT_CLASSES` among what its samples x samples rays meet first."""
  grid = topdown.TOPDOWN_GRID
  if road_map.shape != (grid.rows, grid.cols):
    raise ValueError(f"road map of shape {road_map.shape}, expected {(grid.rows, grid.cols)}")
  u, v = cell_sample_points(window, rows, cols, samples)
  points, hits = camera_rig.ground_points(camera, u, v, aspect)
  right, forward = points[..., 0], points[..., 1]
  row = np.floor((grid.ahead - forward) / grid.cell_forward).astype(np.int64)
  col = np.floor((right + grid.side) / grid.cell_lateral).astype(np.int64)
  inside = hits & (row >= 0) & (row < grid.rows) & (col >= 0) & (col < grid.cols)
  classes = np.where(inside, road_map[np.clip(row, 0, grid.rows - 1),
                                      np.clip(col, 0, grid.cols - 1)], BEYOND_MAP)
  if objects is not None and len(objects):
    # Boxes stand on the ground, below the camera: a ray meets one before the ground behind it.
    classes = np.where(object_hits(objects, *camera_rig.rays(camera, u, v, aspect)), OBJECT,
                       classes)
  one_hot = np.eye(len(VIEW_LAYOUT_CLASSES), dtype=np.float32)[classes]
  return one_hot.reshape(rows, samples, cols, samples, -1).mean(axis=(1, 3))


def object_cover(objects: np.ndarray, camera: str, window: Window, aspect: float, rows: int,
                 cols: int, samples: int = 4) -> np.ndarray:
  """The frame's objects f32[N, 7] (ego-frame boxes) -> f32[rows, cols]: per cell of the view,
  the share of its samples x samples rays that meet a vehicle or pedestrian: `view_layout`'s
  `object` channel without the road map, for detectors trained on builds without one (the
  hazard detector: `train/light_detector.py`)."""
  u, v = cell_sample_points(window, rows, cols, samples)
  hits = object_hits(objects, *camera_rig.rays(camera, u, v, aspect)).astype(np.float32)
  return hits.reshape(rows, samples, cols, samples).mean(axis=(1, 3))


def cell_sample_points(window: Window, rows: int, cols: int, samples: int
                       ) -> tuple[np.ndarray, np.ndarray]:
  """(u f[1, cols * samples], v f[rows * samples, 1]): samples x samples points spread evenly
  over each cell of a rows x cols grid on `window`, as fractions of the camera image."""
  u0, u1, v0, v1 = window
  offsets = (np.arange(samples) + 0.5) / samples
  u = u0 + (u1 - u0) * ((np.arange(cols)[:, None] + offsets).reshape(-1) / cols)
  v = v0 + (v1 - v0) * ((np.arange(rows)[:, None] + offsets).reshape(-1) / rows)
  return u[None, :], v[:, None]
