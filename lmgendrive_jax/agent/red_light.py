"""The agent's light rule: brake while the red-light detector sees the route's light red.

Where it sits: a `rules.DetectorRule` of `LMGenDriveAgent` (agent option `light_detector`: a run
of `configs/light_detector.py`) asks the detector's `probability(cameras)` each model step, on the
raw camera images of the tick, and brakes (throttle 0, brake 1, the PID's steer kept) above
`red_light_threshold`. The waypoints alone do not stop the car at red lights on the embedded
default: in closed loop the planner ran 11 lights on 40 held-out routes, and LMDrive's light
head, read the same way, had learnt the ego speed rather than the lamp (README). InterFuser, whose
controller LMDrive's follows, brakes on its light head likewise. Measured (docs/experiments.md):
on the bigger run's planner it cut the red lights run on 40 routes from 11 to 2 but lowered DS
(54.6 -> 48.9): once stopped, that planner stands on until the route times out. Off by default.

A false alarm on a car that stands never clears (the scene does not change), so the rule holds
a standing car at most `red_light_max_wait` seconds, longer than any red phase (the embedded
default's lights are red for at most ~14 s), then lets go `red_light_release` seconds
(`rules.HoldLimit`).

Which frames its detector learnt decides where the car stops: `red_light_zone` (the light is
red and its stop line at most 8 m ahead: data_pipelines/lmdrive_tfds/reader.py) stops it near
the line, as the expert; `red_light_ahead` (red, at any distance up to 40 m) at the first sight
of the lamp, 20-45 m short of the line on most holds (docs/experiments.md, 20th).

The detector (`agent/detector.py`) reads the telephoto focus camera (or the front camera's
centre crop) as its training data did, whatever the planner's views are.
"""

from __future__ import annotations

from lmgendrive_jax.agent import rules

RULE = rules.RuleSpec(name="red_light", detector_option="light_detector",
                      labels=("red_light_zone", "red_light_ahead"),
                      threshold_option="red_light_threshold",
                      make_policy=rules.hold_limit("red_light_max_wait", "red_light_release"),
                      holds_standing_car=True)
