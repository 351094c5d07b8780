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

The detector misses the lamp close to the line: on a two-lane approach the lamp, at the
junction's far corner, leaves the telephoto view ~6 m before it (docs/experiments.md, 21st: of
three reds run, one where the detector's probability fell to 0 while the car still rolled, one
where the car stood at the line unseen until the stuck rule pushed it through). So the rule
remembers for `red_light_memory` seconds (`RedLightMemory`; 0 = off) a red it last saw while
the car rolled: meanwhile a moving car brakes, and the stuck rule does not push. A red last seen
from a standing car is not remembered: the lamp cannot leave the view of a car that stands, so
its probability falling there means green (remembering it held cars standing through the green,
which is shorter than the memory). The embedded default's longest red is 14 s (the other group's
green and yellow and two all-red gaps: `sim/town.py` `light_cycle`), 16 s with the yellow the
detector may take for red. Measured on the big preset's planner (docs/experiments.md, 22nd): 16 s
ran 6 reds on 88 routes instead of 8, but DS did not move (paired -0.3 +- 0.8): our planner does
not pull away at green, so the cars it holds wait on. Off by default.

The detector (`agent/detector.py`) reads the telephoto focus camera (or the front camera's
centre crop) as its training data did, whatever the planner's views are.
"""

from __future__ import annotations

from lmgendrive_jax.agent import rules


class RedLightMemory(rules.HoldLimit):
  """`rules.HoldLimit` that remembers a red it last saw from a moving car for `memory` seconds
  (see the module docstring): while it does, a moving car (>= rules.STANDING_MPS) brakes though
  the detector no longer sees the lamp, and `holds_car` tells the stuck rule to wait. A sighting
  from a standing car, or a release (the hold limit's false alarm), forgets it. memory <= 0:
  exactly HoldLimit."""

  def __init__(self, max_wait: float, release: float, memory: float):
    super().__init__(max_wait, release)
    self.memory = float(memory)
    self.remember_until = -float("inf")

  def brake(self, seen: bool, speed: float, t: float) -> bool:
    braking = super().brake(seen, speed, t)
    if t < self.released_until:  # released now or before: a false alarm, not a red to keep
      self.remember_until = -float("inf")
      return braking
    moving = speed >= rules.STANDING_MPS
    if seen:
      self.remember_until = t + self.memory if moving else -float("inf")
    return braking or (moving and self.holds_car(t))

  def holds_car(self, t: float) -> bool:
    return self.memory > 0 and t < self.remember_until


RULE = rules.RuleSpec(name="red_light", detector_option="light_detector",
                      labels=("red_light_zone", "red_light_ahead"),
                      threshold_option="red_light_threshold",
                      make_policy=lambda config: RedLightMemory(
                          float(config["red_light_max_wait"]), float(config["red_light_release"]),
                          float(config["red_light_memory"])),
                      holds_standing_car=True)
