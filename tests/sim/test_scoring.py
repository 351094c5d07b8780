"""LangAuto scoring: each infraction staged in a scripted scene of the real simulator gives exactly
the spec's factor; each ending triggers at the spec's threshold; set averages match a hand
computation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmgendrive_jax.config import sim_preset
from lmgendrive_jax.sim import host, routes, scenario, scoring, town as town_lib, world

CFG = sim_preset("tiny")
TOWN = host.get_town(2, CFG)  # has traffic lights and stop signs
ARRAYS = jax.tree.map(jnp.asarray, TOWN.arrays())
PARAMS = world.WorldParams.from_config(CFG.world)
STEP = jax.jit(lambda state, control: world.step(ARRAYS, state, control, PARAMS))
SPEC = routes.RouteSpec("staged", 2, 0, "tiny", 0)


def straight_route(start, end, spacing=1.0):
  start, end = np.asarray(start, np.float64), np.asarray(end, np.float64)
  n = int(np.linalg.norm(end - start) / spacing) + 1
  points = np.linspace(start, end, n).astype(np.float32)
  s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=-1))])
  return routes.Route(SPEC, points, s.astype(np.float32), np.full(n, 4, np.int32),
                      np.zeros(n, np.int32), [], points[[0, -1]], np.array([4, 4], np.int32),
                      s[[0, -1]].astype(np.float32))


def drive(state, route, controls, ticks):
  """Runs the scripted scene; `controls(tick, state) -> (steer, throttle, brake)`."""
  scorer = scoring.RouteScorer(route)
  state = jax.tree.map(jnp.asarray, state)
  for tick in range(ticks):
    state, info = STEP(state, jnp.asarray(controls(tick, state), jnp.float32))
    s = jax.device_get(state)
    scorer.update(float(s["t"]), s["ego_pos"], float(s["ego_yaw"]), float(s["ego_speed"]),
                  jax.device_get(info))
  return scorer, jax.device_get(state)


def long_segment():
  """A long east-bound segment lane without a stop line: (lane, start point, heading)."""
  for lane in np.argsort(-TOWN.lane_length):
    pts = TOWN.lane_points[lane]
    d = pts[-1] - pts[0]
    if TOWN.lane_junction[lane] < 0 and d[0] > 30 and TOWN.lane_stop_line[lane] < 0:
      return int(lane), pts[0].astype(np.float64), d / np.linalg.norm(d)
  raise AssertionError("no east-bound segment in the test town")


def throttle(tick, state):
  return (0.0, 0.6, 0.0)


def only(scorer, kind):
  assert [i.type for i in scorer.infractions] == [kind], scorer.infractions
  return scorer.infraction_score()


def test_vehicle_collision_factor():
  lane, start, d = long_segment()
  state = scenario.empty_state(start + d * 3, 0.0)
  state["npc_lane"][0], state["npc_s"][0], state["npc_active"][0] = lane, 18.0, True
  route = straight_route(start, start + d * 45)
  scorer, _ = drive(state, route, throttle, 100)
  assert only(scorer, "collision_vehicle") == pytest.approx(0.60)


def test_pedestrian_collision_factor():
  lane, start, d = long_segment()
  state = scenario.empty_state(start + d * 3, 0.0)
  p = TOWN.lane_points[lane][0] + d * 15
  state["ped_start"][0], state["ped_end"][0] = p, p + np.array([0.0, 1.0])
  state["ped_active"][0] = True
  scorer, _ = drive(state, straight_route(start, start + d * 45), throttle, 80)
  assert only(scorer, "collision_pedestrian") == pytest.approx(0.50)


def test_static_collision_factor():
  building = int(np.argmax(TOWN.box_half[:, 2]))
  centre, half = TOWN.box_centre[building, :2], TOWN.box_half[building]
  start = np.array([centre[0] - half[0] - 6.0, centre[1]])
  state = scenario.empty_state(start, 0.0)
  scorer, _ = drive(state, straight_route(start, start + [20.0, 0.0]), throttle, 60)
  assert only(scorer, "collision_static") == pytest.approx(0.65)


def _approach(line_index, back=9.0):
  line, d = TOWN.stop_line[line_index].astype(np.float64), TOWN.stop_line_dir[line_index]
  mid_first_lane = line[0] + (line[1] - line[0]) / np.linalg.norm(line[1] - line[0]) * 1.75
  start = mid_first_lane - d * back
  return start, math.atan2(d[1], d[0]), straight_route(start, start + d * 40)


def _time_with_state(light, wanted, hold):
  """A sim time from which `light` shows `wanted` for at least `hold` seconds."""
  for t0 in np.arange(0.0, 60.0, 0.25):
    states = [int(world.light_states(ARRAYS, jnp.float32(t0 + dt))[light])
              for dt in np.arange(0.0, hold, 0.25)]
    if all(s == wanted for s in states):
      return float(t0)
  raise AssertionError("light never holds the state")


@pytest.mark.parametrize("colour,expected", [(world.RED, ["red_light"]), (world.GREEN, [])])
def test_red_light_factor(colour, expected):
  line = int(np.nonzero(TOWN.stop_line_light >= 0)[0][0])
  start, yaw, route = _approach(line)
  t0 = _time_with_state(int(TOWN.stop_line_light[line]), colour, 4.0)
  state = scenario.empty_state(start, yaw, t=t0)
  scorer, _ = drive(state, route, throttle, 70)
  assert [i.type for i in scorer.infractions] == expected
  assert scorer.infraction_score() == pytest.approx(0.70 if expected else 1.0)


def test_stop_sign_run_and_obeyed():
  line = int(np.nonzero(TOWN.stop_line_light == -1)[0][0])
  start, yaw, route = _approach(line)
  scorer, _ = drive(scenario.empty_state(start, yaw), route, throttle, 70)
  assert only(scorer, "stop_sign") == pytest.approx(0.80)

  stopped = {"done": False}

  def stop_then_go(tick, state):
    speed = float(state["ego_speed"])
    if tick > 15 and not stopped["done"]:  # inside the zone after ~15 ticks: brake to a halt
      if speed < 0.05:
        stopped["done"] = True
      return (0.0, 0.0, 1.0)
    return (0.0, 0.5, 0.0)
  scorer, _ = drive(scenario.empty_state(start, yaw), route, stop_then_go, 110)
  assert stopped["done"] and scorer.infractions == []


def test_outside_lanes_factor_is_share_of_route_driven_outside():
  lane, start, d = long_segment()
  # Drive west along the east-bound lane: the wrong direction for its whole length.
  end = start + d * (float(TOWN.lane_length[lane]) - 0.5)  # the whole segment, no junction
  state = scenario.empty_state(end, math.atan2(-d[1], -d[0]))
  route = straight_route(end, start)

  def go_then_stop(tick, state):
    return (0.0, 0.6, 0.0) if float(state["ego_pos"][0]) > end[0] - 20.0 else (0.0, 0.0, 1.0)
  scorer, _ = drive(state, route, go_then_stop, 120)
  assert scorer.infractions == []
  driven = scorer.progress_m
  assert 18.0 < driven < 26.0
  assert scorer.infraction_score() == pytest.approx(1.0 - driven / route.length)
  assert scorer.result()["infractions"][-1]["type"] == "outside_route_lanes"


def test_right_lane_is_not_outside():
  lane, start, d = long_segment()
  route = straight_route(start, start + d * 40)
  scorer, _ = drive(scenario.empty_state(start, math.atan2(d[1], d[0])), route, throttle, 100)
  assert scorer.progress_m > 15 and scorer.outside_m == 0.0 and scorer.infraction_score() == 1.0


# ----------------------------------------------------------------------------------------------
# Endings at their thresholds (the scorer fed scripted kinematics).

INFO = dict(drive_dir=0)


def test_route_deviation_at_30_m():
  route = straight_route([0, 0], [100, 0])
  scorer = scoring.RouteScorer(route)
  scorer.update(0.05, [10, 29.5], 0.0, 5.0, INFO)
  assert scorer.ending == "running"
  scorer.update(0.10, [10, 30.5], 0.0, 5.0, INFO)
  assert scorer.ending == "route_deviation"


def test_agent_blocked_after_180_s():
  route = straight_route([0, 0], [300, 0])  # timeout 245 s: later than blocked
  scorer = scoring.RouteScorer(route)
  ticks = int(round(scoring.BLOCKED_S / world.DT))
  for k in range(ticks):
    scorer.update((k + 1) * world.DT, [5, 0], 0.0, 0.05, INFO)
    if k < ticks - 1:
      assert scorer.ending == "running", k
  assert scorer.ending == "agent_blocked"


def test_timeout_at_0_8_s_per_m_plus_5():
  route = straight_route([0, 0], [100, 0])
  scorer = scoring.RouteScorer(route)
  assert scorer.timeout_s == pytest.approx(0.8 * 100 + 5)
  scorer.update(scorer.timeout_s - 0.05, [5, 0], 0.0, 3.0, INFO)
  assert scorer.ending == "running"
  scorer.update(scorer.timeout_s, [5.1, 0], 0.0, 3.0, INFO)
  assert scorer.ending == "timeout"
  assert scorer.result()["rc"] == pytest.approx(5.0)


def test_completion_needs_rc_over_99_and_goal_within_10_m():
  route = straight_route([0, 0], [100, 0])
  scorer = scoring.RouteScorer(route)
  for k, x in enumerate(np.arange(0.5, 99.0, 0.5)):
    scorer.update(0.05 * (k + 1), [x, 0], 0.0, 6.0, INFO)
  assert scorer.ending == "running" and 97.0 < scorer.route_completion < 99.0  # within 10 m
  scorer.update(20.0, [100.5, 12.0], 0.0, 6.0, INFO)  # RC past 99 % but 12 m from the goal
  assert scorer.ending == "running" and scorer.route_completion > 99.0
  scorer.update(20.05, [100.5, 5.0], 0.0, 6.0, INFO)
  assert scorer.ending == "completed" and scorer.result()["rc"] == 100.0


def test_a_collision_counts_once_per_contact_as_carlas_collision_test():
  """CARLA's filter: the last actor hit is ignored for 5 s, and so is any contact within 3 m of
  a counted one until the ego has gone 5 m from it."""
  route = straight_route([0, 0], [100, 0])
  scorer = scoring.RouteScorer(route)
  for k in range(5):  # pressed against one car: one collision
    scorer.update(0.05 * (k + 1), [10, 0], 0.0, 0.0, dict(INFO, collision_vehicle=3))
  assert len(scorer.infractions) == 1
  # Standing against a car and a walker at once (the contacts alternate tick by tick): each
  # counts once. The walker is a new actor but touches where the car did: not counted either.
  for k in range(40):
    info = dict(INFO, collision_pedestrian=0) if k % 2 else dict(INFO, collision_vehicle=3)
    scorer.update(0.3 + 0.05 * k, [10.5, 0], 0.0, 0.0, info)
  assert len(scorer.infractions) == 1
  # 4 m on, the same car again within 5 s: ignored; a walker there: counted.
  scorer.update(2.4, [14, 0], 0.0, 0.0, dict(INFO, collision_vehicle=3))
  scorer.update(2.45, [14, 0], 0.0, 0.0, dict(INFO, collision_pedestrian=0))
  assert [i.type for i in scorer.infractions] == ["collision_vehicle", "collision_pedestrian"]
  # The car again 8 s later, 4 m further (the 14-m place is kept while the ego is within 5 m
  # of it, so not there): counted.
  scorer.update(10.5, [18, 0], 0.0, 0.0, dict(INFO, collision_vehicle=3))
  assert [i.type for i in scorer.infractions] == ["collision_vehicle", "collision_pedestrian",
                                                  "collision_vehicle"]
  assert scorer.infraction_score() == pytest.approx(0.6 * 0.5 * 0.6)
  # Back at 10.5 m (the 10-m place was forgotten at 18 m): a new actor there counts.
  scorer.update(11.0, [10.5, 0], 0.0, 0.0, dict(INFO, collision_static=7))
  assert len(scorer.infractions) == 4


def test_set_averages_each_metric_separately():
  results = [dict(ds=100 * 0.6, rc=100.0, is_=0.6), dict(ds=50.0 * 1.0, rc=50.0, is_=1.0),
             dict(ds=20.0 * 0.5, rc=20.0, is_=0.5)]
  results = [dict(ds=r["ds"], rc=r["rc"], **{"is": r["is_"]}) for r in results]
  summary = scoring.aggregate(results)
  assert summary["mean_ds"] == pytest.approx((60 + 50 + 10) / 3)
  assert summary["mean_rc"] == pytest.approx((100 + 50 + 20) / 3)
  assert summary["mean_is"] == pytest.approx((0.6 + 1.0 + 0.5) / 3)
  assert summary["mean_ds"] != pytest.approx(summary["mean_rc"] * summary["mean_is"])
