"""Autoregressive long-horizon video generation: chunk after chunk, memory constant in the horizon.

Where it sits: the offline batch-generation job (`generate/`) and the evaluation call these pure
functions with a trained `models/world.py: WorldDiT` (+ optionally the VAE to decode frames).

  context latents f32[B, Fc, V, h, w, c]  (the last observed frames, VAE-encoded)
    -> step: sample Ff future frames given the context (`diffusion.sample_future`)
             -> next context = the last Fc frames of [context, future]   (stays on device)
             -> (optional) VAE-decode the Ff frames to uint8[B, Ff, V, H, W, 3]
    -> copy the chunk to host numpy, yield it, repeat until `num_frames` frames exist.

Why memory does not grow with the horizon: one jitted `step` with fixed shapes is compiled once
and reused for every chunk; the only device state carried between chunks is the fixed-size
context window (donated to the next call); every chunk's output is moved to host memory and its
device buffers are dropped before the next chunk. Host memory grows with the frames the caller
keeps (`rollout` preallocates them; `iter_rollout` leaves that to the caller, e.g. to write an
MP4 as it goes). `live_device_bytes()` measures what this module holds on the device.

Randomness: chunk k uses `fold_in(key, k)`, so a longer rollout repeats a shorter one's frames.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from lmgendrive_jax import diffusion
from lmgendrive_jax.models import vae as vae_lib

Conditions = Mapping[str, Any]  # {"cond": f32[B, Nc, Dc], "cond_mask"?: bool[B, Nc], "waypoints"?}


@dataclasses.dataclass
class Chunk:
  """One generated chunk on the host: frames [start, start + latents.shape[1])."""
  index: int
  start: int
  latents: np.ndarray  # f32[B, n, V, h, w, c]
  images: np.ndarray | None  # uint8[B, n, V, H, W, 3] when a VAE was given


def make_chunk_step(model, flow: diffusion.FlowConfig, future_frames: int, vae=None,
                    **jit_kwargs) -> Callable:
  """Builds the jitted chunk step, compiled once per input shape and reused for every chunk.

  step(world_variables, vae_variables | None, context f32[B, Fc, V, h, w, c], conditions, key,
       chunk_index int32[]) -> (future f32[B, Ff, V, h, w, c], next_context f32[B, Fc, ...],
       images uint8[B, Ff, V, H, W, 3] | None). The context argument is donated.
  jit_kwargs: e.g. in_shardings / out_shardings for a sharded batch job.
  """
  def step(world_variables, vae_variables, context, conditions, key, chunk_index):
    chunk_key = jax.random.fold_in(key, chunk_index)
    future = diffusion.sample_future(
        model, world_variables, context, conditions["cond"], chunk_key, future_frames, flow,
        cond_mask=conditions.get("cond_mask"), waypoints=conditions.get("waypoints"))
    context_frames = context.shape[1]
    next_context = jnp.concatenate([context, future], axis=1)[:, -context_frames:]
    images = None
    if vae is not None:
      images = vae_lib.decode_video(vae, vae_variables, future)
    return future, next_context, images

  return jax.jit(step, donate_argnums=(2,), **jit_kwargs)


def live_device_bytes() -> int:
  """Bytes held by live jax.Arrays in this process (all devices): what the rollout keeps resident.

  On GPU/TPU `device.memory_stats()["peak_bytes_in_use"]` also counts XLA's temporaries; the CPU
  backend reports no memory stats, hence this count of live buffers.
  """
  return sum(a.nbytes for a in jax.live_arrays() if not a.is_deleted())


def iter_rollout(step: Callable, world_variables, context: jax.Array,
                 conditions: Conditions | Callable[[int, int], Conditions], num_frames: int,
                 key: jax.Array, *, vae_variables=None, stats: dict | None = None
                 ) -> Iterator[Chunk]:
  """Generates `num_frames` frames after `context`, one chunk at a time, as host numpy Chunks.

  context: f32[B, Fc, V, h, w, c] scaled latents of the last observed frames.
  conditions: a fixed dict, or `fn(chunk_index, start_frame) -> dict` (e.g. the LLM's fresh
  generation states per chunk); shapes must stay fixed so the step never recompiles.
  stats: if given, gets "live_device_bytes" (one value per chunk, measured after the chunk's
  device outputs were released) and "chunks".
  """
  if num_frames < 1:
    raise ValueError(f"num_frames={num_frames} must be at least 1")
  window = jnp.array(context, copy=True)  # donated below: never consume the caller's array
  produced, index = 0, 0
  while produced < num_frames:
    chunk_conditions = conditions(index, produced) if callable(conditions) else conditions
    future, window, images = step(world_variables, vae_variables, window, chunk_conditions, key,
                                  jnp.int32(index))
    keep = min(future.shape[1], num_frames - produced)
    latents = np.array(jax.device_get(future[:, :keep]))
    frames = None if images is None else np.array(jax.device_get(images[:, :keep]))
    del future, images  # release the chunk's device buffers before the next chunk
    if stats is not None:
      stats.setdefault("live_device_bytes", []).append(live_device_bytes())
      stats["chunks"] = index + 1
    yield Chunk(index=index, start=produced, latents=latents, images=frames)
    produced += keep
    index += 1


def rollout(step: Callable, world_variables, context: jax.Array,
            conditions: Conditions | Callable[[int, int], Conditions], num_frames: int,
            key: jax.Array, *, vae_variables=None, stats: dict | None = None
            ) -> tuple[np.ndarray, np.ndarray | None]:
  """`iter_rollout` collected into preallocated host arrays.

  Returns (latents f32[B, num_frames, V, h, w, c], images uint8[B, num_frames, V, H, W, 3] or
  None without a VAE).
  """
  latents = images = None
  for chunk in iter_rollout(step, world_variables, context, conditions, num_frames, key,
                            vae_variables=vae_variables, stats=stats):
    if latents is None:
      latents = np.empty((chunk.latents.shape[0], num_frames) + chunk.latents.shape[2:],
                         chunk.latents.dtype)
      if chunk.images is not None:
        images = np.empty((chunk.images.shape[0], num_frames) + chunk.images.shape[2:], np.uint8)
    end = chunk.start + chunk.latents.shape[1]
    latents[:, chunk.start:end] = chunk.latents
    if images is not None:
      images[:, chunk.start:end] = chunk.images
  return latents, images
