"""Ego-centred top-down road maps (the LMDrive format's optional `topdown/`) and the BEV
road-layout targets drawn from them (pure numpy).

Why: LMDrive's stage-1 heads (detection, waypoints, light, stop sign) ask a from-scratch encoder
to see objects and to predict 5 waypoints; nothing asks it where the lane is, and on the embedded
default the trained encoder hardly told a car off its lane centre from one on it (README,
`bench/planner_inputs.py --work_dir <stage-1 run>`). A dense per-cell road-layout target, the
BEV semantic auxiliary loss of TransFuser / InterFuser, makes the BEV tokens the planner reads
carry the lane.

Format (drawn by `sim/road_map.py`, written by `data_pipelines/collect.py`, read by
`data_pipelines/lmdrive_tfds/reader.py`): `topdown/NNNN.png`, 8-bit greyscale ("L"),
`TOPDOWN_GRID` pixels (200 x 200 at 0.25 m: 30 m ahead, 20 m behind, 25 m to each side, the
extent of LMDrive's detection grid; row 0 farthest ahead, column 0 farthest left), each pixel a
`ROAD_CLASSES` index. Directions are relative to
the ego's heading, so the same map reads the same whichever way the ego faces.
"""

from __future__ import annotations

import numpy as np

from lmgendrive_jax.data.geometry import BevGrid

ROAD_CLASSES = ("off_road", "lane_with_ego", "lane_against_ego", "crossing_lane", "junction",
                "lane_marking")
OFF_ROAD, WITH_EGO, AGAINST_EGO, CROSSING, JUNCTION, MARKING = range(len(ROAD_CLASSES))
TOPDOWN_GRID = BevGrid(rows=200, cols=200, ahead=30.0, behind=20.0, side=25.0)


def cell_points(grid: BevGrid, samples: int = 1) -> np.ndarray:
  """-> f32[rows, cols, samples**2, 2]: ego-frame (right, forward) points spread evenly over each
  cell (their centres when samples == 1)."""
  offsets = (np.arange(samples) + 0.5) / samples
  rows = np.arange(grid.rows)[:, None] + offsets[None, :]           # [rows, s]
  cols = np.arange(grid.cols)[:, None] + offsets[None, :]           # [cols, s]
  forward = grid.ahead - rows * grid.cell_forward
  right = -grid.side + cols * grid.cell_lateral
  points = np.stack(np.broadcast_arrays(right[None, :, None, :], forward[:, None, :, None]), -1)
  return points.reshape(grid.rows, grid.cols, samples * samples, 2).astype(np.float32)


def road_fractions(topdown: np.ndarray, grid: BevGrid, source: BevGrid = TOPDOWN_GRID,
                   samples: int = 4) -> np.ndarray:
  """Road map uint8[source.rows, source.cols] -> f32[grid.rows, grid.cols, len(ROAD_CLASSES)]:
  per cell of `grid`, the share of each class among samples x samples points spread over it
  (soft targets: a coarse cell half on the lane says so). Points outside `source` are off road.
  """
  if topdown.shape != (source.rows, source.cols):
    raise ValueError(f"road map of shape {topdown.shape}, expected {(source.rows, source.cols)}")
  right, forward = np.moveaxis(cell_points(grid, samples), -1, 0)
  row = np.floor((source.ahead - forward) / source.cell_forward).astype(np.int64)
  col = np.floor((right + source.side) / source.cell_lateral).astype(np.int64)
  inside = (row >= 0) & (row < source.rows) & (col >= 0) & (col < source.cols)
  cls = np.where(inside, topdown[np.clip(row, 0, source.rows - 1),
                                 np.clip(col, 0, source.cols - 1)], OFF_ROAD)
  one_hot = np.eye(len(ROAD_CLASSES), dtype=np.float32)[cls]      # [rows, cols, s*s, C]
  return one_hot.mean(axis=2)
