"""World generator speed and size: generated frames/s per sampler-step count, paper-preset cost.

  python bench/world.py [--batch 1] [--views 5] [--steps 4 8 20] [--presets tiny small]

Prints two tables:
1. for the `tiny` and `small` presets, the jitted autoregressive chunk step
   (`generate/rollout.make_chunk_step`: Euler sampling of `chunk.future_frames` frames given
   `chunk.context_frames` clean ones, no guidance) at 4, 8 and 20 sampler steps: ms per chunk and
   generated frames/s (a frame = all views at one time step), latents only and including the
   VAE decode of the chunk to uint8 views (the matching VAE preset at the preset's view size;
   the decode is timed once and added);
2. the `paper` preset (DiT-L: width 1024, 24 blocks, 16 heads; SD VAE at 224x224 views, 5 views,
   4 context + 8 future frames): parameters and forward FLOPs per generated frame from XLA's cost
   analysis of the lowered computation (nothing of paper size is allocated). The DiT is lowered
   unrolled so every block is counted; per-step FLOPs cover one velocity evaluation of the whole
   window divided by the generated frames.
"""

import argparse
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import print_table, time_call, view_size  # noqa: E402
from lmgendrive_jax import config as config_lib  # noqa: E402
from lmgendrive_jax import diffusion  # noqa: E402
from lmgendrive_jax.generate import rollout  # noqa: E402
from lmgendrive_jax.models import vae as vae_lib  # noqa: E402
from lmgendrive_jax.models.vae import AutoencoderKL  # noqa: E402
from lmgendrive_jax.models.world import WorldDiT  # noqa: E402


CONDITION_TOKENS = 4  # the LLM's generation queries of one frame


def count(tree) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def _flops(lowered) -> float:
  cost = lowered.cost_analysis() or {}
  if isinstance(cost, list):
    cost = cost[0]
  return float(cost.get("flops", float("nan")))


def build(preset: str, batch: int, views: int):
  cfg = config_lib.world_preset(preset)
  model = WorldDiT(**cfg.dit.to_dict())
  vae = AutoencoderKL(**config_lib.vae_preset(preset).to_dict())
  latent_size = view_size(preset) // vae.downsample_factor
  context = jnp.asarray(np.random.default_rng(0).normal(
      size=(batch, cfg.chunk.context_frames, views, latent_size, latent_size,
            vae.latent_channels)), jnp.float32)
  cond = jnp.asarray(np.random.default_rng(1).normal(
      size=(batch, CONDITION_TOKENS, model.cond_dim)), jnp.float32)
  return cfg, model, vae, context, cond


def throughput(preset: str, steps_list, batch: int, views: int) -> list[list]:
  cfg, model, vae, context, cond = build(preset, batch, views)
  future_frames = cfg.chunk.future_frames
  window = jnp.concatenate([context] * 2, axis=1)[:, :cfg.chunk.context_frames + future_frames]
  params = jax.jit(lambda k: nn.meta.unbox(model.init(k, window, jnp.zeros(window.shape[:2]),
                                                      cond)))(jax.random.key(0))
  size = view_size(preset)
  vae_params = jax.jit(lambda k: nn.meta.unbox(vae.init(k, jnp.zeros((1, size, size, 3)))))(
      jax.random.key(1))
  decode = jax.jit(lambda v, z: vae_lib.decode_video(vae, v, z))
  future = jnp.zeros((batch, future_frames) + context.shape[2:])
  decode_seconds = _time(lambda: decode(vae_params, future).block_until_ready())
  rows = []
  for steps in steps_list:
    flow = diffusion.FlowConfig(sampler="euler", num_steps=steps, guidance_scale=1.0)
    step = rollout.make_chunk_step(model, flow, future_frames)
    key = jax.random.key(2)
    seconds = _time(lambda: jax.block_until_ready(
        step(params, None, jnp.array(context), {"cond": cond}, key, jnp.int32(0))))
    rows.append([preset, f"{views}x{size}x{size}", f"{cfg.chunk.context_frames}+{future_frames}",
                 steps, seconds * 1e3, batch * future_frames / seconds,
                 batch * future_frames / (seconds + decode_seconds)])
  return rows


def _time(fn) -> float:
  """Median seconds per call after one warm-up (compile); fewer repeats for slow calls."""
  start = time.perf_counter()
  fn()
  first = time.perf_counter() - start
  return time_call(fn, warmup=0, repeats=5 if first < 1.0 else 1)


def paper_cost(views: int) -> list[list]:
  cfg = config_lib.world_preset("paper")
  model = WorldDiT(**{**cfg.dit.to_dict(), "scan_blocks": False, "remat_policy": "none"})
  vae = AutoencoderKL(**config_lib.vae_preset("paper").to_dict())
  latent = view_size("paper") // vae.downsample_factor
  frames = cfg.chunk.context_frames + cfg.chunk.future_frames
  window = jax.ShapeDtypeStruct((1, frames, views, latent, latent, vae.latent_channels),
                                jnp.float32)
  times = jax.ShapeDtypeStruct((1, frames), jnp.float32)
  cond = jax.ShapeDtypeStruct((1, CONDITION_TOKENS, model.cond_dim), jnp.float32)
  params = jax.eval_shape(lambda k: nn.meta.unbox(model.init(
      k, jnp.zeros(window.shape), jnp.zeros(times.shape), jnp.zeros(cond.shape))),
      jax.random.key(0))
  dit_flops = _flops(jax.jit(lambda p, x, t, c: model.apply(p, x, t, c)[0]).lower(
      params, window, times, cond))
  size = view_size("paper")
  vae_params = jax.eval_shape(lambda k: nn.meta.unbox(vae.init(k, jnp.zeros((1, size, size, 3)))),
                              jax.random.key(1))
  frame_latents = jax.ShapeDtypeStruct((views, latent, latent, vae.latent_channels), jnp.float32)
  decode_flops = _flops(jax.jit(lambda p, z: vae.apply(p, z, method=vae.decode_latents)).lower(
      vae_params, frame_latents))
  per_step = dit_flops / cfg.chunk.future_frames
  tokens = frames * views * (latent // model.patch_size) ** 2
  return [
      ["DiT-L world generator (24 x 1024, 16 heads)", count(params["params"]), tokens,
       per_step / 1e9, 8 * per_step / 1e12],
      ["SD VAE (encoder + decoder)", count(vae_params["params"]), "", "", ""],
      ["VAE decode of one frame (all views)", "", "", decode_flops / 1e9, decode_flops / 1e12],
      ["total per generated frame at 8 Euler steps", "", "", "", (8 * per_step + decode_flops)
       / 1e12],
  ]


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--batch", type=int, default=1, help="clips per chunk call")
  parser.add_argument("--views", type=int, default=5, help="camera views per frame")
  parser.add_argument("--steps", type=int, nargs="+", default=[4, 8, 20])
  parser.add_argument("--presets", nargs="+", default=["tiny", "small"])
  args = parser.parse_args()
  print(f"devices: {jax.devices()[0].platform} x{jax.device_count()}")
  rows = [row for preset in args.presets
          for row in throughput(preset, args.steps, args.batch, args.views)]
  print_table("world generator chunk step (jit, fp32, Euler, no guidance)",
              ["preset", "views", "context+future", "steps", "ms/chunk", "frames/s (latents)",
               "frames/s (+VAE decode)"], rows)
  print_table(f"paper preset ({args.views} views of 224x224, 4+8 frame window): size and cost",
              ["part", "parameters", "tokens/window", "GFLOPs/frame/step", "TFLOPs/frame"],
              paper_cost(args.views))


if __name__ == "__main__":
  main()
