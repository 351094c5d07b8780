"""How a trained planner answers a car that is off its lane: lane keeping's feedback, measured in a
minute without driving a route.

  python bench/lane_response.py --work_dir work_dirs/quickstart_small/stage2_small \
      [--route_set tiny_8] [--seed 1] [--poses 24]

Closed loop, a planner that does not see where its lane is holds whatever heading it has and
drifts off the road over tens of metres (README: bench/drive_quality.py). This bench asks the
question directly. At `--poses` places on straight, junction-free stretches of held-out routes
(lane follow from 5 m behind to 30 m ahead; route points lie on lane centres), the ego is put at
lateral offsets from its lane centre (+ right) and at heading errors (+ turned right), at 5 m/s,
with no other traffic; its cameras are rendered and the run's planner takes one fresh step with
the instruction "Follow the road." Of the last waypoint (2.5 s ahead), the lateral position in
the lane's frame is read, and its least-squares slope is printed:
- against the offset: 0 = back on the lane centre within 2.5 s, 1 = keeps its offset;
- against the heading error, in metres per degree: a car that keeps its heading for 2.5 s at
  5 m/s ends ~0.22 m per degree off (12.5 m x sin 1 deg); one that straightens up, less.
A planner that ignores its cameras reads ~1 and ~0.2 whatever it was trained on: the second row,
the same planner with every image zeroed, is that reference. For a run with the visual probe
(`loss.visual_probe_weight`), a third row reads the probe's waypoints (the Q-Former's tokens of
the frame alone, no LLM): whether the lane reaches the Q-Former at all.
"""

from __future__ import annotations

import math
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _REPO)

from bench.common import print_table, route_bench_parser  # noqa: E402
from bench.placed_scenes import PlacedScenes  # noqa: E402
from lmgendrive_jax.sim import routes as routes_lib  # noqa: E402
from lmgendrive_jax.sim import town as town_lib  # noqa: E402

OFFSETS_M = (-1.5, -0.75, 0.0, 0.75, 1.5)
HEADINGS_DEG = (-8.0, -4.0, 4.0, 8.0)
SPEED = 5.0
INSTRUCTION = "Follow the road."
BEHIND_M, AHEAD_M = 5.0, 30.0


def straight_places(route: routes_lib.Route, count: int) -> list[float]:
  """Up to `count` arc lengths, evenly spread, whose lane-follow stretch reaches BEHIND_M back and
  AHEAD_M ahead."""
  s, follow = route.s, route.option == town_lib.LANEFOLLOW
  good = [float(x) for x in s if BEHIND_M <= x <= route.length - AHEAD_M
          and follow[(s >= x - BEHIND_M) & (s <= x + AHEAD_M)].all()]
  if not good:
    return []
  return [good[int(i)] for i in np.linspace(0, len(good) - 1, min(count, len(good)))]


def lane_pose(route: routes_lib.Route, s: float) -> tuple[np.ndarray, float]:
  """(lane-centre point, lane yaw) at arc length s (CARLA frame)."""
  ahead, behind = route.point_at(s + 1.0), route.point_at(s - 1.0)
  return route.point_at(s), math.atan2(ahead[1] - behind[1], ahead[0] - behind[0])


def placed_state(initial: dict, centre: np.ndarray, lane_yaw: float, offset: float,
                 heading_deg: float) -> dict:
  """The episode's initial state with the ego `offset` m right of the lane centre, turned
  `heading_deg` right of the lane, at SPEED, and no other vehicles or pedestrians."""
  right = np.array([-math.sin(lane_yaw), math.cos(lane_yaw)])
  state = dict(initial)
  state["ego_pos"] = (centre + offset * right).astype(np.float32)
  state["ego_yaw"] = np.float32(lane_yaw + math.radians(heading_deg))
  state["ego_speed"] = np.float32(SPEED)
  state["npc_active"] = np.zeros_like(initial["npc_active"])
  state["ped_active"] = np.zeros_like(initial["ped_active"])
  return state


def lane_lateral(waypoint: np.ndarray, offset: float, heading_deg: float) -> float:
  """An ego-frame point (right, forward) -> metres right of the lane centre."""
  psi = math.radians(heading_deg)
  return offset + waypoint[0] * math.cos(psi) + waypoint[1] * math.sin(psi)


def slope(x, y) -> float:
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  return float(np.polyfit(x, y, 1)[0])


def main(argv=None) -> int:
  parser = route_bench_parser(__doc__, "simulator preset")
  parser.add_argument("--poses", type=int, default=24, help="places on the routes")
  args = parser.parse_args(argv)

  scenes = PlacedScenes(args)
  agent = scenes.agent

  # results[kind]: rows of (offset, heading, lateral of the 2.5 s waypoint in the lane frame).
  results = {"recorded": [], "zeroed": [], "probe": []}
  model = agent.planner.model
  probe = None
  if model.visual_probe:  # the training-only head on the Q-Former's tokens (no LLM, no text)
    probe = jax.jit(lambda variables, images, speed: model.apply(
        variables, images, speed, method=lambda m, i, v: m.probe(m.encode_frames(i, v))[0]))
  places = 0
  for episode, town, s in scenes.places(args.poses, straight_places):
    places += 1
    centre, lane_yaw = lane_pose(episode.route, s)
    poses = [(o, 0.0) for o in OFFSETS_M] + [(0.0, h) for h in HEADINGS_DEG]
    for offset, heading in poses:
      state = placed_state(episode.initial_state, centre, lane_yaw, offset, heading)
      views = scenes.views(town, state)
      for kind, shown in (("recorded", views), ("zeroed", np.zeros_like(views))):
        waypoints, _, _ = agent.planner.step(agent.planner.start(INSTRUCTION), shown, SPEED)
        results[kind].append((offset, heading, lane_lateral(np.asarray(waypoints)[-1], offset,
                                                            heading)))
      if probe is not None:
        waypoints = probe(agent.planner.variables, jnp.asarray(views)[None, None],
                          jnp.full((1, 1), SPEED, jnp.float32))[0, 0]
        results["probe"].append((offset, heading, lane_lateral(np.asarray(waypoints)[-1],
                                                               offset, heading)))
  if not places:
    print(f"no straight lane-follow stretch on {args.route_set} (seed {args.seed})")
    return 1
  rows = []
  for kind, name in (("recorded", "cameras as rendered"), ("zeroed", "every image zeroed"),
                     ("probe", "visual probe, cameras as rendered")):
    if not results[kind]:
      continue
    rows_kind = np.asarray(results[kind])
    by_offset = rows_kind[rows_kind[:, 1] == 0.0]
    by_heading = rows_kind[rows_kind[:, 0] == 0.0]
    means = [by_offset[by_offset[:, 0] == o, 2].mean() for o in OFFSETS_M]
    rows.append([name, f"{slope(by_offset[:, 0], by_offset[:, 2]):.2f}",
                 f"{slope(by_heading[:, 1], by_heading[:, 2]):.3f}",
                 " / ".join(f"{m:+.2f}" for m in means)])
  print_table(
      f"Lane response of {args.work_dir}: {places} places on {args.route_set} (seed {args.seed})",
      ["planner input", "slope vs offset (0 = recovers, 1 = keeps it)",
       "slope vs heading (m/deg; keeps it ~0.22)",
       "lane lateral at 2.5 s for offsets " + " / ".join(f"{o:+.2f}" for o in OFFSETS_M)],
      rows)
  return 0


if __name__ == "__main__":
  sys.exit(main())
