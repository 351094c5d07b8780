"""On-policy collection (agent/takeover.py): the takeover rule's triggers and hold, and the
takeover agent in the simulator with learners that drift off the lane or never pull away."""

import numpy as np
import pytest

from lmgendrive_jax.agent.lmgendrive_agent import camera_sensor
from lmgendrive_jax.agent.takeover import TakeoverAgent, TakeoverRule
from lmgendrive_jax.config import sim_preset
from lmgendrive_jax.sim import expert, host, pid, routes

CFG = sim_preset("tiny")
CALM = dict(offset=0.2, speed=5.0, expert_brakes=False, expert_target_speed=6.0,
            learner_brake=0.0)


def test_rule_takes_over_on_each_trigger_and_holds():
  rule = TakeoverRule(offset_m=1.0, stand_seconds=1.5, hold_seconds=3.0)
  assert not rule.update(0.0, True, **CALM)
  assert rule.update(1.0, True, **dict(CALM, offset=1.2))
  assert rule.update(3.9, True, **CALM)          # held 3 s after the last trigger
  assert not rule.update(4.0, True, **CALM)
  # The expert brakes while the car moves and the learner does not: at once; not when the
  # learner brakes too, nor when the car already stands.
  assert not rule.update(5.0, True, **dict(CALM, expert_brakes=True, learner_brake=1.0))
  assert not rule.update(5.1, True, **dict(CALM, expert_brakes=True, speed=0.5))
  assert rule.update(5.2, True, **dict(CALM, expert_brakes=True))
  assert not rule.update(8.2, True, **CALM)
  # Standing while the expert would drive: after stand_seconds; standing for a reason the expert
  # shares (target speed 0) never triggers.
  standing = dict(CALM, speed=0.0)
  assert not rule.update(10.0, True, **standing)
  assert not rule.update(11.4, True, **standing)
  assert rule.update(11.5, True, **standing)
  assert rule.takeovers == {"offset": 1, "brake": 1, "stand": 1}
  waiting = TakeoverRule()
  assert not any(waiting.update(t, True, **dict(standing, expert_target_speed=0.0))
                 for t in np.arange(0.0, 10.0, 0.05))


def test_rule_switches_only_when_allowed():
  rule = TakeoverRule()
  assert not rule.update(0.0, False, **dict(CALM, offset=2.0))  # an odd tick: no switch
  assert rule.update(0.05, True, **dict(CALM, offset=2.0))
  assert rule.update(10.0, False, **CALM)                        # hold over, odd tick: stays
  assert not rule.update(10.05, True, **CALM)


class FixedLearner:
  """A learner that always applies one control, with one small front camera."""

  privileged = False

  def __init__(self, control):
    self.control, self.inputs = control, []

  def setup(self, config):
    pass

  def sensors(self):
    return [camera_sensor("rgb_front", 32, 24)]

  def run_step(self, input_data, timestamp):
    self.inputs.append(sorted(input_data))
    return pid.Control(*self.control)

  def destroy(self):
    pass


@pytest.mark.parametrize("name,control,reason", [
    ("drifts", (0.4, 0.6, 0.0), "offset"),   # steers off the lane
    ("stands", (0.0, 0.0, 1.0), "stand"),    # never pulls away
])
def test_expert_takes_over_a_bad_learner_and_completes_the_route(name, control, reason):
  agents, flags, steps = [], [], []

  def make():
    agents.append(TakeoverAgent(FixedLearner(control), expert.ExpertAgent(CFG.expert),
                                TakeoverRule(), extra_views=("front", "left")))
    return agents[-1]

  def on_tick(episode, state, info, images, control_, agent):
    flags.append(agent.last_labels["learner_control"])
    steps.append(agent.step)
    # front (the learner's) + left: test_agent.py's rig, whose compiled renderer this reuses
    assert images is None or images.shape[0] == 2
  results = host.run_routes(routes.route_set("tiny_1", 0), make, CFG, batch_size=1,
                            on_tick=on_tick)
  assert results[0]["ending"] == "completed", results[0]
  agent = agents[0]
  assert [(s["id"], s["width"]) for s in agent.sensors() if "camera" in s["type"]] == [
      ("rgb_front", 32), ("rgb_left", 32)]
  assert agent.rule.takeovers[reason] >= 1, agent.rule.takeovers
  assert agent.learner_ticks > 0 and agent.expert_ticks > 0
  assert agent.learner_ticks + agent.expert_ticks == len(flags)
  # The learner never sees the expert's privileged data.
  assert all("privileged" not in keys for keys in agent.learner.inputs)
  # Modes change only on even ticks, so each written (even) frame's flag covers the odd tick after.
  changes = [s for s, a, b in zip(steps[1:], flags, flags[1:]) if a != b]
  assert changes and all(s % 2 == 0 for s in changes)


def test_the_collector_writes_the_takeover_summary_to_the_route_meta(tmp_path):
  """collect.Collector.on_end: an on-policy route's meta holds its agent's takeover summary; an
  expert route's meta has none."""
  import json
  import types

  from data_pipelines import collect

  agent = TakeoverAgent(FixedLearner((0.0, 0.0, 1.0)), expert.ExpertAgent(CFG.expert),
                        TakeoverRule())
  agent.rule.takeovers.update(offset=2, stand=1)
  agent.learner_ticks, agent.expert_ticks = 30, 12
  collector = collect.Collector(str(tmp_path), None, collect.VIEWS)
  result = {"infractions": [], "ds": 100.0}
  metas = []
  for seed, route_agent in ((1, agent), (2, expert.ExpertAgent(CFG.expert))):
    spec = types.SimpleNamespace(town_id=1, track="tiny", weather_id=0, route_seed=seed)
    episode = types.SimpleNamespace(
        spec=spec, instructions=types.SimpleNamespace(finish=lambda: []),
        notices=types.SimpleNamespace(notices=[]))
    # What on_tick leaves after an episode's third written frame: its folder, count and agent.
    (tmp_path / collect.route_dir_name(spec)).mkdir()
    collector.open[id(episode)] = collect.OpenRoute(frames=3, agent=route_agent)
    collector.on_end(episode, result)
    with open(tmp_path / collect.route_dir_name(spec) / collect.META) as f:
      metas.append(json.load(f))
  assert metas[0]["takeover"] == {"takeovers": {"offset": 2, "brake": 0, "stand": 1},
                                  "learner_ticks": 30, "expert_ticks": 12}
  assert "takeover" not in metas[1] and metas[1]["n_frames"] == 3
