"""Closed-loop evaluation: an agent over a named route set of the embedded simulator -> results.json.

Where it sits: `launch/eval.py --config=configs/eval.py:...` -> `evaluate(config)` ->
`sim/host.py: run_routes` (batched worlds in lockstep) with our agent (agent/lmgendrive_agent.py,
a trained run), the expert (sim/expert.py) or a baseline (agent/baselines.py) -> `OUT/results.json`
(read by eval/report.py and bench/drive_quality.py).

`OUT/results.json` is rewritten after every finished route, atomically (tmp file + rename), so a
killed evaluation leaves a valid file; rerunning the same command reads it back, skips the
finished routes and drives the rest (an out dir holding a different evaluation is an error).
Its layout (what report.py reads):
  {"agent", "route_set", "seed", "preset", "work_dir", "agent_options" (ours: its options away
   from the defaults), "total_routes", "complete", "mean_ds", "mean_rc", "mean_is",
   "num_routes", "wall_seconds",
   "routes": [{"route_id", "town", "ds", "rc", "is", "infractions", "ending", "route_xy",
               "trajectory_xy", "first_exit" (eval/route_exit.py: where the car first left
               its route, null if never), + the scorer's fields (sim/scoring.py),
               "trace" (with `config.trace`: [{"t", "speed", "throttle", "steer", "brake",
               + the agent's `trace_fields()`}, ...] at the trajectory's points)}, ...]}
  (in set order)
Beside it, `town_map_<town>.json` per town (`{"lanes": [[[x, y], ...], ...]}`: lane centre
lines for the maps), and `town_map.json` when the set uses one town.
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Any, Callable

import numpy as np

from lmgendrive_jax.errors import ConfigError
from lmgendrive_jax.eval import route_exit
from lmgendrive_jax.sim import host, routes as routes_lib, scoring
from lmgendrive_jax.sim import world as world_lib

# Our model's agents (they read `agent.work_dir` and our agent's options).
MODEL_KINDS = ("lmgendrive", "blank_instruction", "hazard_oracle")
AGENT_KINDS = MODEL_KINDS + ("expert", "lane_keeping")
TIMING_KEYS = ("wall_seconds",)
RESULTS = "results.json"


def agent_factory(config) -> tuple[Callable[[], Any], Any, int]:
  """(make_agent, agent_config for setup, render_every) of `config.agent.kind`."""
  kind = config.agent.kind
  if kind == "expert":
    from lmgendrive_jax.sim.expert import ExpertAgent
    return (lambda: ExpertAgent(config.sim.expert)), config.sim.expert, 0
  if kind == "lane_keeping":
    from lmgendrive_jax.agent.baselines import LaneKeepingAgent
    policy = config.agent.junction_policy
    return (lambda: LaneKeepingAgent(config.sim.expert, policy)), config.sim.expert, 0
  if kind in MODEL_KINDS:
    from lmgendrive_jax.agent import baselines, lmgendrive_agent
    if not config.agent.work_dir:
      raise ConfigError(f"agent.kind={kind!r} needs --config.agent.work_dir=<trained stage-2/3 "
                        "run dir>")
    options = {k: config.agent[k] for k in lmgendrive_agent.AGENT_DEFAULTS if k in config.agent}
    cls = {"blank_instruction": baselines.BlankInstructionAgent,
           "hazard_oracle": functools.partial(baselines.HazardOracleAgent, config.sim.expert),
           }.get(kind, lmgendrive_agent.LMGenDriveAgent)
    # Cameras only on the ticks the model runs (the agent repeats its control in between).
    return cls, options, max(int(config.agent.model_every), 1)
  raise ConfigError(f"agent.kind={kind!r}: choose one of {AGENT_KINDS}")


def out_dir(config) -> str:
  """config.out_dir, else <work_dir>/eval/<route_set>_<kind> (ours) or
  work_dirs/eval/<kind>_<route_set>."""
  if config.out_dir:
    return config.out_dir
  if config.agent.kind in MODEL_KINDS and config.agent.work_dir:
    return os.path.join(config.agent.work_dir, "eval", f"{config.route_set}_{config.agent.kind}")
  return os.path.join("work_dirs", "eval", f"{config.agent.kind}_{config.route_set}")


def identity(config) -> dict:
  """What an out dir's results must match to be resumed (for our agent also its options, so that
  a rerun with, say, another `max_frames` does not mix its routes with the earlier ones'). Only
  options set away from their defaults count (`agent_options`), so that results stay resumable
  when the agent gains an option."""
  found = dict(agent=config.agent.kind, route_set=config.route_set, seed=int(config.seed),
               preset=config.preset,
               work_dir=os.path.abspath(config.agent.work_dir) if config.agent.work_dir else "")
  if config.agent.kind in MODEL_KINDS:
    found["agent_options"] = agent_options({k: config.agent[k] for k in config.agent})
  return found


def agent_options(options: dict) -> dict:
  """Our agent's options (but work_dir) that differ from `AGENT_DEFAULTS`, as JSON reads them."""
  from lmgendrive_jax.agent.lmgendrive_agent import AGENT_DEFAULTS
  as_json = lambda value: json.loads(json.dumps(value))  # noqa: E731 (tuples -> lists)
  return {k: as_json(v) for k, v in options.items()
          if k in AGENT_DEFAULTS and k != "work_dir" and as_json(v) != as_json(AGENT_DEFAULTS[k])}


def read_finished(path: str, expected: dict) -> dict[str, dict]:
  """{route_id: record} of an earlier run of the same evaluation ({} when there is none)."""
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    try:
      previous = json.load(f)
    except json.JSONDecodeError as e:
      raise ConfigError(f"{path} is not valid JSON ({e}); delete it to start over") from e
  found = {k: previous.get(k) for k in expected}
  if isinstance(found.get("agent_options"), dict):
    # Written before only non-default options were recorded: the same options, spelt in full.
    found["agent_options"] = agent_options(found["agent_options"])
  if found != expected:
    raise ConfigError(f"{path} holds another evaluation {found}, not {expected}; use another "
                      "--config.out_dir or delete it")
  return {r["route_id"]: r for r in previous.get("routes", [])}


def write_json_atomic(path: str, data: dict) -> None:
  tmp = f"{path}.tmp.{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(data, f, indent=1)
  os.replace(tmp, path)


def polyline(points, step: int) -> list[list[float]]:
  pts = np.asarray(points, np.float64)
  if len(pts) > 1:
    pts = np.concatenate([pts[::step], pts[-1:]]) if (len(pts) - 1) % step else pts[::step]
  return [[round(float(x), 2), round(float(y), 2)] for x, y in pts]


def write_town_map(folder: str, town, name: str) -> None:
  path = os.path.join(folder, name)
  if not os.path.exists(path):
    write_json_atomic(path, {"lanes": [polyline(lane, 1) for lane in town.lane_points]})


class _Recorder:
  """Per-route trajectories and traces (on_tick) and the results file (on_end, after each
  route)."""

  def __init__(self, path: str, specs, finished: dict, header: dict, trajectory_every: int,
               after_write: Callable[[dict], None] | None, trace: bool = False):
    self.path, self.specs, self.finished, self.header = path, specs, finished, header
    self.every = max(int(trajectory_every), 1)
    self.after_write = after_write
    self.trace = trace
    self.trajectories: dict[str, list] = {}
    self.traces: dict[str, list] = {}
    self.started = time.time()
    self.single_town = len({s.town_seed for s in specs}) == 1

  def on_tick(self, episode, state, info, images, control, agent) -> None:
    del info, images
    if episode.tick % self.every:
      return
    self.trajectories.setdefault(episode.spec.name, []).append(np.asarray(state["ego_pos"]))
    if self.trace:
      steer, throttle, brake = (round(float(v), 3) for v in control)
      point = dict(t=round(float(state["t"]), 2), speed=round(float(state["ego_speed"]), 3),
                   throttle=throttle, steer=steer, brake=brake)
      if hasattr(agent, "trace_fields"):
        point.update(agent.trace_fields())
      self.traces.setdefault(episode.spec.name, []).append(point)

  def on_end(self, episode, result: dict) -> None:
    name = episode.spec.name
    folder = os.path.dirname(self.path)
    record = dict(route_id=name, town=str(episode.spec.town_id), **result)
    record["route_xy"] = polyline(episode.route.points, 2)
    trajectory = self.trajectories.pop(name, [])
    record["trajectory_xy"] = polyline(trajectory, 1)
    record["first_exit"] = route_exit.first_exit(episode.route, episode.town, trajectory,
                                                 self.every * world_lib.DT)
    if self.trace:
      record["trace"] = self.traces.pop(name, [])
    write_town_map(folder, episode.town, f"town_map_{episode.spec.town_id}.json")
    if self.single_town:
      write_town_map(folder, episode.town, "town_map.json")
    self.finished[name] = record
    summary = self.write()
    if self.after_write is not None:
      self.after_write(summary)

  def write(self) -> dict:
    ordered = [self.finished[s.name] for s in self.specs if s.name in self.finished]
    summary = {**self.header, **scoring.aggregate(ordered),
               "total_routes": len(self.specs), "complete": len(ordered) == len(self.specs),
               "wall_seconds": round(self.header.get("wall_seconds", 0.0)
                                     + time.time() - self.started, 2)}
    write_json_atomic(self.path, summary)
    return summary


def evaluate(config, progress: bool = True,
             after_write: Callable[[dict], None] | None = None) -> dict:
  """Runs (or resumes) the evaluation of `config` (configs/eval.py); returns the summary written
  to `<out_dir>/results.json`. after_write(summary): called after each rewrite of the file."""
  folder = out_dir(config)
  os.makedirs(folder, exist_ok=True)
  path = os.path.join(folder, RESULTS)
  expected = identity(config)
  finished = read_finished(path, expected)
  specs = routes_lib.route_set(config.route_set, int(config.seed))
  if int(config.max_routes) > 0:
    specs = specs[:int(config.max_routes)]
  todo = [s for s in specs if s.name not in finished]
  previous_wall = 0.0
  if finished:
    with open(path) as f:
      previous_wall = float(json.load(f).get("wall_seconds", 0.0))
  recorder = _Recorder(path, specs, finished, {**expected, "wall_seconds": previous_wall},
                       int(config.trajectory_every), after_write,
                       trace=bool(config.get("trace", False)))
  make_agent, agent_config, render_every = agent_factory(config)
  bar = None
  if progress:
    from tqdm import tqdm
    bar = tqdm(total=len(specs), initial=len(specs) - len(todo), unit="route",
               desc=f"{config.route_set} ({config.agent.kind})")
  try:
    host.run_routes(todo, make_agent, config.sim, batch_size=int(config.batch_size),
                    agent_config=agent_config, render_every=render_every,
                    on_tick=recorder.on_tick, on_end=recorder.on_end, progress=bar,
                    max_ticks=int(config.max_ticks) if int(config.max_ticks) > 0 else None)
  finally:
    if bar is not None:
      bar.close()
  return recorder.write()


def strip_timing(summary: dict) -> dict:
  """The summary without wall-clock fields (for comparing runs)."""
  return {k: v for k, v in summary.items() if k not in TIMING_KEYS}
