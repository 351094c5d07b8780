"""Does a trained agent steer back to its lane, closed loop? Lane keeping judged in minutes.

  python bench/lane_recovery.py --work_dir work_dirs/quickstart_small/stage2_small \
      [--route_set tiny_8] [--seed 1] [--places 12] [--seconds 4] [--aim_lookahead_m 4]

`bench/lane_response.py` asks a fresh planner one step from a placed pose; on three planners it
ranked them opposite to their closed-loop DS (docs/experiments.md, 2026-12-06 9th), since closed
loop the planner reads its own history and the PID turns its waypoints into a path. This bench
drives instead: at `--places` straight, junction-free stretches of held-out routes (lane_response's
places), the car starts `OFFSET_M` m left or right of its lane centre, along the lane at 5 m/s,
with no other traffic, and the agent of `--work_dir` drives it for `--seconds` as it drives a
route (cameras at 10 Hz into its KV cache, LMDrive's PID, the simulator's 20 Hz physics; the
instruction "Follow the road."). Its distance from the lane centre is read every 0.5 s from the
route (whose points lie on lane centres). Printed per second: the mean distance from the lane
centre (1.0 at the start; 0 = back on it), the mean signed offset (+ right) at the end from each
starting side (a planner that drifts one way ends on that side from both), and how many runs went
past the evaluation's route-exit distance (2.5 m). The second row drives with every camera black:
a planner blind to its lane.
"""

from __future__ import annotations

import functools
import math
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _REPO)

from bench.common import add_aim_lookahead_argument, print_table, route_bench_parser  # noqa: E402
from bench.lane_response import INSTRUCTION, lane_pose, placed_state  # noqa: E402
from bench.lane_response import straight_places  # noqa: E402
from bench.placed_scenes import PlacedScenes  # noqa: E402
from lmgendrive_jax.eval.route_exit import MAX_SPEED_MPS, OFF_ROUTE_M  # noqa: E402
from lmgendrive_jax.sim import host  # noqa: E402
from lmgendrive_jax.sim import routes as routes_lib  # noqa: E402
from lmgendrive_jax.sim import world as world_lib  # noqa: E402

OFFSET_M = 1.0
READ_EVERY_S = 0.5


def route_lateral(route: routes_lib.Route, pos: np.ndarray, s_from: float, s_to: float) -> float:
  """Signed metres right of the route (its lane centre) of CARLA-frame `pos`, from the nearest
  route point with arc length in [s_from, s_to] (a window: a route may pass a place twice)."""
  window = np.flatnonzero((route.s >= s_from) & (route.s <= s_to))
  points = route.points[window]
  i = int(np.argmin(np.linalg.norm(points - pos, axis=-1)))
  k = window[i]
  ahead = route.points[min(k + 1, len(route.points) - 1)] - route.points[max(k - 1, 0)]
  yaw = math.atan2(ahead[1], ahead[0])
  d = np.asarray(pos, np.float64) - route.points[k]
  return float(-d[0] * math.sin(yaw) + d[1] * math.cos(yaw))  # CARLA's right: (-sin, cos)


def drive(agent, scenes, step_world, episode: host.Episode, town: dict, state: dict,
          seconds: float, s_start: float, black: bool = False) -> np.ndarray:
  """Drives `agent` (set up) from `state` for `seconds`; returns its lane offsets f[N + 1] read
  every READ_EVERY_S from the start. `scenes`: `cameras(town, state)` -> uint8[V, H, W, 3] of its
  `rig` (PlacedScenes); `black`: every camera image zeroed."""
  ticks = int(round(seconds / world_lib.DT))
  read_every = int(round(READ_EVERY_S / world_lib.DT))
  episode.instruction_text, episode.notice_text = INSTRUCTION, ""
  reach = s_start + 10.0 + MAX_SPEED_MPS * seconds  # as far as the car can get
  lateral = lambda s: route_lateral(episode.route, np.asarray(s["ego_pos"], np.float64),
                                    s_start - 5.0, reach)
  state_np = jax.device_get(state)
  offsets, images = [lateral(state_np)], None
  for tick in range(ticks):
    if tick % 2 == 0:  # the host renders every second tick; the agent runs at 10 Hz
      images = scenes.cameras(town, state)
      images = np.zeros_like(images) if black else images
    episode.tick = tick
    data = episode.input_data(state_np, {}, images, scenes.rig, privileged=False)
    control = agent.run_step(data, float(state_np["t"]))
    state, _ = step_world(town, state, jnp.asarray(
        [control.steer, control.throttle, control.brake], jnp.float32))
    state_np = jax.device_get(state)
    if (tick + 1) % read_every == 0:
      offsets.append(lateral(state_np))
  return np.asarray(offsets)


def mean_abs(runs: list[tuple[float, np.ndarray]], read: int) -> float:
  """Mean over runs of |lane offset| (m) at reading `read`."""
  return float(np.mean([abs(offsets[read]) for _, offsets in runs]))


def mean_signed(runs: list[tuple[float, np.ndarray]], read: int) -> float:
  """Mean over runs of the lane offset (m, + right) at reading `read`."""
  return float(np.mean([offsets[read] for _, offsets in runs]))


def main(argv=None) -> int:
  parser = route_bench_parser(__doc__, "simulator preset")
  parser.add_argument("--places", type=int, default=12, help="straight stretches driven")
  parser.add_argument("--seconds", type=float, default=4.0,
                      help="driving per start (the straight stretch is 30 m: ~5 s at 5 m/s)")
  add_aim_lookahead_argument(parser)
  args = parser.parse_args(argv)
  if args.seconds < 1.0:
    parser.error(f"--seconds {args.seconds}: the table reads the offset every second; give >= 1")

  scenes = PlacedScenes(args)
  # brake_ticks 0: it starts rolling, not standing.
  config = dict(work_dir=args.work_dir, brake_ticks=0, aim_lookahead_m=args.aim_lookahead_m)
  params = world_lib.WorldParams.from_config(scenes.sim.world)
  step_world = jax.jit(functools.partial(world_lib.step, params=params))

  runs = {"cameras as rendered": [], "every camera black": []}
  places = 0
  for episode, town, s in scenes.places(args.places, straight_places):
    places += 1
    centre, lane_yaw = lane_pose(episode.route, s)
    for offset in (-OFFSET_M, OFFSET_M):
      state = jax.tree.map(jnp.asarray, placed_state(episode.initial_state, centre, lane_yaw,
                                                     offset, 0.0))
      for name, black in (("cameras as rendered", False), ("every camera black", True)):
        scenes.agent.setup(config)  # a fresh agent: empty KV cache, PID and rules
        runs[name].append((offset, drive(scenes.agent, scenes, step_world, episode, town,
                                         state, args.seconds, s, black)))
  if not places:
    print(f"no straight lane-follow stretch on {args.route_set} (seed {args.seed})")
    return 1
  reads = list(range(2, len(next(iter(runs.values()))[0][1]), 2))  # every second
  rows = []
  for name, kind_runs in runs.items():
    left = [r for r in kind_runs if r[0] < 0]
    right = [r for r in kind_runs if r[0] > 0]
    exits = sum(bool(np.any(np.abs(offsets) > OFF_ROUTE_M)) for _, offsets in kind_runs)
    rows.append([name] + [f"{mean_abs(kind_runs, i):.2f}" for i in reads] + [
        f"{mean_signed(left, reads[-1]):+.2f} / {mean_signed(right, reads[-1]):+.2f}",
        f"{exits}/{len(kind_runs)}"])
  last_s = reads[-1] * READ_EVERY_S
  print_table(
      f"Lane recovery of {args.work_dir}: {places} places on {args.route_set} (seed {args.seed}),"
      f" starting {OFFSET_M:g} m left or right of the lane centre at 5 m/s"
      + (f", the expert's aim point (lookahead {args.aim_lookahead_m:g} m)"
         if args.aim_lookahead_m > 0 else ""),
      ["cameras"] + [f"|offset| m at {i * READ_EVERY_S:g} s" for i in reads] + [
          f"offset at {last_s:g} s from left / right", f"past {OFF_ROUTE_M:g} m"], rows)
  return 0


if __name__ == "__main__":
  sys.exit(main())
