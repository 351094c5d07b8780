"""Labels of a recovery view (sim/view_shift.py, data_pipelines/collect.py `view_pose`): the TFDS
reader computes them in the shifted pose's frame, and reports a bad `view_pose` by its key."""

import json
import math

import numpy as np
import pytest

import lmdrive_fixture as fx
from data_pipelines import collect
from data_pipelines.lmdrive_tfds import BuildConfig, reader
from lmgendrive_jax.errors import ConfigError
from lmgendrive_jax.sim import expert
from lmgendrive_jax.sim import view_shift as view_shift_lib


def _straight_drive(frames: int, yaw: float, step_m: float = 0.4
                    ) -> tuple[dict, list[np.ndarray]]:
  """Measurements of a car driving straight along `yaw`, `step_m` per 10-Hz frame (4 m/s), and
  its positions."""
  direction = np.array([math.cos(yaw), math.sin(yaw)])
  positions = [np.array([30.0, 40.0]) + step_m * f * direction for f in range(frames)]
  measurements = {f: dict(collect.pose_keys(p, yaw), actors_data={}, is_red_light_present=[],
                          is_stop_sign_present=[], x_command=0.0, y_command=0.0)
                  for f, p in enumerate(positions)}
  return measurements, positions


@pytest.mark.parametrize("merge_m", [0.0, 4.5])
def test_labels_of_a_recovery_view_lead_back_to_the_experts_path(merge_m):
  yaw = 0.4
  measurements, positions = _straight_drive(40, yaw)
  config = BuildConfig(recovery_merge_m=merge_m)
  clean = reader.frame_labels(measurements, 3, config)
  view_pos, view_yaw = view_shift_lib.shifted_pose(positions[3], yaw, 1.0, 0.1)
  measurements[3] = dict(measurements[3], view_pose=collect.pose_keys(view_pos, view_yaw))
  shifted = reader.frame_labels(measurements, 3, config)
  # The expert's future positions, moved by the view's offset times exp(-travelled / merge_m)
  # (0: none of it), seen from the shifted pose (the simulator's own geometry).
  steps = [(k + 1) * config.waypoint_step_frames for k in range(len(clean["waypoints"]))]
  weights = [math.exp(-0.4 * n / merge_m) if merge_m else 0.0 for n in steps]
  futures = [positions[3 + n] + w * (view_pos - positions[3]) for n, w in zip(steps, weights)]
  expected = expert.world_to_ego(np.array(futures), view_pos, view_yaw)
  np.testing.assert_allclose(shifted["waypoints"], expected, atol=1e-4)
  # Back to the left (the view is 1 m right of the path), and further the further ahead.
  lateral_back = clean["waypoints"][:, 0] - shifted["waypoints"][:, 0]
  assert (lateral_back > 0.5).all() and (np.diff(lateral_back) > -1e-6).all()
  np.testing.assert_array_equal(shifted["waypoint_mask"], clean["waypoint_mask"])


def test_a_standing_car_on_a_recovery_view_is_asked_to_stay():
  """The expert stands (a red light): merged waypoints stay at the view pose, not a sideways
  jump onto the path that a creeping car could only follow with the wheel at full lock."""
  measurements, positions = _straight_drive(40, 0.4)
  standing = {f: dict(measurements[3]) for f in range(40)}
  view_pos, view_yaw = view_shift_lib.shifted_pose(positions[3], 0.4, 1.0, 0.0)
  standing[3] = dict(standing[3], view_pose=collect.pose_keys(view_pos, view_yaw))
  labels = reader.frame_labels(standing, 3, BuildConfig())
  np.testing.assert_allclose(labels["waypoints"], 0.0, atol=1e-4)


def test_a_bad_view_pose_is_reported_with_its_key(tmp_path):
  name = fx.route_name(1, 1, 0)
  fx.write_route(str(tmp_path), name, 2)
  path = tmp_path / name / "measurements" / "0001.json"
  m = json.loads(path.read_text())
  m["view_pose"] = {"gps_x": 1.0, "gps_y": 2.0, "x": 2.0, "y": -1.0, "theta": "north"}
  path.write_text(json.dumps(m))
  route = reader.RouteReader(str(tmp_path), name, BuildConfig())
  route.measurement(0)
  with pytest.raises(reader.BadInput, match="view_pose.theta"):
    route.measurement(1)


@pytest.mark.parametrize("speed_mps, masked", [(4.0, False), (1.0, True)])
def test_recovery_min_step_masks_a_crawling_cars_recovery_view(speed_mps, masked):
  """`recovery_min_step_m`: a recovery view whose expert drove less than it to the first
  waypoint keeps no waypoints; the clean frames of the same crawl keep theirs."""
  measurements, positions = _straight_drive(40, 0.4, step_m=speed_mps / 10)
  config = BuildConfig(recovery_merge_m=0.0, recovery_min_step_m=1.5)
  view_pos, view_yaw = view_shift_lib.shifted_pose(positions[3], 0.4, 1.0, 0.0)
  shifted = {**measurements, 3: dict(measurements[3],
                                     view_pose=collect.pose_keys(view_pos, view_yaw))}
  assert reader.frame_labels(shifted, 3, config)["waypoint_mask"].any() != masked
  assert reader.frame_labels(measurements, 3, config)["waypoint_mask"].all()


@pytest.mark.parametrize("field", ["recovery_merge_m", "recovery_min_step_m"])
def test_negative_recovery_distances_are_refused_by_name(field):
  with pytest.raises(ConfigError, match=field):
    BuildConfig(**{field: -1.0})
