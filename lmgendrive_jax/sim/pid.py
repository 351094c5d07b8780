"""Control from waypoints: CARLA-style `Control` and LMDrive's PID controllers (specs/langauto.md).

Where it sits: the learned agent (`agent/`) turns its 5 predicted ego-frame waypoints into a
`Control` with `WaypointController.control(waypoints, speed)`; the expert (expert.py) uses the
same gains through `WaypointController.control_from_targets(desired_speed, aim, speed)`.

Ego frame (lmgendrive_jax/data/geometry.py): x = metres to the right, y = metres forward.
"""

from __future__ import annotations

import collections
import dataclasses
import math

import numpy as np

from lmgendrive_jax.errors import ConfigError


@dataclasses.dataclass
class Control:
  """carla.VehicleControl's driving fields: steer in [-1, 1], throttle and brake in [0, 1]."""
  steer: float = 0.0
  throttle: float = 0.0
  brake: float = 0.0

  def as_array(self) -> np.ndarray:
    return np.array([self.steer, self.throttle, self.brake], np.float32)


class PIDController:
  """LMDrive's PID: integral = mean of the last `n` errors, derivative = last difference."""

  def __init__(self, K_P: float = 1.0, K_I: float = 0.0, K_D: float = 0.0, n: int = 20):
    self.K_P, self.K_I, self.K_D = K_P, K_I, K_D
    self._window = collections.deque([0.0] * n, maxlen=n)

  def step(self, error: float) -> float:
    self._window.append(float(error))
    integral = float(np.mean(self._window))
    derivative = self._window[-1] - self._window[-2] if len(self._window) >= 2 else 0.0
    return self.K_P * error + self.K_I * integral + self.K_D * derivative


@dataclasses.dataclass(frozen=True)
class PIDConfig:
  """LMDrive's numbers (specs/langauto.md, "Control from waypoints")."""
  turn_KP: float = 1.25
  turn_KI: float = 0.75
  turn_KD: float = 0.3
  turn_n: int = 40
  speed_KP: float = 5.0
  speed_KI: float = 0.5
  speed_KD: float = 1.0
  speed_n: int = 40
  max_throttle: float = 0.75
  brake_speed: float = 0.1  # desired speed below this: brake
  brake_ratio: float = 1.1  # speed / desired above this: brake
  clip_delta: float = 0.35
  steer_scale: float = 0.8


class WaypointController:
  """Waypoints (ego frame, 0.5 s apart) -> Control, by LMDrive's agent rules.

  aim_lookahead_m: 0 (default) = LMDrive's aim, the mean of the first two waypoints. > 0 = the
  expert's aim rule on the predicted path instead: the point `expert_lookahead(aim_lookahead_m,
  speed)` metres along it (`path_point`). LMDrive's aim sits 0.75 s of the asked speed ahead, so a
  crawling planner's aim is within a metre and any lateral noise in it is a large angle, which
  the turn PID's 40-step integral winds up to full lock; and at the expert's 4 m/s turning speed
  it sits 3 m ahead where the expert that drew the labels aimed 4 m ahead (the same PID gains),
  so it asks less steer on the same curve. The option is a departure from LMDrive's rules.
  """

  def __init__(self, config: PIDConfig = PIDConfig(), aim_lookahead_m: float = 0.0):
    if aim_lookahead_m < 0:
      raise ConfigError(f"aim_lookahead_m={aim_lookahead_m}: give 0 (LMDrive's aim) or a "
                        f"distance in metres > 0")
    self.config = config
    self.aim_lookahead_m = float(aim_lookahead_m)
    self.turn = PIDController(config.turn_KP, config.turn_KI, config.turn_KD, config.turn_n)
    self.speed = PIDController(config.speed_KP, config.speed_KI, config.speed_KD, config.speed_n)

  def control_from_targets(self, desired_speed: float, aim: np.ndarray, speed: float,
                           zero_angle_when_stopped: bool = True) -> Control:
    """desired speed (m/s), aim point f32[2] (ego frame), current speed -> Control.

    zero_angle_when_stopped: LMDrive's agent feeds the turn PID 0 below 0.01 m/s (so the
    integral does not wind up while waiting); the expert turns it off so that stop-and-go in a
    tight turn keeps its steering.
    """
    c = self.config
    brake = desired_speed < c.brake_speed or (speed / max(desired_speed, 1e-6)) > c.brake_ratio
    angle = math.degrees(math.pi / 2 - math.atan2(aim[1], aim[0])) / 90.0
    if speed < 0.01 and zero_angle_when_stopped:
      angle = 0.0
    steer = float(np.clip(self.turn.step(angle), -1.0, 1.0))
    delta = float(np.clip(desired_speed - speed, 0.0, c.clip_delta))
    throttle = float(np.clip(self.speed.step(delta), 0.0, c.max_throttle))
    throttle = 0.0 if brake else throttle
    brake_value = 1.0 if brake else 0.0
    if brake_value < 0.05:
      brake_value = 0.0
    if brake_value > 0.1:
      throttle = 0.0
    return Control(steer=steer * c.steer_scale, throttle=throttle, brake=brake_value)

  def control(self, waypoints: np.ndarray, speed: float) -> Control:
    """waypoints f32[K >= 2, 2] ego frame, 0.5 s apart; speed m/s -> Control."""
    waypoints = np.asarray(waypoints, np.float64)
    if self.aim_lookahead_m > 0:
      aim = path_point(waypoints, expert_lookahead(self.aim_lookahead_m, speed))
    else:
      aim = (waypoints[0] + waypoints[1]) / 2.0
    return self.control_from_targets(desired_speed(waypoints), aim, speed)


def expert_lookahead(floor_m: float, speed: float) -> float:
  """The expert's aim distance (m) at `speed` m/s: 0.5 s of driving + 2 m, at least `floor_m`."""
  return max(floor_m, 0.5 * speed + 2.0)


def path_point(waypoints: np.ndarray, distance: float) -> np.ndarray:
  """The point `distance` metres along the path ego -> waypoints f32[K, 2] (ego frame) -> f64[2].

  Past the last waypoint the path goes on straight ahead (+y) from it: a crawling planner's
  waypoints span centimetres, and the direction of their last step is noise, not a heading.
  """
  points = np.concatenate([np.zeros((1, 2)), np.asarray(waypoints, np.float64)])
  steps = np.linalg.norm(np.diff(points, axis=0), axis=1)
  ends = np.cumsum(steps)
  i = int(np.searchsorted(ends, distance))
  if i >= len(steps):
    return points[-1] + np.array([0.0, distance - ends[-1]])
  before = ends[i] - steps[i]
  fraction = (distance - before) / steps[i]  # steps[i] > 0: ends[i] >= distance > before
  return points[i] + fraction * (points[i + 1] - points[i])


def desired_speed(waypoints: np.ndarray) -> float:
  """The speed (m/s) LMDrive's controller reads from waypoints f32[K >= 2, 2], 0.5 s apart: the
  first two points' distance per 0.5 s."""
  waypoints = np.asarray(waypoints, np.float64)
  return float(np.linalg.norm(waypoints[0] - waypoints[1]) * 2.0)
