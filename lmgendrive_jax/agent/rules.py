"""The agent's detector rules: a single-view detector, a threshold and a policy that says when the
detector's "yes" brakes the car.

Where it sits: `LMGenDriveAgent.setup` builds one `DetectorRule` per rule whose detector option is
set (`RuleSpec`s: `red_light.RULE`, `stop_sign.RULE`, `hazard.RULE`); each model step
`run_step` asks every rule `brake(cameras, speed, t, waypoints)` and, if any says yes, brakes
(throttle 0, brake 1, the PID's steer kept). The stuck rule (`stuck.py`) does not push while a
rule that `holds_standing_car` brakes.

A policy is anything with `brake(seen: bool, speed: float, t: float) -> bool` (sim time `t` in
seconds), and optionally `holds_car(t) -> bool` (the stuck rule waits while it says so, braking
or not): `HoldLimit` for the hazard rule, `red_light.RedLightMemory` for the light rule,
`stop_sign.StopSignRule` for stop signs.

  rule = DetectorRule(red_light.RULE, detector, threshold=0.5, policy=HoldLimit(20.0, 5.0))
  if rule.brake(cameras, speed, t): ...   # rule.last_prob, rule.brakes for traces
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Protocol

from lmgendrive_jax.agent.detector import ViewDetector
from lmgendrive_jax.agent.path_objects import PathObjects

STANDING_MPS = 0.5


class Policy(Protocol):
  def brake(self, seen: bool, speed: float, t: float) -> bool: ...


@dataclasses.dataclass(frozen=True)
class RuleSpec:
  """One rule's agent options and behaviour.

  name: its name in traces (`p_<name>`, `<name>_brakes`); detector_option: the agent option
  naming its detector run; labels: the frame labels that run may have learnt; threshold_option:
  the agent option above whose value the detector's probability counts as seen; make_policy:
  agent config dict -> a fresh Policy; holds_standing_car: while it brakes, the stuck rule
  waits (a rule that only slows the car to a stop and lets go, as the stop-sign rule, does not).
  """
  name: str
  detector_option: str
  labels: tuple[str, ...]
  threshold_option: str
  make_policy: Callable[[dict], Policy]
  holds_standing_car: bool


class HoldLimit:
  """Brake while seen, but hold a standing car at most `max_wait` seconds.

  A false alarm on a car that stands never clears (the scene does not change), so after the rule
  has held the car standing (< STANDING_MPS) for `max_wait` seconds it lets go for `release`
  seconds, then the count starts again; moving, or the detector not seeing it, restarts the
  count. InterFuser's controller likewise ignores its light head for 4 s after 50 s of red.
  max_wait <= 0: no limit.
  """

  def __init__(self, max_wait: float, release: float):
    self.max_wait, self.release = float(max_wait), float(release)
    self.standing_since: float | None = None
    self.released_until = -float("inf")
    self.releases = 0

  def brake(self, seen: bool, speed: float, t: float) -> bool:
    if t < self.released_until:
      return False
    if not seen or speed >= STANDING_MPS:
      self.standing_since = None
      return seen
    if self.standing_since is None:
      self.standing_since = t
    if self.max_wait > 0 and t - self.standing_since >= self.max_wait:
      self.standing_since, self.released_until = None, t + self.release
      self.releases += 1
      return False
    return True


def hold_limit(max_wait_option: str, release_option: str) -> Callable[[dict], HoldLimit]:
  """A RuleSpec's `make_policy`: a HoldLimit from the agent options of these names."""
  return lambda config: HoldLimit(float(config[max_wait_option]), float(config[release_option]))


class DetectorRule:
  """A detector read through a threshold and a policy (see the module docstring).

  path / path_threshold (the hazard rule with `hazard_path_threshold` > 0): the detector's object
  map is also read on the planner's path (`path_objects.PathObjects`), and a reading above
  `path_threshold` counts as seen too.
  """

  def __init__(self, spec: RuleSpec, detector: ViewDetector, threshold: float, policy: Policy,
               path: PathObjects | None = None, path_threshold: float = 0.0):
    self.spec, self.detector, self.policy = spec, detector, policy
    self.threshold = float(threshold)
    self.path, self.path_threshold = path, float(path_threshold)
    self.last_prob = 0.0
    self.last_path_prob = 0.0
    self.brakes = 0  # model steps it braked

  @property
  def camera_views(self) -> tuple[str, ...]:
    return self.detector.camera_views

  def brake(self, cameras: dict, speed: float, t: float, waypoints=None) -> bool:
    """cameras {view: uint8[h, w, 3]} (at least `camera_views`), the planner's ego-frame
    waypoints f32[N, 2] (read with a `path` only) -> brake this model step."""
    self.last_prob, objects = self.detector.read(cameras)
    seen = self.last_prob > self.threshold
    if self.path is not None and waypoints is not None:
      self.last_path_prob = self.path.reading(objects, waypoints)
      seen = seen or self.last_path_prob > self.path_threshold
    braking = self.policy.brake(seen, speed, t)
    self.brakes += int(braking)
    return braking

  def holds_car(self, t: float) -> bool:
    """Whether the stuck rule must wait though this rule may not brake now (its policy's
    `holds_car`, when it has one)."""
    holds = getattr(self.policy, "holds_car", None)
    return bool(holds(t)) if holds is not None else False
