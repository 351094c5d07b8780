"""Layout probe: a frame's Q-Former tokens -> every view's road layout in image space.

Training-only, off the control path (like the visual probe of `models/lmgendrive.py`). Its target
is stage 1's per-view road layout (`data/view_layout.py`) at a coarse size. Why: the random-init
Q-Former squeezes a frame's ~56 encoder tokens into 4, and its near-uniform cross-attention kept
the car's offset from its lane and its heading error out of them (ridge R^2 0.74 / 0.74 from the
frozen encoder's tokens, 0.22 / 0.04 from the Q-Former's), so no planner on top could steer back
to the lane. Drawing every view's lanes from the 4 tokens alone is only possible if they carry
where the lanes are.

visual_tokens: f32[B, T, Nq, D] -> logits f32[B, T, V, rows, cols, classes].
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lmgendrive_jax.nn.linear import Linear


class LayoutProbe(nn.Module):
  """An MLP from a frame's flattened Q-Former tokens to per-view, per-cell class logits."""
  num_views: int
  size: tuple[int, int]
  classes: int
  hidden_dim: int = 256
  dtype: Any = "float32"
  param_dtype: Any = "float32"

  @nn.compact
  def __call__(self, visual_tokens: jax.Array) -> jax.Array:
    dtype, param_dtype = jnp.dtype(self.dtype), jnp.dtype(self.param_dtype)
    rows, cols = self.size
    x = visual_tokens.reshape(*visual_tokens.shape[:-2], -1)  # [B, T, Nq * D]
    x = nn.gelu(Linear(self.hidden_dim, ("embed", "mlp"), use_bias=True, dtype=dtype,
                       param_dtype=param_dtype, name="fc1")(x))
    out = Linear(self.num_views * rows * cols * self.classes, ("mlp", None), use_bias=True,
                 dtype=dtype, param_dtype=param_dtype, name="fc2")(x).astype(jnp.float32)
    return out.reshape(*out.shape[:-1], self.num_views, rows, cols, self.classes)
