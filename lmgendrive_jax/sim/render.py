"""Camera rendering in JAX: exact ray casting of vertical boxes plus an analytic ground plane.

Where it sits: `render_views(town, state, rig)` (jit, vmappable over worlds) turns a world state
(world.py) into `uint8[V, H, W, 3]` camera images for the agent, the expert's data collection
and the viewer.

Algorithm (why it is fast on a CPU): every camera has zero pitch and roll (LMDrive's rig), so a
vertical box edge projects to an image column. Each column is a vertical plane of rays; its
top-down ray meets a box's footprint on a depth interval [X_in, X_out] (one 2D slab test per
column and box), and each pixel row only adds a 1D test against the box's height. The cost is
O(W K) slab tests + O(H W K) few-flop tests for K boxes. The ground is analytic: a pixel below
the horizon meets the ground at depth z_cam / slope, which is looked up in the town's top-down
class raster (road, lane markings, crosswalks, sidewalk, terrain). The K boxes nearest the ego
(buildings, poles, light heads, stop signs, vehicles, pedestrians) inside each camera's field
of view are picked per view with `top_k`. Lamps of the light heads glow in their state's colour; weather and time of day set the
sun, ambient light, sky, fog and road wetness.

Camera frame: depth X forward, a = right / X, k = down / X. World frame: CARLA's (town.py).
Box layout: centre f32[K, 3] (z: vertical centre), half f32[K, 3] (along yaw, across, up),
yaw f32[K], colour / colour2 f32[K, 3], material int32[K] (town.MAT_*), light int32[K].
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from lmgendrive_jax.data import camera_rig
from lmgendrive_jax.sim import town as town_lib
from lmgendrive_jax.sim import world as world_lib

# LMDrive's rig (data/camera_rig.py): x forward, y right, z up (metres), yaw degrees; the focus
# view looks where the front camera does.
VIEW_POSES = {**camera_rig.CAMERA_POSES, "focus": camera_rig.CAMERA_POSES["front"]}
FOV_DEG = camera_rig.FOV_DEG
FOCUS_FRACTION = 128 / 800  # LMDrive's focus view: a 128 px centre crop of the 800 px front.

GROUND_PALETTE = np.array([
    [0.33, 0.42, 0.26],  # terrain
    [0.62, 0.61, 0.58],  # sidewalk
    [0.27, 0.27, 0.29],  # road
    [0.88, 0.88, 0.86],  # white marking
    [0.86, 0.70, 0.15],  # yellow marking
    [0.90, 0.90, 0.88],  # crosswalk
    [0.92, 0.92, 0.90],  # stop line
], np.float32)
LAMP_COLOURS = np.array([[1.0, 0.1, 0.05], [1.0, 0.8, 0.05], [0.1, 1.0, 0.3]], np.float32)
GLASS = np.array([0.10, 0.12, 0.16], np.float32)
SKIN = np.array([0.80, 0.62, 0.50], np.float32)


def view_fov_deg(view: str) -> float:
  """Horizontal field of view of a camera view: 100 degrees (LMDrive's rig), the focus camera
  the telephoto equivalent of LMDrive's 128-px centre crop of its 800-px front (~21.6)."""
  if view != "focus":
    return FOV_DEG
  return 2 * math.degrees(math.atan(math.tan(math.radians(FOV_DEG / 2)) * FOCUS_FRACTION))


@dataclasses.dataclass(frozen=True)
class CameraRig:
  """Views to render (names of `VIEW_POSES`), resolution, boxes per view (the nearest inside
  its field of view), draw distance."""
  views: tuple[str, ...] = ("front", "left", "right", "rear")
  width: int = 64
  height: int = 64
  max_boxes: int = 32
  draw_distance: float = 120.0

  def intrinsics(self, view: str) -> tuple[np.ndarray, np.ndarray]:
    """(a f32[W] right-per-depth of each column, k f32[H] down-per-depth of each row)."""
    focal = self.width / (2 * math.tan(math.radians(view_fov_deg(view) / 2)))
    a = (np.arange(self.width) + 0.5 - self.width / 2) / focal
    k = (np.arange(self.height) + 0.5 - self.height / 2) / focal
    return a.astype(np.float32), k.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Weather:
  """Lighting of one world (a row of `WEATHERS`)."""
  name: str
  sun_elevation: float  # degrees
  sun_azimuth: float
  ambient: float
  diffuse: float
  sky_top: tuple
  sky_horizon: tuple
  fog: float  # extinction per metre
  wetness: float  # 0 dry .. 1 wet (darker, bluish road)


# 21 presets like CARLA's (LMDrive's weather ids 0..20): day/sunset/night x clear/cloudy/wet/rain.
def _weathers() -> tuple[Weather, ...]:
  times = (("Noon", 60.0, 1.0), ("Sunset", 8.0, 0.75), ("Night", -20.0, 0.22))
  kinds = (("Clear", 0.0, 0.0, 0.0), ("Cloudy", 0.5, 0.0, 0.0), ("Wet", 0.2, 0.6, 0.0),
           ("WetCloudy", 0.6, 0.6, 0.0), ("SoftRain", 0.6, 0.8, 0.004),
           ("MidRain", 0.7, 0.9, 0.008), ("HardRain", 0.85, 1.0, 0.015))
  out = []
  for time_name, elevation, light in times:
    for kind, cloud, wet, fog in kinds:
      sunset = time_name == "Sunset"
      top = np.array([0.35, 0.55, 0.9]) * (1 - 0.5 * cloud) + 0.5 * cloud * np.array([0.6, 0.6, 0.62])
      horizon = np.array([0.75, 0.82, 0.92]) * (1 - 0.4 * cloud) + 0.4 * cloud * np.array(
          [0.7, 0.7, 0.7])
      if sunset:
        horizon = horizon * 0.5 + np.array([0.95, 0.55, 0.3]) * 0.5
      out.append(Weather(
          f"{kind}{time_name}", elevation, 35.0 if not sunset else 170.0,
          ambient=0.45 * light + 0.05, diffuse=(0.6 * (1 - 0.7 * cloud)) * light,
          sky_top=tuple(top * light), sky_horizon=tuple(horizon * light),
          fog=fog + 0.002 * cloud, wetness=wet))
  return tuple(out)


WEATHERS = _weathers()


def weather_vector(weather_id: int) -> np.ndarray:
  """f32[13] packed weather: sun dir (3), ambient, diffuse, sky top (3), horizon (3), fog, wet."""
  w = WEATHERS[int(weather_id) % len(WEATHERS)]
  el, az = math.radians(w.sun_elevation), math.radians(w.sun_azimuth)
  sun = [math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)]
  return np.asarray(sun + [w.ambient, w.diffuse, *w.sky_top, *w.sky_horizon, w.fog, w.wetness],
                    np.float32)


def scene_boxes(town: dict, state: dict, max_boxes: int) -> dict:
  """Every box of the scene: static boxes, NPC vehicles and pedestrians (`active` masks
  padding); `view_boxes` picks each camera's nearest `max_boxes`."""
  npc_pos, npc_yaw = world_lib.npc_poses(town, state)
  ped_pos, ped_yaw = world_lib.ped_poses(state)
  n, m = npc_pos.shape[0], ped_pos.shape[0]
  npc_height = 0.75 + 0.0 * state["npc_half"][:, :1]
  centre = jnp.concatenate([
      town["box_centre"],
      jnp.concatenate([npc_pos, npc_height], -1),
      jnp.concatenate([ped_pos, jnp.full((m, 1), world_lib.PED_HALF[2])], -1)], 0)
  half = jnp.concatenate([
      town["box_half"],
      jnp.concatenate([state["npc_half"], npc_height], -1),
      jnp.broadcast_to(jnp.asarray(world_lib.PED_HALF), (m, 3))], 0)
  yaw = jnp.concatenate([town["box_yaw"], npc_yaw, ped_yaw])
  colour = jnp.concatenate([town["box_colour"], state["npc_colour"], state["ped_colour"]], 0)
  colour2 = jnp.concatenate([town["box_colour2"], state["npc_colour"] * 0.7,
                             jnp.broadcast_to(jnp.asarray([0.15, 0.17, 0.3]), (m, 3))], 0)
  material = jnp.concatenate([town["box_material"], jnp.full((n,), town_lib.MAT_VEHICLE),
                              jnp.full((m,), town_lib.MAT_PEDESTRIAN)]).astype(jnp.int32)
  light = jnp.concatenate([town["box_light"], jnp.full((n + m,), -1)]).astype(jnp.int32)
  active = jnp.concatenate([jnp.ones(town["box_yaw"].shape, bool), state["npc_active"],
                            state["ped_active"]])
  return dict(centre=centre, half=half, yaw=yaw, colour=colour, colour2=colour2,
              material=material, light=light, active=active)


def view_boxes(boxes: dict, cam_pos, cam_yaw, tan_half_fov: float, max_boxes: int,
               draw_distance: float) -> dict:
  """The `max_boxes` nearest boxes inside one camera's horizontal field of view."""
  d = boxes["centre"][:, :2] - cam_pos[None]
  forward = d[:, 0] * jnp.cos(cam_yaw) + d[:, 1] * jnp.sin(cam_yaw)
  lateral = -d[:, 0] * jnp.sin(cam_yaw) + d[:, 1] * jnp.cos(cam_yaw)
  radius = jnp.linalg.norm(boxes["half"][:, :2], axis=-1)
  visible = (forward > -radius) & (jnp.abs(lateral) - radius < (
      jnp.maximum(forward, 0.0) + radius) * tan_half_fov) & boxes["active"]
  distance = jnp.sqrt(forward ** 2 + lateral ** 2) - radius
  visible = visible & (distance < draw_distance)
  score = jnp.where(visible, distance, 1e9)
  k = min(max_boxes, score.shape[0])
  neg, idx = jax.lax.top_k(-score, k)
  picked = {key: value[idx] for key, value in boxes.items()}
  picked["active"] = neg > -1e8
  return picked


def _shade_box(material, colour, colour2, light_state, z_frac, z_abs, half_z, lambert,
               ambient, front_face):
  """Colour of a box surface point: f32[..., 3] (lamps are emissive). A light head shows its
  lamps only on its front face (`front_face`: the box's +length side, which `town.py` turns
  towards the traffic the light controls); seen from the side or behind it is a plain housing,
  as in CARLA, so a camera sees only the lights that face its own approach."""
  lit = ambient + lambert
  base = colour * lit[..., None]
  # Buildings: darker window bands every 3 m above the ground floor.
  windows = (half_z > 2.5) & (jnp.mod(z_abs, 3.0) > 1.6) & (z_abs > 2.5)
  plain = jnp.where(windows[..., None], colour2 * lit[..., None] * 0.7, base)
  vehicle = jnp.where((z_frac > 0.62)[..., None], jnp.asarray(GLASS) * lit[..., None], base)
  pedestrian = jnp.where((z_frac > 0.85)[..., None], jnp.asarray(SKIN) * lit[..., None],
                         jnp.where((z_frac > 0.45)[..., None], base, colour2 * lit[..., None]))
  lamp = jnp.clip(2 - jnp.floor(z_frac * 3), 0, 2).astype(jnp.int32)  # top red, bottom green
  on = (lamp == light_state) & front_face
  lamp_colour = jnp.asarray(LAMP_COLOURS)[lamp]
  head = jnp.where(on[..., None], lamp_colour,
                   jnp.where(front_face[..., None], lamp_colour * 0.12, 0.0) + base)
  return jnp.select(
      [material[..., None] == town_lib.MAT_VEHICLE, material[..., None] == town_lib.MAT_LIGHT,
       material[..., None] == town_lib.MAT_PEDESTRIAN], [vehicle, head, pedestrian], plain)


def _render_view(town, boxes, light_states, weather, cam_pos, cam_yaw, cam_z, a, k,
                 draw_distance):
  """One view: uint8[H, W, 3]."""
  cos, sin = jnp.cos(cam_yaw), jnp.sin(cam_yaw)
  # Top-down ray direction per unit depth, per column: forward + a * right.
  dir_x = cos - a * sin  # [W]
  dir_y = sin + a * cos
  sun = weather[0:3]
  ambient, diffuse = weather[3], weather[4]
  sky_top, sky_horizon = weather[5:8], weather[8:11]
  fog, wet = weather[11], weather[12]

  # Boxes: 2D slab test per column and box in the box's frame.
  bc, bs = jnp.cos(boxes["yaw"]), jnp.sin(boxes["yaw"])  # [K]
  rel = cam_pos[None, :] - boxes["centre"][:, :2]  # [K, 2]
  o_l = rel[:, 0] * bc + rel[:, 1] * bs  # [K]
  o_w = -rel[:, 0] * bs + rel[:, 1] * bc
  d_l = dir_x[:, None] * bc[None] + dir_y[:, None] * bs[None]  # [W, K]
  d_w = -dir_x[:, None] * bs[None] + dir_y[:, None] * bc[None]
  def slab(o, d, h):
    d = jnp.where(jnp.abs(d) < 1e-6, 1e-6, d)
    t1, t2 = (-h - o) / d, (h - o) / d
    return jnp.minimum(t1, t2), jnp.maximum(t1, t2)
  l_in, l_out = slab(o_l[None], d_l, boxes["half"][None, :, 0])
  w_in, w_out = slab(o_w[None], d_w, boxes["half"][None, :, 1])
  x_in = jnp.maximum(l_in, w_in)  # [W, K]
  x_out = jnp.minimum(l_out, w_out)
  side_is_l = l_in > w_in
  # Side normal in the world frame (faces the camera).
  n_l = -jnp.sign(d_l)
  n_w = -jnp.sign(d_w)
  normal_x = jnp.where(side_is_l, n_l * bc[None], -n_w * bs[None])
  normal_y = jnp.where(side_is_l, n_l * bs[None], n_w * bc[None])
  side_lambert = diffuse * jnp.maximum(0.0, normal_x * sun[0] + normal_y * sun[1]) + 0.15 * (
      side_is_l.astype(jnp.float32))  # Faces differ slightly even without sun (shape cue).

  z_top = boxes["centre"][:, 2] + boxes["half"][:, 2]
  z_bot = boxes["centre"][:, 2] - boxes["half"][:, 2]
  kk = jnp.where(jnp.abs(k) < 1e-6, 1e-6, k)[:, None]  # [H, 1]
  za = (cam_z - z_top[None]) / kk  # [H, K]
  zb = (cam_z - z_bot[None]) / kk
  v_lo, v_hi = jnp.minimum(za, zb), jnp.maximum(za, zb)
  near = 0.05
  hit = jnp.maximum(jnp.maximum(x_in[None], v_lo[:, None]), near)  # [H, W, K]
  valid = (hit <= jnp.minimum(x_out[None], v_hi[:, None])) & boxes["active"][None, None]
  depth_all = jnp.where(valid, hit, jnp.inf)
  which = jnp.argmin(depth_all, axis=-1)  # [H, W]
  box_depth = jnp.min(depth_all, axis=-1)

  # Ground.
  ground_depth = jnp.where(k > 1e-6, cam_z / jnp.maximum(k, 1e-6), jnp.inf)[:, None]  # [H, 1]
  gx = cam_pos[0] + ground_depth * dir_x[None]  # [H, W]
  gy = cam_pos[1] + ground_depth * dir_y[None]
  res = town["raster_res"]
  col = jnp.floor((gx - town["raster_origin"][0]) / res).astype(jnp.int32)
  row = jnp.floor((gy - town["raster_origin"][1]) / res).astype(jnp.int32)
  h, w = town["ground"].shape
  inside = (row >= 0) & (row < h) & (col >= 0) & (col < w)
  cls = jnp.where(inside, town["ground"][jnp.clip(row, 0, h - 1), jnp.clip(col, 0, w - 1)], 0)
  ground_colour = jnp.asarray(GROUND_PALETTE)[cls]
  road_like = (cls == town_lib.GROUND_ROAD)[..., None]
  ground_colour = jnp.where(road_like, ground_colour * (1 - 0.35 * wet) + 0.05 * wet * jnp.asarray(
      [0.2, 0.3, 0.5]), ground_colour)
  ground_lit = ground_colour * (ambient + diffuse * jnp.maximum(sun[2], 0.0))

  # Sky: gradient from horizon to top by elevation.
  elevation = jnp.clip(-k, 0.0, 1.0)[:, None, None]
  sky = sky_horizon * (1 - elevation) + sky_top * elevation
  sky = jnp.broadcast_to(sky, (k.shape[0], a.shape[0], 3))

  # Box surface colour at the hit.
  cols = jnp.arange(a.shape[0])[None, :]
  hit_on_top = jnp.take_along_axis(v_lo, which, axis=1) > x_in[cols, which]
  z_hit = cam_z - k[:, None] * box_depth
  b_bot = z_bot[which]
  b_height = jnp.maximum(z_top[which] - b_bot, 1e-3)
  z_frac = jnp.clip((z_hit - b_bot) / b_height, 0.0, 0.999)
  side_l = side_lambert[cols, which]
  front_face = side_is_l[cols, which] & (n_l[cols, which] > 0) & ~hit_on_top
  lambert = jnp.where(hit_on_top, diffuse * jnp.maximum(sun[2], 0.0) + 0.1, side_l)
  light_index = boxes["light"][which]
  light_state = jnp.where(light_index >= 0, light_states[jnp.maximum(light_index, 0)], -1)
  box_colour = _shade_box(boxes["material"][which], boxes["colour"][which],
                          boxes["colour2"][which], light_state, z_frac, z_hit,
                          boxes["half"][which, 2], lambert, ambient, front_face)

  use_box = box_depth < ground_depth
  depth = jnp.minimum(box_depth, ground_depth)
  colour = jnp.where(use_box[..., None], box_colour, ground_lit)
  visible = depth < draw_distance
  fog_amount = (1 - jnp.exp(-fog * jnp.minimum(depth, draw_distance)))[..., None]
  colour = colour * (1 - fog_amount) + sky_horizon * fog_amount
  colour = jnp.where(visible[..., None], colour, sky)
  return jnp.clip(colour * 255.0 + 0.5, 0, 255).astype(jnp.uint8)


def render_views(town: dict, state: dict, rig: CameraRig) -> jax.Array:
  """uint8[V, H, W, 3] camera images of one world (views in `rig.views` order)."""
  boxes = scene_boxes(town, state, rig.max_boxes)  # all candidates; each view keeps its nearest
  lights = world_lib.light_states(town, state["t"])
  ego_c, ego_s = jnp.cos(state["ego_yaw"]), jnp.sin(state["ego_yaw"])
  images = []
  for view in rig.views:
    if view not in VIEW_POSES:
      raise ValueError(f"unknown camera view {view!r}; known: {sorted(VIEW_POSES)}")
    x, y, z, yaw_deg = VIEW_POSES[view]
    a, k = rig.intrinsics(view)
    cam_pos = state["ego_pos"] + jnp.stack([x * ego_c - y * ego_s, x * ego_s + y * ego_c])
    cam_yaw = state["ego_yaw"] + math.radians(yaw_deg)
    tan_half = float(a[-1]) + 0.5 * float(a[1] - a[0])  # right edge of the image, per depth
    picked = view_boxes(boxes, cam_pos, cam_yaw, tan_half, rig.max_boxes, rig.draw_distance)
    images.append(_render_view(town, picked, lights, state["weather"], cam_pos, cam_yaw, z,
                               jnp.asarray(a), jnp.asarray(k), rig.draw_distance))
  return jnp.stack(images)


def project_point(rig: CameraRig, view: str, ego_pos, ego_yaw, point_xyz) -> tuple[float, float,
                                                                                     float]:
  """Pinhole projection of a world point into `view`: (u, v, depth) in pixels (host numpy)."""
  x, y, z, yaw_deg = VIEW_POSES[view]
  c, s = math.cos(ego_yaw), math.sin(ego_yaw)
  cam = np.array([ego_pos[0] + x * c - y * s, ego_pos[1] + x * s + y * c, z])
  yaw = ego_yaw + math.radians(yaw_deg)
  d = np.asarray(point_xyz, np.float64) - cam
  forward = d[0] * math.cos(yaw) + d[1] * math.sin(yaw)
  right = -d[0] * math.sin(yaw) + d[1] * math.cos(yaw)
  down = -d[2]
  a, _ = rig.intrinsics(view)
  focal = 1.0 / (a[1] - a[0]) if len(a) > 1 else rig.width / (2 * math.tan(math.radians(
      FOV_DEG / 2)))
  return rig.width / 2 + focal * right / forward, rig.height / 2 + focal * down / forward, forward


def focus_crop(front: np.ndarray, fraction: float = 128 / 600) -> np.ndarray:
  """LMDrive's focus view from a front image uint8[H, W, 3]: the centre square of side
  `fraction * H` (128 px of a 600 px high image)."""
  h, w = front.shape[:2]
  side = max(1, round(fraction * h))
  top, left = (h - side) // 2, (w - side) // 2
  return front[top:top + side, left:left + side]
