"""Vision side speed and size: encoder + Q-Former forward throughput, paper-preset cost.

  python bench/vision.py [--batch 4] [--paper-image 224]

Prints two tables:
1. frames/s of the jitted vision encoder + Q-Former forward (uint8 views -> LLM-width tokens) for
   the `tiny` and `small` presets on this machine (a frame = all 5 views of one time step);
2. the `paper` preset (resnet50d views at `--paper-image` pixels, 50x50 BEV grid, BERT-base
   Q-Former projecting to 4096): parameters of each part and forward FLOPs per frame, from XLA's
   cost analysis of the lowered computation (nothing of paper size is allocated).
"""

import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import print_table, time_call, view_size  # noqa: E402
from lmgendrive_jax import config as config_lib  # noqa: E402
from lmgendrive_jax.models.qformer import QFormer  # noqa: E402
from lmgendrive_jax.models.vision import PerceptionModel, VisionEncoder  # noqa: E402


def build(preset: str):
  vision = config_lib.vision_preset(preset)
  encoder = VisionEncoder(**vision.encoder.to_dict())
  qformer = QFormer(**config_lib.qformer_preset(preset).to_dict())
  return vision, encoder, qformer


def forward_fn(encoder, qformer):
  def forward(variables, images, speed):
    tokens, _ = encoder.apply(variables["encoder"], images, speed)
    llm_tokens, _ = qformer.apply(variables["qformer"], tokens)
    return llm_tokens
  return forward


def init_fn(encoder, qformer, images, speed):
  def init(key):
    enc_key, q_key = jax.random.split(key)
    enc_vars = nn.meta.unbox(encoder.init(enc_key, images, speed))
    tokens = jax.eval_shape(lambda v: encoder.apply(v, images, speed)[0], enc_vars)
    q_vars = nn.meta.unbox(qformer.init(q_key, jnp.zeros(tokens.shape, tokens.dtype)))
    return {"encoder": enc_vars, "qformer": q_vars}
  return init


def inputs(preset: str, batch: int, frames: int = 1, size: int | None = None, abstract=False):
  size = size or view_size(preset)
  shape = (batch, frames, 5, size, size, 3)
  if abstract:
    return jax.ShapeDtypeStruct(shape, jnp.uint8), jax.ShapeDtypeStruct((batch, frames),
                                                                          jnp.float32)
  rng = np.random.default_rng(0)
  return (jnp.asarray(rng.integers(0, 256, shape, dtype=np.uint8)),
          jnp.asarray(rng.uniform(0, 8, (batch, frames)).astype(np.float32)))


def throughput(preset: str, batch: int) -> list:
  _, encoder, qformer = build(preset)
  images, speed = inputs(preset, batch)
  variables = jax.jit(init_fn(encoder, qformer, images, speed))(jax.random.key(0))
  forward = jax.jit(forward_fn(encoder, qformer)).lower(variables, images, speed).compile()
  seconds = time_call(lambda: forward(variables, images, speed).block_until_ready(),
                      warmup=1, repeats=5)
  tokens = jax.eval_shape(lambda v: encoder.apply(v, images, speed)[0], variables["encoder"])
  return [preset, f"{images.shape[-3]}x{images.shape[-2]}", batch, tokens.shape[2],
          qformer.num_queries, seconds * 1e3, batch / seconds]


def count(tree) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def paper_cost(size: int) -> list[list]:
  vision, encoder, qformer = build("paper")
  images, speed = inputs("paper", 1, size=size, abstract=True)
  stage1 = PerceptionModel(**vision.to_dict())
  stage1_vars = jax.eval_shape(lambda k: nn.meta.unbox(stage1.init(
      k, jnp.zeros(images.shape, jnp.uint8), jnp.zeros(speed.shape), jnp.zeros((1, 1, 2)))),
      jax.random.key(0))
  variables = jax.eval_shape(init_fn(encoder, qformer, jnp.zeros(images.shape, jnp.uint8),
                                     jnp.zeros(speed.shape)), jax.random.key(0))
  lowered = jax.jit(forward_fn(encoder, qformer)).lower(variables, images, speed)
  cost = lowered.cost_analysis() or {}
  if isinstance(cost, list):
    cost = cost[0]
  flops = float(cost.get("flops", float("nan")))
  enc_params = variables["encoder"]["params"]
  rows = [
      ["backbone (resnet50d, shared by 5 views)", count(enc_params["backbone"]), ""],
      ["BEV decoder + projections + embeddings",
       count(enc_params) - count(enc_params["backbone"]), ""],
      ["BatchNorm statistics (frozen, not params)", count(variables["encoder"].get(
          "batch_stats", {})), ""],
      ["stage-1 heads", count(stage1_vars["params"]["heads"]), ""],
      ["Q-Former (BERT-base layout) + projection", count(variables["qformer"]["params"]), ""],
      ["encoder + Q-Former forward, per frame", count(enc_params) +
       count(variables["qformer"]["params"]), flops / 1e9],
  ]
  return rows


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--batch", type=int, default=4, help="frames per forward call")
  parser.add_argument("--paper-image", type=int, default=224, help="paper preset view size")
  args = parser.parse_args()
  print(f"devices: {jax.devices()[0].platform} x{jax.device_count()}")
  rows = [throughput(preset, args.batch) for preset in ("tiny", "small")]
  print_table("vision encoder + Q-Former forward (jit, fp32, 5 views per frame)",
              ["preset", "views", "frames/call", "tokens/frame", "LLM tokens/frame", "ms/call",
               "frames/s"], rows)
  print_table(f"paper preset ({args.paper_image}x{args.paper_image} views, fp32): size and cost",
              ["part", "parameters", "GFLOPs/frame"], paper_cost(args.paper_image))


if __name__ == "__main__":
  main()
