"""The agent's light rule: brake while the red-light detector sees the route's light red.

Where it sits: `LMGenDriveAgent.run_step` (agent option `light_detector`: a run of
`configs/light_detector.py`) asks `RedLightRule.probability(cameras)` each model step, on the raw
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

The detector is preprocessed as its training data was (`preprocess.ViewPreprocessor` with its
own build's settings: a telephoto focus camera, or the front camera's centre crop), whatever the
planner's views are. One rule per detector run is shared by all agents of an evaluation
(`rule_for_run`).
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from lmgendrive_jax.agent import preprocess
from lmgendrive_jax.agent.planner import resolve_path
from lmgendrive_jax.errors import ConfigError


class RedLightRule:
  """A red-light detector behind the agent's camera images (see the module docstring).

  model / variables: a `RedLightDetector` and its {"params"}; view_preprocess: a
  `ViewPreprocessor` of the single view ("focus",) as the detector's data made it; camera_size:
  (W, H) of the cameras that data was collected with, None if unknown. `from_run(work_dir)`
  builds one from a detector run.
  """

  def __init__(self, model, variables: dict, view_preprocess: preprocess.ViewPreprocessor,
               camera_size: tuple[int, int] | None = None):
    if view_preprocess.views != ("focus",):
      raise ConfigError(f"the red-light detector reads the focus view alone; its preprocessing "
                        f"makes {view_preprocess.views}")
    self.preprocess = view_preprocess
    self.camera_size = None if camera_size is None else tuple(int(s) for s in camera_size)
    self._probability = jax.jit(
        lambda images: jax.nn.sigmoid(model.apply(variables, images)))

  @classmethod
  def from_run(cls, work_dir: str) -> "RedLightRule":
    from lmgendrive_jax.train import trained  # Local: keeps the agent module import light.
    model, variables, config = trained.load_light_detector(work_dir)
    view_preprocess, build = preprocess.for_run_data(
        config.data, resolve_path(config.data.get("data_dir", "")), views=("focus",))
    return cls(model, variables, view_preprocess, build.get("camera_size"))

  @property
  def camera_views(self) -> tuple[str, ...]:
    return self.preprocess.camera_views

  def probability(self, cameras: dict) -> float:
    """cameras {view: uint8[h, w, 3]} (at least `camera_views`) -> P(the route's light is red)."""
    return float(np.asarray(self._probability(self.preprocess(cameras)))[0])


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


@functools.lru_cache(maxsize=4)
def rule_for_run(work_dir: str) -> RedLightRule:
  """One shared rule per detector run (the jitted detector compiles once per evaluation)."""
  return RedLightRule.from_run(resolve_path(work_dir))
