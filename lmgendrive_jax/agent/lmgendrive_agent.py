"""LMGenDriveAgent: the trained model driving from language, behind the CARLA leaderboard interface.

Where it sits: hosted by the embedded simulator (`sim/host.py: run_routes`, via
`eval/closed_loop.py`) now and by a CARLA leaderboard bridge later (same four methods). Per tick:

  raw cameras --preprocess.ViewPreprocessor--> uint8[V, H, W, 3]
     --planner.CachedPlanner.step (encode frame, extend the KV cache)--> waypoints f32[5, 2]
     --sim/pid.WaypointController (LMDrive's PID)--> Control(steer, throttle, brake)
     [--rules.DetectorRule: red_light / stop_sign / hazard, and the stuck rule (options, off by
       default)--> braked / pushed]

LMDrive's timing rules (its lmdriver_agent.py): the simulator ticks at 20 Hz; the agent brakes
for the first `brake_ticks` (20) ticks, then runs the model every `model_every` (2) ticks (10 Hz)
and repeats its last control on the ticks in between. The world generator is not on this path.

KV cache (planner.py): the instruction prefix is prefilled once per instruction text; each model
step extends the cache with the newest frame's block. Frames are kept in the cache every
`frame_stride` model steps (the run's `data.stride`: the frame spacing it was trained on); on the
steps between, the newest frame is appended only for that step's waypoints (LMDrive's "strided
history + newest frame"). The cache is reset (re-prefilled) on a new instruction, when the model
says the instruction is completed (sigmoid(logit) > `completed_threshold`), when it holds
`max_frames` frames (default: the run's `data.window_frames`), and when a second notice arrives
(training examples hold one notice). A notice (Notice track) is appended as its own block right
before the frame it arrives with, as in training.

Config (`setup(config)`: a dict, ConfigDict or None; keys in `AGENT_DEFAULTS`): `work_dir` (the
trained stage-2/3 run), `blank_instruction` (feed "" instead of the instruction: the
instruction-ablation baseline), `use_notice`, `max_frames`, `frame_stride`,
`completed_threshold`, `brake_ticks`, `model_every`, `camera_size` (W, H; default the dataset
build's), `focus_fraction` (default the build's), `tokenizer` (default the run's),
`light_detector` (a red-light detector run, `configs/light_detector.py`; "" = none: the waypoints
alone, LMDrive's rule), `red_light_threshold` (brake while its probability is above;
`red_light.py` says why), `red_light_max_wait` and `red_light_release` (seconds: after the rule
has held the car standing this long, longer than any red phase, it is a false alarm on a scene
that no longer changes, and the rule is off for `red_light_release` seconds), `red_light_memory`
(seconds the light rule remembers a red it last saw from a moving car: a moving car brakes on,
the stuck rule waits; 0 = off; `red_light.py` says why), `stuck_seconds`
and `forced_forward_seconds` (`stuck.py`: after standing this long, drive forward that long as
soon as neither the light nor the hazard rule holds the car; 0 = off), `stop_sign_detector` (a
stop-sign detector run, `configs/stop_sign_detector.py`; "" = none), `stop_sign_threshold` and
`stop_sign_release`
(`stop_sign.py`: brake while its probability is above, until the car has stood in the zone; then
ignore it this many seconds), `hazard_detector` (a hazard detector run,
`configs/hazard_detector.py`; "" = none), `hazard_threshold`, `hazard_max_wait` and
`hazard_release` (`hazard.py`: brake while its probability is above, holding a standing car at
most `hazard_max_wait` seconds, then yielding `hazard_release` seconds), `hazard_path_threshold`
(> 0: the hazard rule also brakes while its detector's object map sees an object above this
probability on the ground the planner's waypoints cover close ahead, `path_objects.py`; 0 = off,
as a hazard detector without an object map needs),
`aim_lookahead_m`
(0 = LMDrive's aim point, the mean of the first two waypoints; > 0 = the expert's: the point
max(aim_lookahead_m, 0.5 x speed + 2) metres along the predicted path; `sim/pid.py` says why).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lmgendrive_jax.agent import detector as detector_lib
from lmgendrive_jax.agent import hazard, path_objects, red_light, rules, stop_sign
from lmgendrive_jax.agent import planner as planner_lib
from lmgendrive_jax.agent import preprocess
from lmgendrive_jax.agent import stuck as stuck_lib
from lmgendrive_jax.errors import ConfigError
from lmgendrive_jax.sim import pid as pid_lib
from lmgendrive_jax.sim import render as render_lib

# Each rule is off until its detector (or `stuck_seconds`) is given; its settings default to the
# big preset's measured best (docs/experiments.md: the 1.5-s push, 16th; a standing car held by
# the hazard rule at most 10 s, 17th; the hazard rule's object map read on the planner's path at
# 0.5, 24th).
AGENT_DEFAULTS = dict(
    work_dir="", blank_instruction=False, use_notice=True, max_frames=0, frame_stride=0,
    completed_threshold=0.5, brake_ticks=20, model_every=2, camera_size=(0, 0),
    focus_fraction=0.0, tokenizer="", light_detector="", red_light_threshold=0.5,
    red_light_max_wait=20.0, red_light_release=5.0, red_light_memory=0.0, stuck_seconds=0.0,
    forced_forward_seconds=1.5, stop_sign_detector="", stop_sign_threshold=0.5,
    stop_sign_release=4.0, hazard_detector="", hazard_threshold=0.5, hazard_max_wait=10.0,
    hazard_release=3.0, hazard_path_threshold=0.5, aim_lookahead_m=0.0)
# The detector rules, in the order they are asked (each is asked every model step: its
# probability goes into the trace whether or not another rule already brakes).
RULES = (red_light.RULE, stop_sign.RULE, hazard.RULE)


def agent_config(config: Any) -> dict:
  """AGENT_DEFAULTS overridden by `config` (dict / ConfigDict / None); unknown keys are errors."""
  if config is None:
    given = {}
  elif hasattr(config, "to_dict"):
    given = config.to_dict()
  elif isinstance(config, dict):
    given = dict(config)
  else:
    raise ConfigError(f"agent config {config!r}: give a dict or ConfigDict with keys among "
                      f"{sorted(AGENT_DEFAULTS)}")
  unknown = sorted(set(given) - set(AGENT_DEFAULTS))
  if unknown:
    raise ConfigError(f"agent config keys {unknown} are unknown; known: {sorted(AGENT_DEFAULTS)}")
  return {**AGENT_DEFAULTS, **given}


def camera_sensor(camera_id: str, width: int, height: int) -> dict:
  """A CARLA camera spec on LMDrive's rig (sim/render.py: VIEW_POSES, 100 degree FOV)."""
  x, y, z, yaw = render_lib.VIEW_POSES[camera_id[len("rgb_"):]]
  return {"type": "sensor.camera.rgb", "id": camera_id, "x": x, "y": y, "z": z, "roll": 0.0,
          "pitch": 0.0, "yaw": yaw, "width": int(width), "height": int(height),
          "fov": render_lib.view_fov_deg(camera_id[len("rgb_"):])}


class LMGenDriveAgent:
  """The leaderboard agent (see the module docstring). `planner`: anything with
  `data` (the run's data config), `max_frames`, `start(text)`, `add_notice(state, text)` and
  `step(state, views, speed, commit, input_data)`, like `planner.CachedPlanner`; None loads the
  run of `config.work_dir` in `setup` (one shared planner per run)."""

  privileged = False

  def __init__(self, planner: Any = None):
    self.planner = planner

  # --- leaderboard interface -------------------------------------------------------------------

  def setup(self, config: Any) -> None:
    self.config = agent_config(config)
    if self.planner is None:
      if not self.config["work_dir"]:
        raise ConfigError("LMGenDriveAgent needs config work_dir (a trained stage-2/3 run dir) "
                          "or a planner")
      self.planner = planner_lib.planner_for_run(self.config["work_dir"],
                                                 int(self.config["max_frames"]),
                                                 self.config["tokenizer"])
    data = self.planner.data
    self.preprocess, build = preprocess.for_run_data(
        data, data.get("data_dir", ""), focus_fraction=float(self.config["focus_fraction"]))
    width, height = (int(s) for s in self.config["camera_size"])
    if not width:
      width, height = build.get("camera_size") or [round(s / float(data.crop_scale))
                                                   for s in data.view_size[::-1]]
    self.camera_size = (int(width), int(height))
    # The detector rules whose detector option is set, by name.
    self.rules = {spec.name: self._rule(spec) for spec in RULES
                  if self.config[spec.detector_option]}
    # Cameras asked for: the planner's views', then any more the detectors read.
    self.camera_views = self.preprocess.camera_views
    for rule in self.rules.values():
      self.camera_views += tuple(v for v in rule.camera_views if v not in self.camera_views)
    self.max_frames = int(self.planner.max_frames)
    self.frame_stride = int(self.config["frame_stride"]) or int(data.get("stride", 1))
    self.controller = pid_lib.WaypointController(
        aim_lookahead_m=float(self.config["aim_lookahead_m"]))
    self.step = -1
    self.prev_control = pid_lib.Control(brake=1.0)
    self.state = None
    self.instruction: str | None = None
    self.notice = ""
    self.steps_since_reset = 0
    # Read by tests and tools: what the model saw and said last.
    self.model_steps, self.resets = 0, 0
    self.last_waypoints: np.ndarray | None = None
    self.last_completed_prob = 0.0
    self.last_views: np.ndarray | None = None
    self.stuck = stuck_lib.StuckRule(float(self.config["stuck_seconds"]),
                                     float(self.config["forced_forward_seconds"]))

  def sensors(self) -> list[dict]:
    width, height = self.camera_size
    cameras = [camera_sensor(f"rgb_{view}", width, height)
               for view in self.camera_views]
    return cameras + [
        {"type": "sensor.other.imu", "id": "imu", "x": 0.0, "y": 0.0, "z": 0.0, "roll": 0.0,
         "pitch": 0.0, "yaw": 0.0, "sensor_tick": 0.05},
        {"type": "sensor.other.gnss", "id": "gps", "x": 0.0, "y": 0.0, "z": 0.0, "roll": 0.0,
         "pitch": 0.0, "yaw": 0.0, "sensor_tick": 0.01},
        {"type": "sensor.speedometer", "id": "speed", "reading_frequency": 20}]

  def run_step(self, input_data: dict, timestamp: float) -> pid_lib.Control:
    self.step += 1
    if self.step < int(self.config["brake_ticks"]):
      return pid_lib.Control(steer=0.0, throttle=0.0, brake=1.0)
    if self.step % int(self.config["model_every"]) != 0 and self.step > 4:
      return self.prev_control
    speed = float(input_data["speed"][1]["speed"])
    cameras = {view: input_data[f"rgb_{view}"][1] for view in self.camera_views
               if f"rgb_{view}" in input_data}
    views = self.preprocess(cameras)
    instruction = "" if self.config["blank_instruction"] else str(input_data["instruction"][1])
    notice = str(input_data.get("notice", (0, ""))[1]) if self.config["use_notice"] else ""

    commit = self.steps_since_reset % self.frame_stride == 0
    if (self.state is None or instruction != self.instruction
        or (commit and self.state.frames >= self.max_frames)):
      self._reset(instruction)
      commit = True
    if notice and notice != self.notice:
      if self.state.has_notice:
        self._reset(instruction)
        commit = True
      self.state = self.planner.add_notice(self.state, notice)
      self.notice = notice

    waypoints, prob, self.state = self.planner.step(self.state, views, speed, commit, input_data)
    self.steps_since_reset += 1
    self.model_steps += 1
    self.last_waypoints, self.last_completed_prob, self.last_views = waypoints, prob, views
    control = self.controller.control(waypoints, speed)
    t = float(timestamp)
    braking = [rule for rule in self.rules.values()
               if rule.brake(cameras, speed, t, waypoints=waypoints)]
    if braking:
      control = pid_lib.Control(steer=control.steer, throttle=0.0, brake=1.0)
    holding = (any(rule.spec.holds_standing_car for rule in braking)
               or any(rule.holds_car(t) for rule in self.rules.values()))
    forced = self.stuck.forced_throttle(speed, t, may_push=not holding)
    if forced is not None and not holding:  # a push under way yields to a rule's brake too
      control = pid_lib.Control(steer=control.steer, throttle=forced, brake=0.0)
    if prob > float(self.config["completed_threshold"]):
      self.state = None  # completed: the next model step starts from the prefix again
    self.prev_control = control
    return control

  def destroy(self) -> None:
    self.state = None

  def trace_fields(self) -> dict:
    """What the agent read and decided at its last model step, for evaluation traces
    (`configs/eval.py: trace`): the speed its waypoints ask (the PID's target), the planner's
    P(completed), and per detector rule (`RULES`) its detector's probability `p_<name>` and the
    model steps it braked so far `<name>_brakes` (0 without its detector), the stop-sign rule's
    stops and the stuck rule's pushes so far."""
    asked = (-1.0 if self.last_waypoints is None
             else pid_lib.desired_speed(self.last_waypoints))
    fields = dict(asked_speed=round(asked, 3),
                  p_completed=round(float(self.last_completed_prob), 3))
    for spec in RULES:
      rule = self.rules.get(spec.name)
      fields[f"p_{spec.name}"] = round(rule.last_prob, 3) if rule else 0.0
      fields[f"{spec.name}_brakes"] = rule.brakes if rule else 0
    hazard_rule = self.rules.get(hazard.RULE.name)
    fields["p_hazard_path"] = round(hazard_rule.last_path_prob, 3) if hazard_rule else 0.0
    stop_rule = self.rules.get(stop_sign.RULE.name)
    fields["stop_sign_stops"] = stop_rule.policy.stops if stop_rule else 0
    fields["pushes"] = int(self.stuck.pushes)
    return fields

  # --- helpers ---------------------------------------------------------------------------------

  def _rule(self, spec: rules.RuleSpec) -> rules.DetectorRule:
    """The rule of `spec` on the detector run its option names (checked to have learnt the
    rule's label on cameras of the agent's size), with a fresh policy."""
    option = spec.detector_option
    detector = detector_lib.detector_for_run(str(self.config[option]), spec.labels)
    if detector.camera_size not in (None, self.camera_size):
      raise ConfigError(
          f"{option} {self.config[option]} was trained on {detector.camera_size} (W, H) "
          f"cameras but the agent's are {self.camera_size}; set camera_size or use a detector "
          f"built from the planner's camera size")
    path, path_threshold = None, float(self.config["hazard_path_threshold"])
    if spec is hazard.RULE and path_threshold > 0:
      path = path_objects.for_detector(detector, self.camera_size,
                                       str(self.config["hazard_detector"]))
    return rules.DetectorRule(spec, detector, float(self.config[spec.threshold_option]),
                              spec.make_policy(self.config), path=path,
                              path_threshold=path_threshold)

  def _reset(self, instruction: str) -> None:
    self.state = self.planner.start(instruction)
    self.instruction = instruction
    self.notice = ""
    self.steps_since_reset = 0
    self.resets += 1
