"""Per-view road layout (data/view_layout.py): rays of LMDrive's pinhole rig meet the flat ground
where the geometry says, the road map's classes land on the image columns a lane marking takes,
a crop's label is the matching block of the whole view's, and the `object` class (and
`object_cover`, the same without a road map) covers the pixels where the renderer draws a car."""

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


def _car(right_m: float, forward_m: float, yaw: float = 0.0, kind: int = 0) -> np.ndarray:
  """One ego-frame box in geometry.OBJECT_FIELDS order: 4.6 x 2.0 m."""
  return np.array([[right_m, forward_m, yaw, 4.6, 2.0, 0.0, kind]], np.float32)


def test_a_car_ahead_covers_its_near_face_in_the_front_view():
  size = 64
  road_map = _marking_at(1.75)
  near = 10.0 - 2.3 - 1.3  # its rear face, metres ahead of the front camera
  label = view_layout.view_layout(road_map, "front", view_layout.FULL_IMAGE, 1.0, size, size,
                                  samples=1, objects=_car(0.0, 10.0))
  np.testing.assert_allclose(label.sum(-1), 1.0)
  covered = label[..., view_layout.OBJECT] > 0.5
  centre = (np.arange(size) + 0.5) / size - 0.5  # a cell centre's offset from the image centre
  per_depth = centre * 2 * TAN_HALF
  # Its rear face spans 1 m either side and from the ground (2.3 m below the camera) up to its
  # 1.5 m roof (0.8 m below), which the camera sees from above over its 4.6 m length.
  cols = np.abs(per_depth * near) < 1.0
  rows = (per_depth * near > 0.8) & (per_depth * near < 2.3)
  roof_depth = 0.8 / np.where(per_depth > 0, per_depth, np.nan)
  with np.errstate(invalid="ignore"):
    roof = ((roof_depth > near) & (roof_depth < near + 4.6))[:, None] & (
        np.abs(per_depth[None, :] * roof_depth[:, None]) < 1.0)
  np.testing.assert_array_equal(covered, (rows[:, None] & cols[None, :]) | roof)
  assert roof.any() and (rows[:, None] & cols[None, :]).any()
  # Elsewhere the road map's classes stay; the rear camera does not see it.
  assert (label[~covered].argmax(-1) != view_layout.OBJECT).all()
  assert not (view_layout.view_layout(road_map, "rear", view_layout.FULL_IMAGE, 1.0, size, size,
                                      objects=_car(0.0, 10.0))[..., view_layout.OBJECT] > 0).any()


def test_a_turned_car_is_wider_and_the_ego_is_no_object():
  ahead = view_layout.view_layout(_marking_at(1.75), "front", view_layout.FULL_IMAGE, 1.0, 32, 32,
                                  objects=_car(0.0, 12.0))
  crossing = view_layout.view_layout(_marking_at(1.75), "front", view_layout.FULL_IMAGE, 1.0, 32,
                                     32, objects=_car(0.0, 12.0, yaw=math.pi / 2))
  assert crossing[..., view_layout.OBJECT].sum() > 1.5 * ahead[..., view_layout.OBJECT].sum()
  # CARLA's actor lists may hold the ego itself: a box over the ego's centre is skipped, else
  # every ray of every camera (inside it) would meet it.
  for camera in ("front", "rear"):
    own = view_layout.view_layout(_marking_at(1.75), camera, view_layout.FULL_IMAGE, 1.0, 16, 16,
                                  objects=_car(0.0, 0.0))
    assert not own[..., view_layout.OBJECT].any()
  with pytest.raises(ValueError, match="type 2"):
    view_layout.view_layout(_marking_at(1.75), "front", view_layout.FULL_IMAGE, 1.0, 8, 8,
                            objects=_car(0.0, 12.0, kind=2))


def test_object_cover_is_the_layouts_object_channel_without_a_road_map():
  objects = np.concatenate([_car(0.0, 10.0), _car(-3.5, 14.0, yaw=math.pi / 2)])
  window = view_layout.sub_window(view_layout.FULL_IMAGE, (0.1, 0.9, 0.05, 0.85))  # a crop
  cover = view_layout.object_cover(objects, "front", window, 0.75, 8, 12)
  layout = view_layout.view_layout(_marking_at(1.75), "front", window, 0.75, 8, 12,
                                   objects=objects)
  assert cover.shape == (8, 12) and 0.0 < cover.max() <= 1.0
  np.testing.assert_array_equal(cover, layout[..., view_layout.OBJECT])
  assert not view_layout.object_cover(objects[:0], "front", window, 0.75, 8, 12).any()


def test_the_object_class_is_where_the_renderer_draws_the_car(straight_place):
  """A car placed ahead in the embedded simulator, converted to an ego-frame box the way the
  collector and the TFDS reader do (actors_data -> geometry.actors_to_objects), covers exactly
  the pixels the renderer changes in the front and side views."""
  import jax
  import jax.numpy as jnp

  from bench.lead_car_response import placed_state
  from data_pipelines.collect import actors_data
  from lmgendrive_jax.data import geometry
  from lmgendrive_jax.sim import render

  _, episode, place = straight_place
  rig = render.CameraRig(views=("front", "left", "right"), width=64, height=64, max_boxes=64,
                         draw_distance=120.0)
  town = jax.tree.map(jnp.asarray, episode.town.arrays())
  with_car, without = (placed_state(episode.initial_state, episode.route, place, gap)
                       for gap in (2.0, None))
  images = [np.asarray(render.render_views(town, jax.tree.map(jnp.asarray, s), rig), np.int32)
            for s in (with_car, without)]
  drawn = np.abs(images[0] - images[1]).sum(-1) > 0
  theta = (float(with_car["ego_yaw"]) + math.pi / 2) % (2 * math.pi)  # as the collector writes
  lights = np.zeros(len(episode.town.light_pos), np.int32)
  objects = geometry.actors_to_objects(actors_data(episode, with_car, lights, 60.0),
                                       np.asarray(with_car["ego_pos"], np.float64), theta)
  assert len(objects) == 1
  for i, camera in enumerate(rig.views):
    label = view_layout.view_layout(np.zeros((200, 200), np.uint8), camera,
                                    view_layout.FULL_IMAGE, 1.0, 64, 64, samples=1,
                                    objects=objects)[..., view_layout.OBJECT] > 0.5
    assert drawn[i].any(), camera
    iou = (label & drawn[i]).sum() / (label | drawn[i]).sum()
    assert iou > 0.95, (camera, iou)
