"""Per-view road layout (data/view_layout.py): rays of LMDrive's pinhole rig meet the flat ground
where the geometry says, the road map's classes land on the image columns a lane marking takes,
and a crop's label is the matching block of the whole view's."""

import math

import numpy as np
import pytest

from lmgendrive_jax.data import camera_rig, topdown, view_layout

TAN_HALF = math.tan(math.radians(50.0))


def test_ground_points_follow_the_rig():
  # Front camera (x 1.3 m, z 2.3 m), the middle column, a quarter of the height below the centre.
  points, hits = camera_rig.ground_points("front", np.array([0.5]), np.array([0.75]), 1.0)
  depth = 2.3 / (0.25 * 2 * TAN_HALF)
  np.testing.assert_allclose(points[0], [0.0, 1.3 + depth], rtol=1e-5)
  assert hits[0]
  # Left camera (yaw -60 degrees): its middle ray goes forward-left.
  points, _ = camera_rig.ground_points("left", np.array([0.5]), np.array([0.75]), 1.0)
  np.testing.assert_allclose(points[0], [-depth * math.sin(math.radians(60)),
                                         1.3 + depth * 0.5], rtol=1e-5)
  # Rear camera: behind the car.
  points, _ = camera_rig.ground_points("rear", np.array([0.5]), np.array([0.75]), 1.0)
  np.testing.assert_allclose(points[0], [0.0, -1.3 - depth], rtol=1e-4, atol=1e-5)
  # At or above the horizon a ray never meets the ground.
  _, hits = camera_rig.ground_points("front", np.array([0.5, 0.5]), np.array([0.5, 0.2]), 1.0)
  assert not hits.any()
  with pytest.raises(ValueError, match="unknown camera"):
    camera_rig.ground_points("roof", np.array([0.5]), np.array([0.5]), 1.0)


def _marking_at(right_m: float) -> np.ndarray:
  """A road map with one lane marking along the ego's heading `right_m` metres to its right."""
  grid = topdown.TOPDOWN_GRID
  road_map = np.full((grid.rows, grid.cols), topdown.WITH_EGO, np.uint8)
  col = int((right_m + grid.side) / grid.cell_lateral)
  road_map[:, col:col + 2] = topdown.MARKING
  return road_map


@pytest.mark.parametrize("right_m", [1.75, 2.25])
def test_a_lane_marking_lands_on_the_columns_the_pinhole_predicts(right_m):
  size = 64
  label = view_layout.view_layout(_marking_at(right_m), "front", view_layout.FULL_IMAGE, 1.0,
                                  size, size, samples=1)
  assert label.shape == (size, size, len(view_layout.VIEW_LAYOUT_CLASSES))
  np.testing.assert_allclose(label.sum(-1), 1.0)
  for row in (40, 46, 52):  # (lower rows see it leave the image at its edge)
    down_per_depth = ((row + 0.5) / size - 0.5) * 2 * TAN_HALF
    depth = 2.3 / down_per_depth
    expected_col = (0.5 + (right_m + 0.25) / depth / (2 * TAN_HALF)) * size
    marked = np.nonzero(label[row, :, topdown.MARKING])[0]
    assert marked.size and abs(marked.mean() - expected_col) < 1.0, (row, marked, expected_col)


def test_above_the_horizon_and_beyond_the_map_is_beyond_map():
  size = 64
  label = view_layout.view_layout(_marking_at(1.75), "front", view_layout.FULL_IMAGE, 1.0,
                                  size, size, samples=1)
  classes = label.argmax(-1)
  # Rows up to the horizon, and those meeting the ground more than 30 m ahead (the map's edge):
  # forward = 1.3 + 2.3 / down_per_depth > 30 for rows above 0.5 + 0.0801 / (2 tan 50) * 64.
  last_beyond = int(np.floor((0.5 + 2.3 / 28.7 / (2 * TAN_HALF)) * size - 0.5))
  middle = classes[:, size // 2]
  assert (middle[:last_beyond + 1] == view_layout.BEYOND_MAP).all()
  assert (middle[last_beyond + 1:] != view_layout.BEYOND_MAP).all()
  # Far rows reach past the map's 25 m sides at the image's edges; the nearest rows do not.
  assert classes[last_beyond + 1, 0] == view_layout.BEYOND_MAP
  assert (classes[-8:] != view_layout.BEYOND_MAP).all()


def test_a_crop_is_the_matching_block_of_the_whole_view():
  road_map = _marking_at(1.75)
  whole = view_layout.view_layout(road_map, "right", view_layout.FULL_IMAGE, 0.75, 16, 16)
  crop = view_layout.sub_window(view_layout.FULL_IMAGE, (0.25, 0.75, 0.5, 1.0))
  np.testing.assert_allclose(view_layout.view_layout(road_map, "right", crop, 0.75, 8, 8),
                             whole[8:, 4:12], atol=1e-6)


def test_the_focus_view_is_the_centre_of_the_front_camera():
  camera, window = view_layout.camera_window("focus", (800, 600), 128 / 600)
  assert camera == "front"
  np.testing.assert_allclose(window, (336 / 800, 464 / 800, 236 / 600, 364 / 600))
  assert view_layout.camera_window("rear", (800, 600), 128 / 600) == ("rear",
                                                                      view_layout.FULL_IMAGE)
  # A window of a window: the inner fractions are of the outer window's image.
  np.testing.assert_allclose(view_layout.sub_window((0.2, 0.6, 0.0, 0.5), (0.5, 1.0, 0.5, 1.0)),
                             (0.4, 0.6, 0.25, 0.5))
