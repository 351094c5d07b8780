"""The ego-centred road map of a tick, drawn from the town's rasters (host-side numpy).

Where it sits: `data_pipelines/collect.py` writes it per frame as `topdown/NNNN.png`, in the
format of `lmgendrive_jax/data/topdown.py` (which turns it into stage 1's road-layout targets).
"""

from __future__ import annotations

import math

import numpy as np

from lmgendrive_jax.data import topdown
from lmgendrive_jax.data.geometry import BevGrid
from lmgendrive_jax.sim import town as town_lib

ON_ROAD = (town_lib.GROUND_ROAD, town_lib.GROUND_CROSSWALK, town_lib.GROUND_STOP)
LANE_LINES = (town_lib.GROUND_WHITE, town_lib.GROUND_YELLOW)


def render_road_map(ground: np.ndarray, drive_dir: np.ndarray, origin: np.ndarray, res: float,
                    ego_pos: np.ndarray, ego_yaw: float, grid: BevGrid = topdown.TOPDOWN_GRID
                    ) -> np.ndarray:
  """A town's rasters -> the ego-centred road map uint8[rows, cols] of `topdown.ROAD_CLASSES`.

  ground / drive_dir: uint8[H, W] (town.py: ground classes, lane heading codes 0 east, 1 south,
  2 west, 3 north, 4 junction, 255 off road), pixel (0, 0) at `origin` (CARLA world x, y), `res`
  m per pixel. ego_pos: (x, y) CARLA world; ego_yaw: radians from +x towards +y.
  """
  right_ego, forward_ego = np.moveaxis(topdown.cell_points(grid)[:, :, 0], -1, 0)
  c, s = math.cos(ego_yaw), math.sin(ego_yaw)
  # CARLA's frame is left-handed (y south): the ego's right is (-sin yaw, cos yaw).
  x = ego_pos[0] + forward_ego * c - right_ego * s
  y = ego_pos[1] + forward_ego * s + right_ego * c
  col = np.floor((x - origin[0]) / res).astype(np.int64)
  row = np.floor((y - origin[1]) / res).astype(np.int64)
  inside = (row >= 0) & (row < ground.shape[0]) & (col >= 0) & (col < ground.shape[1])
  row, col = np.clip(row, 0, ground.shape[0] - 1), np.clip(col, 0, ground.shape[1] - 1)
  cls, heading = ground[row, col], drive_dir[row, col].astype(np.int64)
  # A lane heading h (code * 90 degrees) against the ego's: with it, against it or across it.
  alignment = np.cos(heading * (math.pi / 2) - ego_yaw)
  lane = np.where(alignment > 0.5, topdown.WITH_EGO,
                  np.where(alignment < -0.5, topdown.AGAINST_EGO, topdown.CROSSING))
  no_heading = np.isin(heading, (town_lib.DRIVE_JUNCTION, town_lib.DRIVE_OFFROAD))
  out = np.where(np.isin(cls, ON_ROAD), np.where(no_heading, topdown.JUNCTION, lane),
                 topdown.OFF_ROAD)
  out = np.where(np.isin(cls, LANE_LINES), topdown.MARKING, out)
  return np.where(inside, out, topdown.OFF_ROAD).astype(np.uint8)


def episode_road_map(episode, state: dict) -> np.ndarray:
  """The road map of a world's tick: `episode.town`, state["ego_pos"], state["ego_yaw"]."""
  town = episode.town
  return render_road_map(town.ground, town.drive_dir, town.raster_origin, town.raster_res,
                         np.asarray(state["ego_pos"], np.float64), float(state["ego_yaw"]))
