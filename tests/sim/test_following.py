"""Instruction following at junctions: a trajectory along the route follows every junction it
enters, one that leaves the route at a turn misses exactly that junction, unreached junctions
do not count, and the expert vs a straight-ahead lane keeper at a real right turn."""

import numpy as np
import pytest

from lmgendrive_jax.agent.baselines import LaneKeepingAgent
from lmgendrive_jax.config import sim_preset
from lmgendrive_jax.sim import expert, following, host, routes, scoring

CFG = sim_preset("tiny")


def turning_route():
  """(town, route, first turn check) of the first tiny route that turns left or right."""
  for spec in routes.route_set("tiny", 0):
    town = host.get_town(spec.town_seed, CFG)
    route = routes.plan_route(town, spec)
    checks = following.JunctionFollowing(route, town).checks
    turns = [c for c in checks if c["option"] in ("left", "right")]
    if turns:
      return town, route, turns[0]
  raise AssertionError("no turning route in the tiny set")


def replay(route, town, positions):
  tracker = following.JunctionFollowing(route, town)
  scorer = scoring.RouteScorer(route)
  for pos in positions:
    scorer._advance(np.asarray(pos, np.float64))  # progress as the scorer measures it
    tracker.update(pos, scorer.progress_m)
  return tracker.result()


def test_driving_the_route_follows_every_junction():
  town, route, _ = turning_route()
  result = replay(route, town, route.points)
  assert result["junctions_entered"] == len(result["junctions"]) > 0
  assert result["junctions_followed"] == result["junctions_entered"]


def test_leaving_the_route_at_a_turn_misses_that_junction_and_later_ones_are_not_reached():
  town, route, turn = turning_route()
  entry = int(np.searchsorted(route.s, turn["s_entry"]))
  # Up to the junction entry on the route, then 30 m straight on along the entry heading.
  heading = route.points[entry] - route.points[entry - 3]
  heading = heading / np.linalg.norm(heading)
  straight_on = route.points[entry] + heading * np.arange(1, 31)[:, None]
  result = replay(route, town, np.concatenate([route.points[:entry + 1], straight_on]))
  index = next(i for i, j in enumerate(result["junctions"]) if j["option"] == turn["option"])
  missed = result["junctions"][index]
  assert missed["entered"] and missed["missed"] and not missed["followed"]
  assert all(j["followed"] for j in result["junctions"][:index])
  assert not any(j["entered"] for j in result["junctions"][index + 1:])


def test_a_straight_crossing_that_ends_in_the_next_lane_over_follows():
  """The exit arm is its whole road: a car that crosses straight on one lane over (multi-lane
  roads, or pushed aside in the junction) left the junction the way its route said."""
  for spec in routes.route_set("tiny_4", 0):
    town = host.get_town(spec.town_seed, CFG)
    route = routes.plan_route(town, spec)
    tracker = following.JunctionFollowing(route, town)
    straight = [i for i, c in enumerate(tracker.checks)
                if c["option"] == "straight" and len(c["exit_xy"]) > 1]
    if straight:
      break
  else:
    raise AssertionError("no straight junction with a multi-lane exit in the tiny_4 set")
  index = straight[0]
  check = tracker.checks[index]
  offset = check["exit_xy"][1] - check["exit_xy"][0]
  assert np.linalg.norm(offset) > tracker.tolerance_m + 0.5  # a lane over: outside it
  entry = int(np.searchsorted(route.s, check["s_entry"]))
  exit_ = int(np.argmin(np.linalg.norm(route.points - check["exit_xy"][0], axis=-1)))
  # Along the route up to 5 m before the junction, then one lane over, straight through the
  # junction and 10 m past its exit point in that lane.
  path = np.concatenate([route.points[:entry - 5], route.points[entry - 5:exit_ + 10] + offset])
  assert replay(route, town, path)["junctions"][index] == dict(
      option="straight", entered=True, followed=True, missed=False)


def test_stopping_inside_a_junction_neither_follows_nor_misses_it():
  town, route, turn = turning_route()
  entry = int(np.searchsorted(route.s, turn["s_entry"]))
  result = replay(route, town, np.concatenate([route.points[:entry + 3],
                                               np.repeat(route.points[entry + 3:entry + 4], 50,
                                                         axis=0)]))
  index = next(i for i, j in enumerate(result["junctions"]) if j["option"] == turn["option"])
  assert result["junctions"][index] == dict(option=turn["option"], entered=True, followed=False,
                                            missed=False)
  assert following.summarize([result])["junctions_missed"] == 0


def test_set_summary_is_followed_over_decided():
  records = [dict(junctions_entered=4, junctions_followed=2, junctions_missed=1),
             dict(junctions_entered=1, junctions_followed=1, junctions_missed=0),
             dict(junctions_entered=0, junctions_followed=0, junctions_missed=0)]
  summary = following.summarize(records)
  assert summary["instruction_following"] == pytest.approx(75.0)
  assert summary["junctions_entered"] == 5
  assert following.summarize([dict(junctions_entered=1, junctions_followed=0,
                                    junctions_missed=0)])["instruction_following"] is None


def test_expert_follows_and_a_straight_lane_keeper_misses_the_first_turn():
  specs = [s for s in routes.route_set("tiny_4", 0) if s.name in ("tiny_01", "tiny_03")]
  first_turns = []
  for spec in specs:
    town = host.get_town(spec.town_seed, CFG)
    first_turns.append(following.JunctionFollowing(routes.plan_route(town, spec),
                                                   town).checks[0]["option"])
  assert first_turns == ["right", "right"]  # the routes this test was written for
  ticks = 400  # 20 s: well past the first junction (its entry ~30 m into the route)
  expert_runs = host.run_routes(specs, lambda: expert.ExpertAgent(CFG.expert), CFG,
                                batch_size=2, render_every=0, max_ticks=ticks)
  keeper_runs = host.run_routes(specs, lambda: LaneKeepingAgent(CFG.expert, "straight"), CFG,
                                batch_size=2, render_every=0, max_ticks=ticks)
  for run in expert_runs:
    assert run["junctions"][0] == dict(option="right", entered=True, followed=True,
                                       missed=False), run
  for run in keeper_runs:
    assert run["junctions"][0] == dict(option="right", entered=True, followed=False,
                                       missed=True), run
  assert following.summarize(keeper_runs)["instruction_following"] < following.summarize(
      expert_runs)["instruction_following"]
