"""bench/agent_rules.py: the variants it drives, and one route with the route-following planner."""

import argparse

from bench import agent_rules


def _args(**given):
  defaults = dict(light_detector="", stop_sign_detector="", hazard_detector="", stuck_seconds=8.0)
  return argparse.Namespace(**{**defaults, **given})


def test_variants_are_no_rule_each_rule_alone_and_all_with_the_stuck_rule():
  found = agent_rules.variants(_args(light_detector="L", stop_sign_detector="S"))
  assert found == {"no_rule": {}, "light_rule": {"light_detector": "L"},
                   "stop_rule": {"stop_sign_detector": "S"},
                   "light_rule+stop_rule+stuck": {"light_detector": "L",
                                                  "stop_sign_detector": "S", "stuck_seconds": 8.0}}
  assert agent_rules.variants(_args()) == {"no_rule": {}}
  assert list(agent_rules.variants(_args(hazard_detector="H", stuck_seconds=0.0))) == [
      "no_rule", "hazard_rule"]


def test_the_route_following_planner_completes_a_route(tmp_path, capsys):
  assert agent_rules.main(["--route_set", "tiny_1", "--seed", "0", "--preset", "tiny",
                           "--camera_size", "32", "32", "--out", str(tmp_path)]) == 0
  assert (tmp_path / "tiny_1_s0" / "no_rule.json").exists()
  row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("no_rule"))
  assert row.split()[2] == "100"  # RC: it drove the whole route
