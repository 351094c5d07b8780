"""Command: drive the expert over route sets in the embedded simulator and write the LMDrive
on-disk format (specs/lmdrive_format.md, raw layout).

  python -m data_pipelines.collect --config=configs/collect.py:preset=tiny --config.out_dir=DIR

Where it sits: simulator (`lmgendrive_jax.sim.host.run_routes`, many worlds in lockstep) ->
this writer -> `data_pipelines/build_tfds.py` (the TFDS builder reads the folders written here
exactly as it reads LMDrive's CARLA data).

Per route folder `routes_town{TT}_{track}_w{WW}_{id}` (`id`: the route seed, a stable stand-in for
LMDrive's timestamp so that a rerun finds finished routes), frames at 10 Hz (every second 20 Hz
tick), numbered %04d: `rgb_front|rgb_left|rgb_right|rgb_rear/NNNN.jpg` (+ `rgb_focus/` with the
telephoto focus camera in `sim.camera.views`; not LMDrive's), `measurements/NNNN.json`
(every LMDrive key), `actors_data/NNNN.json`, `topdown/NNNN.png` (the ego-centred road map of
`lmgendrive_jax/data/topdown.py`: stage 1's road-layout target); plus `route_meta.json`
(instruction clips, notices, score) and the `done` marker written last. At the root, rebuilt
from the finished routes after each route: `dataset_index.txt`,
`navigation_instruction_list.txt`, `notice_instruction_list.json`, `misleading_data.txt`.

Resumable: routes with a `done` marker are skipped; a folder without one (an interrupted route) is
deleted and driven again.

On-policy collection (DAgger): with `learner.work_dir` set (a trained stage-2/3 run), that model
drives and the expert takes over where it goes wrong (`lmgendrive_jax/agent/takeover.py`); the
measurements flag the learner's frames (`learner_control`), `route_meta.json` has the route's
`takeover` summary (takeovers by trigger, ticks each drove), and the TFDS reader keeps only the
expert's futures as waypoint targets. Use route seeds the evaluation does not (it uses 1-5).

Recovery views (`view_shift.gap_m` > 0, lmgendrive_jax/sim/view_shift.py): during shift episodes
the cameras and the road map are rendered from a pose beside the car's, which the frame's
measurement records as `view_pose`; the TFDS reader computes that frame's labels from it.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import shutil
import sys

import numpy as np
from absl import app, flags
from ml_collections import config_flags
from PIL import Image

from lmgendrive_jax.sim import render as render_lib
from lmgendrive_jax.sim import road_map as road_map_lib
from lmgendrive_jax.sim import routes as routes_lib
from lmgendrive_jax.sim import view_shift as view_shift_lib

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/collect.py:preset=...")

VIEWS = ("front", "left", "right", "rear")
DONE = "done"
META = "route_meta.json"
LIGHT_ACTOR_BASE = 3000  # actors_data ids: vehicles 1000 + i, walkers 2000 + i, lights 3000 + i


def route_dir_name(spec: routes_lib.RouteSpec) -> str:
  return f"routes_town{spec.town_id:02d}_{spec.track}_w{spec.weather_id:02d}_{spec.route_seed:06d}"


def _gps(p) -> list[float]:
  """CARLA-frame (x east, y south) -> LMDrive GPS frame (north, east)."""
  return [float(-p[1]), float(p[0])]


def measurement(episode, state: dict, control: np.ndarray, labels: dict,
                info: dict | None = None, view_pose: tuple | None = None) -> dict:
  """Every LMDrive measurement key for the tick (specs/lmdrive_format.md), plus our own:
  `stop_sign_zone` (the simulator's `info`, when given: the ego is in a stop sign's waiting
  zone, up to 6 m before its line: where the scorer wants it to stand), `light_stop_distance`
  (the expert's: metres from the front bumper to the stop line of `affected_light_id`, None
  without one) and, on a recovery view
  (`view_pose`: CARLA-frame (pos, yaw) the cameras were rendered from, sim/view_shift.py),
  `view_pose` as {gps_x, gps_y, x, y, theta}: the TFDS reader computes the frame's labels in that
  frame. The other keys stay the car's."""
  route = episode.route
  pos = np.asarray(state["ego_pos"], np.float64)
  progress = float(labels.get("progress", episode.scorer.progress_m))
  near = route.next_node(progress, 4.0)
  far = route.next_node(progress, 20.0)
  idx = int(np.clip(np.searchsorted(route.s, progress), 0, len(route.s) - 1))
  future = [_gps(route.point_at(min(progress + d, route.length))) for d in range(2, 22, 2)]
  weather = render_lib.WEATHERS[episode.spec.weather_id % len(render_lib.WEATHERS)]
  return {
      **pose_keys(pos, float(state["ego_yaw"])),
      "speed": float(state["ego_speed"]), "target_speed": float(labels.get("target_speed", 0.0)),
      "x_command": _gps(route.nodes[near])[0], "y_command": _gps(route.nodes[near])[1],
      "command": int(route.node_option[near]), "gt_command": int(route.option[idx]),
      "steer": float(control[0]), "throttle": float(control[1]), "brake": float(control[2]),
      # The steering noise added to the expert's on this tick (0: clean); the TFDS reader masks
      # out the waypoints that lie after it (lmdrive_tfds/reader.py: frame_labels).
      "steer_noise": float(labels.get("steer_noise", 0.0)),
      # On-policy collection: the learner, not the expert, drove this tick (masked like noise).
      "learner_control": bool(labels.get("learner_control", False)),
      "weather": weather.name, "weather_id": int(episode.spec.weather_id),
      "near_node_x": _gps(route.nodes[near])[0], "near_node_y": _gps(route.nodes[near])[1],
      "far_node_x": _gps(route.nodes[far])[0], "far_node_y": _gps(route.nodes[far])[1],
      "is_junction": bool(labels.get("is_junction", False)),
      "is_vehicle_present": list(labels.get("is_vehicle_present", [])),
      "is_bike_present": list(labels.get("is_bike_present", [])),
      "is_lane_vehicle_present": list(labels.get("is_lane_vehicle_present", [])),
      "is_junction_vehicle_present": list(labels.get("is_junction_vehicle_present", [])),
      "is_pedestrian_present": list(labels.get("is_pedestrian_present", [])),
      "is_red_light_present": list(labels.get("is_red_light_present", [])),
      "is_stop_sign_present": list(labels.get("is_stop_sign_present", [])),
      "should_slow": int(labels.get("should_slow", 0)),
      "should_brake": int(labels.get("should_brake", 0)),
      "future_waypoints": future,
      # The light's actors_data id (LMDrive: the CARLA actor id), not the town's light index.
      "affected_light_id": light_actor_id(int(labels.get("affected_light_id", -1))),
      # Metres from the front bumper to that light's stop line (None: the route's next stop line
      # within 40 m has no light); the TFDS reader's `red_light_zone` reads it.
      "light_stop_distance": _optional_float(labels.get("light_stop_distance")),
      **({} if info is None else {"stop_sign_zone": bool(int(info["stop_zone"]) >= 0)}),
      **({} if view_pose is None else {"view_pose": pose_keys(*view_pose)}),
  }


def _optional_float(value) -> float | None:
  return None if value is None else float(value)


def pose_keys(pos, yaw: float) -> dict:
  """A CARLA-frame pose as LMDrive's measurement keys (gps_x, gps_y, x, y, theta)."""
  gps = _gps(pos)
  return {"gps_x": gps[0], "gps_y": gps[1], "x": float(pos[0]), "y": float(pos[1]),
          "theta": float((float(yaw) + math.pi / 2) % (2 * math.pi))}


def light_actor_id(light: int) -> int:
  """The town's light index -> its actors_data id (-1 stays -1: no light)."""
  return LIGHT_ACTOR_BASE + light if light >= 0 else -1


def actors_data(episode, state: dict, light_states, radius: float) -> dict:
  """`{actor_id: {loc, ori, box, vel, tpe, (sta)}}` of actors within `radius` m (ego excluded).
  ids: vehicles 1000 + i, walkers 2000 + i, traffic lights `light_actor_id(i)`."""
  from lmgendrive_jax.sim import expert as expert_lib
  town = episode.town
  ego = np.asarray(state["ego_pos"], np.float64)
  out = {}
  npc_pos, npc_yaw = expert_lib.lane_pose_np(town, np.asarray(state["npc_lane"]),
                                             np.asarray(state["npc_s"]))
  for i in np.nonzero(np.asarray(state["npc_active"]))[0]:
    if np.linalg.norm(npc_pos[i] - ego) > radius:
      continue
    c, s = math.cos(npc_yaw[i]), math.sin(npc_yaw[i])
    v = float(state["npc_speed"][i])
    hl, hw = (float(x) for x in state["npc_half"][i])
    out[str(1000 + int(i))] = {"loc": [float(npc_pos[i][0]), float(npc_pos[i][1]), 0.75],
                               "ori": [c, s, 0.0], "box": [hl, hw, 0.75],
                               "vel": [v * c, v * s, 0.0], "tpe": 0}
  ped_pos, ped_yaw = expert_lib.world_lib_ped_poses(state)
  ped_dir = expert_lib._ped_dirs(state)  # noqa: SLF001  (same module family)
  for i in np.nonzero(np.asarray(state["ped_active"]))[0]:
    if np.linalg.norm(ped_pos[i] - ego) > radius:
      continue
    moving = float(state["ped_speed"][i]) * float(bool(state["ped_started"][i]))
    c, s = math.cos(ped_yaw[i]), math.sin(ped_yaw[i])
    out[str(2000 + int(i))] = {"loc": [float(ped_pos[i][0]), float(ped_pos[i][1]), 0.9],
                               "ori": [c, s, 0.0], "box": [0.25, 0.25, 0.9],
                               "vel": [float(ped_dir[i][0] * moving), float(ped_dir[i][1] * moving),
                                       0.0], "tpe": 1}
  for i, pos in enumerate(town.light_pos):
    if np.linalg.norm(pos[:2] - ego) > radius:
      continue
    d = town.stop_line_dir[town.light_stop_line[i]]
    out[str(light_actor_id(i))] = {
        "loc": [float(p) for p in pos], "ori": [float(-d[0]), float(-d[1]), 0.0],
        "box": [0.25, 0.3, 0.65], "vel": [0.0, 0.0, 0.0], "tpe": 2, "sta": int(light_states[i])}
  return out


def _write_json(path: str, data) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(data, f)
  os.replace(tmp, path)


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(np.asarray(image)).save(buffer, format="JPEG", quality=quality)
  return buffer.getvalue()


def topdown_png(episode, state: dict) -> bytes:
  """The ego-centred road map of the tick (`data/topdown.py` format) as PNG bytes."""
  buffer = io.BytesIO()
  Image.fromarray(road_map_lib.episode_road_map(episode, state), mode="L").save(buffer,
                                                                              format="PNG")
  return buffer.getvalue()


def shift_config(config) -> view_shift_lib.ViewShiftConfig:
  """The collection's recovery views (`config.view_shift`; off without one)."""
  shift = None if config is None else config.get("view_shift")
  return (view_shift_lib.ViewShiftConfig() if shift is None
          else view_shift_lib.ViewShiftConfig.from_config(shift))


@dataclasses.dataclass
class OpenRoute:
  """A route folder being written: the frames written so far, and the agent driving it (for
  on_end's takeover summary)."""
  frames: int
  agent: object


class Collector:
  """host.run_routes callbacks that write each route folder; `write_index` rebuilds the root."""

  def __init__(self, out_dir: str, config, views: tuple[str, ...]):
    self.out_dir, self.config, self.views = out_dir, config, views
    self.open: dict[int, OpenRoute] = {}  # by id(episode)
    self.shift_config = shift_config(config)
    self.shifts: dict[int, view_shift_lib.ViewShift] = {}  # by id(episode)
    self.offsets: dict[int, tuple[float, float]] = {}  # by id(episode): of the last render

  def view_offset(self, episode, state) -> tuple[float, float]:
    """host.run_routes' `view_offset`: the route's recovery-view offset (right_m, yaw_rad) at the
    car's route progress (sim/view_shift.py), kept for the tick's on_tick."""
    del state
    key = id(episode)
    if key not in self.shifts:
      self.shifts[key] = view_shift_lib.ViewShift(
          self.shift_config, seed=[episode.spec.route_seed, int(self.config.seed), 23])
    self.offsets[key] = self.shifts[key].offset(episode.scorer.progress_m)
    return self.offsets[key]

  def _written_views(self) -> tuple[str, ...]:
    """LMDrive's four cameras, plus `rgb_focus` when the rig renders the telephoto focus camera
    (`sim/render.py`; add "focus" to `sim.camera.views`): its traffic lights are visible where
    the 64x64 front camera shows them as a pixel or two."""
    return VIEWS + (("focus",) if "focus" in self.views else ())

  def _dir(self, episode) -> str:
    return os.path.join(self.out_dir, route_dir_name(episode.spec))

  def on_tick(self, episode, state, info, images, control, agent) -> None:
    if episode.tick % 2 or images is None:
      return
    route_dir = self._dir(episode)
    key = id(episode)
    if key not in self.open:
      if os.path.exists(route_dir):
        shutil.rmtree(route_dir)
      for folder in [f"rgb_{v}" for v in self._written_views()] + ["measurements",
                                                                     "actors_data", "topdown"]:
        os.makedirs(os.path.join(route_dir, folder))
      self.open[key] = OpenRoute(frames=0, agent=agent)
    frame = episode.tick // 2
    name = f"{frame:04d}"
    for view in self._written_views():
      with open(os.path.join(route_dir, f"rgb_{view}", name + ".jpg"), "wb") as f:
        f.write(encode_jpeg(images[self.views.index(view)], int(self.config.jpeg_quality)))
    right_m, yaw_rad = self.offsets.get(key, (0.0, 0.0))
    view_pose = None
    if right_m or yaw_rad:
      view_pose = view_shift_lib.shifted_pose(state["ego_pos"], float(state["ego_yaw"]), right_m,
                                              yaw_rad)
    with open(os.path.join(route_dir, "topdown", name + ".png"), "wb") as f:
      f.write(topdown_png(episode, state if view_pose is None else dict(
          state, ego_pos=view_pose[0], ego_yaw=view_pose[1])))
    labels = getattr(agent, "last_labels", {}) or {}
    _write_json(os.path.join(route_dir, "measurements", name + ".json"),
                measurement(episode, state, control, labels, info, view_pose))
    _write_json(os.path.join(route_dir, "actors_data", name + ".json"),
                actors_data(episode, state, info["light_states"], float(self.config.actor_radius)))
    self.open[key].frames = frame + 1

  def on_end(self, episode, result) -> None:
    self.shifts.pop(id(episode), None)
    self.offsets.pop(id(episode), None)
    route = self.open.pop(id(episode), OpenRoute(frames=0, agent=None))
    n_frames, agent = route.frames, route.agent
    route_dir = self._dir(episode)
    if n_frames == 0:
      return
    last = n_frames - 1
    clips = []
    bad_times = [i["time"] for i in result["infractions"] if "time" in i and i["type"] != (
        "outside_route_lanes")]
    for clip in episode.instructions.finish():
      start, end = min(clip["start_frame"], last), min(clip["end_frame"], last)
      bad = any(start <= int(t * 10) <= end for t in bad_times)
      clips.append(dict(clip, start_frame=start, end_frame=max(start, end), bad_case=bad))
    notices = [dict(n, frame_id=min(n["frame_id"], last)) for n in episode.notices.notices]
    _write_json(os.path.join(route_dir, META), dict(
        route=route_dir_name(episode.spec), n_frames=n_frames, town_id=episode.spec.town_id,
        weather_id=episode.spec.weather_id, clips=clips, notices=notices, result=result,
        # On-policy routes (agent/takeover.py): takeovers by trigger, ticks each driver drove.
        **({"takeover": agent.summary()} if hasattr(agent, "summary") else {})))
    with open(os.path.join(route_dir, DONE), "w") as f:
      f.write("ok\n")
    write_index(self.out_dir)


def finished_routes(out_dir: str) -> list[str]:
  if not os.path.isdir(out_dir):
    return []
  return sorted(d for d in os.listdir(out_dir)
                if os.path.exists(os.path.join(out_dir, d, DONE)))


def write_index(out_dir: str) -> None:
  """Rebuilds the root files from the finished routes (deterministic order: by folder name)."""
  index, navigation, misleading, notices = [], [], [], {}
  for route in finished_routes(out_dir):
    with open(os.path.join(out_dir, route, META)) as f:
      meta = json.load(f)
    index.append(f"{route} {meta['n_frames']}")
    for clip in meta["clips"]:
      line = json.dumps({
          "start_frame": clip["start_frame"], "end_frame": clip["end_frame"],
          "instruction": clip["instruction"], "instruction_id": clip["instruction_id"],
          "instruction_args": clip["instruction_args"], "town_id": meta["town_id"],
          "weather_id": meta["weather_id"], "route_path": route, "route_frames": meta["n_frames"],
          "bad_case": bool(clip["bad_case"])})
      (misleading if clip["misleading"] else navigation).append(line)
    if meta["notices"]:
      notices[route] = [{"frame_id": n["frame_id"], "instruction_id": n["instruction_id"],
                         "instruction_args": n["instruction_args"]} for n in meta["notices"]]
  for name, lines in (("dataset_index.txt", index), ("navigation_instruction_list.txt", navigation),
                      ("misleading_data.txt", misleading)):
    tmp = os.path.join(out_dir, name + ".tmp")
    with open(tmp, "w") as f:
      f.write("".join(line + "\n" for line in lines))
    os.replace(tmp, os.path.join(out_dir, name))
  _write_json(os.path.join(out_dir, "notice_instruction_list.json"), notices)


def agent_factory(config, expert_cfg):
  """(make_agent, agent_config): the expert, or with `config.learner.work_dir` the learner driving
  under the expert's takeover (the learner's options: `config.learner.agent`)."""
  from lmgendrive_jax.sim import expert
  learner = config.get("learner")
  if learner is None or not learner.work_dir:
    return (lambda: expert.ExpertAgent(expert_cfg)), None
  from lmgendrive_jax.agent import lmgendrive_agent, takeover

  def make_agent():
    rule = takeover.TakeoverRule(learner.offset_m, learner.stand_seconds, learner.hold_seconds)
    return takeover.TakeoverAgent(lmgendrive_agent.LMGenDriveAgent(),
                                  expert.ExpertAgent(expert_cfg), rule, extra_views=VIEWS)
  return make_agent, dict(learner.agent.to_dict(), work_dir=learner.work_dir)


def _probe_sensors(make_agent, agent_config) -> list[dict]:
  """The cameras a learner asks for (its size and views, plus LMDrive's four); none for the
  expert, which writes the config's rig. The learner's model loads once per run
  (agent/planner.py: planner_for_run), so this probe's load is the one the routes share."""
  if agent_config is None:
    return []
  agent = make_agent()
  agent.setup(agent_config)
  return agent.sensors()


def collect(config, collector=None) -> list[dict]:
  """Drives the expert (or `config.learner` under the expert's takeover) over
  `config.route_sets`; returns the scores of the routes driven now.
  `collector(out_dir, config, views)` builds the writer (default `Collector`)."""
  from tqdm import tqdm

  from lmgendrive_jax.sim import host
  sim = config.sim
  specs = [spec for name in config.route_sets for spec in routes_lib.route_set(name, config.seed)]
  if config.max_routes >= 0:
    specs = specs[:config.max_routes]
  os.makedirs(config.out_dir, exist_ok=True)
  done = set(finished_routes(config.out_dir))
  todo = [s for s in specs if route_dir_name(s) not in done]
  expert_cfg = sim.expert.copy_and_resolve_references()
  with expert_cfg.unlocked():
    expert_cfg.noise_prob = float(config.expert_noise)
  if shift_config(config).enabled and config.get("learner") and config.learner.work_dir:
    from lmgendrive_jax.errors import ConfigError
    raise ConfigError("view_shift.gap_m > 0 with learner.work_dir: the learner would drive from "
                      "the shifted cameras; collect recovery views with the expert alone")
  make_agent, agent_config = agent_factory(config, expert_cfg)
  rig = host.rig_from_config(sim, _probe_sensors(make_agent, agent_config))
  collector = (collector or Collector)(config.out_dir, config, rig.views)
  missing = [v for v in VIEWS if v not in rig.views]
  if missing:
    from lmgendrive_jax.errors import ConfigError
    raise ConfigError(f"sim.camera.views {tuple(rig.views)} lacks {missing}; the LMDrive format "
                      "needs front, left, right and rear")
  with tqdm(total=len(specs), initial=len(specs) - len(todo), desc="collect", unit="route") as bar:
    results = host.run_routes(todo, make_agent, sim, agent_config=agent_config,
                              batch_size=int(config.batch_size), render_every=2,
                              on_tick=collector.on_tick, on_end=collector.on_end, progress=bar,
                              view_offset=(collector.view_offset
                                           if collector.shift_config.enabled else None))
  write_index(config.out_dir)
  return results


def main(argv) -> None:
  del argv
  config = _CONFIG.value
  if config is None:
    raise app.UsageError("--config=configs/collect.py:preset=... is required")
  results = collect(config)
  if results:
    mean_ds = sum(r["ds"] for r in results) / len(results)
    print(f"collected {len(results)} routes into {config.out_dir} (expert mean DS {mean_ds:.1f})")
  else:
    print(f"nothing to do: every route is already in {config.out_dir}")


if __name__ == "__main__":
  app.run(main, argv=sys.argv)
