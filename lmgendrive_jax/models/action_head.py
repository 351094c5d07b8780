"""Action head: the LLM states of a frame's action queries -> 5 waypoints + instruction completed.

Waypoints are (x right, y forward) in metres in the ego frame, 0.5 s apart (LMDrive's convention,
specs/langauto.md), predicted as cumulative offsets so each step is a small displacement.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lmgendrive_jax.nn.linear import Linear


class ActionHead(nn.Module):
  """action_states: f32[B, T, A, D] -> (waypoints f32[B, T, W, 2], completed_logit f32[B, T])."""
  num_waypoints: int = 5
  hidden_dim: int = 256
  dtype: Any = "float32"
  param_dtype: Any = "float32"

  @nn.compact
  def __call__(self, action_states: jax.Array):
    dtype, param_dtype = jnp.dtype(self.dtype), jnp.dtype(self.param_dtype)
    x = action_states.reshape(*action_states.shape[:-2], -1)  # [B, T, A * D]
    x = Linear(self.hidden_dim, ("embed", "mlp"), use_bias=True, dtype=dtype,
               param_dtype=param_dtype, name="fc1")(x)
    x = nn.gelu(x)
    out = Linear(2 * self.num_waypoints + 1, ("mlp", None), use_bias=True, dtype=dtype,
                 param_dtype=param_dtype, name="fc2")(x).astype(jnp.float32)
    steps = out[..., :-1].reshape(*out.shape[:-1], self.num_waypoints, 2)
    return jnp.cumsum(steps, axis=-2), out[..., -1]
