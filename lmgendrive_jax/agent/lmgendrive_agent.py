"""LMGenDriveAgent: the trained model driving from language, behind the CARLA leaderboard interface.

Where it sits: hosted by the embedded simulator (`sim/host.py: run_routes`, via
`eval/closed_loop.py`) now and by a CARLA leaderboard bridge later (same four methods). Per tick:

  raw cameras --preprocess.ViewPreprocessor--> uint8[V, H, W, 3]
     --planner.CachedPlanner.step (encode frame, extend the KV cache)--> waypoints f32[5, 2]
     --sim/pid.WaypointController (LMDrive's PID)--> Control(steer, throttle, brake)
     [--red_light / stop_sign / hazard / stuck rules (options, off by default)--> braked / pushed]

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
that no longer changes, and the rule is off for `red_light_release` seconds), `stuck_seconds`
and `forced_forward_seconds` (`stuck.py`: after standing this long, drive forward that long as
soon as neither the light nor the hazard rule holds the car; 0 = off), `stop_sign_detector` (a
stop-sign detector run, `configs/stop_sign_detector.py`; "" = none), `stop_sign_threshold` and
`stop_sign_release`
(`stop_sign.py`: brake while its probability is above, until the car has stood in the zone; then
ignore it this many seconds), `hazard_detector` (a hazard detector run,
`configs/hazard_detector.py`; "" = none), `hazard_threshold`, `hazard_max_wait` and
`hazard_release` (`hazard.py`: brake while its probability is above, holding a standing car at
most `hazard_max_wait` seconds, then yielding `hazard_release` seconds).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lmgendrive_jax.agent import hazard as hazard_lib
from lmgendrive_jax.agent import planner as planner_lib
from lmgendrive_jax.agent import preprocess
from lmgendrive_jax.agent import red_light as red_light_lib
from lmgendrive_jax.agent import stop_sign as stop_sign_lib
from lmgendrive_jax.agent import stuck as stuck_lib
from lmgendrive_jax.errors import ConfigError
from lmgendrive_jax.sim import pid as pid_lib
from lmgendrive_jax.sim import render as render_lib

AGENT_DEFAULTS = dict(
    work_dir="", blank_instruction=False, use_notice=True, max_frames=0, frame_stride=0,
    completed_threshold=0.5, brake_ticks=20, model_every=2, camera_size=(0, 0),
    focus_fraction=0.0, tokenizer="", light_detector="", red_light_threshold=0.5,
    red_light_max_wait=20.0, red_light_release=5.0, stuck_seconds=0.0,
    forced_forward_seconds=0.6, stop_sign_detector="", stop_sign_threshold=0.5,
    stop_sign_release=4.0, hazard_detector="", hazard_threshold=0.5, hazard_max_wait=30.0,
    hazard_release=3.0)


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
    self.red_light = self._detector("light_detector", red_light_lib.rule_for_run)
    self.stop_sign = self._detector("stop_sign_detector", stop_sign_lib.detector_for)
    self.hazard = self._detector("hazard_detector", hazard_lib.detector_for)
    # Cameras asked for: the planner's views', then any more the detectors read.
    self.camera_views = self.preprocess.camera_views
    for detector in (self.red_light, self.stop_sign, self.hazard):
      self.camera_views += tuple(v for v in (detector.camera_views if detector else ())
                                 if v not in self.camera_views)
    self.max_frames = int(self.planner.max_frames)
    self.frame_stride = int(self.config["frame_stride"]) or int(data.get("stride", 1))
    self.controller = pid_lib.WaypointController()
    self.step = -1
    self.prev_control = pid_lib.Control(brake=1.0)
    self.state = None
    self.instruction: str | None = None
    self.notice = ""
    self.steps_since_reset = 0
    # Read by tests and tools: what the model saw and said last.
    self.model_steps, self.resets, self.red_light_brakes = 0, 0, 0
    self.last_waypoints: np.ndarray | None = None
    self.last_completed_prob = 0.0
    self.last_views: np.ndarray | None = None
    self.last_red_light_prob = 0.0
    self.red_light_wait = red_light_lib.WaitLimit(float(self.config["red_light_max_wait"]),
                                                  float(self.config["red_light_release"]))
    self.stuck = stuck_lib.StuckRule(float(self.config["stuck_seconds"]),
                                     float(self.config["forced_forward_seconds"]))
    self.last_stop_sign_prob = 0.0
    self.last_hazard_prob, self.hazard_brakes = 0.0, 0
    self.hazard_wait = red_light_lib.WaitLimit(float(self.config["hazard_max_wait"]),
                                               float(self.config["hazard_release"]))
    self.stop_sign_rule = stop_sign_lib.StopSignRule(float(self.config["stop_sign_release"]))

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
    self.last_red_light_prob, red = self._seen(self.red_light, cameras, "red_light_threshold")
    self.last_stop_sign_prob, in_zone = self._seen(self.stop_sign, cameras,
                                                   "stop_sign_threshold")
    self.last_hazard_prob, hazard = self._seen(self.hazard, cameras, "hazard_threshold")
    braking_for_light = self.red_light_wait.brake(red, speed, t)
    braking_for_hazard = self.hazard_wait.brake(hazard, speed, t)
    braking_for_stop_sign = self.stop_sign_rule.brake(in_zone, speed, t)
    self.red_light_brakes += int(braking_for_light)
    self.hazard_brakes += int(braking_for_hazard)
    if braking_for_light or braking_for_hazard or braking_for_stop_sign:
      control = pid_lib.Control(steer=control.steer, throttle=0.0, brake=1.0)
    holding = braking_for_light or braking_for_hazard
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
    P(completed), the light rule's P(red), the stop-sign rule's P(in a zone) and the hazard
    rule's P(hazard) (0 without their detectors), and the rules' brakes, stops and pushes so
    far."""
    asked = (-1.0 if self.last_waypoints is None
             else pid_lib.desired_speed(self.last_waypoints))
    return dict(asked_speed=round(asked, 3), p_completed=round(float(self.last_completed_prob), 3),
                p_red=round(float(self.last_red_light_prob), 3),
                p_stop_zone=round(float(self.last_stop_sign_prob), 3),
                p_hazard=round(float(self.last_hazard_prob), 3),
                hazard_brakes=int(self.hazard_brakes),
                light_brakes=int(self.red_light_brakes),
                stop_sign_brakes=int(self.stop_sign_rule.brakes),
                stop_sign_stops=int(self.stop_sign_rule.stops), pushes=int(self.stuck.pushes))

  # --- helpers ---------------------------------------------------------------------------------

  def _seen(self, detector, cameras: dict, threshold: str) -> tuple[float, bool]:
    """(the detector's probability on the cameras, above the option `threshold`); (0, False)
    without a detector."""
    if detector is None:
      return 0.0, False
    prob = detector.probability(cameras)
    return prob, prob > float(self.config[threshold])

  def _detector(self, option: str, load):
    """The detector run of agent option `option` loaded by `load` (None when unset), checked to
    have been trained on cameras of the agent's size."""
    if not self.config[option]:
      return None
    detector = load(str(self.config[option]))
    if detector.camera_size not in (None, self.camera_size):
      raise ConfigError(
          f"{option} {self.config[option]} was trained on {detector.camera_size} (W, H) "
          f"cameras but the agent's are {self.camera_size}; set camera_size or use a detector "
          f"built from the planner's camera size")
    return detector

  def _reset(self, instruction: str) -> None:
    self.state = self.planner.start(instruction)
    self.instruction = instruction
    self.notice = ""
    self.steps_since_reset = 0
    self.resets += 1
