"""The agent's hazard rule: brake while the hazard detector sees a vehicle or pedestrian in the
car's path close ahead.

Collisions cost our planners the most DS on the embedded default (docs/experiments.md: 20 of the
big preset's 36 points lost, in penalties and in routes that time out after the crash):
behaviour cloning from 64x64 cameras did not teach the planner to slow for a car ahead or one
crossing a junction. The hazard detector (`configs/hazard_detector.py`, agent option
`hazard_detector`) learns from the front camera whether a vehicle or pedestrian is in the route's
corridor up to 10 m past the bumper (`hazard_ahead`); while its probability is above
`hazard_threshold` the rule brakes (throttle 0, brake 1, the PID's steer kept), as the light rule
does, and as InterFuser's controller brakes on its object map. A false alarm on a standing car's
unchanging view never clears, so the rule holds a standing car at most `hazard_max_wait` seconds,
then yields `hazard_release` seconds (`rules.HoldLimit`); the stuck rule does not push while it
brakes.
"""

from __future__ import annotations

from lmgendrive_jax.agent import rules

RULE = rules.RuleSpec(name="hazard", detector_option="hazard_detector", labels=("hazard_ahead",),
                      threshold_option="hazard_threshold",
                      make_policy=rules.hold_limit("hazard_max_wait", "hazard_release"),
                      holds_standing_car=True)
