"""Host loop: drives agents with the CARLA leaderboard interface over routes in batched worlds.

Where it sits: the batched physics and rendering (`BatchedWorlds`: jit + vmap of world.step and
render.render_views over B worlds) are separate from the per-route host bookkeeping (`Episode`:
town, route, scorer, instruction and notice streams, tick counter) and from the agents.
`run_routes(specs, make_agent, cfg)` runs a route set B routes at a time in lockstep, refilling
a slot with the next route when one ends, and returns one scoring record per route (scoring.py);
`write_results(path, results)` writes results.json. The collector (data_pipelines/collect.py)
and the evaluation runner (eval/) use these with their own callbacks.

Agent interface (CARLA leaderboard): `setup(config)`, `sensors()`, `run_step(input_data,
timestamp) -> control` (any object with steer, throttle, brake), `destroy()`. Optional:
`set_global_plan(gps_plan, world_plan)` gets the route's sparse nodes as
[({"x": north_m, "y": east_m, "z": 0}, RoadOption)] and [((x, y), RoadOption)].

`input_data` per tick (20 Hz; `frame` is the tick number), mirroring CARLA's sensors:
  "rgb_front", "rgb_left", "rgb_right", "rgb_rear" (and "rgb_focus" when the agent asks for it):
      (frame, uint8[H, W, 3]) RGB (CARLA gives BGRA; convert if you port an agent);
  "gps": (frame, f64[3]) north, east, altitude in metres (LMDrive's `gps_x, gps_y` frame);
  "speed": (frame, {"speed": m/s});
  "imu": (frame, f64[7]) accelerometer xyz, gyroscope xyz, compass (rad, 0 north, clockwise);
  "instruction": (frame, str) the current navigation instruction (maybe misleading);
  "notice": (frame, str) the current notice, "" when none;
  "privileged": (frame, dict(town, route, state, info, light_states, seed)) only for agents
      whose class sets `privileged = True` (the expert).
Cameras are rendered every `render_every` ticks (others repeat the last images; LMDrive's agent
runs at 10 Hz anyway).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from lmgendrive_jax.errors import SimulatorError
from lmgendrive_jax.sim import following, instruction_stream
from lmgendrive_jax.sim import render as render_lib
from lmgendrive_jax.sim import routes as routes_lib
from lmgendrive_jax.sim import scenario as scenario_lib
from lmgendrive_jax.sim import scoring
from lmgendrive_jax.sim import town as town_lib
from lmgendrive_jax.sim import view_shift
from lmgendrive_jax.sim import world as world_lib

CAMERA_IDS = {"rgb_front": "front", "rgb_left": "left", "rgb_right": "right", "rgb_rear": "rear",
              "rgb_focus": "focus"}
EXTRA_ACTORS = 16  # padding for scenario actors on top of the configured traffic


def rig_from_config(cfg, sensors: list[dict] | None = None) -> render_lib.CameraRig:
  """The camera rig: the config's, with size and views from the agent's camera sensors if any."""
  cam = cfg.camera
  views, width, height = tuple(cam.views), int(cam.width), int(cam.height)
  cameras = [s for s in (sensors or []) if str(s.get("type", "")).startswith("sensor.camera")]
  if cameras:
    unknown = [s["id"] for s in cameras if s["id"] not in CAMERA_IDS]
    if unknown:
      raise SimulatorError(f"agent camera ids {unknown} are not simulated; use ids among "
                           f"{sorted(CAMERA_IDS)}")
    sizes = {(int(s["width"]), int(s["height"])) for s in cameras}
    if len(sizes) > 1:
      raise SimulatorError(f"agent cameras differ in size {sorted(sizes)}; the embedded "
                           "simulator renders every view at one size: give them one width/height")
    bad_fov = {s["id"]: float(s.get("fov", render_lib.FOV_DEG)) for s in cameras
               if abs(float(s.get("fov", render_lib.FOV_DEG))
                      - render_lib.view_fov_deg(CAMERA_IDS[s["id"]])) > 1e-3}
    if bad_fov:
      expected = {i: round(render_lib.view_fov_deg(CAMERA_IDS[i]), 3) for i in bad_fov}
      raise SimulatorError(f"cameras ask for FOVs {bad_fov} (degrees); the embedded simulator "
                           f"renders these at {expected} (LMDrive's rig: 100; the telephoto focus "
                           f"camera: sim/render.py view_fov_deg)")
    width, height = sizes.pop()
    views = tuple(CAMERA_IDS[s["id"]] for s in cameras)
  return render_lib.CameraRig(views=views, width=width, height=height,
                              max_boxes=int(cam.max_boxes), draw_distance=float(cam.draw_distance))


class BatchedWorlds:
  """Pure batched physics and rendering over B worlds (pytrees with a leading batch axis).

  `step` is jit(vmap(world.step)). `render` is jit(vmap(render.render_views)) on accelerators;
  on CPU (`render_mode="auto"`) it dispatches one jitted single-world render per world instead:
  XLA:CPU runs the vmapped renderer's batched gathers about 2.5x slower than B separate calls
  (bench/sim.py), whose [H, W, K] working set also stays in cache.
  """

  def __init__(self, params: world_lib.WorldParams, rig: render_lib.CameraRig,
               render_mode: str = "auto"):
    if render_mode not in ("auto", "vmap", "loop"):
      raise SimulatorError(f"render_mode {render_mode!r}: use 'auto', 'vmap' or 'loop'")
    self.params, self.rig = params, rig
    if render_mode == "auto":
      render_mode = "loop" if jax.default_backend() == "cpu" else "vmap"
    self.render_mode = render_mode
    render_one = functools.partial(render_lib.render_views, rig=rig)
    self._step = jax.jit(jax.vmap(functools.partial(world_lib.step, params=params)))
    self._render = jax.jit(jax.vmap(render_one))
    self._render_index = jax.jit(lambda towns, states, i: render_one(
        jax.tree.map(lambda a: a[i], towns), jax.tree.map(lambda a: a[i], states)))

  def step(self, towns: dict, states: dict, controls) -> tuple[dict, dict]:
    """towns/states: batched pytrees; controls f32[B, 3] -> (states, infos), on device."""
    return self._step(towns, states, jnp.asarray(controls, jnp.float32))

  def render(self, towns: dict, states: dict) -> jax.Array:
    """uint8[B, V, H, W, 3] camera images of every world."""
    if self.render_mode == "vmap":
      return self._render(towns, states)
    batch = states["t"].shape[0]
    return jnp.stack([self._render_index(towns, states, np.int32(i)) for i in range(batch)])


@functools.lru_cache(maxsize=8)
def batched_worlds(params: world_lib.WorldParams, rig: render_lib.CameraRig) -> BatchedWorlds:
  """A shared BatchedWorlds per (physics, rig): its jit caches survive across route sets."""
  return BatchedWorlds(params, rig)


@functools.lru_cache(maxsize=32)
def _town_cached(seed: int, town_cfg_json: str) -> town_lib.Town:
  import ml_collections
  return town_lib.make_town(seed, ml_collections.ConfigDict(json.loads(town_cfg_json)))


def get_town(seed: int, cfg) -> town_lib.Town:
  """The town of a seed under the config's town settings (cached: routes share towns)."""
  return _town_cached(int(seed), json.dumps(cfg.town.to_dict(), sort_keys=True))


class Episode:
  """Host-side state of one route: town, route, scorer, instruction and notice streams."""

  def __init__(self, spec: routes_lib.RouteSpec, cfg, pad_vehicles: int, pad_pedestrians: int):
    self.spec, self.cfg = spec, cfg
    self.town = get_town(spec.town_seed, cfg)
    self.route = routes_lib.plan_route(self.town, spec)
    state, self.events = scenario_lib.make_episode(self.town, self.route, cfg)
    self.initial_state = scenario_lib.pad_state(state, pad_vehicles, pad_pedestrians)
    self.scorer = scoring.RouteScorer(self.route)
    self.following = following.JunctionFollowing(self.route, self.town)
    self.instructions = instruction_stream.InstructionStream(
        self.route, self.town, cfg.instructions, seed=spec.route_seed)
    self.notices = instruction_stream.NoticeStream(
        self.route, self.town, self.events, cfg.instructions, seed=spec.route_seed,
        enabled=spec.notices)
    self.tick = 0
    self.instruction_text = ""
    self.notice_text = ""

  @property
  def frame(self) -> int:
    """10 Hz frame number (LMDrive saves every second 20 Hz tick)."""
    return self.tick // 2

  def advance(self, state: dict, info: dict) -> None:
    """Bookkeeping after a world step: scoring, instructions, notices."""
    self.tick += 1
    self.scorer.update(float(state["t"]), state["ego_pos"], float(state["ego_yaw"]),
                       float(state["ego_speed"]), info)
    self.following.update(state["ego_pos"], self.scorer.progress_m)
    self.observe_streams(state, info)

  def result(self) -> dict:
    """The route's record: the scorer's (scoring.py) and the junction checks (following.py)."""
    return {**self.scorer.result(), **self.following.result()}

  def observe_streams(self, state: dict, info: dict) -> None:
    progress = self.scorer.progress_m
    t = float(state["t"])
    self.instruction_text = self.instructions.update(progress, t, self.frame)
    self.notice_text = self.notices.update(state["ego_pos"], progress, info["light_states"], t,
                                           self.frame)

  def input_data(self, state: dict, info: dict, images: np.ndarray | None,
                 rig: render_lib.CameraRig, privileged: bool) -> dict:
    """The agent's `input_data` for this tick (see module docstring)."""
    frame = self.tick
    x, y = (float(v) for v in state["ego_pos"])
    yaw = float(state["ego_yaw"])
    compass = (yaw + math.pi / 2) % (2 * math.pi)
    data = {
        "gps": (frame, np.array([-y, x, 0.0])),
        "speed": (frame, {"speed": float(state["ego_speed"])}),
        "imu": (frame, np.array([0.0, 0.0, 9.81, 0.0, 0.0, 0.0, compass])),
        "instruction": (frame, self.instruction_text),
        "notice": (frame, self.notice_text),
    }
    if images is not None:
      for sensor_id, view in CAMERA_IDS.items():
        if view in rig.views:
          data[sensor_id] = (frame, images[rig.views.index(view)])
    if privileged:
      data["privileged"] = (frame, dict(town=self.town, route=self.route, state=state, info=info,
                                        light_states=np.asarray(info["light_states"]),
                                        seed=self.spec.route_seed, episode=self))
    return data

  def global_plan(self) -> tuple[list, list]:
    gps = [({"x": float(-p[1]), "y": float(p[0]), "z": 0.0}, int(o))
           for p, o in zip(self.route.nodes, self.route.node_option)]
    world = [((float(p[0]), float(p[1])), int(o))
             for p, o in zip(self.route.nodes, self.route.node_option)]
    return gps, world


def _take(tree, i):
  return jax.tree.map(lambda a: a[i], tree)


def _put(tree, i, value):
  return jax.tree.map(lambda a, b: a.at[i].set(jnp.asarray(b, a.dtype)), tree, value)


def _control_array(control) -> np.ndarray:
  try:
    return np.array([float(control.steer), float(control.throttle), float(control.brake)],
                    np.float32)
  except AttributeError as e:
    raise SimulatorError(f"agent.run_step returned {control!r}; it must return an object with "
                         "steer, throttle and brake (e.g. lmgendrive_jax.sim.pid.Control)") from e


def run_routes(specs: list[routes_lib.RouteSpec], make_agent: Callable[[], Any], cfg,
               batch_size: int | None = None, agent_config: Any = None, render_every: int = 1,
               on_tick: Callable | None = None, on_end: Callable | None = None,
               progress: Any = None, max_ticks: int | None = None,
               view_offset: Callable | None = None) -> list[dict]:
  """Drives `make_agent()` agents over `specs`, `batch_size` worlds in lockstep.

  make_agent() is called once per route (then `setup(agent_config)`, optional
  `set_global_plan`, `run_step` per tick, `destroy()` at the route's end), like the leaderboard;
  a factory may share one loaded model between its agents.

  render_every: render cameras every this many ticks (0: never, e.g. the expert alone).
  on_tick(episode, state, info, images, control, agent): after each agent step (collection).
  on_end(episode, result): when a route ends. progress: a tqdm-like bar (update(1) per route).
  max_ticks: stop a route after this many ticks ("timeout" is still the spec's rule; this is a
  hard safety cap).
  view_offset(episode, state) -> (right_m, yaw_rad): on rendered ticks, render that world's
  cameras from a pose beside the car's (view_shift.py: collection's recovery views); the agents
  see those images, the physics and the scorer the car's own pose.
  Returns the scoring records in the order of `specs`.
  """
  if not specs:
    return []
  batch_size = int(batch_size or cfg.batch_size)
  probe = make_agent()  # drives the first route too (a model agent may be costly to build)
  probe.setup(agent_config)
  sensors = probe.sensors() or []
  rig = rig_from_config(cfg, sensors)
  worlds = batched_worlds(world_lib.WorldParams.from_config(cfg.world), rig)
  shapes = town_lib.max_shapes(get_town(s.town_seed, cfg) for s in specs)
  pad_v = int(cfg.traffic.num_vehicles) + EXTRA_ACTORS
  pad_p = int(cfg.traffic.num_pedestrians) + EXTRA_ACTORS

  queue = list(enumerate(specs))
  results: list[dict | None] = [None] * len(specs)
  slots: list[dict | None] = []
  town_list, state_list = [], []
  for _ in range(min(batch_size, len(specs))):
    index, spec = queue.pop(0)
    episode = Episode(spec, cfg, pad_v, pad_p)
    slots.append(_start_agent(make_agent, agent_config, episode, index, probe))
    probe = None
    town_list.append(episode.town.arrays(shapes))
    state_list.append(episode.initial_state)
  towns = jax.tree.map(jnp.asarray, world_lib.stack(town_list))
  states = jax.tree.map(jnp.asarray, world_lib.stack(state_list))
  images_np = None
  controls = np.zeros((len(slots), 3), np.float32)
  infos_np = None  # the first observation (t = 0) has no events
  tick = 0
  period = max(int(render_every), 1)
  while any(slot is not None for slot in slots) or queue:
    # Routes start on rendered ticks, so every episode's even ticks have fresh images.
    if queue and tick % period == 0:
      for b in range(len(slots)):
        if slots[b] is None and queue:
          index, spec = queue.pop(0)
          episode = Episode(spec, cfg, pad_v, pad_p)
          slots[b] = _start_agent(make_agent, agent_config, episode, index)
          arrays = episode.town.arrays(shapes)
          towns = _put(towns, b, arrays)
          states = _put(states, b, episode.initial_state)
          if infos_np is not None:
            infos_np = _reset_info(infos_np, b)
            infos_np["light_states"][b] = np.asarray(world_lib.light_states(
                jax.tree.map(jnp.asarray, arrays), jnp.float32(0.0)))
    states_np = jax.device_get(states)
    if infos_np is None:
      lights = jax.device_get(jax.vmap(world_lib.light_states)(towns, states["t"]))
      infos_np = _empty_infos(len(slots), lights)
    if render_every and tick % render_every == 0:
      render_states = states
      if view_offset is not None:
        render_states = _shifted_views(states, states_np, [
            (0.0, 0.0) if slot is None else view_offset(slot["episode"], _take(states_np, b))
            for b, slot in enumerate(slots)])
      images_np = np.asarray(worlds.render(towns, render_states))
    for b, slot in enumerate(slots):
      if slot is None:
        controls[b] = (0.0, 0.0, 1.0)
        continue
      episode, agent = slot["episode"], slot["agent"]
      state_b, info_b = _take(states_np, b), _take(infos_np, b)
      if episode.tick == 0:
        episode.observe_streams(state_b, info_b)
      data = episode.input_data(state_b, info_b, None if images_np is None else images_np[b], rig,
                                getattr(agent, "privileged", False))
      control = agent.run_step(data, float(state_b["t"]))
      controls[b] = _control_array(control)
      if on_tick is not None:
        on_tick(episode, state_b, info_b, None if images_np is None else images_np[b],
                controls[b].copy(), agent)
    states, infos = worlds.step(towns, states, controls)
    tick += 1
    states_np = jax.device_get(states)
    infos_np = jax.device_get(infos)
    for b, slot in enumerate(slots):
      if slot is None:
        continue
      episode = slot["episode"]
      episode.advance(_take(states_np, b), _take(infos_np, b))
      if episode.scorer.done or (max_ticks is not None and episode.tick >= max_ticks):
        result = episode.result()
        results[slot["index"]] = result
        slot["agent"].destroy()
        if on_end is not None:
          on_end(episode, result)
        if progress is not None:
          progress.update(1)
        slots[b] = None
  return results


def _shifted_views(states: dict, states_np: dict, offsets: list[tuple[float, float]]) -> dict:
  """`states` with each world's ego pose moved by its (right_m, yaw_rad) offset (for rendering)."""
  if not any(right or yaw for right, yaw in offsets):
    return states
  pos = np.array(states_np["ego_pos"], np.float64)
  yaw = np.array(states_np["ego_yaw"], np.float64)
  for b, (right_m, yaw_rad) in enumerate(offsets):
    pos[b], yaw[b] = view_shift.shifted_pose(pos[b], yaw[b], right_m, yaw_rad)
  return dict(states, ego_pos=jnp.asarray(pos, states["ego_pos"].dtype),
              ego_yaw=jnp.asarray(yaw, states["ego_yaw"].dtype))


def _reset_info(infos: dict, b: int) -> dict:
  infos = jax.tree.map(np.copy, infos)
  for key in infos:
    if key != "light_states":
      infos[key][b] = 4 if key == "drive_dir" else -1
  return infos


def _empty_infos(batch: int, lights: np.ndarray) -> dict:
  none = np.full((batch,), -1, np.int32)
  return dict(collision_vehicle=none.copy(), collision_pedestrian=none.copy(),
              collision_static=none.copy(), red_light=none.copy(),
              stop_sign_crossed=none.copy(), stop_zone=none.copy(),
              drive_dir=np.full((batch,), 4, np.int32), light_states=np.asarray(lights))


def _start_agent(make_agent, agent_config, episode: Episode, index: int, agent=None) -> dict:
  """A new agent per route (as the leaderboard does), or `agent` when already set up."""
  if agent is None:
    agent = make_agent()
    agent.setup(agent_config)
  if hasattr(agent, "set_global_plan"):
    agent.set_global_plan(*episode.global_plan())
  return {"episode": episode, "agent": agent, "index": index}


def write_results(path: str, results: list[dict], extra: dict | None = None) -> dict:
  """Writes `{"routes": [...], "mean_ds", "mean_rc", "mean_is", ...}` to `path`; returns it."""
  summary = scoring.aggregate(results)
  if extra:
    summary.update(extra)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    json.dump(summary, f, indent=2)
  return summary
