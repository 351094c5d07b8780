"""Does a trained planner slow for a car standing ahead in its lane? Measured in a minute without
driving a route.

  python bench/lead_car_response.py --work_dir work_dirs/dagger/stage2_dagger2 \
      [--route_set tiny_8] [--seed 1] [--poses 16] [--stage1_dir work_dirs/.../stage1_small]

Closed loop, most of the DS our planner loses goes to collisions, and the vehicle ones happen on
its route at cruising speed, with no braking in the seconds before (docs/experiments.md,
2026-12-05 3rd session). This bench asks the question directly. At `--poses` places on straight,
junction-free stretches of held-out routes (bench/lane_response.py's places), the ego is put on
its lane centre at 5 m/s, with one car standing in the same lane `GAPS_M` metres ahead (bumper
to bumper), or none, and no other traffic; its cameras are rendered and the run's planner takes
one fresh step with the instruction "Follow the road." Per gap it prints the speed the planner
asks for (LMDrive's PID target: twice the distance between its first two waypoints), the
distance it plans to cover in 2.5 s (the last waypoint's forward coordinate), and the share of
places where the PID would brake (`sim/pid.py`: target below 0.1 m/s or the speed above 1.1x it).
At 5 m/s the expert (`sim/expert.py`) brakes for a standing car closer than ~12 m and slows below
15 m; a planner that does not see the car asks the same at every gap. The second block of rows,
every image zeroed, is that reference.

Where the car stands, later columns read P(object), with the car and, in brackets, at the same
place without it (the "none" row: at the 15-m place), from what the planner reads: with
`--stage1_dir` (the stage-1 run of its encoder), the stage-1 detection head (the most confident
of the cells within one of the car's centre's) and, when its view layout has the `object` class,
the view-layout head on the front-view cells the car covers (by share); and, when the planner
has a layout probe with that class, the probe on its Q-Former's tokens. Whether the encoder sees
the car at all, and whether the Q-Former passes it on: the planner cannot do better.
"""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _REPO)

from bench.common import print_table, route_bench_parser  # noqa: E402
from bench.lane_response import INSTRUCTION, SPEED, lane_pose, straight_places  # noqa: E402
from bench.lane_response import placed_state as lane_placed_state  # noqa: E402
from bench.placed_scenes import PlacedScenes  # noqa: E402
from lmgendrive_jax.data import augment, geometry, topdown, view_layout  # noqa: E402
from lmgendrive_jax.sim import pid as pid_lib  # noqa: E402
from lmgendrive_jax.sim import routes as routes_lib  # noqa: E402
from lmgendrive_jax.train import trained  # noqa: E402

GAPS_M = (None, 25.0, 15.0, 10.0, 6.0, 3.0)  # None: no car ahead
EGO_HALF_LENGTH_M = 2.4


def lane_position(route: routes_lib.Route, s: float) -> tuple[int, float]:
  """Route arc length s -> (lane, arc length along that lane) of the piece driven there."""
  start = 0.0
  for lane, s_from, s_to, _ in route.pieces:
    length = float(s_to) - float(s_from)
    if s <= start + length:
      return int(lane), float(s_from) + (s - start)
    start += length
  raise ValueError(f"arc length {s:.1f} m is beyond route {route.spec.name} "
                   f"({route.length:.1f} m)")


def placed_state(initial: dict, route: routes_lib.Route, s: float, gap: float | None) -> dict:
  """The episode's initial state with the ego on its lane centre at route arc s, at SPEED, and
  one car standing `gap` m ahead of its front bumper in the same lane (None: no car); no other
  vehicles or pedestrians."""
  state = lane_placed_state(initial, *lane_pose(route, s), offset=0.0, heading_deg=0.0)
  if gap is not None:
    half_length = float(initial["npc_half"][0, 0])
    lane, lane_s = lane_position(route, s + EGO_HALF_LENGTH_M + gap + half_length)
    for key, value in (("npc_lane", lane), ("npc_s", lane_s), ("npc_speed", 0.0),
                       ("npc_active", True)):
      state[key] = np.array(state[key]).copy()
      state[key][0] = value
  return state


def _front_window(camera_size: tuple[int, int], data) -> view_layout.Window:
  """The part of the front camera's image the model's front view shows: its centre crop at the
  run's `data.crop_scale`, as the agent preprocesses it. camera_size: (width, height)."""
  height, width = (int(x) for x in data.view_size)
  new_w, new_h, left, top = augment.crop_box(*camera_size, height, width, float(data.crop_scale))
  return left / new_w, (left + width) / new_w, top / new_h, (top + height) / new_h


def _on_car(p_object: np.ndarray, window: view_layout.Window, aspect: float, car: np.ndarray
            ) -> float:
  """A head's P(object) f32[rows, cols] over the front view -> its mean over the cells the car
  (one ego-frame box, `geometry.OBJECT_FIELDS`) covers, weighted by how much of each it covers."""
  empty_map = np.zeros((topdown.TOPDOWN_GRID.rows, topdown.TOPDOWN_GRID.cols), np.uint8)
  share = view_layout.view_layout(empty_map, "front", window, aspect, *p_object.shape,
                                  objects=car)[..., view_layout.OBJECT]
  return float((p_object * share).sum() / share.sum()) if share.any() else float("nan")


def perception_at_car(stage1_dir: str, camera_size: tuple[int, int]):
  """A function (views uint8[V, H, W, 3], the car as one ego-frame box f32[1, 7]) -> {column:
  value}: the stage-1 detection head's P(object) near the car (max over the cell holding its
  centre and the neighbours) and, with the view layout's `object` class, that head's P(object)
  on the car's front-view cells (`_on_car`). camera_size: the cameras' (width, height)."""
  model, variables, config = trained.load_perception(stage1_dir)
  data = config.data
  grid = geometry.BevGrid(int(data.bev_rows), int(data.bev_cols), float(data.bev_ahead),
                          float(data.bev_behind), float(data.bev_side))
  has_objects = model.view_layout_classes == len(view_layout.VIEW_LAYOUT_CLASSES)
  front = tuple(data.views).index("front")
  window, aspect = _front_window(camera_size, data), camera_size[1] / camera_size[0]

  @jax.jit
  def heads(views):
    predictions = model.apply(variables, views[None, None], jnp.full((1, 1), SPEED, jnp.float32),
                              jnp.array([[[0.0, 20.0]]], jnp.float32))[0]
    objectness = jax.nn.sigmoid(predictions["detection"][0, 0, ..., 0])
    if not has_objects:
      return objectness, None
    layout = jax.nn.softmax(predictions["view_layout_logits"][0, 0, front].astype(jnp.float32))
    return objectness, layout[..., view_layout.OBJECT]

  def at_car(views: np.ndarray, car: np.ndarray) -> dict:
    # The cell of the car's centre, as geometry.bev_targets finds it.
    row = int((grid.ahead - float(car[0, 1])) // grid.cell_forward)
    col = int((float(car[0, 0]) + grid.side) // grid.cell_lateral)
    objectness, layout = (None if x is None else np.asarray(x) for x in heads(jnp.asarray(views)))
    out = {"stage-1 detector P(object) at the car":
           float(objectness[max(row - 1, 0):row + 2, max(col - 1, 0):col + 2].max())}
    if layout is not None:
      out["stage-1 view layout P(object) on the car"] = _on_car(layout, window, aspect, car)
    return out
  return at_car


def probe_at_car(agent, camera_size: tuple[int, int]):
  """For a planner with a layout probe on its Q-Former's tokens (`models/layout_probe.py`) whose
  classes include `object`: a function (views, car box f32[1, 7]) -> {column: the probe's
  P(object) on the car's front-view cells}: whether the Q-Former passes the car on. Else None."""
  model, variables, data = agent.planner.model, agent.planner.variables, agent.planner.data
  if (tuple(model.layout_probe_size) == (0, 0)
      or model.layout_probe_classes != len(view_layout.VIEW_LAYOUT_CLASSES)):
    return None
  front = tuple(data.views).index("front")
  window, aspect = _front_window(camera_size, data), camera_size[1] / camera_size[0]

  @jax.jit
  def probe(views):
    # As the planner encodes the frame (encode_frames: speed zeroed without speed_input).
    logits = model.apply(variables, views[None, None], jnp.full((1, 1), SPEED, jnp.float32),
                         method=lambda m, images, speed: m._probe_outputs(
                             m.encode_frames(images, speed)))["probe_layout_logits"][0, 0, front]
    return jax.nn.softmax(logits.astype(jnp.float32))[..., view_layout.OBJECT]

  def at_car(views: np.ndarray, car: np.ndarray) -> dict:
    return {"Q-Former layout probe P(object) on the car":
            _on_car(np.asarray(probe(jnp.asarray(views))), window, aspect, car)}
  return at_car


def main(argv=None) -> int:
  parser = route_bench_parser(__doc__, "simulator preset")
  parser.add_argument("--poses", type=int, default=16, help="places on the routes")
  parser.add_argument("--stage1_dir", default="",
                      help="the stage-1 run of the planner's encoder: its detector's P(object) "
                           "at the car")
  args = parser.parse_args(argv)

  scenes = PlacedScenes(args)
  agent = scenes.agent
  controller = pid_lib.WaypointController()
  camera_size = (scenes.rig.width, scenes.rig.height)
  readers = [reader for reader in (
      perception_at_car(args.stage1_dir, camera_size) if args.stage1_dir else None,
      probe_at_car(agent, camera_size)) if reader is not None]

  # results[(kind, gap)]: rows of (asked speed, planned distance in 2.5 s, PID brakes);
  # readings[gap]: per place, ({column: P(object)} with the car, the same cells without it).
  results: dict = {}
  readings: dict = {}
  places = 0
  # straight_places keeps 30 m of lane follow ahead: the farthest car (25 m) stands on it.
  for episode, town, s in scenes.places(args.poses, straight_places):
    places += 1
    half_length, half_width = (float(x) for x in episode.initial_state["npc_half"][0])
    no_car = None
    for gap in GAPS_M:
      state = placed_state(episode.initial_state, episode.route, s, gap)
      views = scenes.views(town, state)
      no_car = views if gap is None else no_car  # GAPS_M starts with None
      if readers:
        # Where the car stands (at 15 m with none), with it and without it (the cells empty).
        forward = EGO_HALF_LENGTH_M + (15.0 if gap is None else gap) + half_length
        car = np.array([[0.0, forward, 0.0, 2 * half_length, 2 * half_width, 0.0, 0.0]],
                       np.float32)
        readings.setdefault(gap, []).append(tuple(
            {k: v for reader in readers for k, v in reader(shown, car).items()}
            for shown in (views, no_car)))
      for kind, shown in (("recorded", views), ("zeroed", np.zeros_like(views))):
        waypoints, _, _ = agent.planner.step(agent.planner.start(INSTRUCTION), shown, SPEED)
        waypoints = np.asarray(waypoints, np.float64)
        asked = float(np.linalg.norm(waypoints[0] - waypoints[1]) * 2.0)
        brakes = controller.control(waypoints, SPEED).brake > 0.0
        results.setdefault((kind, gap), []).append((asked, waypoints[-1][1], brakes))
  if not places:
    print(f"no straight lane-follow stretch on {args.route_set} (seed {args.seed})")
    return 1
  columns = list(readings[GAPS_M[0]][0][0]) if readings else []
  rows = []
  for kind, name in (("recorded", "cameras as rendered"), ("zeroed", "every image zeroed")):
    for gap in GAPS_M:
      got = np.asarray(results[(kind, gap)], np.float64)
      rows.append([name, "none" if gap is None else f"{gap:.0f}",
                   f"{got[:, 0].mean():.2f} +- {got[:, 0].std():.2f}",
                   f"{got[:, 1].mean():.1f}", f"{100 * got[:, 2].mean():.0f}%"]
                  + [_with_without(readings[gap], column) if kind == "recorded" else ""
                     for column in columns])
  print_table(
      f"Lead-car response of {args.work_dir}: {places} places on {args.route_set} "
      f"(seed {args.seed}), ego at {SPEED:.0f} m/s",
      ["planner input", "car ahead (m, standing)", "asked speed (m/s)",
       "planned distance in 2.5 s (m)", "PID brakes"]
      + [f"{column} (no car)" for column in columns], rows)
  return 0


def _with_without(places: list[tuple[dict, dict]], column: str) -> str:
  """Per place ({column: value} with the car, the same without it) -> 'with (without)' means."""
  values = np.asarray([[with_car[column], without[column]] for with_car, without in places])
  return f"{np.nanmean(values[:, 0]):.2f} ({np.nanmean(values[:, 1]):.2f})"


if __name__ == "__main__":
  sys.exit(main())
