"""Long-horizon rollout: 64 frames with the same device memory as 16, chunk hand-off is exact.

What is measured (CPU backend, which has no allocator statistics):
1. the chunk step is compiled exactly once for both horizons, so XLA's own peak (arguments +
   outputs + temporaries from `compiled.memory_analysis()`) is one fixed number per chunk;
2. the bytes of all live jax.Arrays after every chunk (`rollout.live_device_bytes`), i.e. what
   the Python loop keeps on the device between chunks: its maximum must be the same for a
   16-frame and a 64-frame rollout, and may not grow from chunk to chunk.
"""

import gc

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmgendrive_jax import config as config_lib
from lmgendrive_jax import diffusion
from lmgendrive_jax.generate import rollout as rollout_lib
from lmgendrive_jax.models.vae import AutoencoderKL


@pytest.fixture(scope="module")
def setup(tiny_world, perturb):
  model, _, params = tiny_world
  cfg = config_lib.world_preset("tiny")
  flow = diffusion.FlowConfig(num_steps=2, sampler="euler")
  rng = np.random.default_rng(0)
  context = jnp.asarray(rng.normal(size=(1, 2, 2, 4, 4, 4)), jnp.float32)
  cond = jnp.asarray(rng.normal(size=(1, 3, model.cond_dim)), jnp.float32)
  params = perturb(params, 0.05, 1)  # live zero-initialised outputs: non-trivial video
  # A one-level VAE (no resampling) decodes the 4x4 latents cheaply.
  vae = AutoencoderKL(block_out_channels=(8,), layers_per_block=1, norm_num_groups=4,
                      scaling_factor=1.0)
  vae_params = jax.jit(lambda k: nn.meta.unbox(vae.init(k, jnp.zeros((1, 4, 4, 3)))))(
      jax.random.key(1, impl="rbg"))
  step = rollout_lib.make_chunk_step(model, flow, cfg.chunk.future_frames, vae=vae)
  return model, params, vae_params, step, context, {"cond": cond}


def test_64_frames_use_the_same_device_memory_as_16(setup):
  _, params, vae_params, step, context, conditions = setup
  key = jax.random.key(3)
  runs = {}
  for frames in (16, 64):
    stats = {}
    # Cyclic garbage from other tests must not be freed mid-measurement: collect it now, and
    # count only what the rollout adds to what was live before it started.
    gc.collect()
    gc.disable()
    try:
      baseline = rollout_lib.live_device_bytes()
      latents, images = rollout_lib.rollout(step, params, context, conditions, frames, key,
                                            vae_variables=vae_params, stats=stats)
    finally:
      gc.enable()
    stats["live_device_bytes"] = [b - baseline for b in stats["live_device_bytes"]]
    assert latents.shape == (1, frames, 2, 4, 4, 4) and images.shape == (1, frames, 2, 4, 4, 3)
    assert np.isfinite(latents).all() and images.dtype == np.uint8
    runs[frames] = (latents, images, stats)
  assert step._cache_size() == 1  # one compiled chunk step served both horizons
  short, long = runs[16][2]["live_device_bytes"], runs[64][2]["live_device_bytes"]
  assert runs[64][2]["chunks"] == 32 and runs[16][2]["chunks"] == 8
  assert max(long) == max(short), (max(short), max(long))
  assert max(long) <= 2 * context.nbytes, long  # the window (+ its donated predecessor) at most
  assert len(set(long[1:])) == 1, long  # flat from chunk to chunk
  # Chunk k's randomness is fold_in(key, k): the long rollout extends the short one exactly.
  np.testing.assert_array_equal(runs[64][0][:, :16], runs[16][0])
  np.testing.assert_array_equal(runs[64][1][:, :16], runs[16][1])
  compiled = step.lower(params, vae_params, context, conditions, key, jnp.int32(0)).compile()
  analysis = compiled.memory_analysis()
  if analysis is not None:  # XLA's per-chunk peak: a property of the one executable
    print(f"chunk step: XLA temp {analysis.temp_size_in_bytes} B, arguments "
          f"{analysis.argument_size_in_bytes} B, outputs {analysis.output_size_in_bytes} B; "
          f"live bytes added after each chunk: {sorted(set(long))}")
    assert analysis.temp_size_in_bytes + analysis.output_size_in_bytes > 0


def test_each_chunk_is_conditioned_on_the_last_context_frames(setup):
  """Re-running the step by hand on the last generated frames reproduces every chunk."""
  _, params, vae_params, step, context, conditions = setup
  key = jax.random.key(5)
  seen = []

  def conditions_fn(index, start):
    seen.append((index, start))
    return conditions

  latents, _ = rollout_lib.rollout(step, params, context, conditions_fn, 7, key,
                                   vae_variables=vae_params)
  assert seen == [(0, 0), (1, 2), (2, 4), (3, 6)]  # 2 frames per chunk, the last one trimmed
  history = np.concatenate([np.asarray(context), latents], axis=1)
  for index, start in seen[1:]:
    window = jnp.asarray(history[:, start:start + 2])  # the 2 frames before this chunk
    future, _, _ = step(params, vae_params, window, conditions, key, jnp.int32(index))
    keep = min(2, 7 - start)
    np.testing.assert_allclose(np.asarray(future)[:, :keep], latents[:, start:start + keep],
                               rtol=1e-5, atol=1e-5)
