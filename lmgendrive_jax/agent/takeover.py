"""On-policy data collection (DAgger with expert takeover): the learner drives, the expert takes
over where the learner goes wrong, and only the expert's driving becomes training targets.

Why: behaviour cloning on the clean expert only sees states the expert visits. In closed loop
our planner leaves them (docs/experiments.md): it drifts off the lane at junctions, stands on
after a stop while the way is free, drives up to cars and red lights the expert would have braked
for, and nothing in its data shows how to get back. Here the learner's own mistakes lead into
those states and the expert's recovery from them is recorded: HG-DAgger (Kelly et al. 2019),
with the takeover decided by rules instead of a human.

The expert takes over (`TakeoverRule.update`) when
- the car is more than `offset_m` from the route's centre line (a drift or a wrong branch), or
- the expert brakes (a hazard, a red light, a stop sign) while the car moves faster than
  `MOVING_MPS` and the learner does not brake, or
- the car has stood `stand_seconds` while the expert wants to drive (target speed > 0),
and keeps the wheel at least `hold_seconds`, until none of these holds. Modes switch only on
even ticks, the ticks the collector writes (data_pipelines/collect.py: every 2nd of 20 Hz), so
a written frame's flag covers the tick after it too.

Each tick both agents run (the learner's KV cache and the expert's route progress stay current);
the applied control is the driver's. `last_labels` is the expert's labels plus
`learner_control` (True: the learner drove this tick), which the collector writes to the
measurements; the TFDS reader masks out every waypoint whose future holds a learner-driven frame
(data_pipelines/lmdrive_tfds/reader.py: frame_labels), as it does for steering noise.

  agent = TakeoverAgent(LMGenDriveAgent(), ExpertAgent(expert_cfg), TakeoverRule(1.0, 1.5, 3.0))
  agent.setup({"work_dir": "work_dirs/.../stage2_small"})   # the learner's config
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lmgendrive_jax.agent import lmgendrive_agent
from lmgendrive_jax.sim import pid as pid_lib

MOVING_MPS = 1.0     # the expert's brake takes over only from a moving car
STANDING_MPS = 0.5   # below this the car counts as standing
LEARNER_BRAKES = 0.5  # a learner brake above this counts as braking


class TakeoverRule:
  """Who drives, tick by tick (see the module docstring). Times in seconds."""

  def __init__(self, offset_m: float = 1.0, stand_seconds: float = 1.5,
               hold_seconds: float = 3.0):
    self.offset_m, self.stand_seconds = float(offset_m), float(stand_seconds)
    self.hold_seconds = float(hold_seconds)
    self.expert_drives = False
    self.hold_until = -np.inf
    self.standing_since: float | None = None
    self.takeovers: dict[str, int] = {"offset": 0, "brake": 0, "stand": 0}

  def reasons(self, t: float, offset: float, speed: float, expert_brakes: bool,
              expert_target_speed: float, learner_brake: float) -> list[str]:
    """The takeover triggers that hold now (updates the standing timer)."""
    if speed < STANDING_MPS:
      self.standing_since = t if self.standing_since is None else self.standing_since
    else:
      self.standing_since = None
    found = []
    if offset > self.offset_m:
      found.append("offset")
    if expert_brakes and speed > MOVING_MPS and learner_brake < LEARNER_BRAKES:
      found.append("brake")
    if (self.standing_since is not None and t - self.standing_since >= self.stand_seconds
        and expert_target_speed > 0.0):
      found.append("stand")
    return found

  def update(self, t: float, may_switch: bool, **signals) -> bool:
    """True when the expert drives this tick. `signals`: the arguments of `reasons`."""
    found = self.reasons(t, **signals)
    if not may_switch:
      return self.expert_drives
    if found:
      if not self.expert_drives:
        for reason in found:
          self.takeovers[reason] += 1
      self.expert_drives = True
      self.hold_until = max(self.hold_until, t + self.hold_seconds)
    elif self.expert_drives and t >= self.hold_until:
      self.expert_drives = False
    return self.expert_drives


class TakeoverAgent:
  """Leaderboard interface around a learner agent and the expert (see the module docstring).
  Privileged (for the expert); its sensors are the learner's."""

  privileged = True

  def __init__(self, learner: Any, expert: Any, rule: TakeoverRule,
               extra_views: tuple[str, ...] = ()):
    """extra_views: cameras rendered beside the learner's (at its size), e.g. the four a
    collection writes when the learner reads fewer."""
    self.learner, self.expert, self.rule = learner, expert, rule
    self.extra_views = tuple(extra_views)
    self.last_labels: dict = {}
    self.learner_ticks = 0
    self.expert_ticks = 0

  def setup(self, config: Any) -> None:
    """`config`: the learner's (the expert keeps the config it was built with)."""
    self.learner.setup(config)
    self.expert.setup(None)
    self.step = -1

  def sensors(self) -> list[dict]:
    sensors = list(self.learner.sensors())
    cameras = [s for s in sensors if str(s.get("type", "")).startswith("sensor.camera")]
    if cameras:
      width, height = int(cameras[0]["width"]), int(cameras[0]["height"])
      ids = {s["id"] for s in cameras}
      sensors += [lmgendrive_agent.camera_sensor(f"rgb_{v}", width, height)
                  for v in self.extra_views if f"rgb_{v}" not in ids]
    return sensors

  def set_global_plan(self, *plan) -> None:
    if hasattr(self.learner, "set_global_plan"):
      self.learner.set_global_plan(*plan)

  def run_step(self, input_data: dict, timestamp: float) -> pid_lib.Control:
    self.step += 1
    learner_input = {k: v for k, v in input_data.items() if k != "privileged"}
    learner_control = self.learner.run_step(learner_input, timestamp)
    expert_control = self.expert.run_step(input_data, timestamp)
    labels = dict(self.expert.last_labels)
    _, priv = input_data["privileged"]
    state = priv["state"]
    # The expert's progress is its nearest route point to the car: the offset from the route.
    nearest = priv["route"].point_at(float(labels["progress"]))
    offset = float(np.linalg.norm(nearest - np.asarray(state["ego_pos"], np.float64)))
    expert_drives = self.rule.update(
        float(timestamp), may_switch=self.step % 2 == 0, offset=offset,
        speed=float(state["ego_speed"]), expert_brakes=bool(labels.get("should_brake")),
        expert_target_speed=float(labels.get("target_speed", 0.0)),
        learner_brake=float(learner_control.brake))
    labels["learner_control"] = not expert_drives
    self.last_labels = labels
    if expert_drives:
      self.expert_ticks += 1
      return expert_control
    self.learner_ticks += 1
    return learner_control

  def summary(self) -> dict:
    """Who drove this route: takeovers by trigger and ticks driven by each (collect.py writes it
    to the route's meta as `takeover`)."""
    return {"takeovers": dict(self.rule.takeovers), "learner_ticks": self.learner_ticks,
            "expert_ticks": self.expert_ticks}

  def destroy(self) -> None:
    self.learner.destroy()
    self.expert.destroy()

