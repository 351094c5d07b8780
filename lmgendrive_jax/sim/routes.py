"""Routes over a town's lane graph and the named, seeded route sets shaped like LangAuto's tracks.

Where it sits: `route_set(name)` lists `RouteSpec`s (town seed, route seed, track, weather,
notices); `plan_route(town, spec)` turns one into a `Route`: the lane pieces driven, a dense
polyline every metre with the RoadOption of each point, and the sparse route nodes (CARLA's
global plan: a node where the option changes and every 50 m) that give `command` and the target
point. The instruction stream (instruction_stream.py), the expert, scoring and the collector all
read a `Route`.

Tracks (specs/langauto.md): long > 500 m, short 150-500 m, tiny < 150 m; each route has its own
weather; `*_notice` variants give notices.
"""

from __future__ import annotations

import dataclasses
import math
import zlib

import numpy as np

from lmgendrive_jax.errors import SimulatorError
from lmgendrive_jax.sim import town as town_lib

TRACKS = {"tiny": (60.0, 140.0), "short": (160.0, 480.0), "long": (520.0, 800.0)}
# routes per set and towns they spread over (LangAuto: long 32 = 4 x 8 towns; short 16; tiny 16).
TRACK_ROUTES = {"tiny": (16, 8), "short": (16, 8), "long": (32, 8)}
NODE_SPACING = 50.0
# LangAuto's track lengths (metres): what a planned route must satisfy.
LANGAUTO_BOUNDS = {"tiny": (0.0, 150.0), "short": (150.0, 500.0), "long": (500.0, 1e9)}


@dataclasses.dataclass(frozen=True)
class RouteSpec:
  """What determines a route: the town seed, the route seed, the track, weather and notices."""
  name: str
  town_seed: int
  route_seed: int
  track: str
  weather_id: int
  notices: bool = False

  @property
  def town_id(self) -> int:
    return self.town_seed


@dataclasses.dataclass
class Route:
  """A planned route. points f32[R, 2] every ~1 m (CARLA frame), s f32[R] arc length,
  option int32[R] RoadOption per point, lane int32[R] lane per point, pieces: list of
  (lane, s_from, s_to, option) driven in order; nodes f32[Q, 2] / node_option int32[Q] /
  node_s f32[Q]: the sparse global plan."""
  spec: RouteSpec
  points: np.ndarray
  s: np.ndarray
  option: np.ndarray
  lane: np.ndarray
  pieces: list
  nodes: np.ndarray
  node_option: np.ndarray
  node_s: np.ndarray

  @property
  def length(self) -> float:
    return float(self.s[-1])

  @property
  def start_pose(self) -> tuple[np.ndarray, float]:
    d = self.points[1] - self.points[0]
    return self.points[0].copy(), float(math.atan2(d[1], d[0]))

  def point_at(self, s: float) -> np.ndarray:
    return np.stack([np.interp(s, self.s, self.points[:, 0]), np.interp(s, self.s,
                                                                          self.points[:, 1])])

  def next_node(self, progress: float, min_ahead: float = 4.0) -> int:
    """Index of the first route node at least `min_ahead` metres beyond `progress`."""
    ahead = np.nonzero(self.node_s > progress + min_ahead)[0]
    return int(ahead[0]) if len(ahead) else len(self.node_s) - 1


def _lane_polyline(town: town_lib.Town, lane: int, s_from: float, s_to: float) -> np.ndarray:
  pts = town.lane_points[lane].astype(np.float64)
  cum = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=-1))])
  n = max(2, int(math.ceil((s_to - s_from) / 1.0)) + 1)
  s = np.linspace(s_from, s_to, n)
  return np.stack([np.interp(s, cum, pts[:, 0]), np.interp(s, cum, pts[:, 1])], -1)


def plan_route(town: town_lib.Town, spec: RouteSpec, lane_change_prob: float = 0.3) -> Route:
  """A random drive over the lane graph of `spec.track`'s length (seeded by `spec.route_seed`)."""
  if spec.track not in TRACKS:
    raise SimulatorError(f"route {spec.name!r}: unknown track {spec.track!r}; choose one of "
                         f"{sorted(TRACKS)}")
  rng = np.random.default_rng([spec.route_seed, 4242])
  low, high = TRACKS[spec.track]
  target = float(rng.uniform(low, high))
  segments = np.nonzero((town.lane_junction < 0) & (town.lane_length > 20.0))[0]
  for _attempt in range(50):
    lane = int(rng.choice(segments))
    s0 = float(min(5.0, town.lane_length[lane] * 0.2))
    pieces = []  # (lane, s_from, s_to, option)
    total, visits = 0.0, {}
    ok = True
    s_from = s0
    while True:
      length = float(town.lane_length[lane])
      option = int(town.lane_option[lane])
      neighbours = [(int(town.lane_left[lane]), town_lib.CHANGELANELEFT),
                    (int(town.lane_right[lane]), town_lib.CHANGELANERIGHT)]
      neighbours = [nb for nb in neighbours if nb[0] >= 0]
      remaining = target - total
      # End inside a segment, short of its stop line (the goal is never past a light).
      if town.lane_junction[lane] < 0 and remaining <= length - s_from - 12.0:
        pieces.append((lane, s_from, s_from + max(remaining, 1.0), option))
        total += max(remaining, 1.0)
        break
      if (town.lane_junction[lane] < 0 and neighbours and length - s_from > 40.0
          and rng.random() < lane_change_prob):
        # Change lanes mid-segment: follow this lane, then the neighbour from a few metres on.
        other, change = neighbours[int(rng.integers(len(neighbours)))]
        mid = s_from + (length - s_from) * 0.5
        pieces.append((lane, s_from, mid - 6.0, option))
        pieces.append((other, mid + 6.0, mid + 6.0, change))  # the change itself (12 m)
        total += (mid - 6.0 - s_from) + 12.0
        lane, s_from = other, mid + 6.0
        continue
      pieces.append((lane, s_from, length, option))
      total += length - s_from
      successors = [int(x) for x in town.lane_succ[lane] if x >= 0]
      if not successors:
        ok = False
        break
      # Prefer connectors leading to segments visited least (long routes explore the town).
      weights = np.array([1.0 / (1 + visits.get(int(town.lane_succ[c][0]), 0) * 3)
                          for c in successors])
      lane = successors[int(rng.choice(len(successors), p=weights / weights.sum()))]
      visits[int(town.lane_succ[lane][0])] = visits.get(int(town.lane_succ[lane][0]), 0) + 1
      s_from = 0.0
    if ok and pieces and LANGAUTO_BOUNDS[spec.track][0] <= total < LANGAUTO_BOUNDS[spec.track][1]:
      break
  else:
    raise SimulatorError(f"route {spec.name!r}: no {spec.track} route of "
                         f"{LANGAUTO_BOUNDS[spec.track]} m found in town {spec.town_seed}; use a "
                         "bigger town (sim_preset town.grid / town.block)")

  return route_from_pieces(town, spec, pieces)


def route_from_pieces(town: town_lib.Town, spec: RouteSpec, pieces: list) -> Route:
  """A Route from lane pieces [(lane, s_from, s_to, option)] driven in order; a lane change is
  a piece with s_from == s_to (the car blends into that lane over ~12 m)."""
  points, options, lanes = [], [], []
  for lane, a, b, option in pieces:
    if a == b:  # A lane change: blend from the previous point into the new lane.
      start = points[-1][-1]
      end_pts = _lane_polyline(town, lane, a, a + 1.0)
      n = 12
      blend = np.linspace(0, 1, n + 1)[1:, None]
      seg = start[None] * (1 - blend) + end_pts[0][None] * blend
      points.append(seg)
      options.append(np.full(n, option))
      lanes.append(np.full(n, lane))
      continue
    pts = _lane_polyline(town, lane, a, b)
    if points:
      pts = pts[1:] if np.linalg.norm(pts[0] - points[-1][-1]) < 0.2 else pts
    points.append(pts)
    options.append(np.full(len(pts), option))
    lanes.append(np.full(len(pts), lane))
  points = np.concatenate(points).astype(np.float32)
  option = np.concatenate(options).astype(np.int32)
  lane = np.concatenate(lanes).astype(np.int32)
  s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=-1))]).astype(
      np.float32)
  # Sparse nodes: where the option changes, every NODE_SPACING m, and the end.
  node_idx = [0]
  for i in range(1, len(points)):
    if option[i] != option[i - 1] or s[i] - s[node_idx[-1]] >= NODE_SPACING:
      node_idx.append(i)
  if node_idx[-1] != len(points) - 1:
    node_idx.append(len(points) - 1)
  node_idx = np.asarray(node_idx)
  return Route(spec=spec, points=points, s=s, option=option, lane=lane, pieces=pieces,
               nodes=points[node_idx], node_option=option[node_idx], node_s=s[node_idx])


def route_set(name: str, seed: int = 0) -> list[RouteSpec]:
  """The named set: `tiny`, `short`, `long`, each optionally `_notice`, and `<track>_<n>` (the
  first n routes of a track, for quick runs, e.g. `tiny_4_notice`). Deterministic in (name, seed).
  """
  parts = name.split("_")
  track = parts[0]
  notices = "notice" in parts[1:]
  counts = [int(p) for p in parts[1:] if p.isdigit()]
  unknown = [p for p in parts[1:] if not p.isdigit() and p != "notice"]
  if track not in TRACKS or unknown:
    raise SimulatorError(f"unknown route set {name!r}; use tiny, short or long, optionally with "
                         f"_<count> and _notice (e.g. 'tiny_notice', 'short_4')")
  total, towns = TRACK_ROUTES[track]
  n = counts[0] if counts else total
  base = zlib.crc32(f"{track}:{seed}".encode()) % 100000
  specs = []
  for i in range(n):
    town_seed = 1 + (i % towns)  # towns 1..8, like CARLA's Town01..Town08
    specs.append(RouteSpec(name=f"{track}_{i:02d}", town_seed=town_seed, route_seed=base + i,
                           track=track, weather_id=(base + 7 * i) % 21, notices=notices))
  return specs


def route_stop_lines(route: Route, town: town_lib.Town, stop_gap: float = 3.5) -> list[tuple]:
  """[(route arc length of the stop line, stop line index)] in driving order: the stop lines at
  the ends of the route's segment lanes (lights and stop signs)."""
  out = []
  for i in range(len(route.points) - 1):
    lane = int(route.lane[i])
    if route.lane[i + 1] != lane and town.lane_stop_line[lane] >= 0 and (
        town.lane_junction[int(route.lane[i + 1])] >= 0):
      out.append((float(route.s[i]) - stop_gap, int(town.lane_stop_line[lane])))
  return out


def route_maneuvers(route: Route, town: town_lib.Town) -> list[dict]:
  """Runs of the route with one RoadOption: [{option, s_start, s_end, junction (-1), lane}]."""
  runs = []
  start = 0
  for i in range(1, len(route.points) + 1):
    if i == len(route.points) or route.option[i] != route.option[start] or (
        town.lane_junction[int(route.lane[i])] != town.lane_junction[int(route.lane[start])]):
      runs.append(dict(option=int(route.option[start]), s_start=float(route.s[start]),
                       s_end=float(route.s[i - 1]), lane=int(route.lane[start]),
                       junction=int(town.lane_junction[int(route.lane[start])])))
      start = i
  return runs
