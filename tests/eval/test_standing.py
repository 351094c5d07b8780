"""Seconds standing by why: hand-built traces, each stretch charged to its cause."""

import pytest

from lmgendrive_jax.eval.standing import standing_seconds_by_cause, route_standing_seconds


def _point(t, speed, red=0, hazard=0, pushes=0):
  return {"t": t, "speed": speed, "red_light_brakes": red, "stop_sign_brakes": 0,
          "hazard_brakes": hazard, "pushes": pushes}


def _route(points, infractions=(), name="r"):
  return {"route_id": name, "trace": points, "infractions": list(infractions)}


def test_a_red_light_hold_then_the_planner_standing_on_then_a_push():
  points = [_point(0.0, 4.0),
            _point(0.5, 2.0, red=5),      # the rule brakes the moving car: not standing yet
            _point(1.0, 0.0, red=10),     # held: 0.5 s
            _point(1.5, 0.0, red=15),     # held: 0.5 s
            _point(2.0, 0.0, red=15),     # the rule let go, the planner stands on: 0.5 s
            _point(2.5, 0.0, red=15),     # 0.5 s more
            _point(3.0, 0.1, red=15, pushes=1),  # the push ends the stand: not counted
            _point(4.0, 2.0, red=15, pushes=1),
            _point(5.0, 0.0, red=15, pushes=1)]  # a new stand, no rule braked lately: planner
  seconds = route_standing_seconds(_route(points))
  assert seconds == pytest.approx({"held: red_light": 1.0, "planner, after a rule's hold": 1.0,
                                   "planner": 1.0})


def test_a_rule_that_braked_the_car_to_a_stand_and_let_go_owns_the_stand():
  # The hazard rule braked at 0.5 s while the car still moved; it stood from 2.0 s, no rule
  # braking: within RULE_STOP_S of the rule, so the planner stands on after the rule's stop.
  points = [_point(0.0, 5.0), _point(0.5, 3.0, hazard=5), _point(1.0, 1.0, hazard=5),
            _point(2.0, 0.0, hazard=5), _point(3.0, 0.0, hazard=5)]
  assert route_standing_seconds(_route(points)) == pytest.approx(
      {"planner, after a rule's hold": 2.0})


def test_standing_after_a_collision_and_the_mean_over_routes():
  crashed = _route([_point(0.0, 3.0), _point(1.0, 0.0), _point(2.0, 0.0), _point(3.0, 0.0)],
                   [{"type": "collision_vehicle", "time": 1.5}], "a")
  # Stood 1.0 s before the crash (planner), then 1.0 + 1.0 after it.
  assert route_standing_seconds(crashed) == pytest.approx({"planner": 1.0,
                                                           "after a collision": 2.0})
  moving = _route([_point(0.0, 3.0), _point(1.0, 3.0)], name="b")
  # A trace without the rule fields (the expert's) reads as the planner's.
  expert = _route([{"t": 0.0, "speed": 1.0}, {"t": 0.5, "speed": 0.0}], name="c")
  by_cause = standing_seconds_by_cause([crashed, moving, expert])
  assert by_cause == pytest.approx({"after a collision": 2.0 / 3, "planner": 1.5 / 3})
  assert list(by_cause) == ["after a collision", "planner"]  # largest first


def test_a_route_without_a_trace_is_named():
  with pytest.raises(ValueError, match="route tiny_04: no trace to read"):
    route_standing_seconds({"route_id": "tiny_04", "infractions": []})
