"""bench/lane_recovery.py drives an agent from a placed start and reads its lane offset: an agent
that holds its wheel straight keeps its offset, one that steers back to the route loses it, and
the offset it reads at the start is the placement's, on the right side."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bench import lane_recovery
from bench.lane_response import lane_pose, placed_state
from lmgendrive_jax.sim import host, pid, world

SPEED = 5.0


class Straight:
  """Holds the wheel straight and the speed near 5 m/s."""

  def run_step(self, input_data, timestamp):
    speed = input_data["speed"][1]["speed"]
    return pid.Control(steer=0.0, throttle=0.5 if speed < SPEED else 0.0, brake=0.0)


class BackToRoute:
  """Steers for the route point 5 m ahead with LMDrive's PID (the expert's lateral control), from
  its GPS and compass only, as a planner that sees its lane would."""

  def __init__(self, route):
    self.route, self.controller = route, pid.WaypointController()

  def run_step(self, input_data, timestamp):
    north, east, _ = input_data["gps"][1]
    pos = np.array([east, -north])  # CARLA frame
    yaw = input_data["imu"][1][-1] - math.pi / 2
    k = int(np.argmin(np.linalg.norm(self.route.points - pos, axis=-1)))
    d = self.route.point_at(self.route.s[k] + 5.0) - pos
    aim = np.array([-d[0] * math.sin(yaw) + d[1] * math.cos(yaw),
                    d[0] * math.cos(yaw) + d[1] * math.sin(yaw)])
    return self.controller.control_from_targets(SPEED, aim, input_data["speed"][1]["speed"])


class BlankScenes:
  """PlacedScenes' camera interface, rendering nothing (the scripted agents read no images)."""

  def __init__(self, rig):
    self.rig = rig

  def cameras(self, town, state):
    return np.zeros((len(self.rig.views), self.rig.height, self.rig.width, 3), np.uint8)


@pytest.fixture
def place(straight_place):
  sim, episode, s = straight_place
  step = jax.jit(functools.partial(world.step, params=world.WorldParams.from_config(sim.world)))
  town = jax.tree.map(jnp.asarray, episode.town.arrays())
  return sim, episode, town, s, step


@pytest.mark.parametrize("offset", [-1.0, 1.0])
def test_a_straight_wheel_keeps_its_offset_and_steering_back_loses_it(place, offset):
  sim, episode, town, s, step = place
  centre, lane_yaw = lane_pose(episode.route, s)
  state = jax.tree.map(jnp.asarray, placed_state(episode.initial_state, centre, lane_yaw,
                                                 offset, 0.0))
  scenes = BlankScenes(host.rig_from_config(sim))
  kept = {}
  for name, agent in (("straight", Straight()), ("back", BackToRoute(episode.route))):
    offsets = lane_recovery.drive(agent, scenes, step, episode, town, state, 4.0, s)
    assert len(offsets) == 9 and offsets[0] == pytest.approx(offset, abs=1e-3)
    kept[name] = lane_recovery.mean_abs([(offset, offsets)], 8)
    assert lane_recovery.mean_signed([(offset, offsets)], 0) == pytest.approx(offset, abs=1e-3)
  assert kept["straight"] > 0.8
  assert kept["back"] < 0.3
