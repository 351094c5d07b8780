"""Road maps: drawn from a town's rasters in the ego's frame (sim/road_map.py), and turned into
per-cell class shares on the BEV grid with the detection targets' cell convention
(data/topdown.py)."""

import math

import numpy as np
import pytest

from lmgendrive_jax.data import geometry, topdown
from lmgendrive_jax.sim import road_map
from lmgendrive_jax.sim import town as town_lib

RES = 0.25


def _east_west_road():
  """A 200 x 100 m raster (origin (0, 0), 0.25 m pixels) with one east-west road along y = 50:
  the lane heading east south of the centre line (CARLA y grows south; traffic keeps right),
  the lane heading west north of it, a white centre line, a junction square at x in [90, 110]."""
  ground = np.full((400, 800), town_lib.GROUND_TERRAIN, np.uint8)
  drive = np.full((400, 800), town_lib.DRIVE_OFFROAD, np.uint8)
  row = lambda y: int(y / RES)  # noqa: E731
  ground[row(46.5):row(53.5)] = town_lib.GROUND_ROAD
  drive[row(46.5):row(50)] = 2   # north half: heading west
  drive[row(50):row(53.5)] = 0   # south half: heading east
  ground[row(49.75):row(50.25)] = town_lib.GROUND_WHITE
  drive[row(46.5):row(53.5), row(90):row(110)] = town_lib.DRIVE_JUNCTION
  return ground, drive


def _class_at(road_map, right, forward, grid=topdown.TOPDOWN_GRID):
  row = int((grid.ahead - forward) / grid.cell_forward)
  col = int((right + grid.side) / grid.cell_lateral)
  return int(road_map[row, col])


def test_road_map_reads_lanes_relative_to_the_ego():
  ground, drive = _east_west_road()
  origin = np.zeros(2)
  # In the eastbound lane, heading east (yaw 0): its lane ahead, the other lane on its left.
  east = road_map.render_road_map(ground, drive, origin, RES, np.array([50.0, 51.75]), 0.0)
  assert east.shape == (200, 200) and east.dtype == np.uint8
  assert _class_at(east, 0.0, 10.0) == topdown.WITH_EGO
  assert _class_at(east, -3.5, 10.0) == topdown.AGAINST_EGO
  assert _class_at(east, -1.75, 5.0) == topdown.MARKING
  assert _class_at(east, 6.0, 5.0) == topdown.OFF_ROAD      # south of the road, to its right
  # Turned round (heading west) in the westbound lane, the classes swap sides with it.
  west = road_map.render_road_map(ground, drive, origin, RES, np.array([80.0, 48.25]), math.pi)
  assert _class_at(west, 0.0, 5.0) == topdown.WITH_EGO
  assert _class_at(west, -3.5, 5.0) == topdown.AGAINST_EGO
  # Heading north across the road: both lanes cross the ego's path.
  north = road_map.render_road_map(ground, drive, origin, RES, np.array([50.0, 60.0]), -math.pi / 2)
  assert _class_at(north, 0.0, 8.25) == topdown.CROSSING
  assert _class_at(north, 0.0, 11.75) == topdown.CROSSING
  assert _class_at(north, 0.0, 2.0) == topdown.OFF_ROAD
  # Beyond the raster's edge: off road.
  edge = road_map.render_road_map(ground, drive, origin, RES, np.array([199.0, 51.75]), 0.0)
  assert _class_at(edge, 0.0, 20.0) == topdown.OFF_ROAD


def test_junction_ahead_is_where_the_raster_has_it():
  ground, drive = _east_west_road()
  ahead = road_map.render_road_map(ground, drive, np.zeros(2), RES, np.array([80.0, 51.75]), 0.0)
  assert _class_at(ahead, 0.0, 5.0) == topdown.WITH_EGO      # x = 85 m
  assert _class_at(ahead, 0.0, 15.0) == topdown.JUNCTION     # x = 95 m
  assert _class_at(ahead, 0.0, 29.0) == topdown.JUNCTION     # x = 109 m
  assert _class_at(ahead, 0.0, -10.0) == topdown.WITH_EGO    # behind


def test_road_fractions_are_class_shares_per_cell():
  # Left half of the map: lane with the ego; right half: against it.
  road_map = np.full((200, 200), topdown.AGAINST_EGO, np.uint8)
  road_map[:, :100] = topdown.WITH_EGO
  even = geometry.BevGrid(rows=5, cols=4, ahead=30.0, behind=20.0, side=25.0)
  shares = topdown.road_fractions(road_map, even)
  assert shares.shape == (5, 4, len(topdown.ROAD_CLASSES))
  np.testing.assert_allclose(shares.sum(-1), 1.0)
  np.testing.assert_allclose(shares[:, :2, topdown.WITH_EGO], 1.0)
  np.testing.assert_allclose(shares[:, 2:, topdown.AGAINST_EGO], 1.0)
  # Three columns: the middle cell straddles the boundary, half and half.
  odd = geometry.BevGrid(rows=5, cols=3, ahead=30.0, behind=20.0, side=25.0)
  middle = topdown.road_fractions(road_map, odd, samples=4)[:, 1]
  np.testing.assert_allclose(middle[:, topdown.WITH_EGO], 0.5)
  np.testing.assert_allclose(middle[:, topdown.AGAINST_EGO], 0.5)
  # A grid wider than the map: its outer cells lie off the map, so off road.
  wide = geometry.BevGrid(rows=5, cols=4, ahead=30.0, behind=20.0, side=50.0)
  outer = topdown.road_fractions(road_map, wide)[:, [0, 3]]
  np.testing.assert_allclose(outer[..., topdown.OFF_ROAD], 1.0)
  with pytest.raises(ValueError, match="road map of shape"):
    topdown.road_fractions(road_map[:100], even)


def test_road_cells_match_the_detection_grid():
  """A cell's points (cell_points) and an object at that cell's centre (bev_targets) agree on
  which cell is which, so road layout and detections line up in the BEV."""
  grid = geometry.BevGrid(rows=20, cols=20)
  centres = topdown.cell_points(grid)[:, :, 0]
  for row, col in ((0, 0), (7, 13), (19, 19)):
    right, forward = centres[row, col]
    targets = geometry.bev_targets(np.array([[right, forward, 0, 4, 2, 0, 0]], np.float32), grid)
    assert targets[row, col, 0] == 1 and targets[..., 0].sum() == 1
