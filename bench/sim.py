"""Benchmark of the embedded simulator: env-steps per second (physics + rendering of every
camera), batched over B worlds, at 4x64x64 and 4x128x128 cameras, and the real-time factor
(simulated seconds per wall second; the world ticks at 20 Hz).

  python bench/sim.py [--batch 1 8 32] [--sizes 64 128] [--steps 20]

One env-step = one world advanced one 20 Hz tick and its four views rendered. Also reports the
physics alone. Worlds are the tiny preset's towns and route starts (traffic included). The
numbers are medians of 3 timed calls; other jobs on the machine lower them.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from common import print_table, time_call  # noqa: E402
from lmgendrive_jax.config import sim_preset  # noqa: E402
from lmgendrive_jax.sim import host, render, routes, town, world  # noqa: E402


def batched_worlds(cfg, batch: int):
  specs = routes.route_set("tiny", 0)
  specs = [specs[i % len(specs)] for i in range(batch)]
  episodes = [host.Episode(s, cfg, cfg.traffic.num_vehicles + host.EXTRA_ACTORS,
                           cfg.traffic.num_pedestrians + host.EXTRA_ACTORS) for s in specs]
  shapes = town.max_shapes(e.town for e in episodes)
  towns = jax.tree.map(jnp.asarray, world.stack([e.town.arrays(shapes) for e in episodes]))
  states = jax.tree.map(jnp.asarray, world.stack([e.initial_state for e in episodes]))
  return towns, states


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32])
  parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
  parser.add_argument("--steps", type=int, default=10, help="ticks per timed call")
  args = parser.parse_args(argv)
  cfg = sim_preset("tiny")
  params = world.WorldParams.from_config(cfg.world)
  rows = []
  mode = ""
  for size in args.sizes:
    rig = render.CameraRig(width=size, height=size, max_boxes=int(cfg.camera.max_boxes))
    worlds = host.BatchedWorlds(params, rig)
    mode = worlds.render_mode
    for batch in args.batch:
      towns, states = batched_worlds(cfg, batch)
      controls = jnp.tile(jnp.asarray([[0.0, 0.5, 0.0]]), (batch, 1))

      def run(render_too: bool):
        s = states
        for _ in range(args.steps):
          s, _ = worlds.step(towns, s, controls)
          if render_too:
            images = worlds.render(towns, s)
        jax.block_until_ready(images if render_too else s)

      seconds = time_call(lambda: run(True), warmup=1, repeats=3)
      physics = time_call(lambda: run(False), warmup=1, repeats=3)
      steps_per_s = batch * args.steps / seconds
      rows.append([f"4x{size}x{size}", batch, round(steps_per_s, 1),
                   round(steps_per_s * world.DT, 2),
                   round(batch * args.steps / physics, 1),
                   round(1000 * seconds / args.steps, 2)])
  print_table(f"embedded simulator, {jax.devices()[0].platform} ({os.cpu_count()} cores), "
              f"max_boxes={cfg.camera.max_boxes} per view, render_mode={mode}",
              ["cameras", "batch", "env-steps/s", "real-time x", "physics steps/s", "ms/tick"],
              rows)


if __name__ == "__main__":
  main()
