"""World state and one 20 Hz physics step: pure jit-compiled functions, vmappable over worlds.

Where it sits: `scenario.py` builds an initial `WorldState` on the host for a route;
`BatchedWorlds` (batch.py) stacks B of them and calls `step` / `render.render_views` under
`jax.vmap`; the host loop (host.py) reads the `StepInfo` events for scoring.

State (one world; a batch adds a leading B axis to every leaf):
  t: f32[] sim seconds; ego_pos f32[2], ego_yaw f32[], ego_speed f32[] (CARLA frame, town.py);
  npc_*: N vehicles on the lane graph: lane int32[N], s f32[N] (metres along the lane),
    speed f32[N], next_lane int32[N] (successor picked at random on arrival), active bool[N],
    half f32[N, 2] (half length, half width), colour f32[N, 3], max_speed f32[N],
    ignore_lights bool[N], stop_timer f32[N] (seconds stopped at a stop sign),
    hold_until_ego f32[N] (parked until the ego comes this close, 0: free; red-light runner),
    hold_deadline f32[N] (sim time when a parked car leaves anyway, so it never blocks a road),
    brake_trigger f32[N] (hard brake when the ego is this close behind, 0: never),
    brake_until f32[N];
  ped_*: M pedestrians walking a segment: start f32[M, 2], end f32[M, 2], s f32[M], sign f32[M]
    (+1 towards end), speed f32[M], bounce bool[M] (walk back and forth; else once then stand),
    trigger_pos f32[M, 2] / trigger_dist f32[M] (start when the ego is this close; 0: always),
    started bool[M], active bool[M], colour f32[M, 3], waiting bool[M] (stopped because the
    ego's box is in its next step: nobody walks into a car);
  key: PRNG key (NPC turn choices).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# CARLA TrafficLightState.
RED, YELLOW, GREEN = 0, 1, 2
DT = 0.05  # 20 Hz, as CARLA's leaderboard.
EGO_HALF = (2.45, 1.05, 0.78)  # Lincoln MKZ-like half extents (CARLA's ego in LMDrive).


@dataclasses.dataclass(frozen=True)
class WorldParams:
  """Physics constants (static under jit; from `config.sim_preset(...).world`)."""
  wheelbase: float = 2.9
  max_steer_deg: float = 70.0  # CARLA Lincoln MKZ front wheels (LMDrive gains assume it)
  max_accel: float = 4.0
  max_brake: float = 9.0
  max_speed: float = 20.0
  drag: float = 0.02
  idm_accel: float = 2.0
  idm_decel: float = 3.0
  idm_gap: float = 2.5
  idm_headway: float = 1.2
  npc_hard_brake: float = 8.0
  corridor_half_width: float = 1.4
  corridor_length: float = 35.0
  stop_gap: float = 3.5
  stop_sign_wait: float = 1.0
  brake_hold: float = 4.0

  @classmethod
  def from_config(cls, cfg) -> "WorldParams":
    return cls(**{f.name: type(f.default)(cfg[f.name]) for f in dataclasses.fields(cls)
                  if f.name in cfg})


def _rot(yaw):
  return jnp.cos(yaw), jnp.sin(yaw)


def lane_pose(town: dict, lane, s):
  """Position f32[..., 2] and heading f32[...] at arc length s along `lane` (any shape)."""
  points = town["lane_points"][lane]  # [..., P, 2]
  seg = points[..., 1:, :] - points[..., :-1, :]
  seg_len = jnp.linalg.norm(seg, axis=-1)  # [..., P-1]
  cum = jnp.cumsum(seg_len, axis=-1)
  start = cum - seg_len
  idx = jnp.clip(jnp.sum(cum < s[..., None], axis=-1), 0, seg_len.shape[-1] - 1)
  s0 = jnp.take_along_axis(start, idx[..., None], -1)[..., 0]
  length = jnp.maximum(jnp.take_along_axis(seg_len, idx[..., None], -1)[..., 0], 1e-6)
  p0 = jnp.take_along_axis(points, idx[..., None, None], -2)[..., 0, :]
  d = jnp.take_along_axis(seg, idx[..., None, None], -2)[..., 0, :]
  frac = jnp.clip((s - s0) / length, 0.0, 1.5)
  pos = p0 + d * frac[..., None]
  return pos, jnp.arctan2(d[..., 1], d[..., 0])


def light_states(town: dict, t) -> jax.Array:
  """int32[N] state of each light at time t: two phase groups per junction (east-west first)."""
  green, yellow, red = town["light_cycle"][0], town["light_cycle"][1], town["light_cycle"][2]
  half_cycle = green + yellow + red
  stop = town["light_stop_line"]
  group = town["stop_line_group"][stop]
  junction = town["stop_line_junction"][stop]
  local = jnp.mod(t + town["junction_light_offset"][junction] + group * half_cycle, 2 * half_cycle)
  return jnp.where(local < green, GREEN, jnp.where(local < green + yellow, YELLOW, RED)).astype(
      jnp.int32)


def stop_line_states(town: dict, t) -> jax.Array:
  """int32[S] light state governing each stop line (GREEN for stop signs and padding)."""
  lights = light_states(town, t)
  idx = town["stop_line_light"]
  return jnp.where(idx >= 0, lights[jnp.maximum(idx, 0)], GREEN)


def obb_overlap(c1, h1, yaw1, c2, h2, yaw2) -> jax.Array:
  """Separating-axis test of 2D oriented boxes (centre, half extents (l, w), yaw); broadcasts."""
  def axes(yaw):
    c, s = _rot(yaw)
    return jnp.stack([c, s], -1), jnp.stack([-s, c], -1)
  a1, b1 = axes(yaw1)
  a2, b2 = axes(yaw2)
  d = c2 - c1
  separated = jnp.zeros(jnp.broadcast_shapes(d.shape[:-1]), bool)
  for axis in (a1, b1, a2, b2):
    r1 = h1[..., 0] * jnp.abs(jnp.sum(a1 * axis, -1)) + h1[..., 1] * jnp.abs(jnp.sum(b1 * axis, -1))
    r2 = h2[..., 0] * jnp.abs(jnp.sum(a2 * axis, -1)) + h2[..., 1] * jnp.abs(jnp.sum(b2 * axis, -1))
    separated = separated | (jnp.abs(jnp.sum(d * axis, -1)) > r1 + r2)
  return ~separated


def npc_poses(town: dict, state: dict):
  """(pos f32[N, 2], yaw f32[N]) of the NPC vehicles."""
  return lane_pose(town, state["npc_lane"], state["npc_s"])


def ped_poses(state: dict):
  """(pos f32[M, 2], yaw f32[M]) of the pedestrians."""
  d = state["ped_end"] - state["ped_start"]
  length = jnp.maximum(jnp.linalg.norm(d, axis=-1), 1e-6)
  unit = d / length[:, None]
  pos = state["ped_start"] + unit * jnp.clip(state["ped_s"], 0, length)[:, None]
  heading = unit * state["ped_sign"][:, None]
  return pos, jnp.arctan2(heading[:, 1], heading[:, 0])


PED_HALF = (0.25, 0.25, 0.9)


def _segment_cross(p, q, a, b):
  """Whether segments p->q and a->b intersect (broadcast over leading axes)."""
  def orient(u, v, w):
    return (v[..., 0] - u[..., 0]) * (w[..., 1] - u[..., 1]) - (v[..., 1] - u[..., 1]) * (
        w[..., 0] - u[..., 0])
  o1, o2 = orient(p, q, a), orient(p, q, b)
  o3, o4 = orient(a, b, p), orient(a, b, q)
  return (o1 * o2 <= 0) & (o3 * o4 < 0)


def step(town: dict, state: dict, control: jax.Array, params: WorldParams = WorldParams()):
  """Advances one world by DT. control: f32[3] (steer [-1, 1], throttle [0, 1], brake [0, 1]).

  Returns (new_state, info) where info holds this tick's events for scoring and the expert:
    collision_vehicle / collision_pedestrian / collision_static: int32 index hit (-1 none),
    red_light: int32 stop line crossed on red (-1), stop_sign_crossed: int32 stop-sign line
    crossed (-1), stop_zone: int32 stop-sign line whose waiting zone holds the ego (-1),
    drive_dir: uint8 lane heading code under the ego (town.py), light_states: int32[N].
  """
  p = params
  t = state["t"]
  steer = jnp.clip(control[0], -1.0, 1.0)
  throttle = jnp.clip(control[1], 0.0, 1.0)
  brake = jnp.clip(control[2], 0.0, 1.0)

  # Ego: kinematic bicycle about the box centre.
  v = state["ego_speed"]
  accel = throttle * p.max_accel * (1 - v / p.max_speed) - brake * p.max_brake - p.drag * v * v
  v_new = jnp.clip(v + accel * DT, 0.0, p.max_speed)
  delta = steer * jnp.deg2rad(p.max_steer_deg)
  beta = jnp.arctan(0.5 * jnp.tan(delta))
  yaw = state["ego_yaw"]
  v_mid = 0.5 * (v + v_new)
  pos_new = state["ego_pos"] + v_mid * DT * jnp.stack([jnp.cos(yaw + beta), jnp.sin(yaw + beta)])
  yaw_new = yaw + v_mid * DT * jnp.sin(beta) / (0.5 * p.wheelbase)
  yaw_new = jnp.arctan2(jnp.sin(yaw_new), jnp.cos(yaw_new))

  # NPC vehicles (their pose before moving: collisions are judged on the same instant).
  npc_pos, npc_yaw = npc_poses(town, state)
  ped_pos, ped_yaw = ped_poses(state)
  ego_half = jnp.asarray(EGO_HALF[:2])
  hit_npc = obb_overlap(pos_new, ego_half, yaw_new, npc_pos, state["npc_half"], npc_yaw) & state[
      "npc_active"]
  hit_ped = obb_overlap(pos_new, ego_half, yaw_new, ped_pos, jnp.asarray(PED_HALF[:2]),
                        ped_yaw) & state["ped_active"]
  static_pos = town["box_centre"][:, :2]
  hit_static = obb_overlap(pos_new, ego_half, yaw_new, static_pos, town["box_half"][:, :2],
                           town["box_yaw"]) & (town["box_centre"][:, 2] - town["box_half"][:, 2]
                                               < 1.5)
  def first(mask):
    return jnp.where(mask.any(), jnp.argmax(mask), -1).astype(jnp.int32)
  collided = hit_npc.any() | hit_ped.any() | hit_static.any()
  # A collision stops the car where it was (no interpenetration), as a crash would.
  pos_new = jnp.where(collided, state["ego_pos"], pos_new)
  yaw_new = jnp.where(collided, yaw, yaw_new)
  v_new = jnp.where(collided, 0.0, v_new)

  # Red lights and stop signs: the ego's front bumper crossing a stop line.
  front_old = state["ego_pos"] + EGO_HALF[0] * jnp.stack([jnp.cos(yaw), jnp.sin(yaw)])
  front_new = pos_new + EGO_HALF[0] * jnp.stack([jnp.cos(yaw_new), jnp.sin(yaw_new)])
  lines = town["stop_line"]
  crossed = _segment_cross(front_old, front_new, lines[:, 0], lines[:, 1]) & (
      jnp.sum(town["stop_line_dir"] * jnp.stack([jnp.cos(yaw_new), jnp.sin(yaw_new)]), -1) > 0.5)
  line_state = stop_line_states(town, t)
  is_light = town["stop_line_light"] >= 0
  is_sign = town["stop_line_light"] == -1
  red_light = first(crossed & is_light & (line_state == RED))
  stop_crossed = first(crossed & is_sign)
  # Stop-sign waiting zone: up to 6 m before the line, between its ends, heading along it.
  rel = pos_new[None, :] - lines[:, 0]
  along_line = lines[:, 1] - lines[:, 0]
  line_len = jnp.maximum(jnp.linalg.norm(along_line, axis=-1), 1e-6)
  lateral = jnp.sum(rel * along_line, -1) / line_len
  before = -jnp.sum(rel * town["stop_line_dir"], -1) - EGO_HALF[0]  # front bumper to line
  heading_ok = jnp.sum(town["stop_line_dir"] * jnp.stack([jnp.cos(yaw_new), jnp.sin(yaw_new)]),
                       -1) > 0.5
  in_zone = is_sign & heading_ok & (lateral > -0.5) & (lateral < line_len + 0.5) & (
      before > -0.5) & (before < 6.0)
  stop_zone = first(in_zone)

  # NPCs: IDM towards the nearest obstacle in a corridor ahead, stop lines as obstacles.
  n = npc_pos.shape[0]
  c, s = jnp.cos(npc_yaw), jnp.sin(npc_yaw)
  obstacles = jnp.concatenate([npc_pos, ped_pos, pos_new[None]], 0)
  obstacle_yaw = jnp.concatenate([npc_yaw, ped_yaw, yaw_new[None]], 0)
  obstacle_half = jnp.concatenate([state["npc_half"], jnp.broadcast_to(
      jnp.asarray(PED_HALF[:2]), ped_pos.shape), ego_half[None]], 0)
  obstacle_speed = jnp.concatenate([state["npc_speed"], state["ped_speed"] * state["ped_started"],
                                    v_new[None]], 0)
  obstacle_on = jnp.concatenate([state["npc_active"], state["ped_active"], jnp.ones((1,), bool)])
  d = obstacles[None, :, :] - npc_pos[:, None, :]
  forward = d[..., 0] * c[:, None] + d[..., 1] * s[:, None]
  lateral = -d[..., 0] * s[:, None] + d[..., 1] * c[:, None]
  relative_yaw = obstacle_yaw[None, :] - npc_yaw[:, None]
  same_way = jnp.cos(relative_yaw) > -0.2
  # The obstacle's extent along the NPC's axes (a car across the lane is long sideways).
  c_rel, s_rel = jnp.abs(jnp.cos(relative_yaw)), jnp.abs(jnp.sin(relative_yaw))
  extent_lateral = c_rel * obstacle_half[None, :, 1] + s_rel * obstacle_half[None, :, 0]
  extent_forward = c_rel * obstacle_half[None, :, 0] + s_rel * obstacle_half[None, :, 1]
  is_vehicle = jnp.arange(obstacles.shape[0]) < n
  in_corridor = (forward > 0) & (forward < p.corridor_length) & (
      jnp.abs(lateral) < p.corridor_half_width + extent_lateral) & obstacle_on[None] & (
      ~is_vehicle[None] | same_way) & ~jnp.eye(n, obstacles.shape[0], dtype=bool)
  gap = jnp.where(in_corridor, forward - state["npc_half"][:, :1] - extent_forward, 1e3)
  lead = jnp.argmin(gap, axis=1)
  lead_gap = jnp.min(gap, axis=1)
  lead_speed = obstacle_speed[lead]

  lane_len = town["lane_length"][state["npc_lane"]]
  line = town["lane_stop_line"][state["npc_lane"]]
  has_line = line >= 0
  state_at_line = line_state[jnp.maximum(line, 0)]
  line_is_sign = town["stop_line_light"][jnp.maximum(line, 0)] == -1
  line_gap = lane_len - p.stop_gap - state["npc_s"] - state["npc_half"][:, 0]
  v_npc = state["npc_speed"]
  can_stop = line_gap > v_npc * v_npc / (2 * p.idm_decel) - 1.0
  must_stop_light = has_line & ~line_is_sign & ~state["npc_ignore_lights"] & (
      (state_at_line == RED) | ((state_at_line == YELLOW) & can_stop)) & (line_gap > -1.0)
  must_stop_sign = has_line & line_is_sign & (state["npc_stop_timer"] < p.stop_sign_wait) & (
      line_gap > -1.0)
  stop_obstacle = must_stop_light | must_stop_sign
  lead_gap_all = jnp.where(stop_obstacle, jnp.minimum(lead_gap, jnp.maximum(line_gap, 0.0)),
                           lead_gap)
  lead_speed_all = jnp.where(stop_obstacle & (line_gap <= lead_gap), 0.0, lead_speed)
  v0 = state["npc_max_speed"]
  s_star = p.idm_gap + v_npc * p.idm_headway + v_npc * (v_npc - lead_speed_all) / (
      2 * jnp.sqrt(p.idm_accel * p.idm_decel))
  idm = p.idm_accel * (1 - (v_npc / jnp.maximum(v0, 0.1)) ** 4 - (
      jnp.maximum(s_star, 0.0) / jnp.maximum(lead_gap_all, 0.1)) ** 2)
  # Scripted behaviours: parked until the ego approaches; hard braking when the ego is behind.
  ego_dist = jnp.linalg.norm(npc_pos - pos_new[None], axis=-1)
  held = (state["npc_hold_until_ego"] > 0) & (ego_dist > state["npc_hold_until_ego"]) & (
      t < state["npc_hold_deadline"])
  hold_released = jnp.where(held, state["npc_hold_until_ego"], 0.0)  # Once released, free.
  trigger = (state["npc_brake_trigger"] > 0) & (ego_dist < state["npc_brake_trigger"])
  brake_until = jnp.where(trigger, t + p.brake_hold, state["npc_brake_until"])
  brake_trigger = jnp.where(trigger, 0.0, state["npc_brake_trigger"])
  braking = t < brake_until
  accel_npc = jnp.clip(idm, -p.npc_hard_brake, p.idm_accel)
  accel_npc = jnp.where(braking, -p.npc_hard_brake, accel_npc)
  v_npc_new = jnp.where(held | ~state["npc_active"], 0.0, jnp.clip(v_npc + accel_npc * DT, 0.0,
                                                                   v0))
  stop_timer = jnp.where(has_line & line_is_sign & (v_npc_new < 0.1) & (line_gap < 3.0),
                         state["npc_stop_timer"] + DT, state["npc_stop_timer"])
  s_new = state["npc_s"] + v_npc_new * DT
  arrived = s_new >= lane_len
  key, sub = jax.random.split(state["key"])
  next_lane = state["npc_next_lane"]
  succ = town["lane_succ"][next_lane]  # [N, S]
  count = jnp.maximum(jnp.sum(succ >= 0, -1), 1)
  pick = jnp.floor(jax.random.uniform(sub, (n,)) * count).astype(jnp.int32)
  new_next = jnp.take_along_axis(succ, pick[:, None], 1)[:, 0]
  new_next = jnp.where(new_next >= 0, new_next, next_lane)
  npc_lane = jnp.where(arrived, next_lane, state["npc_lane"])
  npc_s = jnp.where(arrived, s_new - lane_len, s_new)
  npc_next = jnp.where(arrived, new_next, next_lane)
  stop_timer = jnp.where(arrived, 0.0, stop_timer)

  # Pedestrians: walk their segment once started.
  ped_len = jnp.linalg.norm(state["ped_end"] - state["ped_start"], axis=-1)
  started = state["ped_started"] | (
      (state["ped_trigger_dist"] > 0) & (jnp.linalg.norm(
          state["ped_trigger_pos"] - pos_new[None], axis=-1) < state["ped_trigger_dist"]))
  # Nobody walks into a car: a pedestrian whose next step would meet the ego's box waits.
  ped_heading = jnp.stack([jnp.cos(ped_yaw), jnp.sin(ped_yaw)], -1)
  ped_waiting = obb_overlap(ped_pos + 0.6 * ped_heading, jnp.asarray([0.5, 0.35]), ped_yaw,
                            pos_new, ego_half, yaw_new) & started
  ped_s = state["ped_s"] + jnp.where(started & state["ped_active"] & ~ped_waiting,
                                     state["ped_speed"] * state["ped_sign"] * DT, 0.0)
  bounce = state["ped_bounce"]
  ped_sign = jnp.where(bounce & (ped_s > ped_len), -1.0,
                       jnp.where(bounce & (ped_s < 0), 1.0, state["ped_sign"]))
  ped_s = jnp.clip(ped_s, 0.0, ped_len)

  # Drive-direction code under the ego (outside-lane bookkeeping).
  res = town["raster_res"]
  col = jnp.floor((pos_new[0] - town["raster_origin"][0]) / res).astype(jnp.int32)
  row = jnp.floor((pos_new[1] - town["raster_origin"][1]) / res).astype(jnp.int32)
  h, w = town["drive_dir"].shape
  inside = (row >= 0) & (row < h) & (col >= 0) & (col < w)
  drive_dir = jnp.where(inside, town["drive_dir"][jnp.clip(row, 0, h - 1), jnp.clip(col, 0, w - 1)],
                        255).astype(jnp.int32)

  new_state = dict(state)
  new_state.update(
      t=t + DT, ego_pos=pos_new, ego_yaw=yaw_new, ego_speed=v_new, npc_lane=npc_lane, npc_s=npc_s,
      npc_speed=v_npc_new, npc_next_lane=npc_next, npc_stop_timer=stop_timer,
      npc_hold_until_ego=hold_released, npc_brake_trigger=brake_trigger,
      npc_brake_until=brake_until, ped_s=ped_s, ped_sign=ped_sign, ped_started=started,
      ped_waiting=ped_waiting, key=key)
  info = dict(
      collision_vehicle=first(hit_npc), collision_pedestrian=first(hit_ped),
      collision_static=first(hit_static), red_light=red_light, stop_sign_crossed=stop_crossed,
      stop_zone=stop_zone, drive_dir=drive_dir, light_states=light_states(town, t + DT))
  return new_state, info


def stack(trees: list[Any]) -> Any:
  """Stacks per-world pytrees (states or town arrays) along a new leading batch axis."""
  return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)
