"""The agent's stop-sign rule: brake to a stop once in each stop sign's waiting zone.

The scorer (`sim/scoring.py`, CARLA's RunningStopTest) counts a stop sign as run when the ego
crosses its line without having been below 0.1 m/s in the waiting zone, up to 6 m before the
line. Our planners ran 12-13 of them on 40 held-out routes (4-5.5 DS points,
docs/experiments.md): behaviour cloning sees the expert stop in ~1 s of a route, and a planner
that asks ~4 m/s towards a junction does not. The stop-sign detector
(`configs/stop_sign_detector.py`, agent option `stop_sign_detector`) says, from the front
camera, when the car is in such a zone; while it does and the car moves, the rule brakes (throttle
0, brake 1, the PID's steer kept). Once the car has stood (below STOPPED_MPS) in the zone the
sign is served, and the rule ignores the detector for `release_seconds`, enough to pull away
through the line, which the detector sees as long as the car is before it.

  policy = StopSignRule(release_seconds=4.0)   # the policy of the agent's rules.DetectorRule
  brake = policy.brake(p_zone > threshold, speed, t)
"""

from __future__ import annotations

from lmgendrive_jax.agent import rules

STOPPED_MPS = 0.05  # under the scorer's 0.1 m/s


class StopSignRule:
  """See the module docstring; `t` is simulation time in seconds."""

  def __init__(self, release_seconds: float):
    self.release_seconds = float(release_seconds)
    self.ignore_until = -float("inf")
    self.stops = 0  # zones where the car stood (the rule's or the planner's stop)

  def brake(self, in_zone: bool, speed: float, t: float) -> bool:
    if t < self.ignore_until or not in_zone:
      return False
    if speed < STOPPED_MPS:
      self.ignore_until = t + self.release_seconds
      self.stops += 1
      return False
    return True


RULE = rules.RuleSpec(
    name="stop_sign", detector_option="stop_sign_detector", labels=("stop_sign_zone",),
    threshold_option="stop_sign_threshold",
    make_policy=lambda config: StopSignRule(float(config["stop_sign_release"])),
    # It lets go once the car has stood: a car standing on is the planner's (the stuck rule's).
    holds_standing_car=False)
