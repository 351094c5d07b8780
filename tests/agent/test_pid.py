"""LMDrive's PID on hand-computed cases the simulator's test does not cover.

tests/sim/test_drive.py::test_pid_follows_langauto_rules already checks: throttle from a fresh
speed PID, brake when speed / desired > 1.1, and a fresh turn PID's steer (times 0.8). Here: the
integral over the 40-sample window and the derivative across steps, the brake below 0.1 m/s
desired speed, no angle while stopped, the throttle and delta clips, a left aim, the steer clip.
"""

import math

import numpy as np
import pytest

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
