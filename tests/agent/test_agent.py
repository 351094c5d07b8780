"""The agent's own code path (LMDrive timing, braking, PID, preprocessing, cache resets) driven by
a scripted planner that reads the route from privileged data, and preprocessing == training's."""

import io

import flax.linen as nn
import jax
import numpy as np
import pytest
from PIL import Image

from lmgendrive_jax.agent import detector as detector_lib
from lmgendrive_jax.agent import lmgendrive_agent, preprocess, red_light, rules, stop_sign, stuck
from lmgendrive_jax.agent.baselines import RoutePlanner
from lmgendrive_jax.agent.lmgendrive_agent import LMGenDriveAgent
from lmgendrive_jax.agent.planner import PlanState
from lmgendrive_jax.agent.detector import ViewDetector
from lmgendrive_jax.config import data_preset, sim_preset
from lmgendrive_jax.data.examples import _ViewDecoder
from lmgendrive_jax.errors import ConfigError
from lmgendrive_jax.models.light_detector import RedLightDetector
from lmgendrive_jax.sim import host, routes

CFG = sim_preset("tiny")
SPEED = 5.0  # m/s the scripted waypoints ask for


class ScriptedPlanner(RoutePlanner):
  """The route-following planner at SPEED (privileged route geometry) instead of the model's,
  recording what the agent gave it."""

  def __init__(self, max_frames=3):
    super().__init__(SPEED, views=("front", "left", "focus"), view_size=(16, 16), stride=2,
                     max_frames=max_frames)
    self.calls = []  # (commit, frames before, views shape)
    self.instructions = []

  def start(self, instruction):
    self.instructions.append(instruction)
    return super().start(instruction)

  def step(self, state, views, speed, commit, input_data):
    self.calls.append((commit, state.frames, views.shape))
    return super().step(state, views, speed, commit, input_data)


class ScriptedAgent(LMGenDriveAgent):
  privileged = True  # only so that the scripted planner can read the route


def test_scripted_planner_completes_a_route_through_the_agent_code_path():
  planner = ScriptedPlanner()
  agents, controls = [], []

  def make():
    agents.append(ScriptedAgent(planner))
    return agents[-1]

  def on_tick(episode, state, info, images, control, agent):
    controls.append(control.copy())
  results = host.run_routes(routes.route_set("tiny_1", 0), make, CFG, batch_size=1,
                            agent_config=dict(camera_size=(32, 24)), on_tick=on_tick)
  assert results[0]["ending"] == "completed" and results[0]["rc"] > 99.0, results[0]
  agent = agents[0]
  # Cameras: the views the run needs (focus is cut from front), at the configured size.
  cams = [s for s in agent.sensors() if s["type"].startswith("sensor.camera")]
  assert [(s["id"], s["width"], s["height"]) for s in cams] == [
      ("rgb_front", 32, 24), ("rgb_left", 32, 24)]
  controls = np.asarray(controls)
  ticks = len(controls)
  # Brake for the first 20 ticks; the model runs on even ticks from 20 (10 Hz); odd ticks repeat.
  np.testing.assert_array_equal(controls[:20], np.tile([0.0, 0.0, 1.0], (20, 1)))
  np.testing.assert_array_equal(controls[21::2], controls[20:ticks - 1:2][:len(controls[21::2])])
  assert agent.model_steps == len(range(20, ticks, 2)) == len(planner.calls)
  # Stride 2: a frame is kept every second model step, and the window (3 kept frames) resets.
  commits = [c for c, _, _ in planner.calls]
  assert commits[:8] == [True, False] * 4
  # Frames held before each step: kept ones reset after 3; the newest rides in the spare slot.
  assert [f for _, f, _ in planner.calls[:8]] == [0, 1, 1, 2, 2, 3, 0, 1]
  assert planner.calls[0][2] == (3, 16, 16, 3)
  assert agent.resets >= agent.model_steps // 6
  assert all(text for text in planner.instructions)  # the stream's instructions went in
  # An evaluation trace's fields: the PID's target from the last waypoints, no rules.
  fields = agent.trace_fields()
  assert fields["asked_speed"] == pytest.approx(SPEED, abs=0.3), fields
  assert fields["p_red_light"] == 0.0 and fields["red_light_brakes"] == fields["pushes"] == 0
  assert not agent.rules


def test_the_aim_option_reaches_the_controller_and_lmdrives_aim_is_the_default():
  default, lookahead = ScriptedAgent(ScriptedPlanner()), ScriptedAgent(ScriptedPlanner())
  default.setup(dict(camera_size=(32, 24)))
  lookahead.setup(dict(camera_size=(32, 24), aim_lookahead_m=4.0))
  assert default.controller.aim_lookahead_m == 0.0
  assert lookahead.controller.aim_lookahead_m == 4.0


def _encode_png(array):
  buffer = io.BytesIO()
  Image.fromarray(array).save(buffer, format="PNG")
  return buffer.getvalue()


@pytest.mark.parametrize("stored_size", [None, (40, 30)])
def test_preprocessing_equals_the_training_pipeline(stored_size):
  rng = np.random.default_rng(0)
  cameras = {v: rng.integers(0, 255, (48, 64, 3), np.uint8) for v in ("front", "left", "right",
                                                                       "rear")}
  # The builder (data_pipelines/lmdrive_tfds/reader.py): focus = centre crop of the full front
  # (side focus_fraction * h), then the four views resized to view_size; stored losslessly.
  fraction = 128 / 600
  side = round(fraction * 48)
  top, left = (48 - side) // 2, (64 - side) // 2
  stored = {"focus": cameras["front"][top:top + side, left:left + side]}
  for view in ("front", "left", "right", "rear"):
    image = Image.fromarray(cameras[view])
    stored[view] = np.asarray(image.resize(stored_size, Image.BILINEAR)) if stored_size else \
        cameras[view]
  record = {"images": {v: _encode_png(a) for v, a in stored.items()}}
  data = data_preset("tiny", 2)
  data.view_size = (24, 20)
  data.random_crop, data.colour_jitter = False, 0.0
  decoder = _ViewDecoder(data)
  expected = decoder(record, decoder.draw(None))
  ours = preprocess.ViewPreprocessor(data.views, data.view_size, data.crop_scale, fraction,
                                     stored_size=stored_size)(cameras)
  np.testing.assert_array_equal(ours, expected)


def test_focus_camera_preprocessing_equals_the_training_pipeline():
  """A build with `focus_camera` stores the telephoto focus camera's image as the focus view; the
  agent then asks for that camera (not the front one) and resizes it as training did."""
  rng = np.random.default_rng(1)
  cameras = {v: rng.integers(0, 255, (48, 64, 3), np.uint8) for v in ("left", "focus")}
  record = {"images": {v: _encode_png(a) for v, a in cameras.items()}}
  data = data_preset("tiny", 2)
  data.views, data.view_size = ("left", "focus"), (24, 20)
  data.random_crop, data.colour_jitter = False, 0.0
  decoder = _ViewDecoder(data)
  expected = decoder(record, decoder.draw(None))
  ours = preprocess.ViewPreprocessor(data.views, data.view_size, data.crop_scale,
                                     focus_camera=True)
  assert ours.camera_views == ("left", "focus")
  np.testing.assert_array_equal(ours(cameras), expected)
  # The agent's sensor for it: the front camera's pose with the focus camera's field of view.
  sensor = lmgendrive_agent.camera_sensor("rgb_focus", 64, 48)
  assert sensor["x"] == lmgendrive_agent.camera_sensor("rgb_front", 64, 48)["x"]
  assert 21.0 < sensor["fov"] < 22.0


class StraightPlanner(ScriptedPlanner):
  """Waypoints straight ahead at SPEED, whatever the cameras show."""

  def step(self, state, views, speed, commit, input_data):
    self.calls.append((commit, state.frames, views.shape))
    waypoints = np.stack([np.zeros(5), SPEED * 0.5 * np.arange(1, 6)], axis=-1)
    return waypoints.astype(np.float32), 0.0, PlanState(None)


def _red_pixel_rule(camera_size=(32, 24), view="focus", label="red_light_ahead"):
  """A ViewDetector that says yes exactly when its view (the focus camera, or the front one)
  holds a pure red pixel: its one 1x1 convolution measures redness, max pooling finds it, the
  MLP thresholds it."""
  detector = RedLightDetector(widths=(1,), strides=(1,), hidden=1)
  variables = nn.meta.unbox(detector.init(jax.random.key(0), np.zeros((1, 8, 8, 3), np.uint8)))
  params = jax.tree.map(np.zeros_like, variables["params"])
  # Normalised red - green - blue: ~+6.1 on a red pixel, -0.6 on mid grey.
  params["conv0"]["kernel"] = np.zeros((3, 3, 3, 1), np.float32)
  params["conv0"]["kernel"][1, 1, :, 0] = [1.0, -1.0, -1.0]
  params["hidden"]["kernel"] = np.array([[1.0], [0.0]], np.float32)  # [max, mean] -> hidden
  params["hidden"]["bias"] = np.array([-4.0], np.float32)
  params["logit"]["kernel"] = np.array([[20.0]], np.float32)
  params["logit"]["bias"] = np.array([-10.0], np.float32)
  view_preprocess = preprocess.ViewPreprocessor((view,), (8, 8), 0.875,
                                                focus_camera=view == "focus")
  return ViewDetector(detector, {"params": params}, view_preprocess, camera_size, label)


def _use_detector(monkeypatch, detector):
  """Every detector run the agent loads is `detector`, which must have one of the labels asked
  for."""
  def load(work_dir, labels):
    assert detector.label in labels, (labels, detector.label)
    return detector
  monkeypatch.setattr(detector_lib, "detector_for_run", load)


@pytest.mark.parametrize("threshold", [0.5, 1.0])
def test_light_rule_brakes_while_the_detector_sees_red(threshold, monkeypatch):
  rule = _red_pixel_rule()
  _use_detector(monkeypatch, rule)
  agent = LMGenDriveAgent(StraightPlanner(max_frames=8))
  agent.setup(dict(camera_size=(32, 24), light_detector="some/run", red_light_threshold=threshold))
  # The planner's views (front; focus cut from it) and the detector's telephoto focus camera.
  cams = [s["id"] for s in agent.sensors() if s["type"].startswith("sensor.camera")]
  assert cams == ["rgb_front", "rgb_left", "rgb_focus"]
  grey = np.full((24, 32, 3), 128, np.uint8)
  red = grey.copy()
  red[8:16, 12:20] = (255, 0, 0)  # a lamp: one pure red pixel of the 8x8 view
  data = {f"rgb_{v}": (0, grey) for v in ("front", "left")}
  data.update(speed=(0, {"speed": 2.0}), instruction=(0, "follow the road"))
  lamp = [False, True, True, False, True]
  controls, probs = [], []
  for tick in range(20 + 2 * len(lamp)):
    step = (tick - 20) // 2
    data["rgb_focus"] = (0, red if tick >= 20 and lamp[step] else grey)
    control = agent.run_step(data, tick * 0.05)
    if tick >= 20 and tick % 2 == 0:
      controls.append(control)
      probs.append(agent.rules["red_light"].last_prob)
  braked = [c.brake == 1.0 and c.throttle == 0.0 for c in controls]
  assert [p > 0.99 for p in probs] == lamp and all(p < 0.01 for p, x in zip(probs, lamp) if not x)
  # Waypoints asking 5 m/s at 2 m/s: the PID accelerates unless the rule brakes.
  assert braked == [x and threshold < 1.0 for x in lamp]
  assert agent.rules["red_light"].brakes == sum(braked)
  assert agent.trace_fields()["red_light_brakes"] == sum(braked)
  assert all(c.throttle > 0 for c, b in zip(controls, braked) if not b)


def test_light_rule_refuses_a_detector_of_other_cameras(monkeypatch):
  _use_detector(monkeypatch, _red_pixel_rule((64, 64)))
  agent = LMGenDriveAgent(StraightPlanner())
  with pytest.raises(ConfigError, match=r"\(64, 64\)"):
    agent.setup(dict(camera_size=(32, 24), light_detector="some/run"))


def test_light_rule_gives_up_a_standing_car_after_its_max_wait():
  wait = rules.HoldLimit(max_wait=20.0, release=5.0)
  times = np.arange(0.0, 60.0, 0.1)
  said = [wait.brake(True, 0.0, t) for t in times]  # a red it never stops seeing, standing
  brake_at = lambda t: said[int(round(t * 10))]  # noqa: E731
  assert brake_at(0.0) and brake_at(19.9) and not brake_at(20.0) and not brake_at(24.9)
  assert brake_at(25.0) and brake_at(44.9) and not brake_at(45.0) and wait.releases == 2
  # Moving, or the light seen green, restarts the count.
  wait = rules.HoldLimit(max_wait=20.0, release=5.0)
  assert wait.brake(True, 0.0, 0.0) and not wait.brake(False, 0.0, 15.0)
  assert wait.brake(True, 0.0, 16.0) and wait.brake(True, 0.0, 35.0)
  assert wait.brake(True, 3.0, 36.5) and wait.brake(True, 0.0, 37.0) and wait.brake(True, 0, 56.0)
  assert not wait.brake(True, 0.0, 57.0)
  # No limit.
  assert rules.HoldLimit(0.0, 5.0).brake(True, 0.0, 1e6)


def test_light_rule_memory_brakes_a_rolling_car_and_forgets_on_time_green_or_release():
  memory = red_light.RedLightMemory(max_wait=20.0, release=5.0, memory=14.0)
  assert memory.brake(True, 3.0, 0.0)  # seen, rolling
  assert memory.brake(False, 2.0, 0.5)  # the lamp out of view, still rolling: it brakes on
  assert not memory.brake(False, 0.0, 1.0) and memory.holds_car(1.0)  # standing: stuck rule waits
  assert memory.holds_car(13.9) and not memory.holds_car(14.0)
  assert not memory.brake(False, 3.0, 14.0)  # forgotten: rolling on is the planner's
  # Seen last from a standing car, the lamp was in view when it went: green, not remembered.
  assert memory.brake(True, 3.0, 20.0) and memory.brake(True, 0.0, 21.0)
  assert not memory.brake(False, 0.0, 22.0) and not memory.holds_car(22.0)
  assert not memory.brake(False, 1.0, 22.5)
  # Off: exactly HoldLimit.
  off = red_light.RedLightMemory(max_wait=20.0, release=5.0, memory=0.0)
  assert off.brake(True, 3.0, 0.0) and not off.brake(False, 2.0, 0.5) and not off.holds_car(0.5)
  # A red it held the standing car through for max_wait is a false alarm: released, forgotten.
  held = red_light.RedLightMemory(max_wait=20.0, release=5.0, memory=14.0)
  assert held.brake(True, 3.0, 0.0) and held.brake(True, 0.0, 0.5) and held.brake(True, 0.0, 20.4)
  assert not held.brake(True, 0.0, 20.5) and not held.holds_car(20.5)
  assert not held.brake(True, 2.0, 21.0) and not held.holds_car(24.9)  # sightings while released


def test_stuck_rule_waits_while_the_light_rule_remembers_a_red(monkeypatch):
  _use_detector(monkeypatch, _red_pixel_rule())
  grey = np.full((24, 32, 3), 128, np.uint8)
  red = grey.copy()
  red[8:16, 12:20] = (255, 0, 0)

  def first_push(memory: float, speed_while_seen: float) -> float:
    agent = LMGenDriveAgent(StandingPlanner(max_frames=8))
    agent.setup(dict(camera_size=(32, 24), light_detector="some/run", red_light_memory=memory,
                     stuck_seconds=2.0, forced_forward_seconds=0.6))
    data = {f"rgb_{v}": (0, grey) for v in ("front", "left")}
    data.update(instruction=(0, "follow the road"))
    for tick in range(20 + 2 * 100):  # the lamp seen red for the model's first second only
      seen = tick < 40
      data["rgb_focus"] = (0, red if seen else grey)
      data["speed"] = (0, {"speed": speed_while_seen if seen else 0.0})
      if agent.run_step(data, tick * 0.05).throttle > 0:
        return tick * 0.05
    return float("inf")

  # Without memory the push comes as soon as the rule lets go (the standing count ran from the
  # rule's first step at t = 1 s); with a 6-s memory of a red last seen rolling, 6 s after that
  # sighting (t = 1.9 s). Seen last from the standing car, it is green now: no wait.
  assert first_push(0.0, 0.0) == pytest.approx(3.0, abs=0.11)
  assert first_push(6.0, 0.0) == pytest.approx(3.0, abs=0.11)
  assert first_push(6.0, 1.0) == pytest.approx(7.9, abs=0.11)


class StandingPlanner(ScriptedPlanner):
  """Waypoints that ask the car to stand (behaviour cloning's inertia), whatever it sees."""

  def step(self, state, views, speed, commit, input_data):
    self.calls.append((commit, state.frames, views.shape))
    return np.zeros((5, 2), np.float32), 0.0, PlanState(None)


def test_stuck_rule_pushes_a_car_that_stands_too_long():
  agent = LMGenDriveAgent(StandingPlanner(max_frames=8))
  agent.setup(dict(camera_size=(32, 24), stuck_seconds=2.0, forced_forward_seconds=0.6))
  data = {f"rgb_{v}": (0, np.zeros((24, 32, 3), np.uint8)) for v in ("front", "left")}
  data.update(speed=(0, {"speed": 0.0}), instruction=(0, "follow the road"))
  pushed = [agent.run_step(data, tick * 0.05).throttle > 0 for tick in range(20 + 2 * 60)]
  # Braking ticks, then the model from t = 1 s: standing 2 s, a 0.6 s push, standing 2 s, ...
  first = pushed.index(True)
  assert first * 0.05 == pytest.approx(3.0, abs=0.11)
  assert all(pushed[first:first + 12]) and not any(pushed[first + 13:first + 13 + 36])
  assert agent.stuck.pushes == 2
  assert agent.trace_fields()["pushes"] == 2 and agent.trace_fields()["asked_speed"] == 0.0
  # Off by default: the planner's standing is kept.
  agent = LMGenDriveAgent(StandingPlanner(max_frames=8))
  agent.setup(dict(camera_size=(32, 24)))
  assert not any(agent.run_step(data, tick * 0.05).throttle > 0 for tick in range(120))


def test_stuck_rule_pushes_a_car_inching_forward_in_jerks_but_not_one_that_drives_slowly():
  """Readings every 0.1 s alternating 0 and 0.3 m/s (the PID's throttle-brake jerks on a planner
  asking ~0.1 m/s) average 0.15 m/s: stuck, though some readings pass STANDING_MPS."""
  rule = stuck.StuckRule(stuck_seconds=8.0, forced_forward_seconds=0.6)
  times = np.arange(0, 12, 0.1)
  jerks = [rule.forced_throttle(0.3 * (i % 2), t) for i, t in enumerate(times)]
  first = next(i for i, throttle in enumerate(jerks) if throttle is not None)
  assert times[first] == pytest.approx(8.0, abs=0.15) and rule.pushes == 1
  rule = stuck.StuckRule(stuck_seconds=8.0, forced_forward_seconds=0.6)
  assert all(rule.forced_throttle(0.6 * (i % 2), t) is None for i, t in enumerate(times))


def test_stuck_rule_counts_standing_while_the_light_rule_holds_and_pushes_when_it_lets_go():
  rule = stuck.StuckRule(stuck_seconds=8.0, forced_forward_seconds=0.6)
  assert all(rule.forced_throttle(0.0, t, may_push=False) is None for t in np.arange(0, 20, 0.1))
  assert rule.forced_throttle(0.0, 20.0, may_push=True) == stuck.FORCED_THROTTLE  # at once
  assert rule.forced_throttle(0.0, 20.5) == stuck.FORCED_THROTTLE
  assert rule.forced_throttle(3.0, 21.0) is None and rule.pushes == 1


def test_stop_sign_rule_brakes_in_the_zone_until_the_car_has_stood():
  rule = stop_sign.StopSignRule(release_seconds=4.0)
  assert not rule.brake(False, 5.0, 0.0)
  assert rule.brake(True, 5.0, 1.0) and rule.brake(True, 0.5, 1.5)
  assert not rule.brake(True, 0.0, 2.0) and rule.stops == 1  # stood in the zone: served
  assert not rule.brake(True, 1.5, 3.0) and not rule.brake(True, 2.0, 5.9)  # pulling away
  assert rule.brake(True, 2.0, 6.0)  # still seen after the release: a stop at the next zone


def test_the_agent_stops_at_a_stop_sign_once_then_drives_on(monkeypatch):
  detector = _red_pixel_rule(view="front", label="stop_sign_zone")
  _use_detector(monkeypatch, detector)
  agent = LMGenDriveAgent(StraightPlanner(max_frames=8))
  agent.setup(dict(camera_size=(32, 24), stop_sign_detector="some/run"))
  cams = [s["id"] for s in agent.sensors() if s["type"].startswith("sensor.camera")]
  assert cams == ["rgb_front", "rgb_left"]  # the detector reads the planner's front camera
  grey = np.full((24, 32, 3), 128, np.uint8)
  sign = grey.copy()
  sign[8:16, 12:20] = (255, 0, 0)
  data = {"rgb_left": (0, grey), "instruction": (0, "follow the road")}
  # Model steps from t = 1 s, 0.1 s apart: the zone seen from the 2nd step on, the car slowing
  # to a stop at the 5th, pulling away, then past the line.
  zone = [False, True, True, True, True, True, True, False]
  speeds = [4.0, 4.0, 2.0, 0.5, 0.0, 0.5, 1.0, 2.0]
  braked = []
  for tick in range(20 + 2 * len(zone)):
    step = max(tick - 20, 0) // 2
    data["rgb_front"] = (0, sign if tick >= 20 and zone[step] else grey)
    data["speed"] = (0, {"speed": speeds[step]})
    control = agent.run_step(data, tick * 0.05)
    if tick >= 20 and tick % 2 == 0:
      braked.append(control.brake == 1.0 and control.throttle == 0.0)
  assert braked == [False, True, True, True, False, False, False, False]
  assert agent.trace_fields()["stop_sign_stops"] == 1
  assert agent.trace_fields()["stop_sign_brakes"] == 3


def test_a_detector_of_another_label_is_refused(monkeypatch):
  stop_detector = _red_pixel_rule(view="front", label="stop_sign_zone")
  monkeypatch.setattr(detector_lib.ViewDetector, "from_run",
                      classmethod(lambda cls, work_dir: stop_detector))
  with pytest.raises(ConfigError, match="'stop_sign_zone'"):
    detector_lib.detector_for_run("runs/stop_sign_detector_only",
                                  ("red_light_zone", "red_light_ahead"))
  assert detector_lib.detector_for_run("runs/stop_sign_detector_only",
                                       ("stop_sign_zone",)) is stop_detector


def test_hazard_rule_brakes_while_seen_yields_a_standing_car_and_holds_the_stuck_rule(monkeypatch):
  detector = _red_pixel_rule(view="front", label="hazard_ahead")
  _use_detector(monkeypatch, detector)
  agent = LMGenDriveAgent(StraightPlanner(max_frames=8))
  # Its frame head alone: this detector has no object map to read on the path.
  agent.setup(dict(camera_size=(32, 24), hazard_detector="some/run", hazard_max_wait=10.0,
                   hazard_release=3.0, stuck_seconds=2.0, hazard_path_threshold=0.0))
  grey = np.full((24, 32, 3), 128, np.uint8)
  car = grey.copy()
  car[8:16, 12:20] = (255, 0, 0)
  data = {"rgb_left": (0, grey), "rgb_front": (0, car), "instruction": (0, "follow the road"),
          "speed": (0, {"speed": 0.0})}
  braked = {}
  for tick in range(20 + 2 * 150):  # braking ticks, then 15 s standing with the car seen
    control = agent.run_step(data, tick * 0.05)
    if tick >= 20 and tick % 2 == 0:
      braked[round(tick * 0.05, 1)] = control.brake == 1.0 and control.throttle == 0.0
  # Held 10 s (the stuck rule, 2 s, does not push meanwhile), then released: the PID, and the
  # stuck rule's push, move the car.
  assert all(braked[t] for t in braked if t < 1.0 + 10.0 - 0.05)
  assert not any(braked[t] for t in braked if 11.0 <= t < 14.0)
  assert all(braked[t] for t in braked if t >= 14.0)  # the count starts again
  assert agent.trace_fields()["hazard_brakes"] > 0 and agent.trace_fields()["p_hazard"] > 0.99


def test_hazard_oracle_brakes_when_the_expert_would_brake_for_a_hazard(monkeypatch):
  """The oracle's hazard rule reads the expert's hazard trigger (privileged); the planner does not
  see the privileged data."""
  from lmgendrive_jax.agent import baselines
  hazard_ticks = set(range(40, 60))
  experts = []

  class FakeExpert:
    def __init__(self, town, route, cfg, seed):
      experts.append(self)
      self.asked = 0

    def act(self, state, light_states):
      self.asked += 1
      seen = state["tick"] in hazard_ticks
      return None, {"is_vehicle_present": [3] if seen else [], "is_pedestrian_present": []}

  monkeypatch.setattr(baselines.expert_lib, "Expert", FakeExpert)
  planner = StraightPlanner(max_frames=8)
  seen_by_planner = []
  planner_step = planner.step
  def step(state, views, speed, commit, input_data):
    seen_by_planner.append("privileged" in input_data)
    return planner_step(state, views, speed, commit, input_data)
  planner.step = step
  agent = baselines.HazardOracleAgent(CFG.expert, planner)
  agent.setup(dict(camera_size=(32, 24)))
  grey = np.full((24, 32, 3), 128, np.uint8)
  route = object()
  braked = []
  for tick in range(80):
    data = {"rgb_left": (0, grey), "rgb_front": (0, grey), "instruction": (0, "follow the road"),
            "speed": (0, {"speed": 3.0}), "privileged": (0, dict(
                town=None, route=route, state={"tick": tick}, light_states=None, seed=0))}
    braked.append(agent.run_step(data, tick * 0.05).brake == 1.0)
  # The model steps every other tick; a step inside the hazard brakes, those after it do not.
  assert all(braked[40:60]) and not any(braked[24:40]) and not any(braked[62:80])
  assert not any(seen_by_planner)
  assert agent.trace_fields()["hazard_brakes"] == 10
  # One expert for the route, asked on the model's steps only.
  assert len(experts) == 1 and experts[0].asked == len(seen_by_planner)


def test_blank_instruction_agent_gives_the_planner_an_empty_instruction():
  from lmgendrive_jax.agent import baselines
  planner = StraightPlanner(max_frames=8)
  agent = baselines.BlankInstructionAgent(planner)
  agent.setup(dict(camera_size=(32, 24)))
  grey = np.full((24, 32, 3), 128, np.uint8)
  data = {"rgb_left": (0, grey), "rgb_front": (0, grey), "instruction": (0, "turn left"),
          "speed": (0, {"speed": 3.0})}
  for tick in range(30):
    agent.run_step(data, tick * 0.05)
  assert planner.instructions and set(planner.instructions) == {""}
