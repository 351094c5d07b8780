"""Stage-2 train step: time, samples/s, where the time goes, and FLOP/s vs the matmul peak.

  python bench/train_step.py [--presets tiny,small]

Random weights and random batches shaped like the stage-2 pipeline's (`data.batch_spec`). The
share of time is measured, not modelled: the vision encoder's forward alone (it is frozen: no
backward), the planning loss alone (vision + Q-Former + LLM + action head, forward and backward),
and the full step (+ VAE encode and world generator); the world generator's share is the
difference. FLOPs are XLA's cost analysis of the compiled step.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import matmul_peak_flops, print_table, time_call  # noqa: E402
from lmgendrive_jax import config as config_lib  # noqa: E402
from lmgendrive_jax.data import pipeline  # noqa: E402
from lmgendrive_jax.models.lmgendrive import LMGenDrive  # noqa: E402
from lmgendrive_jax.train import stage2  # noqa: E402
from lmgendrive_jax.train.optimizer import make_optimizer  # noqa: E402
from lmgendrive_jax.train.state import create_state  # noqa: E402
from lmgendrive_jax.train.step import make_train_step  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def random_batch(config, rng):
  batch = {}
  for key, (shape, dtype) in pipeline.batch_spec(config.data, 2).items():
    if dtype == np.uint8:
      batch[key] = rng.integers(0, 255, shape).astype(np.uint8)
    elif dtype == np.bool_:
      batch[key] = np.ones(shape, bool)
    elif np.issubdtype(dtype, np.integer):
      batch[key] = rng.integers(3, 700, shape).astype(dtype)
    else:
      batch[key] = rng.normal(size=shape).astype(dtype)
  t = batch["frame_mask"].shape[1]
  batch["notice_frame"][:] = -1
  batch["completed"] = (rng.uniform(size=batch["completed"].shape) > 0.8).astype(np.int32)
  offsets = np.arange(batch["future_index"].shape[-1]) + 1
  batch["future_index"] = np.minimum(np.arange(t)[None, :, None] + offsets, t - 1).astype(
      np.int32) * np.ones_like(batch["future_index"])
  return {k: jnp.asarray(v) for k, v in batch.items()}


def measure(preset: str, shares: bool = True):
  """Seconds per stage-2 train step of `preset` (+ the time shares unless `shares=False`)."""
  config = config_lib.load_config(os.path.join(REPO, "configs", "stage2.py") + f":preset={preset}")
  model = LMGenDrive(**config.model.lmgendrive.to_dict())
  inputs = stage2.dummy_inputs(config, 2)
  variables = nn.meta.unbox(jax.jit(lambda k: model.init(
      k, *inputs, method=LMGenDrive.initialize))(jax.random.key(0)))
  params = variables.pop("params")
  batch = random_batch(config, np.random.default_rng(0))
  tx = make_optimizer(config.optim, params)
  state = create_state(params, tx, variables)
  rng = jax.random.key(1)

  full = jax.jit(make_train_step(stage2.make_loss_fn(model, config), tx, config.optim.frozen),
                 donate_argnums=(0,))
  compiled = full.lower(state, batch, rng).compile()
  analysis = compiled.cost_analysis()
  flops = float((analysis[0] if isinstance(analysis, list) else analysis).get("flops", 0.0))
  holder = [state]

  def run_full():
    holder[0], metrics = compiled(holder[0], batch, rng)
    jax.block_until_ready(metrics["loss"])
  t_full = time_call(run_full, repeats=5)
  samples = config.data.batch_size
  result = dict(preset=preset, batch=samples, seconds=t_full, samples_per_s=samples / t_full,
                flops=flops)
  if not shares:
    return result

  planning_config = config_lib.load_config(
      os.path.join(REPO, "configs", "stage2.py") + f":preset={preset}")
  planning_config.loss.world_weight = 0.0
  planning_loss = stage2.make_loss_fn(model, planning_config)
  planning_grad = jax.jit(jax.grad(lambda p, s: planning_loss(p, batch, rng, s)[0]))
  t_planning = time_call(lambda: jax.block_until_ready(
      planning_grad(holder[0].params, holder[0].model_state)), repeats=5)
  vision = jax.jit(lambda p, s: model.apply({"params": p, **s}, batch["images"], batch["speed"],
                                            method=LMGenDrive.encode_frames))
  t_vision = time_call(lambda: jax.block_until_ready(
      vision(holder[0].params, holder[0].model_state)), repeats=5)
  return dict(result, vision=t_vision / t_full,
              qformer_llm=max(t_planning - t_vision, 0.0) / t_full,
              world=max(t_full - t_planning, 0.0) / t_full)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--presets", default="tiny,small")
  args = parser.parse_args()
  peak = matmul_peak_flops()
  rows = []
  for preset in args.presets.split(","):
    r = measure(preset)
    rows.append([r["preset"], r["batch"], r["seconds"], r["samples_per_s"], r["vision"],
                 r["qformer_llm"], r["world"], r["flops"] / r["seconds"] / 1e9,
                 r["flops"] / r["seconds"] / peak])
  print_table(f"Stage-2 train step ({jax.device_count()} {jax.default_backend()} device(s), fp32; "
              f"matmul peak {peak / 1e9:.0f} GFLOP/s)",
              ["preset", "batch", "s/step", "samples/s", "share vision (fwd)",
               "share Q-Former+LLM+head", "share VAE+world", "GFLOP/s (XLA count)",
               "fraction of peak"], rows)


if __name__ == "__main__":
  main()
