"""Feed-forward blocks: LLaMA's SwiGLU and the two-layer MLP of BERT/ViT/DiT."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lmgendrive_jax.nn.linear import Linear

ACTIVATIONS = {
    "gelu": lambda x: nn.gelu(x, approximate=False),
    "gelu_tanh": lambda x: nn.gelu(x, approximate=True),
    "quick_gelu": lambda x: x * nn.sigmoid(1.702 * x),  # CLIP's activation.
    "silu": nn.silu,
    "relu": nn.relu,
}


class SwiGLU(nn.Module):
  """down(silu(gate(x)) * up(x)). x: [B, L, E] -> [B, L, E]."""
  mlp_dim: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  lora_rank: int = 0
  lora_alpha: float = 16.0
  lora_targets: tuple[str, ...] = ()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    def proj(name, features, axes):
      rank = self.lora_rank if name in self.lora_targets else 0
      return Linear(features, axes, dtype=self.dtype, param_dtype=self.param_dtype,
                    lora_rank=rank, lora_alpha=self.lora_alpha, name=name)
    gate = proj("gate_proj", self.mlp_dim, ("embed", "mlp"))(x)
    up = proj("up_proj", self.mlp_dim, ("embed", "mlp"))(x)
    hidden = nn.with_logical_constraint(nn.silu(gate) * up, ("activation_batch", "length", "mlp"))
    return proj("down_proj", x.shape[-1], ("mlp", "embed"))(hidden)


class Mlp(nn.Module):
  """fc2(act(fc1(x))). x: [..., E] -> [..., out_dim or E]."""
  hidden_dim: int
  out_dim: int | None = None
  activation: str = "gelu"
  use_bias: bool = True
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    hidden = Linear(self.hidden_dim, ("embed", "mlp"), use_bias=self.use_bias, dtype=self.dtype,
                    param_dtype=self.param_dtype, name="fc1")(x)
    hidden = ACTIVATIONS[self.activation](hidden)
    return Linear(self.out_dim or x.shape[-1], ("mlp", "embed"), use_bias=self.use_bias,
                  dtype=self.dtype, param_dtype=self.param_dtype, name="fc2")(hidden)
