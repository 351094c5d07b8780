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
(50 x 50 m around the ego), is `beyond_map`. The target is amodal: the map has no objects, so a
car on the road is labelled with the lane under it.

Label: f32[rows, cols, len(VIEW_LAYOUT_CLASSES)] per view, each cell the share of each class
among samples x samples rays spread over it (soft targets: a cell across a lane marking says so).
"""

from __future__ import annotations

import numpy as np

from lmgendrive_jax.data import camera_rig, topdown

VIEW_LAYOUT_CLASSES = topdown.ROAD_CLASSES + ("beyond_map",)
BEYOND_MAP = len(topdown.ROAD_CLASSES)

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


def view_layout(road_map: np.ndarray, camera: str, window: Window, aspect: float, rows: int,
                cols: int, samples: int = 4) -> np.ndarray:
  """Road map uint8[200, 200] (`topdown.TOPDOWN_GRID`) -> f32[rows, cols, C]: per cell of the
  view (`window` of `camera`'s image, whose height / width is `aspect`), the share of each of
  `VIEW_LAYOUT_CLASSES` among the ground points its samples x samples rays meet."""
  grid = topdown.TOPDOWN_GRID
  if road_map.shape != (grid.rows, grid.cols):
    raise ValueError(f"road map of shape {road_map.shape}, expected {(grid.rows, grid.cols)}")
  u0, u1, v0, v1 = window
  offsets = (np.arange(samples) + 0.5) / samples
  u = u0 + (u1 - u0) * ((np.arange(cols)[:, None] + offsets).reshape(-1) / cols)
  v = v0 + (v1 - v0) * ((np.arange(rows)[:, None] + offsets).reshape(-1) / rows)
  points, hits = camera_rig.ground_points(camera, u[None, :], v[:, None], aspect)
  right, forward = points[..., 0], points[..., 1]
  row = np.floor((grid.ahead - forward) / grid.cell_forward).astype(np.int64)
  col = np.floor((right + grid.side) / grid.cell_lateral).astype(np.int64)
  inside = hits & (row >= 0) & (row < grid.rows) & (col >= 0) & (col < grid.cols)
  classes = np.where(inside, road_map[np.clip(row, 0, grid.rows - 1),
                                      np.clip(col, 0, grid.cols - 1)], BEYOND_MAP)
  one_hot = np.eye(len(VIEW_LAYOUT_CLASSES), dtype=np.float32)[classes]
  return one_hot.reshape(rows, samples, cols, samples, -1).mean(axis=(1, 3))
