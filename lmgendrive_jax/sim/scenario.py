"""Initial world state of a route: ego at the route start, NPC traffic, pedestrians and the
LangAuto-style scenario events (a pedestrian stepping out, a car braking hard ahead, a red-light
runner), all seeded by the route.

Where it sits: host side (numpy), once per route: `make_episode(town, route, cfg)` -> (state
dict for world.step, list of `ScenarioEvent` whose triggers give notices in the host loop).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from lmgendrive_jax.errors import SimulatorError
from lmgendrive_jax.sim import render as render_lib
from lmgendrive_jax.sim import routes as routes_lib
from lmgendrive_jax.sim import town as town_lib
from lmgendrive_jax.sim import world as world_lib
from lmgendrive_jax.sim.instructions import ID_BY_NAME

VEHICLE_COLOURS = np.array([[0.7, 0.1, 0.1], [0.1, 0.2, 0.6], [0.85, 0.85, 0.85], [0.1, 0.1, 0.1],
                            [0.5, 0.5, 0.52], [0.9, 0.7, 0.1], [0.2, 0.5, 0.3], [0.6, 0.3, 0.1]],
                           np.float32)
SHIRTS = np.array([[0.8, 0.2, 0.2], [0.2, 0.4, 0.8], [0.9, 0.9, 0.3], [0.3, 0.7, 0.3],
                   [0.9, 0.9, 0.9], [0.4, 0.2, 0.5]], np.float32)


@dataclasses.dataclass(frozen=True)
class ScenarioEvent:
  """A scripted event along the route; its notice fires when the ego comes within
  `instructions.scenario_notice_m` of `trigger` (route arc length `trigger_s`)."""
  kind: str  # "pedestrian" | "braking" | "red_light_runner"
  trigger: tuple[float, float]
  trigger_s: float
  notice_id: int


def _lane_pose_np(town, lane, s):
  pts = town.lane_points[lane].astype(np.float64)
  cum = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=-1))])
  x, y = np.interp(s, cum, pts[:, 0]), np.interp(s, cum, pts[:, 1])
  i = int(np.clip(np.searchsorted(cum, s) - 1, 0, len(pts) - 2))
  d = pts[i + 1] - pts[i]
  return np.array([x, y]), math.atan2(d[1], d[0])


def make_episode(town: town_lib.Town, route: routes_lib.Route, cfg) -> tuple[dict, list]:
  """(initial world state, scenario events). cfg: a `config.sim_preset(...)`."""
  spec = route.spec
  rng = np.random.default_rng([spec.route_seed, 99])
  traffic = cfg.traffic
  n_vehicles, n_peds = int(traffic.num_vehicles), int(traffic.num_pedestrians)
  ego_pos, ego_yaw = route.start_pose
  lanes, s, next_lane, half, colour, max_speed = [], [], [], [], [], []
  ignore, hold, brake_trigger, hold_deadline = [], [], [], []
  occupied = [ego_pos]

  def free(p, gap=9.0):
    return all(np.linalg.norm(p - q) > gap for q in occupied)

  def add_vehicle(lane, s_lane, speed, ignore_lights=False, hold_until=0.0, brake_at=0.0,
                  deadline=0.0):
    pos, _ = _lane_pose_np(town, lane, s_lane)
    occupied.append(pos)
    succ = [x for x in town.lane_succ[lane] if x >= 0]
    lanes.append(lane)
    s.append(s_lane)
    next_lane.append(int(rng.choice(succ)) if succ else lane)
    half.append((float(rng.uniform(2.1, 2.5)), float(rng.uniform(0.9, 1.05))))
    colour.append(VEHICLE_COLOURS[rng.integers(len(VEHICLE_COLOURS))])
    max_speed.append(speed)
    ignore.append(ignore_lights)
    hold.append(hold_until)
    brake_trigger.append(brake_at)
    hold_deadline.append(deadline)

  events = []
  ped_rows = []  # (start, end, s, sign, speed, bounce, trigger_pos, trigger_dist, started)

  # Scenario events along the route (one per `scenario_every_m` metres at most).
  every = float(traffic.scenario_every_m)
  slots = np.arange(25.0, route.length - 25.0, every)
  for slot in slots:
    s_t = float(slot + rng.uniform(0, every * 0.3))
    i = int(np.searchsorted(route.s, s_t))
    if i >= len(route.points) - 1:
      continue
    lane = int(route.lane[i])
    lane_s_at = None
    if town.lane_junction[lane] >= 0:
      continue
    kind = str(rng.choice(["pedestrian", "braking", "red_light_runner", "none"],
                          p=[0.35, 0.3, 0.15, 0.2]))
    trigger = route.points[i].astype(np.float64)
    if kind == "pedestrian":
      ahead = int(np.searchsorted(route.s, s_t + 14.0))
      if ahead >= len(route.points) - 1 or town.lane_junction[int(route.lane[ahead])] >= 0:
        continue
      p = route.points[ahead].astype(np.float64)
      d = route.points[ahead + 1] - route.points[ahead]
      d = d / max(np.linalg.norm(d), 1e-6)
      right = np.array([-d[1], d[0]])
      road_half = town.lane_width * 2.5
      start = p + right * (road_half + 0.5)
      end = p - right * (road_half + 3.0)
      ped_rows.append((start, end, 0.0, 1.0, float(rng.uniform(1.2, 1.8)), False, trigger, 12.0,
                       False))
      events.append(ScenarioEvent("pedestrian", tuple(trigger), s_t,
                                  ID_BY_NAME["Notice-pedestrian"]))
    elif kind == "braking":
      ahead_s = s_t + 18.0
      j = int(np.searchsorted(route.s, ahead_s))
      if j >= len(route.points) - 1:
        continue
      lane_j = int(route.lane[j])
      if town.lane_junction[lane_j] >= 0:
        continue
      pts = town.lane_points[lane_j]
      lane_s_at = float(np.linalg.norm(route.points[j] - pts[0]))
      pos, _ = _lane_pose_np(town, lane_j, lane_s_at)
      if not free(pos, 8.0) or town.lane_length[lane_j] - lane_s_at < 20.0:
        continue
      add_vehicle(lane_j, lane_s_at, float(rng.uniform(5.0, 6.0)), brake_at=10.0,
                  hold_until=14.0, deadline=s_t / 3.0 + 30.0)
      events.append(ScenarioEvent("braking", tuple(trigger), s_t,
                                  ID_BY_NAME["Notice-vehicle-braking"]))
    elif kind == "red_light_runner":
      # A car on a crossing approach of the next light-controlled junction along the route.
      k = i
      while k < len(route.points) and town.lane_junction[int(route.lane[k])] < 0:
        k += 1
      if k >= len(route.points) or route.s[k] - s_t > 60.0:
        continue
      junction = int(town.lane_junction[int(route.lane[k])])
      if not town.junction_has_light[junction]:
        continue
      route_dir = route.points[min(k + 1, len(route.points) - 1)] - route.points[k - 1]
      crossing = [ln for ln in range(town.num_lanes)
                  if town.lane_junction[ln] < 0 and town.lane_stop_line[ln] >= 0
                  and town.stop_line_junction[town.lane_stop_line[ln]] == junction
                  and abs(np.dot(town.stop_line_dir[town.lane_stop_line[ln]], route_dir)) < 0.3
                  * np.linalg.norm(route_dir)]
      if not crossing:
        continue
      lane_c = int(rng.choice(crossing))
      s_c = max(0.0, float(town.lane_length[lane_c]) - 22.0)
      pos, _ = _lane_pose_np(town, lane_c, s_c)
      if not free(pos, 6.0):
        continue
      add_vehicle(lane_c, s_c, 7.0, ignore_lights=True, hold_until=float(route.s[k] - s_t) + 8.0,
                  deadline=s_t / 3.0 + 30.0)
      events.append(ScenarioEvent("red_light_runner", tuple(trigger), s_t,
                                  ID_BY_NAME["Notice-red-light-runner"]))

  # Background traffic on random segment lanes, away from the ego.
  segments = np.nonzero(town.lane_junction < 0)[0]
  tries = 0
  while len(lanes) < n_vehicles and tries < 200:
    tries += 1
    lane = int(rng.choice(segments))
    s_lane = float(rng.uniform(2.0, max(2.5, town.lane_length[lane] - 10.0)))
    pos, _ = _lane_pose_np(town, lane, s_lane)
    if free(pos, 15.0 if len(occupied) == 1 else 9.0) and np.linalg.norm(pos - ego_pos) > 20.0:
      low, high = traffic.npc_speed_range
      add_vehicle(lane, s_lane, float(rng.uniform(low, high)))
  n_actual = len(lanes)
  pad = n_vehicles - n_actual + (n_actual > n_vehicles) * 0
  n_total = max(n_vehicles, n_actual)
  active = [True] * n_actual + [False] * (n_total - n_actual)
  for _ in range(n_total - n_actual):
    lanes.append(0)
    s.append(0.0)
    next_lane.append(0)
    half.append((2.3, 1.0))
    colour.append(VEHICLE_COLOURS[0])
    max_speed.append(0.0)
    ignore.append(False)
    hold.append(0.0)
    brake_trigger.append(0.0)
    hold_deadline.append(0.0)
  del pad

  # Sidewalk pedestrians walking back and forth; every third one crosses at a crosswalk.
  while len(ped_rows) < n_peds:
    k = int(rng.integers(len(town.walk_paths)))
    path = town.walk_paths[k].astype(np.float64)
    if len(ped_rows) % 3 == 2:
      # walk_paths come in pairs (both sides of an edge): cross between them on the zebra.
      a, b = town.walk_paths[k - k % 2].astype(np.float64), town.walk_paths[k - k % 2 + 1]
      end = int(rng.integers(2))
      along = (a[1] - a[0]) / max(np.linalg.norm(a[1] - a[0]), 1e-6) * (1.75 if end == 0 else
                                                                         -1.75)
      path = np.stack([a[end] + along, b[end].astype(np.float64) + along])
    length = float(np.linalg.norm(path[1] - path[0]))
    ped_rows.append((path[0], path[1], float(rng.uniform(0, length)),
                     float(rng.choice([-1.0, 1.0])), float(rng.uniform(0.8, 1.5)), True,
                     np.zeros(2), 0.0, True))
  m_total = max(n_peds, len(ped_rows))
  cols = list(zip(*ped_rows))
  ped_colour = SHIRTS[rng.integers(len(SHIRTS), size=m_total)]

  f32 = lambda x: np.asarray(x, np.float32)  # noqa: E731
  state = dict(
      t=np.float32(0.0), ego_pos=f32(ego_pos), ego_yaw=np.float32(ego_yaw),
      ego_speed=np.float32(0.0),
      npc_lane=np.asarray(lanes, np.int32), npc_s=f32(s), npc_speed=f32(max_speed) * 0.6,
      npc_next_lane=np.asarray(next_lane, np.int32), npc_active=np.asarray(active),
      npc_half=f32(half), npc_colour=f32(colour), npc_max_speed=f32(max_speed),
      npc_ignore_lights=np.asarray(ignore), npc_stop_timer=np.zeros(n_total, np.float32),
      npc_hold_until_ego=f32(hold), npc_hold_deadline=f32(hold_deadline),
      npc_brake_trigger=f32(brake_trigger),
      npc_brake_until=np.full(n_total, -1.0, np.float32),
      ped_start=f32(np.stack(cols[0])), ped_end=f32(np.stack(cols[1])), ped_s=f32(cols[2]),
      ped_sign=f32(cols[3]), ped_speed=f32(cols[4]), ped_bounce=np.asarray(cols[5]),
      ped_trigger_pos=f32(np.stack(cols[6])), ped_trigger_dist=f32(cols[7]),
      ped_started=np.asarray(cols[8]), ped_active=np.ones(m_total, bool),
      ped_colour=f32(ped_colour), ped_waiting=np.zeros(m_total, bool),
      weather=render_lib.weather_vector(spec.weather_id),
      key=np.asarray(np.random.default_rng([spec.route_seed, 5]).integers(
          0, 2**31, size=2), np.uint32),
  )
  state["npc_speed"] = np.where(np.asarray(hold) > 0, 0.0, state["npc_speed"]).astype(np.float32)
  return state, events


def pad_state(state: dict, num_vehicles: int, num_pedestrians: int) -> dict:
  """Pads a state's actor arrays (inactive extras) so states of a batch share shapes."""
  out = dict(state)
  n = len(state["npc_lane"])
  m = len(state["ped_s"])
  if n > num_vehicles or m > num_pedestrians:
    raise SimulatorError(f"episode has {n} vehicles / {m} pedestrians, more than the batch "
                         f"padding {num_vehicles} / {num_pedestrians}; raise host.EXTRA_ACTORS "
                         "or traffic.scenario_every_m")
  for key, value in state.items():
    if key.startswith("npc_") and n < num_vehicles:
      extra = np.zeros((num_vehicles - n,) + value.shape[1:], value.dtype)
      out[key] = np.concatenate([value, extra])
    if key.startswith("ped_") and m < num_pedestrians:
      extra = np.zeros((num_pedestrians - m,) + value.shape[1:], value.dtype)
      if key == "ped_end":
        extra = extra + 1.0  # a non-degenerate segment
      out[key] = np.concatenate([value, extra])
  return out


def empty_state(ego_pos, ego_yaw: float, num_vehicles: int = 1, num_pedestrians: int = 1,
                weather_id: int = 0, t: float = 0.0, seed: int = 0) -> dict:
  """A world state with only the ego (all other actors inactive), for scripted scenes: set
  `npc_*` / `ped_*` rows and their `*_active` flags to stage an actor."""
  n, m = int(num_vehicles), int(num_pedestrians)
  f32 = lambda x: np.asarray(x, np.float32)  # noqa: E731
  return dict(
      t=np.float32(t), ego_pos=f32(ego_pos), ego_yaw=np.float32(ego_yaw),
      ego_speed=np.float32(0.0), npc_lane=np.zeros(n, np.int32), npc_s=np.zeros(n, np.float32),
      npc_speed=np.zeros(n, np.float32), npc_next_lane=np.zeros(n, np.int32),
      npc_active=np.zeros(n, bool), npc_half=np.tile(f32([[2.3, 1.0]]), (n, 1)),
      npc_colour=np.tile(VEHICLE_COLOURS[:1], (n, 1)), npc_max_speed=np.zeros(n, np.float32),
      npc_ignore_lights=np.zeros(n, bool), npc_stop_timer=np.zeros(n, np.float32),
      npc_hold_until_ego=np.zeros(n, np.float32), npc_hold_deadline=np.zeros(n, np.float32),
      npc_brake_trigger=np.zeros(n, np.float32),
      npc_brake_until=np.full(n, -1.0, np.float32),
      ped_start=np.zeros((m, 2), np.float32), ped_end=np.tile(f32([[1.0, 0.0]]), (m, 1)),
      ped_s=np.zeros(m, np.float32), ped_sign=np.ones(m, np.float32),
      ped_speed=np.zeros(m, np.float32), ped_bounce=np.zeros(m, bool),
      ped_trigger_pos=np.zeros((m, 2), np.float32), ped_trigger_dist=np.zeros(m, np.float32),
      ped_started=np.zeros(m, bool), ped_active=np.zeros(m, bool),
      ped_colour=np.tile(SHIRTS[:1], (m, 1)), ped_waiting=np.zeros(m, bool),
      weather=render_lib.weather_vector(weather_id),
      key=np.asarray([seed, 0], np.uint32))
