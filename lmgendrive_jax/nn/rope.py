"""Rotary position embeddings (HF LLaMA's rotate-half layout), with linear and llama3 scaling."""

import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp


def rope_inverse_frequencies(head_dim: int, theta: float,
                             scaling: Mapping[str, Any] | None = None) -> jax.Array:
  """f32[head_dim // 2] inverse frequencies, adjusted by `scaling` as transformers does.

  scaling: None, {"rope_type": "linear", "factor"} or {"rope_type": "llama3", "factor",
  "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}.
  """
  inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
  if not scaling:
    return inv_freq
  kind = scaling.get("rope_type", scaling.get("type", "default"))
  if kind == "default":
    return inv_freq
  if kind == "linear":
    return inv_freq / scaling["factor"]
  if kind == "llama3":
    factor = scaling["factor"]
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_len = scaling["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv_freq
    scaled = jnp.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
    return jnp.where(medium, smoothed, scaled)
  raise ValueError(f"unsupported rope scaling type {kind!r}; supported: default, linear, llama3")


def apply_rope(x: jax.Array, positions: jax.Array, theta: float = 10000.0,
               scaling: Mapping[str, Any] | None = None) -> jax.Array:
  """Rotates x: [B, L, H, D] by positions: int[B, L] (rotate-half pairing: i with i + D/2)."""
  inv_freq = rope_inverse_frequencies(x.shape[-1], theta, scaling)
  angles = positions.astype(jnp.float32)[..., None] * inv_freq  # [B, L, D/2]
  cos = jnp.cos(angles)[:, :, None, :]
  sin = jnp.sin(angles)[:, :, None, :]
  x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  rotated = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return rotated.astype(x.dtype)
