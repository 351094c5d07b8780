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

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _REPO)

from bench.common import print_table  # noqa: E402
from lmgendrive_jax import config as config_lib  # noqa: E402
from lmgendrive_jax.agent.baselines import RoutePlanner  # noqa: E402
from lmgendrive_jax.agent.lmgendrive_agent import LMGenDriveAgent  # noqa: E402
from lmgendrive_jax.sim import host, routes, scoring  # noqa: E402

RULES = {"light_rule": "light_detector", "stop_rule": "stop_sign_detector",
         "hazard_rule": "hazard_detector"}


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
  planner = RoutePlanner(args.speed, views=("front",), view_size=tuple(size))
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
