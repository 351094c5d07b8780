"""World-generator samples while training stages 2 and 3: what the model imagines, every N steps.

Where it sits: `stage2.build_task` hands `make_world_sample_fn(model, config)` to the loop as
`Task.sample_fn`; every `config.train.sample_every` steps the loop (train/loop.py) calls it on
that step's batch and writes the image to TensorBoard (`samples/world`) and as a PNG under
`<work_dir>/samples/`.

For the batch's first clip: its last frame that has a future is the anchor; the LLM's
generation-query states of that frame condition the world generator, the VAE latents of the
`chunk.context_frames` frames up to it are the clean context, and `diffusion.sample_future`
draws the future frames the data gives for it (the same targets the flow loss trains on). The
image tiles, per future frame, the generated views (top) over the ground truth (bottom), views
side by side.
"""

from __future__ import annotations

from typing import Callable

import einops
import jax
import jax.numpy as jnp

from lmgendrive_jax import diffusion
from lmgendrive_jax.models.lmgendrive import LMGenDrive, WorldView
from lmgendrive_jax.models.vae import unit_to_images


def last_anchor(batch: dict) -> jax.Array:
  """int32[B, 1]: each clip's last valid frame with at least one valid future frame (0 if none)."""
  eligible = batch["frame_mask"] & jnp.any(batch["future_mask"], axis=-1)
  frames = jnp.arange(eligible.shape[1])
  return jnp.max(jnp.where(eligible, frames, 0), axis=1, keepdims=True).astype(jnp.int32)


def tile_sample(generated: jax.Array, truth: jax.Array) -> jax.Array:
  """generated, truth uint8[F, V, H, W, 3] -> uint8[F * 2 * H, V * W, 3] (per frame: the
  generated views over the true ones)."""
  pairs = jnp.stack([generated, truth], axis=1)  # [F, 2, V, H, W, 3]
  return einops.rearrange(pairs, "f r v h w c -> (f r h) (v w) c")


def make_world_sample_fn(model: LMGenDrive, config, model_inputs: Callable[[dict], tuple],
                         world_targets: Callable) -> Callable:
  """sample(params, model_state, batch, rng) -> uint8[F * 2 * H, V * W, 3] for the first clip.

  model_inputs / world_targets: stage2.py's own (the batch keys of `__call__`; the anchor frame
  gather), so the sample sees exactly what the flow loss sees."""
  flow = diffusion.flow_config(config.model.flow)
  world = WorldView(model)
  context_frames = config.model.chunk.context_frames

  def sample(params, model_state, batch, rng):
    variables = {"params": params, **model_state}
    first = jax.tree.map(lambda x: x[:1], batch)
    _, out = model.apply(variables, *model_inputs(first))
    context, future, _, cond = world_targets(first["images"], out["generation_states"], first,
                                             last_anchor(first), context_frames)
    latents = model.apply(variables, context, method=LMGenDrive.encode_latents)
    generated = diffusion.sample_future(world, variables, latents, cond, rng, future.shape[1],
                                        flow)
    images = model.apply(variables, generated, method=LMGenDrive.decode_latents)
    return tile_sample(unit_to_images(images)[0], future[0])

  return sample
