"""Fixed position encodings: 1D/2D sine (DETR, ViT-style) and diffusion timestep embeddings."""

import jax
import jax.numpy as jnp


def sine_1d(positions: jax.Array, dim: int, temperature: float = 10000.0) -> jax.Array:
  """positions: f32[...] -> f32[..., dim] as [sin(p w_0) ... sin(p w_k), cos(p w_0) ...]."""
  if dim % 2:
    raise ValueError(f"sine_1d needs an even dim, got {dim}")
  freqs = temperature ** (-jnp.arange(dim // 2, dtype=jnp.float32) / (dim // 2))
  angles = positions.astype(jnp.float32)[..., None] * freqs
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


def sine_2d(height: int, width: int, dim: int, temperature: float = 10000.0) -> jax.Array:
  """DETR-style 2D encoding: half the channels encode the row, half the column.

  Returns f32[height * width, dim], rows major (matches a flattened [h, w] token grid).
  """
  if dim % 4:
    raise ValueError(f"sine_2d needs dim divisible by 4, got {dim}")
  rows, cols = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32),
                            jnp.arange(width, dtype=jnp.float32), indexing="ij")
  enc = jnp.concatenate([sine_1d(rows, dim // 2, temperature), sine_1d(cols, dim // 2, temperature)],
                        axis=-1)
  return enc.reshape(height * width, dim)


def timestep_embedding(t: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
  """t: f32[B] (any scale) -> f32[B, dim], [cos, sin] halves as in DiT/ADM."""
  half = dim // 2
  freqs = jnp.exp(-jnp.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = t.astype(jnp.float32)[:, None] * freqs[None]
  emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
  if dim % 2:
    emb = jnp.pad(emb, ((0, 0), (0, 1)))
  return emb
