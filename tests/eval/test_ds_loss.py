"""DS lost by cause: hand-computed routes, and the causes summing to 100 - mean DS."""

import math

import pytest

from lmgendrive_jax.eval.ds_loss import ds_lost_by_cause, route_ds_lost


def _route(rc, infractions, ending, name="r"):
  score = 1.0
  for infraction in infractions:
    score *= (1 - infraction["percentage"] / 100 if infraction["type"] == "outside_route_lanes"
              else {"collision_vehicle": 0.6, "red_light": 0.7, "stop_sign": 0.8}[
                  infraction["type"]])
  return {"route_id": name, "rc": rc, "is": score, "ds": rc * score, "ending": ending,
          "infractions": infractions}


def test_a_crash_then_timeout_is_charged_the_route_not_driven_and_its_penalty():
  # RC 40, one vehicle collision (IS 0.6): DS 24; 60 points undriven, 40 * 0.4 = 16 penalty.
  route = _route(40.0, [{"type": "collision_vehicle", "time": 9.0}], "timeout")
  lost = route_ds_lost(route)
  assert lost == pytest.approx({"not driven: timeout after collision_vehicle": 60.0,
                                "penalty: collision_vehicle": 16.0})


def test_penalties_are_shared_by_their_log_factors():
  # Completed, red light (0.7) and stop sign (0.8): IS 0.56, 44 points shared by log share.
  route = _route(100.0, [{"type": "red_light"}, {"type": "stop_sign"}], "completed")
  lost = route_ds_lost(route)
  share = math.log(0.7) / math.log(0.56)
  assert lost == pytest.approx({"penalty: red_light": 44.0 * share,
                                "penalty: stop_sign": 44.0 * (1 - share)})
  # A standing timeout without a collision; the outside-lanes factor is one of the penalties.
  standing = _route(10.0, [{"type": "outside_route_lanes", "percentage": 50.0}], "timeout")
  assert route_ds_lost(standing) == pytest.approx(
      {"not driven: timeout standing": 90.0, "penalty: outside_route_lanes": 5.0})


def test_causes_sum_to_what_the_set_lost_and_bad_records_are_named():
  routes = [_route(40.0, [{"type": "collision_vehicle"}], "timeout", "a"),
            _route(100.0, [], "completed", "b"),
            _route(75.0, [{"type": "stop_sign"}, {"type": "outside_route_lanes",
                                                  "percentage": 12.5}], "route_deviation", "c"),
            _route(100.0, [{"type": "outside_route_lanes", "percentage": 100.0}], "completed",
                   "d")]
  lost = ds_lost_by_cause(routes)
  mean_ds = sum(r["ds"] for r in routes) / len(routes)
  assert sum(lost.values()) == pytest.approx(100.0 - mean_ds)
  assert list(lost.values()) == sorted(lost.values(), reverse=True)
  assert lost["penalty: outside_route_lanes"] > 25.0  # route d: IS 0, all 100 points
  with pytest.raises(ValueError, match="route e: infraction type 'hail'"):
    route_ds_lost({**_route(50.0, [], "timeout", "e"), "is": 0.5,
                   "infractions": [{"type": "hail"}]})
  with pytest.raises(ValueError, match="route f: IS 0.5 below 1 without an infraction"):
    route_ds_lost({**_route(50.0, [], "timeout", "f"), "is": 0.5})
