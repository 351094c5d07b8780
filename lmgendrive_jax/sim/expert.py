"""Expert autopilot with privileged information (host side, numpy), and its agent wrapper.

Where it sits: the host loop (host.py) hands agents with `privileged = True` the world state,
town and route under `input_data["privileged"]`; `ExpertAgent.run_step` returns a `Control` and
keeps the labels of the tick (`last_labels`: should_slow, should_brake, hazards, target speed,
affected light...) that the collector writes to measurements.

Driving: follow the route (aim point `lookahead` m ahead), LMDrive's PID gains
(pid.WaypointController), target speed 6.5 m/s, 4.0 when it should slow (in or approaching a
junction, a lane change, a hazard or a light/stop sign within 20 m), 0 when it should brake: a
vehicle or pedestrian (now or predicted up to 2 s ahead) in the corridor of the route ahead, a
red (or a stoppable yellow) light at the route's next stop line, or a stop sign not yet stopped
at. Optional steering noise episodes for data diversity (TransFuser-style).
"""

from __future__ import annotations

import math

import numpy as np

from lmgendrive_jax.sim import pid as pid_lib
from lmgendrive_jax.sim import routes as routes_lib
from lmgendrive_jax.sim import town as town_lib
from lmgendrive_jax.sim import world as world_lib

PREDICT_S = (0.0, 0.5, 1.0, 1.5, 2.0)
HAZARD_CLEAR_TICKS = 10


def world_to_ego(points, ego_pos, ego_yaw) -> np.ndarray:
  """CARLA-frame points f[..., 2] -> ego frame (right, forward)."""
  d = np.asarray(points, np.float64) - np.asarray(ego_pos, np.float64)
  c, s = math.cos(ego_yaw), math.sin(ego_yaw)
  forward = d[..., 0] * c + d[..., 1] * s
  right = -d[..., 0] * s + d[..., 1] * c
  return np.stack([right, forward], -1)


def lane_pose_np(town: town_lib.Town, lanes: np.ndarray, s: np.ndarray):
  """Host mirror of world.lane_pose (vectorised): (pos f[N, 2], yaw f[N]) at arc lengths s."""
  lanes = np.asarray(lanes, np.int64).reshape(-1)
  s = np.asarray(s, np.float64).reshape(-1)
  pts = town.lane_points[lanes].astype(np.float64)  # [N, P, 2]
  seg = np.diff(pts, axis=1)
  seg_len = np.linalg.norm(seg, axis=-1)  # [N, P-1]
  cum = np.cumsum(seg_len, axis=1)
  k = np.clip(np.sum(cum < s[:, None], axis=1), 0, seg.shape[1] - 1)
  rows = np.arange(len(lanes))
  s0 = cum[rows, k] - seg_len[rows, k]
  frac = np.clip((s - s0) / np.maximum(seg_len[rows, k], 1e-6), 0.0, 1.5)
  pos = pts[rows, k] + seg[rows, k] * frac[:, None]
  return pos, np.arctan2(seg[rows, k, 1], seg[rows, k, 0])


class Expert:
  """The autopilot of one route."""

  def __init__(self, town: town_lib.Town, route: routes_lib.Route, cfg, seed: int = 0,
               stop_gap: float = 3.5):
    self.town, self.route = town, route
    self.target_speed = float(cfg.target_speed)
    self.slow_speed = float(cfg.slow_speed)
    self.lookahead = float(cfg.lookahead)
    self.noise_prob = float(cfg.noise_prob)
    self.noise_steer = float(cfg.noise_steer)
    self.noise_ticks = int(round(float(cfg.noise_seconds) / world_lib.DT))
    self.rng = np.random.default_rng([seed, 17])
    self.controller = pid_lib.WaypointController()
    self.stop_lines = routes_lib.route_stop_lines(route, town, stop_gap)
    self.stopped_at: set[int] = set()
    self.index = 0
    self.noise_left = 0
    self.noise_value = 0.0
    self.clear_ticks = HAZARD_CLEAR_TICKS
    self.route_junction = town.lane_junction[route.lane]

  def _progress(self, pos: np.ndarray) -> float:
    lo, hi = max(0, self.index - 5), min(len(self.route.points), self.index + 40)
    d = np.linalg.norm(self.route.points[lo:hi] - pos, axis=-1)
    self.index = lo + int(np.argmin(d))
    return float(self.route.s[self.index])

  def _corridor_hits(self, points: np.ndarray, progress: float, length: float,
                     half_width: float) -> np.ndarray:
    """bool per point: within `half_width` of the route between progress and +length; and the
    along-route distance f per point (inf when not)."""
    lo = self.index
    hi = int(np.searchsorted(self.route.s, progress + length)) + 1
    path = self.route.points[lo:hi]
    if len(path) == 0 or len(points) == 0:
      return np.full(len(points), np.inf)
    d = np.linalg.norm(points[:, None, :] - path[None], axis=-1)  # [N, R]
    nearest = np.argmin(d, axis=1)
    close = d[np.arange(len(points)), nearest] < half_width
    along = self.route.s[lo + nearest] - progress
    return np.where(close & (along > 0.0), along, np.inf)

  def _along_lanes(self, lane: int, next_lane: int, s: np.ndarray) -> np.ndarray:
    """Points f[K, 2] at arc lengths s along `lane`, continuing into `next_lane`."""
    length = float(self.town.lane_length[lane])
    beyond = s > length
    pos = np.zeros((len(s), 2))
    if (~beyond).any():
      pos[~beyond] = lane_pose_np(self.town, np.full((~beyond).sum(), lane), s[~beyond])[0]
    if beyond.any():
      pos[beyond] = lane_pose_np(self.town, np.full(beyond.sum(), next_lane),
                                 np.minimum(s[beyond] - length,
                                            self.town.lane_length[next_lane]))[0]
    return pos

  def act(self, state: dict, light_states: np.ndarray) -> tuple[pid_lib.Control, dict]:
    """state: one world's numpy state (world.py). Returns (control, labels)."""
    pos = np.asarray(state["ego_pos"], np.float64)
    yaw = float(state["ego_yaw"])
    speed = float(state["ego_speed"])
    progress = self._progress(pos)
    ego_front = world_lib.EGO_HALF[0]

    # Hazards: vehicles and pedestrians, now and predicted, in the corridor ahead.
    check = ego_front + 4.0 + speed * 1.2
    active = np.asarray(state["npc_active"], bool)
    npc_pos, npc_yaw = lane_pose_np(self.town, np.asarray(state["npc_lane"]),
                                    np.asarray(state["npc_s"]))
    npc_speed = np.asarray(state["npc_speed"], np.float64)
    vehicle_hits, lead_speed, lead_gap = [], self.target_speed, np.inf
    lanes, lane_s = np.asarray(state["npc_lane"]), np.asarray(state["npc_s"])
    next_lanes = np.asarray(state["npc_next_lane"])
    for i in np.nonzero(active)[0]:
      # Predicted along its lane and the successor it has picked (turns included).
      future = self._along_lanes(int(lanes[i]), int(next_lanes[i]),
                                 lane_s[i] + PREDICT_S_ARR * npc_speed[i])
      along = self._corridor_hits(future, progress, check + 8.0, 2.4)
      same_way = math.cos(npc_yaw[i] - yaw) > 0.7
      if np.isfinite(along[0]) and same_way:
        gap = along[0] - ego_front - float(state["npc_half"][i][0])
        if gap < lead_gap:
          lead_gap, lead_speed = gap, npc_speed[i]
        if gap < 4.0 + speed * 1.0 or (gap < check and npc_speed[i] < 0.5):
          vehicle_hits.append(int(i))
      elif np.isfinite(along).any():
        # Crossing / oncoming paths: yield if they reach the corridor close ahead soon.
        if np.min(along[np.isfinite(along)]) < check:
          vehicle_hits.append(int(i))
    ped_pos, _ = world_lib_ped_poses(state)
    ped_dir = _ped_dirs(state)
    ped_hits = []
    ped_active = np.asarray(state["ped_active"], bool)
    for i in np.nonzero(ped_active)[0]:
      moving = float(state["ped_speed"][i]) * float(bool(state["ped_started"][i])) * float(
          not bool(state["ped_waiting"][i]))
      # Pedestrians: a longer horizon (3 s), so the car stops short of the crosswalk.
      future = ped_pos[i][None] + PED_PREDICT_S[:, None] * moving * ped_dir[i][None]
      along = self._corridor_hits(future, progress, check + 6.0, 2.6)
      # Only what is ahead of the bumper (someone waiting beside the car is not in the way).
      if np.any(np.isfinite(along) & (along > ego_front - 0.3)):
        ped_hits.append(int(i))

    # Lights and stop signs at the route's next stop line.
    red_light, stop_sign, light_id, light_distance = [], [], -1, None
    near_control = False
    for s_line, line in self.stop_lines:
      d = s_line - progress - ego_front
      if d < -1.0:
        continue
      if d > 40.0:
        break
      light = int(self.town.stop_line_light[line])
      if light >= 0:
        light_id, light_distance = light, d
        state_l = int(light_states[light])
        if d < 20.0:
          near_control = True
        stoppable = d > speed * speed / (2 * 6.0) + 0.5
        if state_l == world_lib.RED or (state_l == world_lib.YELLOW and stoppable):
          if d < max(3.0, speed * speed / (2 * 5.0) + 2.0):
            red_light.append(light)
      else:
        if line not in self.stopped_at:
          if d < 20.0:
            near_control = True
          if d < 6.0 and speed < 0.05:
            self.stopped_at.add(line)
          elif d < max(1.5, speed * speed / (2 * 5.0) + 1.0):
            stop_sign.append(line)
      break

    ahead_idx = slice(self.index, int(np.searchsorted(self.route.s, progress + 15.0)) + 1)
    turning = np.any(self.route_junction[ahead_idx] >= 0) or np.any(
        self.route.option[ahead_idx] >= town_lib.CHANGELANELEFT)
    # Once stopped for a vehicle or pedestrian, wait until it has been clear for 0.5 s (no
    # stop-and-go while someone crosses).
    if vehicle_hits or ped_hits:
      self.clear_ticks = 0
    else:
      self.clear_ticks += 1
    held = self.clear_ticks < HAZARD_CLEAR_TICKS and speed < 0.5
    should_brake = bool(vehicle_hits or ped_hits or red_light or stop_sign or held)
    should_slow = bool(turning or near_control or lead_gap < 15.0)
    target = 0.0 if should_brake else (self.slow_speed if should_slow else self.target_speed)
    if not should_brake and lead_gap < 15.0:
      target = min(target, max(lead_speed, 1.0))

    lookahead = pid_lib.expert_lookahead(self.lookahead, speed)
    aim = world_to_ego(self.route.point_at(min(progress + lookahead, self.route.length + 2.0)),
                       pos, yaw)
    control = self.controller.control_from_targets(target, aim, speed,
                                                   zero_angle_when_stopped=False)
    steer_noise = 0.0
    if self.noise_prob > 0:
      if self.noise_left <= 0 and self.rng.random() < self.noise_prob * world_lib.DT:
        self.noise_left = self.noise_ticks
        self.noise_value = float(self.rng.normal(0.0, self.noise_steer))
      if self.noise_left > 0:
        self.noise_left -= 1
        steer_noise = self.noise_value
        control.steer = float(np.clip(control.steer + self.noise_value, -1.0, 1.0))
    in_junction = bool(self.route_junction[self.index] >= 0)
    labels = dict(
        target_speed=target, should_slow=int(should_slow), should_brake=int(should_brake),
        is_vehicle_present=vehicle_hits, is_bike_present=[],
        is_lane_vehicle_present=[i for i in vehicle_hits if math.cos(npc_yaw[i] - yaw) > 0.7],
        is_junction_vehicle_present=[i for i in vehicle_hits if math.cos(npc_yaw[i] - yaw) <= 0.7],
        is_pedestrian_present=ped_hits, is_red_light_present=red_light,
        is_stop_sign_present=stop_sign, affected_light_id=light_id,
        light_stop_distance=light_distance, is_junction=in_junction,
        progress=progress, steer_noise=steer_noise)
    return control, labels


PREDICT_S_ARR = np.asarray(PREDICT_S)
PED_PREDICT_S = np.arange(0.0, 3.01, 0.5)


def world_lib_ped_poses(state: dict):
  """Host mirror of world.ped_poses."""
  d = np.asarray(state["ped_end"], np.float64) - np.asarray(state["ped_start"], np.float64)
  length = np.maximum(np.linalg.norm(d, axis=-1), 1e-6)
  unit = d / length[:, None]
  pos = state["ped_start"] + unit * np.clip(state["ped_s"], 0, length)[:, None]
  heading = unit * np.asarray(state["ped_sign"])[:, None]
  return pos, np.arctan2(heading[:, 1], heading[:, 0])


def _ped_dirs(state: dict) -> np.ndarray:
  d = np.asarray(state["ped_end"], np.float64) - np.asarray(state["ped_start"], np.float64)
  unit = d / np.maximum(np.linalg.norm(d, axis=-1), 1e-6)[:, None]
  # A pedestrian at the end of a one-way walk stands still.
  length = np.linalg.norm(d, axis=-1)
  done = (~np.asarray(state["ped_bounce"], bool)) & (np.asarray(state["ped_s"]) >= length - 1e-3)
  return unit * np.asarray(state["ped_sign"])[:, None] * (~done)[:, None]


class ExpertAgent:
  """The expert behind the CARLA leaderboard agent interface (privileged: reads
  `input_data["privileged"]` from the host loop)."""

  privileged = True

  def __init__(self, cfg=None):
    self.cfg = cfg
    self.expert: Expert | None = None
    self.last_labels: dict = {}

  def setup(self, config) -> None:
    self.cfg = config if config is not None else self.cfg

  def sensors(self) -> list[dict]:
    return []

  def run_step(self, input_data: dict, timestamp: float) -> pid_lib.Control:
    _, priv = input_data["privileged"]
    if self.expert is None or self.expert.route is not priv["route"]:
      self.expert = Expert(priv["town"], priv["route"], self.cfg, seed=priv["seed"])
    control, self.last_labels = self.expert.act(priv["state"], priv["light_states"])
    return control

  def destroy(self) -> None:
    self.expert = None
