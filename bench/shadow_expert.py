"""Why our agent's routes end as they do: it drives, and the privileged expert shadows it.

  python bench/shadow_expert.py --work_dir RUNS/stage2_small [--route_set tiny_8] [--seed 1] \
      [--routes tiny_06,tiny_07]

Drives our agent (`--work_dir`, a stage-2/3 run) over a route set as `bench/drive_quality.py`
does, and on every tick asks an expert (sim/expert.py) what it would do in the same state: its
target speed and why it would brake (red light, stop sign, vehicle, pedestrian). Prints per
route how it ended, and for the longest stretch where the car stood while the expert would have
driven: when it began, how fast the car went 1 s before (from cruising speed to 0 within a
second is a crash: the simulator pins a car against what it hit), how far it was from
the route (a wrong branch at a junction), the instruction, and the speed the planner asked for
while it stood (near 0: the planner chose to stay; above 0: it was held). Writes the per-step
trace to `<out>/trace.json`.

2026-12-04: this is how "stops at a light and never pulls away" turned out to be crashes after
a wrong branch (README, `bench/drive_quality.py` row).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _REPO)

from bench.common import print_table, route_bench_parser  # noqa: E402
from lmgendrive_jax import config as config_lib  # noqa: E402
from lmgendrive_jax.eval import closed_loop  # noqa: E402
from lmgendrive_jax.sim import expert as expert_lib  # noqa: E402
from lmgendrive_jax.sim import host  # noqa: E402
from lmgendrive_jax.sim import routes as routes_lib  # noqa: E402

STOPPED_MPS = 0.1


class ShadowTrace:
  """on_tick hook: the expert's answer beside ours, one record per model step."""

  def __init__(self, expert_cfg):
    self.expert_cfg = expert_cfg
    self.experts: dict[str, expert_lib.Expert] = {}
    self.steps: dict[str, list[dict]] = {}

  def __call__(self, episode, state, info, images, control, agent) -> None:
    del images
    name = episode.spec.name
    if name not in self.experts:
      self.experts[name] = expert_lib.Expert(episode.town, episode.route, self.expert_cfg,
                                             seed=episode.spec.route_seed)
    # The expert acts on every tick (its hazard and stop-sign memory count ticks).
    _, labels = self.experts[name].act(state, np.asarray(info["light_states"]))
    if episode.tick % 2 or agent.last_waypoints is None:
      return
    waypoints = agent.last_waypoints
    ego = np.asarray(state["ego_pos"], np.float64)
    self.steps.setdefault(name, []).append(dict(
        t=float(state["t"]), speed=float(state["ego_speed"]),
        asked_speed=float(np.linalg.norm(waypoints[0] - waypoints[1]) * 2.0),
        expert_speed=float(labels["target_speed"]),
        expert_brakes_for=[k for k in ("red_light", "stop_sign", "vehicle", "pedestrian")
                           if labels[f"is_{k}_present"]],
        off_route_m=float(np.min(np.linalg.norm(episode.route.points - ego, axis=-1))),
        instruction=episode.instruction_text, throttle=float(control[1]),
        brake=float(control[2])))


def longest_wrong_stop(steps: list[dict], brake_steps: int) -> tuple[int, int]:
  """(first index, length) of the longest run of steps where the car stood and the expert would
  have driven; the agent's opening brake (`brake_steps`) is skipped. (0, 0) if none."""
  best, start = (0, 0), None
  for i, step in enumerate(steps + [dict(speed=1e9, expert_speed=0.0)]):
    wrong = i >= brake_steps and step["speed"] < STOPPED_MPS and step["expert_speed"] > 0
    if wrong and start is None:
      start = i
    elif not wrong and start is not None:
      best = max(best, (start, i - start), key=lambda run: run[1])
      start = None
  return best


def main(argv=None) -> int:
  parser = route_bench_parser(__doc__)
  parser.add_argument("--routes", default="", help="comma-separated route names (default all)")
  parser.add_argument("--out", default="", help="default: <work_dir>/shadow_expert/<set>_s<seed>")
  args = parser.parse_args(argv)
  out = args.out or os.path.join(args.work_dir, "shadow_expert", f"{args.route_set}_s{args.seed}")
  config = config_lib.load_config(
      os.path.join(_REPO, "configs", "eval.py") + f":preset={args.preset},agent=lmgendrive",
      {"route_set": args.route_set, "seed": args.seed, "agent.work_dir": args.work_dir})
  specs = routes_lib.route_set(config.route_set, int(config.seed))
  if args.routes:
    wanted = set(args.routes.split(","))
    specs = [s for s in specs if s.name in wanted]
  make_agent, agent_config, render_every = closed_loop.agent_factory(config)
  trace = ShadowTrace(config.sim.expert)
  results = host.run_routes(specs, make_agent, config.sim, batch_size=int(config.batch_size),
                            agent_config=agent_config, render_every=render_every,
                            on_tick=trace)
  brake_steps = int(config.agent.brake_ticks) // max(int(config.agent.model_every), 1) + 1
  rows = []
  for spec, result in zip(specs, results):
    steps = trace.steps.get(spec.name, [])
    first, length = longest_wrong_stop(steps, brake_steps)
    row = [spec.name, result["ending"], result["ds"], length]
    if length:
      stood = steps[first:first + length]
      before = steps[max(first - 10, 0)]  # 1 s earlier (model steps at 10 Hz)
      row += [stood[0]["t"], before["speed"], stood[0]["off_route_m"],
              float(np.mean([s["asked_speed"] for s in stood])), stood[0]["instruction"][:40]]
    else:
      row += ["-"] * 5
    rows.append(row)
  print_table(f"ours on {args.route_set} seed {args.seed}, the expert shadowing it: the longest "
              "stand where the expert would drive",
              ["route", "ending", "DS", "steps stood", "from t s", "speed 1 s before",
               "off route m", "asked speed m/s", "instruction"], rows)
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "trace.json"), "w") as f:
    json.dump({s.name: dict(result=r, steps=trace.steps.get(s.name, []))
               for s, r in zip(specs, results)}, f)
  print(f"\nper-step trace: {os.path.join(out, 'trace.json')}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
