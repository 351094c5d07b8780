"""Command: drive a route set with an agent in the embedded simulator and write results.json.

  python -m lmgendrive_jax.sim.drive --route-set tiny --seed 0 --agent expert --out DIR \
      [--preset tiny] [--batch-size 4] [--video]

`--agent expert` is the privileged autopilot; `--agent module.path:ClassName` loads any class
with the CARLA leaderboard interface (constructed without arguments, then `setup(--agent-config)`).
Writes `DIR/results.json` (`routes`: ds, rc, is, infractions, ending per route; `mean_ds`,
`mean_rc`, `mean_is`) and, with `--video`, a replay per route under `DIR/videos/` (viewer.py).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

from lmgendrive_jax.config import sim_preset


def make_agent_factory(name: str, cfg):
  if name == "expert":
    from lmgendrive_jax.sim.expert import ExpertAgent
    return lambda: ExpertAgent(cfg.expert)
  module_name, _, class_name = name.partition(":")
  if not class_name:
    raise SystemExit(f"--agent {name!r}: use 'expert' or 'package.module:ClassName'")
  cls = getattr(importlib.import_module(module_name), class_name)
  return cls


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--route-set", required=True)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--agent", default="expert")
  parser.add_argument("--agent-config", default=None)
  parser.add_argument("--out", required=True)
  parser.add_argument("--preset", default="tiny", help="sim preset (config.sim_preset)")
  parser.add_argument("--batch-size", type=int, default=None)
  parser.add_argument("--video", action="store_true", help="write a replay per route")
  args = parser.parse_args(argv)

  from tqdm import tqdm

  from lmgendrive_jax.sim import host, routes, viewer
  cfg = sim_preset(args.preset)
  specs = routes.route_set(args.route_set, args.seed)
  factory = make_agent_factory(args.agent, cfg)
  recorder = viewer.ReplayRecorder(os.path.join(args.out, "videos")) if args.video else None
  is_expert = args.agent == "expert"
  started = time.time()
  with tqdm(total=len(specs), desc=f"{args.route_set} ({args.agent})", unit="route") as bar:
    results = host.run_routes(
        specs, factory, cfg, batch_size=args.batch_size, agent_config=args.agent_config,
        render_every=(2 if recorder else 0) if is_expert else 1,
        on_tick=recorder.on_tick if recorder else None,
        on_end=recorder.on_end if recorder else None, progress=bar)
  summary = host.write_results(os.path.join(args.out, "results.json"), results, extra=dict(
      route_set=args.route_set, seed=args.seed, agent=args.agent, preset=args.preset,
      wall_seconds=round(time.time() - started, 2)))
  print(f"{args.route_set}: mean DS {summary['mean_ds']:.2f}  RC {summary['mean_rc']:.2f}  "
        f"IS {summary['mean_is']:.3f} over {len(results)} routes -> "
        f"{os.path.join(args.out, 'results.json')}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
