"""Multi-head / grouped-query attention with block-causal masks and an explicit KV cache.

Masks follow big_vision's `(input_mask, mask_ar)` scheme: token i may attend token j when both are
valid and `cumsum(mask_ar)[j] <= cumsum(mask_ar)[i]`. `mask_ar = 1` everywhere is causal
attention, `0` everywhere is full attention, and a 1 at the first token of each block gives
LMGenDrive's block-causal sequence (full inside a frame's block, causal across blocks).

The KV cache is an explicit pytree (no mutable Flax collection), so a jitted step takes it in,
returns it, and it shards like any other array. The LLM writes new keys at `cache_end` and passes
a mask over the whole cache (see `models/llm.py`).
"""

from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from lmgendrive_jax.nn.linear import Linear
from lmgendrive_jax.nn.rope import apply_rope


def make_attn_mask(input_mask: jax.Array, mask_ar: jax.Array) -> jax.Array:
  """input_mask: bool[B, L], mask_ar: int[B, L] -> bool[B, 1, L, L] (query, key)."""
  groups = jnp.cumsum(mask_ar.astype(jnp.int32), axis=1)
  return mask_from_groups(groups, input_mask, groups, input_mask)


def mask_from_groups(q_groups: jax.Array, q_valid: jax.Array, k_groups: jax.Array,
                     k_valid: jax.Array) -> jax.Array:
  """Block-causal rule on precomputed block ids: bool[B, 1, Lq, Lk]."""
  allowed = k_groups[:, None, :] <= q_groups[:, :, None]
  valid = q_valid[:, :, None] & k_valid[:, None, :]
  return (allowed & valid)[:, None]


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None = None,
                          impl: str | None = "xla") -> jax.Array:
  """q: [B, Lq, H, D], k, v: [B, Lk, K, D] (K divides H), mask: bool[B, 1|H, Lq, Lk] -> [B, Lq, H, D].

  `impl="cudnn"` selects the fused cuDNN kernel on GPU, `None` lets JAX choose. Query rows with no
  visible key (padding) come out as the mean of v; callers mask them downstream.
  """
  dtype = q.dtype
  if impl == "auto":
    impl = None
  return jax.nn.dot_product_attention(q, k.astype(dtype), v.astype(dtype), mask=mask,
                                      implementation=impl)


class Attention(nn.Module):
  """Self- or cross-attention with optional RoPE, GQA, LoRA and KV cache.

  x: [B, Lq, E], x_kv: [B, Lk, Ekv] (defaults to x) -> [B, Lq, out_features or E].
  """
  num_heads: int
  head_dim: int
  num_kv_heads: int | None = None
  out_features: int | None = None
  use_bias: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  lora_rank: int = 0
  lora_alpha: float = 16.0
  lora_targets: tuple[str, ...] = ()
  use_rope: bool = False
  rope_theta: float = 10000.0
  rope_scaling: Mapping[str, Any] | None = None
  attention_impl: str | None = "xla"

  def _proj(self, name, features, axes, in_axes=-1, bias=None):
    rank = self.lora_rank if name in self.lora_targets else 0
    return Linear(features, axes, in_axes=in_axes,
                  use_bias=self.use_bias if bias is None else bias, dtype=self.dtype,
                  param_dtype=self.param_dtype, lora_rank=rank, lora_alpha=self.lora_alpha,
                  name=name)

  @nn.compact
  def __call__(self, x: jax.Array, x_kv: jax.Array | None = None, mask: jax.Array | None = None,
               positions: jax.Array | None = None, kv_positions: jax.Array | None = None,
               cache: Mapping[str, jax.Array] | None = None):
    """Returns (y, new_cache). `cache` = {"k", "v": [B, S, K, D], "end": int32[]} writes this
    call's keys/values at `end` and attends over all S slots under `mask: [B, 1, Lq, S]`."""
    kv_heads = self.num_kv_heads or self.num_heads
    x_kv = x if x_kv is None else x_kv
    q = self._proj("q_proj", (self.num_heads, self.head_dim), ("embed", "heads", "head_dim"))(x)
    k = self._proj("k_proj", (kv_heads, self.head_dim), ("embed", "kv_heads", "head_dim"))(x_kv)
    v = self._proj("v_proj", (kv_heads, self.head_dim), ("embed", "kv_heads", "head_dim"))(x_kv)
    if self.use_rope:
      if positions is None:
        raise ValueError("Attention(use_rope=True) needs positions")
      q = apply_rope(q, positions, self.rope_theta, self.rope_scaling)
      k = apply_rope(k, positions if kv_positions is None else kv_positions, self.rope_theta,
                     self.rope_scaling)
    q = nn.with_logical_constraint(q, ("activation_batch", "length", "heads", "head_dim"))
    new_cache = None
    if cache is not None:
      start = (0, cache["end"], 0, 0)
      k = jax.lax.dynamic_update_slice(cache["k"], k.astype(cache["k"].dtype), start)
      v = jax.lax.dynamic_update_slice(cache["v"], v.astype(cache["v"].dtype), start)
      new_cache = {"k": k, "v": v}
    k = nn.with_logical_constraint(k, ("activation_batch", "kv_length", "kv_heads", "head_dim"))
    v = nn.with_logical_constraint(v, ("activation_batch", "kv_length", "kv_heads", "head_dim"))
    attended = dot_product_attention(q, k, v, mask, self.attention_impl)
    y = self._proj("o_proj", self.out_features or x.shape[-1], ("heads", "head_dim", "embed"),
                   in_axes=(-2, -1))(attended)
    return y, new_cache
