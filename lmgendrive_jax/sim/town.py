"""Towns of the embedded simulator, generated from a seed, stored as arrays.

Where it sits: `make_town(seed, cfg)` builds a `Town` on the host (numpy) once per route; `world.py`
(physics), `render.py` (cameras), `routes.py` (planning), `expert.py` and `scoring.py` read its
arrays. `Town.arrays(shapes)` pads them to fixed `TownShapes` so that worlds of different towns
stack into one batch (jit + vmap over worlds).

Frame: CARLA's world frame, x east, y south (metres), yaw in radians from +x towards +y (so a
heading of -pi/2 points north). Traffic keeps right: a lane's right-hand side is
`(-sin yaw, cos yaw)`.

The network is a grid of nodes `block` metres apart with some edges removed (T-junctions, bends).
Each road line (a row or column of the grid) has 1 or 2 lanes per direction. The lane graph is the
form an OpenDRIVE map read through `carla.Map` converts into (waypoint polylines + successors):
- lanes: `lane_points f32[L, P, 2]` centre polyline, `lane_length f32[L]`, `lane_succ int32[L, 4]`
  successors (-1 pads), `lane_left / lane_right int32[L]` same-direction neighbours (lane change),
  `lane_option int32[L]` RoadOption of driving it (1 left, 2 right, 3 straight inside junctions,
  4 lane follow), `lane_junction int32[L]` (-1 outside junctions), `lane_stop_line int32[L]`
  the stop line at the lane's end (-1 none), `lane_index int32[L]` (0 = innermost lane).
- junctions: `junction_centre f32[J, 2]`, `junction_half f32[J]` (square area), `junction_kind`
  (2 bend, 3 T, 4 four-way), `junction_has_light`, `junction_light_offset` (phase, seconds).
- stop lines (one per approach of a junction with a light or a stop sign): `stop_line f32[S, 2, 2]`,
  `stop_line_dir f32[S, 2]` (approach heading), `stop_line_light int32[S]` (-1: a stop sign),
  `stop_line_group int32[S]` (light phase group: 0 east-west, 1 north-south).
- lights: `light_pos f32[N, 3]` (lamp head), `light_stop_line int32[N]`.
- static boxes (buildings, poles, heads, signs): see `render.py` for the box layout.
- rasters (top-down, `raster_res` m per pixel, pixel (0, 0) at `raster_origin`):
  `ground uint8[H, W]` classes `GROUND_*`, `drive_dir uint8[H, W]` lane heading code (0 east,
  1 south, 2 west, 3 north, 4 junction, 255 off road).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from lmgendrive_jax.errors import SimulatorError

# RoadOption numbering (CARLA's agents.navigation.local_planner.RoadOption).
LEFT, RIGHT, STRAIGHT, LANEFOLLOW, CHANGELANELEFT, CHANGELANERIGHT = 1, 2, 3, 4, 5, 6
# Ground raster classes.
GROUND_TERRAIN, GROUND_SIDEWALK, GROUND_ROAD, GROUND_WHITE, GROUND_YELLOW, GROUND_CROSSWALK, \
    GROUND_STOP = range(7)
NUM_GROUND_CLASSES = 7
DRIVE_JUNCTION, DRIVE_OFFROAD = 4, 255
# Box materials (render.py): plain, vehicle (glass band on top), light head (three lamps),
# pedestrian (skin / shirt / trousers), stop sign plate.
MAT_PLAIN, MAT_VEHICLE, MAT_LIGHT, MAT_PEDESTRIAN = range(4)

MAX_SUCCESSORS = 4


@dataclasses.dataclass(frozen=True)
class TownShapes:
  """Padded array sizes shared by every world in a batch."""
  lanes: int
  static_boxes: int
  lights: int
  stop_lines: int
  walk_paths: int
  raster_h: int
  raster_w: int


@dataclasses.dataclass
class Town:
  """A generated town: host-side numpy arrays (see module docstring) plus metadata."""
  seed: int
  town_id: int
  block: float
  lane_width: float
  lane_points: np.ndarray
  lane_length: np.ndarray
  lane_succ: np.ndarray
  lane_left: np.ndarray
  lane_right: np.ndarray
  lane_option: np.ndarray
  lane_junction: np.ndarray
  lane_stop_line: np.ndarray
  lane_index: np.ndarray
  lane_edge: np.ndarray
  junction_centre: np.ndarray
  junction_half: np.ndarray
  junction_kind: np.ndarray
  junction_has_light: np.ndarray
  junction_light_offset: np.ndarray
  stop_line: np.ndarray
  stop_line_dir: np.ndarray
  stop_line_light: np.ndarray
  stop_line_group: np.ndarray
  stop_line_junction: np.ndarray
  light_pos: np.ndarray
  light_stop_line: np.ndarray
  box_centre: np.ndarray
  box_half: np.ndarray
  box_yaw: np.ndarray
  box_colour: np.ndarray
  box_colour2: np.ndarray
  box_material: np.ndarray
  box_light: np.ndarray
  walk_paths: np.ndarray
  ground: np.ndarray
  drive_dir: np.ndarray
  raster_origin: np.ndarray
  raster_res: float
  light_cycle: tuple[float, float, float]  # green, yellow, all-red seconds per group

  @property
  def num_lanes(self) -> int:
    return len(self.lane_length)

  def shapes(self) -> TownShapes:
    return TownShapes(len(self.lane_length), len(self.box_yaw), len(self.light_pos),
                      len(self.stop_line), len(self.walk_paths), *self.ground.shape)

  def arrays(self, shapes: TownShapes | None = None) -> dict[str, np.ndarray]:
    """The arrays world/render functions read, padded to `shapes` (a pytree of numpy arrays)."""
    shapes = shapes or self.shapes()
    own = self.shapes()
    for field in dataclasses.fields(TownShapes):
      if getattr(own, field.name) > getattr(shapes, field.name):
        raise SimulatorError(
            f"town {self.town_id} (seed {self.seed}) has {getattr(own, field.name)} "
            f"{field.name}, more than the batch's padded size {getattr(shapes, field.name)}; "
            f"pad the batch with TownShapes from max_shapes() over all its towns")

    def pad(a, n, value=0):
      a = np.asarray(a)
      out = np.full((n,) + a.shape[1:], value, a.dtype)
      out[:len(a)] = a
      return out

    L, B = shapes.lanes, shapes.static_boxes
    far = np.float32(1e5)  # Padded boxes / lanes sit far away so nothing ever meets them.
    ground = np.full((shapes.raster_h, shapes.raster_w), GROUND_TERRAIN, np.uint8)
    ground[:own.raster_h, :own.raster_w] = self.ground
    drive = np.full((shapes.raster_h, shapes.raster_w), DRIVE_OFFROAD, np.uint8)
    drive[:own.raster_h, :own.raster_w] = self.drive_dir
    box_centre = pad(self.box_centre, B, far)
    return dict(
        lane_points=pad(self.lane_points, L, far), lane_length=pad(self.lane_length, L, 1.0),
        lane_succ=pad(self.lane_succ, L, -1), lane_left=pad(self.lane_left, L, -1),
        lane_right=pad(self.lane_right, L, -1), lane_option=pad(self.lane_option, L, 4),
        lane_junction=pad(self.lane_junction, L, -1),
        lane_stop_line=pad(self.lane_stop_line, L, -1),
        lane_valid=pad(np.ones(own.lanes, bool), L, False),
        junction_light_offset=self.junction_light_offset.astype(np.float32),
        stop_line=pad(self.stop_line, shapes.stop_lines, far),
        stop_line_dir=pad(self.stop_line_dir, shapes.stop_lines, 0.0),
        stop_line_light=pad(self.stop_line_light, shapes.stop_lines, -2),
        stop_line_group=pad(self.stop_line_group, shapes.stop_lines, 0),
        stop_line_junction=pad(self.stop_line_junction, shapes.stop_lines, 0),
        light_pos=pad(self.light_pos, shapes.lights, far),
        light_stop_line=pad(self.light_stop_line, shapes.lights, 0),
        light_valid=pad(np.ones(own.lights, bool), shapes.lights, False),
        box_centre=box_centre, box_half=pad(self.box_half, B, 0.01),
        box_yaw=pad(self.box_yaw, B, 0.0), box_colour=pad(self.box_colour, B, 0.0),
        box_colour2=pad(self.box_colour2, B, 0.0), box_material=pad(self.box_material, B, 0),
        box_light=pad(self.box_light, B, -1),
        walk_paths=pad(self.walk_paths, shapes.walk_paths, far),
        ground=ground, drive_dir=drive, raster_origin=self.raster_origin.astype(np.float32),
        raster_res=np.float32(self.raster_res),
        light_cycle=np.asarray(self.light_cycle, np.float32),
    )

  def light_states(self, t: float) -> np.ndarray:
    """int32[N] CARLA TrafficLightState per light at sim time t (host-side mirror of world.py)."""
    from lmgendrive_jax.sim import world  # Local: world imports town.
    return np.asarray(world.light_states(self.arrays(), np.float32(t)))[:len(self.light_pos)]


def max_shapes(towns) -> TownShapes:
  """Elementwise maximum of the towns' shapes: the padding that lets them share a batch."""
  shapes = [t.shapes() for t in towns]
  return TownShapes(*[max(getattr(s, f.name) for s in shapes)
                      for f in dataclasses.fields(TownShapes)])


# ----------------------------------------------------------------------------------------------
# Generation.


def _heading(d: np.ndarray) -> float:
  return math.atan2(d[1], d[0])


def _right(d: np.ndarray) -> np.ndarray:
  return np.array([-d[1], d[0]])


def _bezier(a, c, b, n):
  t = np.linspace(0.0, 1.0, n)[:, None]
  return (1 - t) ** 2 * a + 2 * (1 - t) * t * c + t ** 2 * b


def _dir_code(d: np.ndarray) -> int:
  """0 east, 1 south, 2 west, 3 north for an axis-aligned unit vector."""
  if d[0] > 0.5:
    return 0
  if d[1] > 0.5:
    return 1
  if d[0] < -0.5:
    return 2
  return 3


def _connected(nx: int, ny: int, edges: set) -> bool:
  seen, stack = {(0, 0)}, [(0, 0)]
  while stack:
    node = stack.pop()
    for e in edges:
      if node in e:
        other = e[0] if e[1] == node else e[1]
        if other not in seen:
          seen.add(other)
          stack.append(other)
  return len(seen) == nx * ny


def make_town(seed: int, cfg: Any, town_id: int | None = None) -> Town:
  """Generates a town from `seed` and a town config (`config.sim_preset(...).town`).

  cfg fields: grid (nx, ny), block (m), lane_width, sidewalk, two_lane_prob, remove_edge_prob,
  light_prob, stop_prob, lane_points (P), raster_res, margin, light_cycle (green, yellow, red).
  """
  rng = np.random.default_rng([int(seed), 7001])
  nx, ny = (int(v) for v in cfg.grid)
  if nx < 2 or ny < 2:
    raise SimulatorError(f"town grid {cfg.grid} must be at least 2x2 nodes")
  block, w, sidewalk = float(cfg.block), float(cfg.lane_width), float(cfg.sidewalk)
  P = int(cfg.lane_points)
  nl_row = rng.choice([1, 2], size=ny, p=[1 - cfg.two_lane_prob, cfg.two_lane_prob])
  nl_col = rng.choice([1, 2], size=nx, p=[1 - cfg.two_lane_prob, cfg.two_lane_prob])
  if block < 2 * (2 * w + float(cfg.get("junction_margin", 5.0)) + 3.5) + 12:
    raise SimulatorError(f"town block {block} m is too short for junctions of lane width {w}")

  # Edges of the grid, some removed (never the ones that would disconnect or make a dead end).
  edges = {((i, j), (i + 1, j)) for i in range(nx - 1) for j in range(ny)}
  edges |= {((i, j), (i, j + 1)) for i in range(nx) for j in range(ny - 1)}
  for e in sorted(edges):
    if rng.random() < cfg.remove_edge_prob:
      trial = edges - {e}
      degrees = [sum(1 for f in trial if n in f) for n in e]
      if min(degrees) >= 2 and _connected(nx, ny, trial):
        edges = trial
  edges = sorted(edges)

  def pos(n):
    return np.array([n[0] * block, n[1] * block], np.float64)

  def lanes_of(e):  # lanes per direction of an edge (its road line's)
    return int(nl_row[e[0][1]] if e[0][1] == e[1][1] else nl_col[e[0][0]])

  nodes = [(i, j) for j in range(ny) for i in range(nx)]
  node_edges = {n: [e for e in edges if n in e] for n in nodes}
  junction_of = {n: k for k, n in enumerate(nodes)}
  # Junction squares leave turns a radius a car can drive (right turn ~ junction_margin m).
  margin_j = float(cfg.get("junction_margin", 5.0))
  junction_half = np.array([w * max(lanes_of(e) for e in node_edges[n]) + margin_j
                            for n in nodes])
  junction_kind = np.array([len(node_edges[n]) for n in nodes])
  has_light = np.array([k >= 3 and rng.random() < cfg.light_prob for k in junction_kind])
  has_stop = np.array([k >= 3 and not l and rng.random() < cfg.stop_prob
                       for k, l in zip(junction_kind, has_light)])
  green, yellow, red = (float(v) for v in cfg.light_cycle)
  cycle = 2 * (green + yellow + red)
  light_offset = rng.uniform(0, cycle, size=len(nodes))

  crosswalk, stop_gap = 3.0, 3.5
  lane_pts, lane_option, lane_junction, lane_index, lane_edge, lane_dir = [], [], [], [], [], []
  lane_stop_line = []
  seg_lanes = {}  # (from_node, to_node) -> [lane ids by index]
  for e in edges:
    for a, b in (e, e[::-1]):
      d = (pos(b) - pos(a)) / block
      r = _right(d)
      n_lanes = lanes_of(e)
      ids = []
      for k in range(n_lanes):
        off = (k + 0.5) * w
        start = pos(a) + d * junction_half[junction_of[a]] + r * off
        end = pos(b) - d * junction_half[junction_of[b]] + r * off
        ids.append(len(lane_pts))
        lane_pts.append(np.linspace(start, end, P))
        lane_option.append(LANEFOLLOW)
        lane_junction.append(-1)
        lane_index.append(k)
        lane_edge.append(edges.index(e))
        lane_dir.append(d)
        lane_stop_line.append(-1)
      seg_lanes[(a, b)] = ids

  # Stop lines (+ lights) on every approach of junctions with a light or a stop sign.
  stop_line, stop_dir, stop_light, stop_group, stop_junction = [], [], [], [], []
  light_pos, light_stop = [], []
  static = []  # (centre xyz, half xyz, yaw, colour, colour2, material, light)
  for n in nodes:
    jn = junction_of[n]
    if not (has_light[jn] or has_stop[jn]):
      continue
    for e in node_edges[n]:
      a = e[0] if e[1] == n else e[1]
      ids = seg_lanes[(a, n)]
      d = (pos(n) - pos(a)) / block
      r = _right(d)
      base = pos(n) - d * (junction_half[jn] + stop_gap)
      line = np.stack([base + r * 0.0, base + r * (len(ids) * w)])
      s = len(stop_line)
      stop_line.append(line)
      stop_dir.append(d)
      stop_group.append(0 if abs(d[0]) > 0.5 else 1)
      stop_junction.append(jn)
      for lane in ids:
        lane_stop_line[lane] = s
      if has_light[jn]:
        stop_light.append(len(light_pos))
        # Pole at the far-right corner of the junction, head over the kerb (visible through it).
        corner = pos(n) + d * (junction_half[jn] + 0.5) + r * (len(ids) * w + 1.2)
        light_pos.append(np.array([corner[0], corner[1], 5.0]))
        light_stop.append(s)
        yaw = _heading(-d)
        static.append(((corner[0], corner[1], 2.4), (0.15, 0.15, 2.4), yaw, (0.25, 0.25, 0.27),
                       (0.25, 0.25, 0.27), MAT_PLAIN, -1))
        static.append(((corner[0], corner[1], 5.0), (0.25, 0.3, 0.65), yaw, (0.1, 0.1, 0.1),
                       (0.1, 0.1, 0.1), MAT_LIGHT, len(light_pos) - 1))
      else:
        stop_light.append(-1)
        sign = pos(n) - d * (junction_half[jn] + stop_gap) + r * (len(ids) * w + 1.0)
        yaw = _heading(-d)
        static.append(((sign[0], sign[1], 1.1), (0.05, 0.05, 1.1), yaw, (0.5, 0.5, 0.5),
                       (0.5, 0.5, 0.5), MAT_PLAIN, -1))
        static.append(((sign[0], sign[1], 2.4), (0.05, 0.4, 0.4), yaw, (0.8, 0.05, 0.05),
                       (0.8, 0.05, 0.05), MAT_PLAIN, -1))

  # Junction connectors: left from the innermost lane, right from the outermost, straight k->k.
  succ = [[] for _ in lane_pts]
  for n in nodes:
    jn = junction_of[n]
    for e_in in node_edges[n]:
      a = e_in[0] if e_in[1] == n else e_in[1]
      d_in = (pos(n) - pos(a)) / block
      in_ids = seg_lanes[(a, n)]
      for e_out in node_edges[n]:
        if e_out == e_in:
          continue
        b = e_out[0] if e_out[1] == n else e_out[1]
        d_out = (pos(b) - pos(n)) / block
        out_ids = seg_lanes[(n, b)]
        cross = d_in[0] * d_out[1] - d_in[1] * d_out[0]
        if abs(cross) < 0.5:
          option, pairs = STRAIGHT, [(k, min(k, len(out_ids) - 1)) for k in range(len(in_ids))]
        elif cross < 0:
          option, pairs = LEFT, [(0, 0)]
        else:
          option, pairs = RIGHT, [(len(in_ids) - 1, len(out_ids) - 1)]
        if junction_kind[jn] == 2:  # A bend: CARLA's planner calls it lane follow.
          option = LANEFOLLOW
          pairs = [(k, min(k, len(out_ids) - 1)) for k in range(len(in_ids))]
        for k_in, k_out in pairs:
          start, end = lane_pts[in_ids[k_in]][-1], lane_pts[out_ids[k_out]][0]
          if option == STRAIGHT:
            points = np.linspace(start, end, P)
          else:
            control = start + d_in * np.dot(end - start, d_in)
            points = _bezier(start, control, end, P)
          lane = len(lane_pts)
          lane_pts.append(points)
          lane_option.append(option)
          lane_junction.append(jn)
          lane_index.append(k_out)
          lane_edge.append(-1)
          lane_dir.append(d_out)
          lane_stop_line.append(-1)
          succ.append([out_ids[k_out]])
          succ[in_ids[k_in]].append(lane)

  lane_points = np.asarray(lane_pts, np.float32)
  lane_length = np.linalg.norm(np.diff(lane_points, axis=1), axis=-1).sum(-1).astype(np.float32)
  L = len(lane_points)
  lane_succ = -np.ones((L, MAX_SUCCESSORS), np.int32)
  for i, s in enumerate(succ):
    lane_succ[i, :len(s)] = s
  lane_left = -np.ones(L, np.int32)
  lane_right = -np.ones(L, np.int32)
  for ids in seg_lanes.values():
    for k in range(len(ids) - 1):
      lane_right[ids[k]] = ids[k + 1]
      lane_left[ids[k + 1]] = ids[k]

  # Buildings in each block's interior, inset from the sidewalk.
  inset_road = {}
  for n in nodes:
    inset_road[n] = junction_half[junction_of[n]]
  palette = np.array([[0.55, 0.5, 0.45], [0.6, 0.58, 0.55], [0.45, 0.4, 0.38], [0.7, 0.65, 0.55],
                      [0.5, 0.52, 0.6], [0.62, 0.45, 0.4]])
  for i in range(nx - 1):
    for j in range(ny - 1):
      x0 = i * block + w * nl_col[i] + sidewalk + 1.5
      x1 = (i + 1) * block - w * nl_col[i + 1] - sidewalk - 1.5
      y0 = j * block + w * nl_row[j] + sidewalk + 1.5
      y1 = (j + 1) * block - w * nl_row[j + 1] - sidewalk - 1.5
      cols = 2 if x1 - x0 > 30 else 1
      rows = 2 if y1 - y0 > 30 else 1
      for ci in range(cols):
        for cj in range(rows):
          bx0 = x0 + (x1 - x0) * ci / cols + 1.0
          bx1 = x0 + (x1 - x0) * (ci + 1) / cols - 1.0
          by0 = y0 + (y1 - y0) * cj / rows + 1.0
          by1 = y0 + (y1 - y0) * (cj + 1) / rows - 1.0
          if rng.random() < 0.15:
            continue  # An empty lot now and then.
          height = float(rng.uniform(5.0, 22.0))
          colour = palette[rng.integers(len(palette))] * rng.uniform(0.85, 1.1)
          static.append((((bx0 + bx1) / 2, (by0 + by1) / 2, height / 2),
                         ((bx1 - bx0) / 2, (by1 - by0) / 2, height / 2), 0.0,
                         tuple(np.clip(colour, 0, 1)), tuple(np.clip(colour * 0.8, 0, 1)),
                         MAT_PLAIN, -1))

  # Sidewalk paths for pedestrians: along both sides of every edge.
  walk = []
  for e in edges:
    a, b = e
    d = (pos(b) - pos(a)) / block
    r = _right(d)
    half_road = lanes_of(e) * w + sidewalk / 2
    for side in (-1, 1):
      start = pos(a) + d * junction_half[junction_of[a]] + side * r * half_road
      end = pos(b) - d * junction_half[junction_of[b]] + side * r * half_road
      walk.append(np.stack([start, end]))

  # Rasters.
  margin, res = float(cfg.margin), float(cfg.raster_res)
  origin = np.array([-margin, -margin])
  H = int(math.ceil(((ny - 1) * block + 2 * margin) / res))
  W = int(math.ceil(((nx - 1) * block + 2 * margin) / res))
  ground = np.full((H, W), GROUND_TERRAIN, np.uint8)
  drive = np.full((H, W), DRIVE_OFFROAD, np.uint8)

  def rect(arr, xa, xb, ya, yb, value):
    """Fills world rectangle [xa, xb] x [ya, yb] (any order)."""
    c0, c1 = sorted(((xa - origin[0]) / res, (xb - origin[0]) / res))
    r0, r1 = sorted(((ya - origin[1]) / res, (yb - origin[1]) / res))
    c0, c1 = max(0, int(round(c0))), min(W, max(int(round(c1)), int(round(c0)) + 1))
    r0, r1 = max(0, int(round(r0))), min(H, max(int(round(r1)), int(round(r0)) + 1))
    arr[r0:r1, c0:c1] = value

  for e in edges:  # sidewalks under the roads first, roads on top
    a, b = e
    half = lanes_of(e) * w
    ja, jb = junction_half[junction_of[a]], junction_half[junction_of[b]]
    pa, pb = pos(a), pos(b)
    if a[1] == b[1]:
      rect(ground, pa[0], pb[0], pa[1] - half - sidewalk, pa[1] + half + sidewalk, GROUND_SIDEWALK)
    else:
      rect(ground, pa[0] - half - sidewalk, pa[0] + half + sidewalk, pa[1], pb[1], GROUND_SIDEWALK)
  for n in nodes:
    p, hj = pos(n), junction_half[junction_of[n]]
    rect(ground, p[0] - hj - sidewalk, p[0] + hj + sidewalk, p[1] - hj - sidewalk,
         p[1] + hj + sidewalk, GROUND_SIDEWALK)
  for e in edges:
    a, b = e
    half = lanes_of(e) * w
    pa, pb = pos(a), pos(b)
    ja, jb = junction_half[junction_of[a]], junction_half[junction_of[b]]
    horizontal = a[1] == b[1]
    axis = 0 if horizontal else 1
    s0, s1 = pa[axis] + ja, pb[axis] - jb
    c = pa[1 - axis]

    def along(s_a, s_b, l_a, l_b, value, arr=ground):
      if horizontal:
        rect(arr, s_a, s_b, l_a, l_b, value)
      else:
        rect(arr, l_a, l_b, s_a, s_b, value)

    along(s0, s1, c - half, c + half, GROUND_ROAD)
    # Driving direction: east/south lanes are at +lateral (right of travel in CARLA's frame).
    # Right of travel is +y heading east but -x heading south (CARLA frame).
    along(s0, s1, c, c + half, 0 if horizontal else 3, drive)
    along(s0, s1, c - half, c, 2 if horizontal else 1, drive)
    along(s0, s1, c - 0.3, c - 0.1, GROUND_YELLOW)
    along(s0, s1, c + 0.1, c + 0.3, GROUND_YELLOW)
    along(s0, s1, c - half, c - half + 0.2, GROUND_WHITE)
    along(s0, s1, c + half - 0.2, c + half, GROUND_WHITE)
    if lanes_of(e) == 2:
      for s in np.arange(s0 + crosswalk + 4.0, s1 - crosswalk - 4.0, 6.0):
        for lat in (c - w, c + w):
          along(s, s + 3.0, lat - 0.1, lat + 0.1, GROUND_WHITE)
    for end, sign in ((s0, 1), (s1, -1)):  # zebra crosswalks at both ends
      for lat in np.arange(c - half + 0.5, c + half - 0.3, 1.0):
        along(end + sign * 0.5, end + sign * crosswalk, lat, lat + 0.5, GROUND_CROSSWALK)
  for n in nodes:
    p, hj = pos(n), junction_half[junction_of[n]]
    rect(ground, p[0] - hj, p[0] + hj, p[1] - hj, p[1] + hj, GROUND_ROAD)
    rect(drive, p[0] - hj, p[0] + hj, p[1] - hj, p[1] + hj, DRIVE_JUNCTION)
  for line, d in zip(stop_line, stop_dir):
    corners = np.stack([line[0], line[1], line[0] - d * 0.4, line[1] - d * 0.4])
    lo, hi = corners.min(0), corners.max(0)
    rect(ground, lo[0], hi[0], lo[1], hi[1], GROUND_STOP)

  box = list(zip(*static)) if static else [[]] * 7
  return Town(
      seed=int(seed), town_id=int(seed if town_id is None else town_id), block=block,
      lane_width=w, lane_points=lane_points, lane_length=lane_length, lane_succ=lane_succ,
      lane_left=lane_left, lane_right=lane_right,
      lane_option=np.asarray(lane_option, np.int32),
      lane_junction=np.asarray(lane_junction, np.int32),
      lane_stop_line=np.asarray(lane_stop_line, np.int32),
      lane_index=np.asarray(lane_index, np.int32), lane_edge=np.asarray(lane_edge, np.int32),
      junction_centre=np.asarray([pos(n) for n in nodes], np.float32),
      junction_half=junction_half.astype(np.float32), junction_kind=junction_kind.astype(np.int32),
      junction_has_light=has_light, junction_light_offset=light_offset.astype(np.float32),
      stop_line=np.asarray(stop_line, np.float32).reshape(-1, 2, 2),
      stop_line_dir=np.asarray(stop_dir, np.float32).reshape(-1, 2),
      stop_line_light=np.asarray(stop_light, np.int32),
      stop_line_group=np.asarray(stop_group, np.int32),
      stop_line_junction=np.asarray(stop_junction, np.int32),
      light_pos=np.asarray(light_pos, np.float32).reshape(-1, 3),
      light_stop_line=np.asarray(light_stop, np.int32),
      box_centre=np.asarray(box[0], np.float32).reshape(-1, 3),
      box_half=np.asarray(box[1], np.float32).reshape(-1, 3),
      box_yaw=np.asarray(box[2], np.float32), box_colour=np.asarray(box[3], np.float32).reshape(-1, 3),
      box_colour2=np.asarray(box[4], np.float32).reshape(-1, 3),
      box_material=np.asarray(box[5], np.int32), box_light=np.asarray(box[6], np.int32),
      walk_paths=np.asarray(walk, np.float32).reshape(-1, 2, 2), ground=ground, drive_dir=drive,
      raster_origin=origin.astype(np.float32), raster_res=res,
      light_cycle=(green, yellow, red))
