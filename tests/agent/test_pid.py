"""LMDrive's PID on hand-computed cases the simulator's test does not cover.

tests/sim/test_drive.py::test_pid_follows_langauto_rules already checks: throttle from a fresh
speed PID, brake when speed / desired > 1.1, and a fresh turn PID's steer (times 0.8). Here: the
integral over the 40-sample window and the derivative across steps, the brake below 0.1 m/s
desired speed, no angle while stopped, the throttle and delta clips, a left aim, the steer clip;
and the `aim_lookahead_m` option (the expert's aim rule on the predicted path).
"""

import math

import numpy as np
import pytest

from lmgendrive_jax.errors import ConfigError
from lmgendrive_jax.sim import pid


def test_turn_pid_window_mean_and_last_difference_across_steps():
  controller = pid.WaypointController()
  # Step 1: aim straight ahead (angle 0). Step 2: aim at 30 degrees left of forward.
  controller.control(np.array([[0.0, 2.0], [0.0, 4.0]]), speed=1.0)
  aim_deg = 90 + 30  # atan2(y, x) of a point 30 degrees left of forward
  aim = np.array([math.cos(math.radians(aim_deg)), math.sin(math.radians(aim_deg))]) * 3
  control = controller.control(np.stack([aim, aim]), speed=1.0)
  angle = (90 - aim_deg) / 90  # -1/3
  integral = (0.0 + angle) / 40
  derivative = angle - 0.0
  assert control.steer == pytest.approx(0.8 * (1.25 * angle + 0.75 * integral + 0.3 * derivative))
  assert control.steer < 0  # left
  # Speed PID: desired speed 0 (aim twice = same point) -> brake, throttle 0.
  assert control.brake == 1.0 and control.throttle == 0.0


def test_speed_pid_history_clip_and_max_throttle():
  controller = pid.WaypointController()
  wps = np.array([[0.0, 0.5], [0.0, 1.0]])  # desired 1.0 m/s
  first = controller.control(wps, speed=0.9)  # delta 0.1 (under the 0.35 clip)
  assert first.throttle == pytest.approx(5.0 * 0.1 + 0.5 * 0.1 / 40 + 1.0 * 0.1)
  second = controller.control(wps, speed=0.95)  # delta 0.05; window [.., 0.1, 0.05]
  assert second.throttle == pytest.approx(5.0 * 0.05 + 0.5 * 0.15 / 40 + 1.0 * (0.05 - 0.1))
  # Far below the desired speed: delta clipped to 0.35, throttle clipped to 0.75.
  fast = pid.WaypointController().control(np.array([[0.0, 5.0], [0.0, 10.0]]), speed=0.5)
  assert fast.throttle == 0.75 and fast.brake == 0.0


def test_brake_below_min_desired_speed_and_no_angle_when_stopped():
  controller = pid.WaypointController()
  # |wp0 - wp1| * 2 = 0.08 < 0.1 -> brake even at rest; the aim is far right but speed < 0.01
  # feeds the turn PID 0.
  control = controller.control(np.array([[3.0, 0.0], [3.0, 0.04]]), speed=0.0)
  assert control.brake == 1.0 and control.throttle == 0.0 and control.steer == 0.0


def test_steer_clipped_before_the_0_8_scale():
  controller = pid.WaypointController()
  # Aim straight right (angle 1) then straight left (angle -1): raw PID -1.25 - 0.3*2 < -1.
  controller.control(np.array([[2.0, 0.0], [2.0, 0.0]]), speed=1.0)
  control = controller.control(np.array([[-2.0, 0.0], [-2.0, 0.0]]), speed=1.0)
  assert control.steer == pytest.approx(-0.8)


def test_path_point_walks_the_segments_from_ego_then_straight_ahead():
  waypoints = np.array([[0.0, 2.0], [0.0, 4.0], [3.0, 8.0]])  # segments 2, 2, 5 m long
  np.testing.assert_allclose(pid.path_point(waypoints, 1.0), [0.0, 1.0])
  np.testing.assert_allclose(pid.path_point(waypoints, 3.0), [0.0, 3.0])
  np.testing.assert_allclose(pid.path_point(waypoints, 6.5), [1.5, 6.0])  # half of the third
  np.testing.assert_allclose(pid.path_point(waypoints, 9.0), [3.0, 8.0])
  np.testing.assert_allclose(pid.path_point(waypoints, 10.0), [3.0, 9.0])  # on past its end
  # A standing planner's waypoints (all at ego): straight ahead.
  np.testing.assert_allclose(pid.path_point(np.zeros((5, 2)), 4.0), [0.0, 4.0])


def _fresh_steer(angle):
  """A fresh turn PID's steer for an angle (error / 90 degrees): P + I (1/40) + D, x 0.8."""
  return 0.8 * (1.25 * angle + 0.75 * angle / 40 + 0.3 * angle)


def test_lookahead_aim_bounds_a_crawling_planners_lateral_noise():
  # Crawling (0.2-0.4 m per 0.5 s) and drifting right: LMDrive's aim (0.15, 0.15) is 45 degrees.
  waypoints = np.array([[0.1, 0.1], [0.2, 0.2], [0.25, 0.3], [0.3, 0.4], [0.3, 0.5]])
  lmdrive = pid.WaypointController().control(waypoints, speed=0.5)
  assert lmdrive.steer == pytest.approx(_fresh_steer(0.5))
  # Lookahead 4 m (speed 0.5: 0.5 * 0.5 + 2 < 4): the path is 0.6065 m long, so the aim is
  # (0.3, 0.5 + 4 - 0.6065), 4.41 degrees right.
  length = 2 * math.hypot(0.1, 0.1) + 2 * math.hypot(0.05, 0.1) + 0.1
  aim_y = 0.5 + 4.0 - length
  angle = math.degrees(math.atan2(0.3, aim_y)) / 90
  assert angle == pytest.approx(4.406 / 90, abs=1e-4)
  control = pid.WaypointController(aim_lookahead_m=4.0).control(waypoints, speed=0.5)
  assert control.steer == pytest.approx(_fresh_steer(angle))
  # The speed side is LMDrive's either way.
  assert (control.throttle, control.brake) == (lmdrive.throttle, lmdrive.brake)


def test_lookahead_aim_grows_with_speed_like_the_experts():
  # A right curve, 3 m per 0.5 s (6 m/s): at 6 m/s the aim is 0.5 * 6 + 2 = 5 m along the path.
  waypoints = np.array([[0.0, 3.0], [0.6, 5.9], [1.8, 8.6], [3.5, 11.1], [5.6, 13.2]])
  point = pid.path_point(waypoints, 5.0)
  assert np.linalg.norm(point - waypoints[0]) == pytest.approx(2.0)  # 3 m + 2 m of the second
  control = pid.WaypointController(aim_lookahead_m=4.0).control(waypoints, speed=6.0)
  angle = math.degrees(math.atan2(point[0], point[1])) / 90
  assert control.steer == pytest.approx(_fresh_steer(angle))
  # Further along the curve than LMDrive's aim (1.5 m along the second segment): more steer.
  assert control.steer > pid.WaypointController().control(waypoints, speed=6.0).steer > 0


def test_negative_lookahead_is_refused_by_name():
  with pytest.raises(ConfigError, match="aim_lookahead_m=-1"):
    pid.WaypointController(aim_lookahead_m=-1.0)
