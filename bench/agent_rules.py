"""What the agent's rules buy on their own: a route-following planner that sees nothing, with and
without the light, stop-sign, hazard and stuck rules.

  python bench/agent_rules.py --light_detector RUNS/light_detector_small \
      --stop_sign_detector RUNS/stop_sign_detector_small --hazard_detector RUNS/hazard_detector_small \
      [--route_set tiny_8] [--seed 1,2] [--speed 4.0] [--out work_dirs/agent_rules]

The planner reads the route from privileged data and asks `--speed` along it, whatever is
ahead: a lane keeper that takes every junction its route's way and stops for nothing, behind our
agent's code path (`LMGenDriveAgent`: LMDrive's PID, the rules). Its red lights, stop signs and
collisions are what the rules are there to remove, so each rule's effect shows here without the
trained planner's own braking or standing mixed in (`bench/drive_quality.py` measures the rules
on the trained planner). Variants: no rule, each detector's rule alone, all of them (with the
stuck rule when `--stuck_seconds` > 0: a rule's false alarm can hold the car). Each variant's
routes go to `<out>/<set>_s<seed>/<variant>.json`, reused by a rerun; prints DS / RC / IS, red
lights and stop signs run, collisions and how the routes ended, per variant over all seeds.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys

import ml_collections
import numpy as np

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _REPO)

from bench.common import print_table  # noqa: E402
from lmgendrive_jax import config as config_lib  # noqa: E402
from lmgendrive_jax.agent.lmgendrive_agent import LMGenDriveAgent  # noqa: E402
from lmgendrive_jax.agent.planner import PlanState  # noqa: E402
from lmgendrive_jax.sim import expert, host, routes, scoring  # noqa: E402

RULES = {"light_rule": "light_detector", "stop_rule": "stop_sign_detector",
         "hazard_rule": "hazard_detector"}


class RoutePlanner:
  """The planner interface of agent/planner.py: waypoints 0.5 s apart along the route ahead at
  `speed` m/s (privileged route geometry), straight on past its end."""

  def __init__(self, speed: float, view_size: tuple[int, int]):
    self.speed = float(speed)
    self.data = ml_collections.ConfigDict(dict(
        views=("front",), view_size=tuple(view_size), crop_scale=0.875, stride=1, data_dir=""))
    self.max_frames = 4

  def start(self, instruction):
    return PlanState(cache=None)

  def add_notice(self, state, notice):
    return PlanState(cache=None, frames=state.frames, has_notice=True)

  def step(self, state, views, speed, commit, input_data):
    _, privileged = input_data["privileged"]
    route, pos = privileged["route"], np.asarray(privileged["state"]["ego_pos"], np.float64)
    progress = float(route.s[int(np.argmin(np.linalg.norm(route.points - pos, axis=-1)))])
    end, heading = route.points[-1], route.points[-1] - route.points[-2]
    heading = heading / np.linalg.norm(heading)
    ahead = progress + self.speed * 0.5 * np.arange(1, 6)
    targets = np.stack([route.point_at(s) if s <= route.length else
                        end + heading * (s - route.length) for s in ahead])
    waypoints = expert.world_to_ego(targets, pos, float(privileged["state"]["ego_yaw"]))
    return waypoints.astype(np.float32), 0.0, PlanState(None, state.frames + int(commit),
                                                        state.has_notice)


class RouteAgent(LMGenDriveAgent):
  privileged = True  # only so that the planner can read the route


def variants(args) -> dict[str, dict]:
  """{name: agent options} of the rules given (none, each alone, all together)."""
  given = {name: getattr(args, option) for name, option in RULES.items() if getattr(args, option)}
  stuck = {"stuck_seconds": args.stuck_seconds} if args.stuck_seconds > 0 else {}
  found = {"no_rule": {}}
  for name in given:
    found[name] = {RULES[name]: given[name]}
  if len(given) > 1:
    found["+".join(given) + ("+stuck" if stuck else "")] = {
        **{RULES[name]: run for name, run in given.items()}, **stuck}
  return found


def drive(args, options: dict, seed: int) -> list[dict]:
  sim = config_lib.sim_preset(args.preset)
  size = config_lib.data_preset(args.preset).view_size
  planner = RoutePlanner(args.speed, size)
  agent_config = dict(camera_size=tuple(args.camera_size), **options)
  specs = routes.route_set(args.route_set, seed)
  return host.run_routes(specs, lambda: RouteAgent(planner), sim, agent_config=agent_config,
                         render_every=2)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  for option in RULES.values():
    parser.add_argument(f"--{option}", default="", help="a detector run (configs/<name>.py)")
  parser.add_argument("--stuck_seconds", type=float, default=8.0)
  parser.add_argument("--route_set", default="tiny_8")
  parser.add_argument("--seed", default="1,2", help="route seeds, comma-separated (held out: 1-5)")
  parser.add_argument("--preset", default="small")
  parser.add_argument("--camera_size", type=int, nargs=2, default=(64, 64), help="W H")
  parser.add_argument("--speed", type=float, default=4.0, help="m/s the planner asks")
  parser.add_argument("--out", default="work_dirs/agent_rules")
  args = parser.parse_args(argv)
  rows = []
  for name, options in variants(args).items():
    records = []
    for seed in (int(s) for s in args.seed.split(",")):
      path = os.path.join(args.out, f"{args.route_set}_s{seed}", f"{name}.json")
      if os.path.exists(path):
        with open(path) as f:
          saved = json.load(f)
        if saved["options"] == options and saved["speed"] == args.speed:
          records += saved["routes"]
          continue
      found = drive(args, options, seed)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      with open(path, "w") as f:
        json.dump({"options": options, "speed": args.speed, "routes": found}, f, indent=1)
      records += found
    summary = scoring.aggregate(records)
    kinds = collections.Counter(i["type"] for r in records for i in r["infractions"])
    endings = collections.Counter(r["ending"] for r in records)
    rows.append([name, summary["mean_ds"], summary["mean_rc"], summary["mean_is"],
                 kinds["red_light"], kinds["stop_sign"],
                 sum(v for k, v in kinds.items() if k.startswith("collision")),
                 " ".join(f"{k} {v}" for k, v in sorted(endings.items()))])
  print_table(f"Agent rules on a route-following planner at {args.speed} m/s that sees nothing "
              f"({args.route_set}, seeds {args.seed})",
              ["rules", "DS", "RC", "IS", "red lights", "stop signs", "collisions", "endings"],
              rows)
  return 0


if __name__ == "__main__":
  sys.exit(main())
