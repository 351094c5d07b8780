"""Normalisation layers with logical axis names on their parameters."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class RMSNorm(nn.Module):
  """LLaMA's RMSNorm: x / rms(x) * scale, computed in float32. x: [..., D] -> [..., D]."""
  eps: float = 1e-6
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones_init(), ("norm",)),
                       (x.shape[-1],), self.param_dtype)
    x32 = x.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
    # HF LLaMA casts back to the input dtype before the scale; we do the same for parity.
    return (normed.astype(self.dtype) * scale.astype(self.dtype)).astype(self.dtype)


class LayerNorm(nn.Module):
  """LayerNorm over the last axis, statistics in float32. x: [..., D] -> [..., D]."""
  eps: float = 1e-5
  use_bias: bool = True
  use_scale: bool = True
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
    y = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
    if self.use_scale:
      y = y * self.param("scale", nn.with_logical_partitioning(nn.initializers.ones_init(),
                                                               ("norm",)),
                         (x.shape[-1],), self.param_dtype).astype(jnp.float32)
    if self.use_bias:
      y = y + self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros_init(),
                                                              ("norm",)),
                         (x.shape[-1],), self.param_dtype).astype(jnp.float32)
    return y.astype(self.dtype)
