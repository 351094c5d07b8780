"""View reader: a frame's action states cross-attend to that frame's vision-encoder tokens.

Why: the Q-Former squeezes a frame's encoder tokens (356 at output stride 8 for small) into 4, and
a car a few metres ahead does not survive it. With a stride-8 encoder whose view-layout head sees
the car (P(object) 0.68 on its cells vs 0.03 without it, `bench/lead_car_response.py`), the
Q-Former's layout probe read 0.01-0.04 with or without the car, and the planner asked nearly the
same speed either way. The LLM still reads the instruction and the Q-Former's tokens; this reader
lets the action queries look up what the encoder saw directly, as a driving transformer's
waypoint queries attend over its encoder's tokens (TransFuser, InterFuser). Pre-LN residual
blocks: the action states reach the head plus what the reader adds. Measured on the bigger run's
data it drove no better (README, docs/experiments.md 2026-12-05 5th session): off by default.

action_states f32[B, T, A, D], vision_tokens f32[B, T, Nv, Dv] -> f32[B, T, A, D].
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lmgendrive_jax.nn.attention import Attention
from lmgendrive_jax.nn.mlp import Mlp
from lmgendrive_jax.nn.norms import LayerNorm


class ViewReader(nn.Module):
  """`num_layers` blocks of [cross-attention to the frame's tokens, MLP], each pre-LN residual."""
  num_heads: int
  num_layers: int = 1
  mlp_ratio: int = 2
  dtype: Any = "float32"
  param_dtype: Any = "float32"

  @nn.compact
  def __call__(self, action_states: jax.Array, vision_tokens: jax.Array) -> jax.Array:
    batch, frames, queries, width = action_states.shape
    if width % self.num_heads:
      raise ValueError(f"ViewReader: width {width} is not divisible by num_heads "
                       f"{self.num_heads}")
    kwargs = dict(dtype=jnp.dtype(self.dtype), param_dtype=jnp.dtype(self.param_dtype))
    x = action_states.reshape(batch * frames, queries, width)
    memory = vision_tokens.reshape(batch * frames, *vision_tokens.shape[2:])
    memory = LayerNorm(name="memory_norm", **kwargs)(memory)
    for layer in range(self.num_layers):
      attended, _ = Attention(self.num_heads, width // self.num_heads, use_bias=True,
                              name=f"cross_attn_{layer}", **kwargs)(
                                  LayerNorm(name=f"attn_norm_{layer}", **kwargs)(x), memory)
      x = x + attended
      x = x + Mlp(self.mlp_ratio * width, name=f"mlp_{layer}", **kwargs)(
          LayerNorm(name=f"mlp_norm_{layer}", **kwargs)(x))
    x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
    return x.reshape(batch, frames, queries, width)
