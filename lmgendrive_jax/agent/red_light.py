"""The agent's light rule: brake while the red-light detector sees the route's light red.

Where it sits: `LMGenDriveAgent.run_step` (agent option `light_detector`: a run of
`configs/light_detector.py`) asks the detector's `probability(cameras)` each model step, on the raw
camera images of the tick, and brakes (throttle 0, brake 1, the PID's steer kept) above
`red_light_threshold`. The waypoints alone do not stop the car at red lights on the embedded
default: in closed loop the planner ran 11 lights on 40 held-out routes, and LMDrive's light
head, read the same way, had learnt the ego speed rather than the lamp (README). InterFuser, whose
controller LMDrive's follows, brakes on its light head likewise. Measured (docs/experiments.md):
on the bigger run's planner it cut the red lights run on 40 routes from 11 to 2 but lowered DS
(54.6 -> 48.9): once stopped, that planner stands on until the route times out. Off by default.

A false alarm on a car that stands never clears (the scene does not change), so `WaitLimit`
lets the rule hold a standing car at most `max_wait` seconds, longer than any red phase (the
embedded default's lights are red for at most ~14 s), then stays off for `release` seconds:
InterFuser's controller likewise ignores its light head for 4 s after 50 s of red.

The detector (`agent/detector.py`) reads the telephoto focus camera (or the front camera's
centre crop) as its training data did, whatever the planner's views are.
"""

from __future__ import annotations

from lmgendrive_jax.agent.detector import ViewDetector, detector_for_run

LABEL = "red_light_ahead"


STANDING_MPS = 0.5


class WaitLimit:
  """When the rule may brake: `brake(red, speed, t)` is `red`, unless the rule has held the car
  standing (< STANDING_MPS) for `max_wait` seconds; then False for `release` seconds (sim time
  `t`), after which the count starts again. max_wait <= 0: no limit."""

  def __init__(self, max_wait: float, release: float):
    self.max_wait, self.release = float(max_wait), float(release)
    self.standing_since: float | None = None
    self.released_until = -float("inf")
    self.releases = 0

  def brake(self, red: bool, speed: float, t: float) -> bool:
    if t < self.released_until:
      return False
    if not red or speed >= STANDING_MPS:
      self.standing_since = None
      return red
    if self.standing_since is None:
      self.standing_since = t
    if self.max_wait > 0 and t - self.standing_since >= self.max_wait:
      self.standing_since, self.released_until = None, t + self.release
      self.releases += 1
      return False
    return True


def rule_for_run(work_dir: str) -> ViewDetector:
  """The red-light detector of a `configs/light_detector.py` run, shared per run."""
  return detector_for_run(work_dir, LABEL)
