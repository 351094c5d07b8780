"""eval/route_exit.py on a held-out route (tiny_3 seed 1, tiny_00: a 26 m lane, a 24 m straight
crossing, a lane): a car on the route never exits; one drifting off the lane exits on the lane
after drifting from where it left the centre; one that leaves inside the crossing exits there,
abruptly; closed-loop results carry the field."""

import numpy as np
import pytest

from lmgendrive_jax.config import sim_preset
from lmgendrive_jax.eval import route_exit
from lmgendrive_jax.sim import host, routes


@pytest.fixture(scope="module")
def episode():
  sim = sim_preset("tiny")
  spec = routes.route_set("tiny_3", 1)[0]
  return host.Episode(spec, sim, int(sim.traffic.num_vehicles) + host.EXTRA_ACTORS,
                      int(sim.traffic.num_pedestrians) + host.EXTRA_ACTORS)


def _drive(route, s_values, offsets):
  """Positions at route metres `s_values`, `offsets` metres to the right of the route."""
  points = np.stack([route.point_at(s) for s in s_values])
  ahead = np.stack([route.point_at(s + 0.5) for s in s_values]) - points
  ahead /= np.linalg.norm(ahead, axis=1, keepdims=True)
  right = np.stack([-ahead[:, 1], ahead[:, 0]], axis=1)
  return points + np.asarray(offsets)[:, None] * right


def test_the_route_layout_this_test_assumes(episode):
  pieces = [(round(a), round(b), int(episode.town.lane_junction[lane]) >= 0)
            for lane, a, b, _ in episode.route.pieces]
  assert pieces[:2] == [(5, 31, False), (0, 24, True)]


def test_a_car_on_its_route_never_exits(episode):
  s = np.arange(0.0, episode.route.length, 2.0)
  assert route_exit.first_exit(episode.route, episode.town, _drive(episode.route, s, 0 * s)) is None
  assert route_exit.first_exit(episode.route, episode.town, np.zeros((0, 2))) is None


def test_a_drift_off_the_lane_exits_on_the_lane_after_drifting(episode):
  s = np.arange(0.0, 24.0, 2.0)  # every 0.5 s at 4 m/s
  offsets = np.clip((s - 4.0) * 0.25, 0.0, None)  # leaves the centre at 4 m, 2.5 m off at 14 m
  drive = _drive(episode.route, s, offsets)
  found = route_exit.first_exit(episode.route, episode.town, drive)
  assert found["place"] == "lane" and found["t"] == 8 * 0.5  # s = 16: the first point > 2.5 m
  assert found["position"] == pytest.approx(list(drive[8]), abs=0.01)
  assert found["route_s"] == pytest.approx(16.0, abs=1.0)
  assert found["drift_m"] == pytest.approx(16.0 - 6.0, abs=1.0)  # from s = 6 (0.5 m off)
  assert found["max_off_m"] == pytest.approx(4.5, abs=0.2)  # at s = 22


def test_leaving_inside_the_crossing_is_abrupt_and_named_there(episode):
  s = np.arange(0.0, 40.0, 2.0)
  offsets = np.where(s >= 36.0, 6.0, 0.0)  # jumps off 10 m into the 24 m crossing
  found = route_exit.first_exit(episode.route, episode.town, _drive(episode.route, s, offsets))
  assert found["place"] == "junction: straight"
  assert found["drift_m"] <= 2.5 and found["t"] == 18 * 0.5
  # A drift that crosses the 2.5 m line 4 m before the crossing: approaching it.
  offsets = np.clip((s - 12.0) * 0.25, 0.0, None)
  found = route_exit.first_exit(episode.route, episode.town, _drive(episode.route, s, offsets))
  assert found["place"] == "approaching a junction"


def test_a_route_passing_a_place_twice_matches_the_pass_the_car_is_on():
  """A route out 40 m east and back west 3 m beside itself (a U): a car drifting off its way out
  towards the way back exits there, though the way back stays within 2.5 m of it."""
  from types import SimpleNamespace
  arc = [(40.0 + 1.5 * np.sin(a), -1.5 + 1.5 * np.cos(a)) for a in np.linspace(0, np.pi, 20)]
  points = np.array([(x, 0.0) for x in np.arange(0.0, 40.0, 0.5)] + arc
                    + [(x, -3.0) for x in np.arange(39.5, -0.1, -0.5)])
  s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
  route = SimpleNamespace(points=points, s=s, option=np.full(len(points), 4),
                          lane=np.zeros(len(points), np.int64))
  town = SimpleNamespace(lane_junction=np.array([-1]))
  x = np.arange(0.0, 36.0, 2.0)
  drive = np.stack([x, -np.clip((x - 10.0) * 0.15, 0.0, 3.0)], axis=1)  # 3 m off by x = 30
  found = route_exit.first_exit(route, town, drive)
  assert found is not None and found["place"] == "lane"
  assert found["route_s"] == pytest.approx(28.0, abs=1.0)  # x = 28: the first point > 2.5 m off
  assert found["drift_m"] == pytest.approx(28.0 - 12.0, abs=1.0)  # from x = 12 (0.3 m off)
