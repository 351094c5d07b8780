"""Labels of a recovery view (sim/view_shift.py, data_pipelines/collect.py `view_pose`): the TFDS
reader computes them in the shifted pose's frame, and reports a bad `view_pose` by its key."""

import json
import math

import numpy as np
import pytest

import lmdrive_fixture as fx
from data_pipelines import collect
from data_pipelines.lmdrive_tfds import BuildConfig, reader
from lmgendrive_jax.sim import expert
from lmgendrive_jax.sim import view_shift as view_shift_lib


def _straight_drive(frames: int, yaw: float) -> tuple[dict, list[np.ndarray]]:
  """Measurements of a car driving 4 m/s straight along `yaw`, and its positions."""
  direction = np.array([math.cos(yaw), math.sin(yaw)])
  positions = [np.array([30.0, 40.0]) + 0.4 * f * direction for f in range(frames)]
  measurements = {f: dict(collect.pose_keys(p, yaw), actors_data={}, is_red_light_present=[],
                          is_stop_sign_present=[], x_command=0.0, y_command=0.0)
                  for f, p in enumerate(positions)}
  return measurements, positions


def test_labels_of_a_recovery_view_lead_back_to_the_experts_path():
  yaw = 0.4
  measurements, positions = _straight_drive(40, yaw)
  config = BuildConfig()
  clean = reader.frame_labels(measurements, 3, config)
  view_pos, view_yaw = view_shift_lib.shifted_pose(positions[3], yaw, 1.0, 0.1)
  measurements[3] = dict(measurements[3], view_pose=collect.pose_keys(view_pos, view_yaw))
  shifted = reader.frame_labels(measurements, 3, config)
  # The expert's future positions, seen from the shifted pose (the simulator's own geometry).
  futures = [positions[3 + (k + 1) * config.waypoint_step_frames]
             for k in range(len(clean["waypoints"]))]
  expected = expert.world_to_ego(np.array(futures), view_pos, view_yaw)
  np.testing.assert_allclose(shifted["waypoints"], expected, atol=1e-4)
  assert (shifted["waypoints"][:, 0] < clean["waypoints"][:, 0] - 1.0).all()  # back to the left
  np.testing.assert_array_equal(shifted["waypoint_mask"], clean["waypoint_mask"])


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
