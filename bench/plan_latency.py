"""Planning latency per control step: KV-cached (`extend`) vs full recompute (`__call__`).

  python bench/plan_latency.py [--presets tiny,small] [--history 1,10,40] [--repeats 5]

For each preset (random init: timing only) and history length N: "cached" is one
`LMGenDrive.extend` of the newest frame on a cache already holding N - 1 frames (the agent's
control step; cache sized for 40 frames + the spare slot, as agent/planner.py sizes it), "full"
is one `LMGenDrive.__call__` over all N frames; the last column is the largest waypoint gap
between the two at the newest frame (the cache must not change the answer on this device: on a
GPU, XLA's default TF32 matmuls make it millimetres). Target (issue 8): cached at 40 <= 1.2x
cached at 1 (the cache has a fixed size, so the step cost does not grow with the history).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import print_table, time_call  # noqa: E402
from lmgendrive_jax import config as config_lib  # noqa: E402
from lmgendrive_jax.agent.planner import frame_block_len  # noqa: E402
from lmgendrive_jax.models.lmgendrive import LMGenDrive  # noqa: E402


def bench_preset(preset: str, histories: list[int], repeats: int) -> list[list]:
  model = LMGenDrive(**config_lib.lmgendrive_preset(preset).to_dict())
  data = config_lib.data_preset(preset, 3)
  h, w = data.view_size
  li, ln = int(data.max_instruction_tokens), int(data.max_notice_tokens)
  rng = np.random.default_rng(0)
  frames = jnp.asarray(rng.integers(0, 255, (1, max(histories), 5, h, w, 3)), jnp.uint8)
  speed = jnp.asarray(rng.uniform(0, 6, (1, max(histories))), jnp.float32)
  tokens, mask = jnp.ones((1, li), jnp.int32), jnp.ones((1, li), bool)
  notice, notice_mask = jnp.ones((1, ln), jnp.int32), jnp.zeros((1, ln), bool)
  variables = nn.meta.unbox(jax.jit(model.init)(
      jax.random.key(0), frames[:, :1], speed[:, :1], tokens, mask, notice, notice_mask,
      jnp.array([-1]), jnp.ones((1, 1), bool)))
  cache_size = li + ln + (max(histories) + 1) * frame_block_len(model)
  prefill = jax.jit(lambda v, t, m: model.apply(
      v, t, m, model.apply(v, 1, cache_size, method=LMGenDrive.init_cache),
      method=LMGenDrive.prefill))
  extend = jax.jit(lambda v, im, sp, c: model.apply(v, im, sp, c, method=LMGenDrive.extend))
  full = jax.jit(model.apply)
  rows, gaps = [], []
  for n in histories:
    cache = prefill(variables, tokens, mask)
    for t in range(n - 1):  # fill the history (not timed)
      cache = extend(variables, frames[:, t], speed[:, t], cache)[1]["cache"]
    cached_step = lambda: jax.block_until_ready(  # noqa: E731
        extend(variables, frames[:, n - 1], speed[:, n - 1], cache)[0])
    full_step = lambda: jax.block_until_ready(full(  # noqa: E731
        variables, frames[:, :n], speed[:, :n], tokens, mask, notice, notice_mask,
        jnp.array([-1]), jnp.ones((1, n), bool))[0])
    cached_s = time_call(cached_step, repeats=repeats)
    full_s = time_call(full_step, warmup=1, repeats=max(2, repeats // 2))
    # Correctness on the device that runs the bench: the cached step's waypoints against the
    # dense forward's at the same (newest) frame.
    gaps.append(float(jnp.max(jnp.abs(cached_step() - full_step()[:, n - 1]))))
    rows.append([preset, n, cached_s * 1e3, full_s * 1e3, full_s / cached_s])
  base = rows[0][2]
  for row, gap in zip(rows, gaps):
    row += [row[2] / base, gap]
  return rows


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--presets", default="tiny,small")
  parser.add_argument("--history", default="1,10,40")
  parser.add_argument("--repeats", type=int, default=20)
  args = parser.parse_args(argv)
  histories = [int(x) for x in args.history.split(",")]
  rows = []
  for preset in args.presets.split(","):
    rows += bench_preset(preset, histories, args.repeats)
  print_table(f"plan latency per control step ({jax.default_backend()}, batch 1)",
              ["preset", "frames", "cached ms", "full ms", "full/cached", "cached vs 1 frame",
               "max |cached - full| m"],
              rows)
  worst = max(r[5] for r in rows if r[1] == max(histories))
  print(f"\ntarget cached@{max(histories)} <= 1.2x cached@{histories[0]}: worst "
        f"{worst:.2f}x -> {'met' if worst <= 1.2 else 'NOT met'}")


if __name__ == "__main__":
  main()
