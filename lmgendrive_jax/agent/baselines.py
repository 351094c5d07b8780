"""Baselines beside our agent in closed-loop evaluation (bench/drive_quality.py, the quickstart).

- `LaneKeepingAgent`: a privileged, camera-less lane follower that ignores the instructions. It
  knows the town's lane graph, its own pose and the actors (as the expert does) but not the
  route: from the route's start lane it follows its lane, never changes lanes, and at a
  junction goes straight when it can (`junction_policy="straight"`; else a seeded random
  successor) or takes a seeded random successor (`"random"`). It drives that self-made path with
  the expert's own driving (sim/expert.py: target speeds, hazard, light and stop-sign braking,
  LMDrive's PID), so the gap to the expert measures what following the instructions is worth.
- `BlankInstructionAgent`: our model with the instruction replaced by "" (only BOS), so the gap
  to `LMGenDriveAgent` measures what the model takes from the language.
- `HazardOracleAgent`: our model whose hazard rule reads the expert's own hazard trigger
  (privileged) instead of a detector: the most a hazard detector could buy (docs/experiments.md,
  17th: +5.6 DS on the big preset's planner).
"""

from __future__ import annotations

import ml_collections
import numpy as np

from lmgendrive_jax.agent import hazard, rules
from lmgendrive_jax.agent.lmgendrive_agent import LMGenDriveAgent
from lmgendrive_jax.agent.planner import PlanState
from lmgendrive_jax.errors import ConfigError
from lmgendrive_jax.sim import expert as expert_lib
from lmgendrive_jax.sim import pid as pid_lib
from lmgendrive_jax.sim import routes as routes_lib
from lmgendrive_jax.sim import town as town_lib

EXTRA_PATH_M = 200.0  # the self-made path runs past the route's length (the scorer ends first)


def lane_keeping_path(town: town_lib.Town, route: routes_lib.Route, policy: str,
                      seed: int) -> routes_lib.Route:
  """A Route that starts where `route` does and keeps its lane, choosing at junctions by
  `policy` ("straight" or "random"), `route.length + EXTRA_PATH_M` long (or to a dead end)."""
  if policy not in ("straight", "random"):
    raise ConfigError(f"junction_policy {policy!r}: use 'straight' or 'random'")
  rng = np.random.default_rng([seed, 777])
  lane, s_from = int(route.pieces[0][0]), float(route.pieces[0][1])
  pieces, total = [], 0.0
  while total < route.length + EXTRA_PATH_M:
    length = float(town.lane_length[lane])
    pieces.append((lane, s_from, length, int(town.lane_option[lane])))
    total += length - s_from
    successors = [int(x) for x in town.lane_succ[lane] if x >= 0]
    if not successors:
      break
    straight = [c for c in successors if int(town.lane_option[c]) in (
        town_lib.STRAIGHT, town_lib.LANEFOLLOW)]
    choices = straight if policy == "straight" and straight else successors
    lane, s_from = choices[int(rng.integers(len(choices)))], 0.0
  return routes_lib.route_from_pieces(town, route.spec, pieces)


class LaneKeepingAgent:
  """See the module docstring. `expert_cfg`: the simulator preset's `expert` section."""

  privileged = True

  def __init__(self, expert_cfg=None, junction_policy: str = "straight"):
    self.expert_cfg, self.junction_policy = expert_cfg, junction_policy
    self.route = None
    self.expert: expert_lib.Expert | None = None

  def setup(self, config) -> None:
    if config is not None and hasattr(config, "target_speed"):
      self.expert_cfg = config
    if self.expert_cfg is None:
      raise ConfigError("LaneKeepingAgent needs the simulator's expert config (target speeds)")

  def sensors(self) -> list[dict]:
    return []

  def run_step(self, input_data: dict, timestamp: float) -> pid_lib.Control:
    del timestamp
    _, priv = input_data["privileged"]
    if self.route is not priv["route"]:
      self.route = priv["route"]
      path = lane_keeping_path(priv["town"], self.route, self.junction_policy, priv["seed"])
      self.expert = expert_lib.Expert(priv["town"], path, self.expert_cfg, seed=priv["seed"])
    control, _ = self.expert.act(priv["state"], priv["light_states"])
    return control

  def destroy(self) -> None:
    self.route, self.expert = None, None


def _options(config) -> dict:
  """An agent config (None, a dict or a ConfigDict) as a plain dict, for a subclass to amend."""
  if config is None:
    return {}
  return config.to_dict() if hasattr(config, "to_dict") else dict(config)


class BlankInstructionAgent(LMGenDriveAgent):
  """LMGenDriveAgent fed an empty instruction (the instruction ablation)."""

  def setup(self, config) -> None:
    super().setup({**_options(config), "blank_instruction": True})


class _ExpertHazard:
  """The hazard rule's 'detector' in `HazardOracleAgent`: asked (on the model's steps only), it
  says whether the expert of the route being driven brakes for a vehicle or pedestrian now."""

  camera_views = ("front",)

  def __init__(self, expert_cfg):
    self.expert_cfg = expert_cfg
    self.route, self.expert, self.privileged = None, None, None

  def see(self, privileged: dict) -> None:
    """This tick's privileged data (sim/host.py); a new route gets its own expert."""
    if self.route is not privileged["route"]:
      self.route = privileged["route"]
      self.expert = expert_lib.Expert(privileged["town"], self.route, self.expert_cfg,
                                      seed=privileged["seed"])
    self.privileged = privileged

  def read(self, cameras: dict) -> tuple[float, None]:
    """(1.0 when the expert brakes for a vehicle or pedestrian now, else 0.0; no object map)."""
    del cameras
    _, labels = self.expert.act(self.privileged["state"], self.privileged["light_states"])
    return float(bool(labels["is_vehicle_present"] or labels["is_pedestrian_present"])), None


class HazardOracleAgent(LMGenDriveAgent):
  """LMGenDriveAgent whose hazard rule sees what the expert brakes for (privileged: the vehicles
  and pedestrians in its corridor, now or predicted; sim/expert.py), through the same policy
  (`hazard_max_wait`, `hazard_release`) as a detector's. The model and its other rules are
  unchanged and see no privileged data. `expert_cfg`: the simulator preset's `expert` section."""

  privileged = True

  def __init__(self, expert_cfg, planner=None):
    super().__init__(planner)
    self.expert_cfg = expert_cfg

  def setup(self, config) -> None:
    super().setup({**_options(config), "hazard_detector": ""})
    self.oracle = _ExpertHazard(self.expert_cfg)
    self.rules[hazard.RULE.name] = rules.DetectorRule(
        hazard.RULE, self.oracle, 0.5, hazard.RULE.make_policy(self.config))

  def run_step(self, input_data: dict, timestamp: float) -> pid_lib.Control:
    self.oracle.see(input_data["privileged"][1])
    ours = {key: value for key, value in input_data.items() if key != "privileged"}
    return super().run_step(ours, timestamp)


class RoutePlanner:
  """The planner interface of agent/planner.py: waypoints 0.5 s apart along the route ahead at
  `speed` m/s (privileged route geometry: its agent needs `privileged = True`), straight on past
  its end. It sees nothing: bench/agent_rules.py measures the agent's rules behind it, the tests
  drive the agent's code path with it."""

  def __init__(self, speed: float, views: tuple[str, ...], view_size: tuple[int, int],
               stride: int = 1, max_frames: int = 4):
    self.speed = float(speed)
    self.data = ml_collections.ConfigDict(dict(
        views=tuple(views), view_size=tuple(view_size), crop_scale=0.875, stride=int(stride),
        data_dir=""))
    self.max_frames = int(max_frames)

  def start(self, instruction):
    return PlanState(cache=None)

  def add_notice(self, state, notice):
    return PlanState(cache=None, frames=state.frames, has_notice=True)

  def step(self, state, views, speed, commit, input_data):
    _, privileged = input_data["privileged"]
    route, pos = privileged["route"], np.asarray(privileged["state"]["ego_pos"], np.float64)
    progress = float(route.s[int(np.argmin(np.linalg.norm(route.points - pos, axis=-1)))])
    end, heading = route.points[-1], route.points[-1] - route.points[-2]
    heading = heading / np.linalg.norm(heading)
    ahead = progress + self.speed * 0.5 * np.arange(1, 6)
    targets = np.stack([route.point_at(s) if s <= route.length else
                        end + heading * (s - route.length) for s in ahead])
    waypoints = expert_lib.world_to_ego(targets, pos, float(privileged["state"]["ego_yaw"]))
    return waypoints.astype(np.float32), 0.0, PlanState(None, state.frames + int(commit),
                                                        state.has_notice)
