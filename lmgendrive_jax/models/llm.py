"""LLaMA-family decoder: the language model at the centre of LMGenDrive.

Reads `[BOS + instruction] [frame 1: visual | action queries | generation queries] ...` as
embeddings (frames are spliced in by `models/lmgendrive.py`) or plain token ids, under a
block-causal mask, and returns logits plus the final-norm hidden states from which the action head
and the world generator read their query states.

Parameters (one stacked `layers` axis when `scan_layers`):
  embedder/embedding [vocab, embed]; layers/{attn/{q,k,v,o}_proj, mlp/{gate,up,down}_proj,
  input_norm, post_attn_norm}; final_norm; lm_head [embed, vocab] unless tied.
LoRA adapters sit under each targeted projection's `lora/` sub-tree.

KV cache (explicit pytree, `init_cache`): `k, v: [layers, B, S, K, D]`, `valid: bool[B, S]`,
`group: int32[B, S]` (block id of each slot, for the block-causal rule), `end: int32[]` (slots
used), `next_position: int32[B]` and `last_group: int32[B]`. `prefill` is `extend` on an empty
cache, so "prefill + N extends == one full forward" holds by construction of one code path.
"""

from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from lmgendrive_jax.nn.attention import Attention, mask_from_groups
from lmgendrive_jax.nn.mlp import SwiGLU
from lmgendrive_jax.nn.norms import RMSNorm

REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


class DecoderLayer(nn.Module):
  """Pre-norm attention + SwiGLU block. x: [B, L, E] -> [B, L, E]."""
  embed_dim: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  mlp_dim: int
  rope_theta: float
  rope_scaling: Mapping[str, Any] | None
  norm_eps: float
  lora_rank: int
  lora_alpha: float
  lora_targets: tuple[str, ...]
  dtype: Any
  param_dtype: Any
  attention_impl: str

  @nn.compact
  def __call__(self, x, layer_cache, mask, positions, cache_end):
    """layer_cache: {"k", "v": [B, S, K, D]} or None. Returns (x, new_layer_cache)."""
    attn_in = RMSNorm(self.norm_eps, self.dtype, self.param_dtype, name="input_norm")(x)
    cache = None if layer_cache is None else {**layer_cache, "end": cache_end}
    attended, new_cache = Attention(
        num_heads=self.num_heads, head_dim=self.head_dim, num_kv_heads=self.num_kv_heads,
        dtype=self.dtype, param_dtype=self.param_dtype, lora_rank=self.lora_rank,
        lora_alpha=self.lora_alpha, lora_targets=self.lora_targets, use_rope=True,
        rope_theta=self.rope_theta, rope_scaling=self.rope_scaling,
        attention_impl=self.attention_impl, name="attn")(attn_in, mask=mask, positions=positions,
                                                         cache=cache)
    x = x + attended
    mlp_in = RMSNorm(self.norm_eps, self.dtype, self.param_dtype, name="post_attn_norm")(x)
    x = x + SwiGLU(self.mlp_dim, self.dtype, self.param_dtype, self.lora_rank, self.lora_alpha,
                   self.lora_targets, name="mlp")(mlp_in)
    x = nn.with_logical_constraint(x, ("activation_batch", "length", "embed"))
    return x, new_cache


class Embedder(nn.Module):
  """Token embedding table [vocab, embed]; also the output projection when embeddings are tied."""
  vocab_size: int
  embed_dim: int
  dtype: Any
  param_dtype: Any

  def setup(self):
    self.embedding = self.param(
        "embedding", nn.with_logical_partitioning(nn.initializers.normal(0.02),
                                                  ("vocab", "embed")),
        (self.vocab_size, self.embed_dim), self.param_dtype)

  def __call__(self, tokens: jax.Array) -> jax.Array:
    """tokens int32[B, L] -> f32[B, L, E]. The table is gathered whole along `embed` first (as
    FSDP does for any weight), so the lookup is a vocab-sharded gather plus one reduction
    instead of a full rematerialisation of the table."""
    table = nn.with_logical_constraint(self.embedding, ("vocab", None))
    return jnp.take(table, tokens, axis=0).astype(self.dtype)

  def attend(self, hidden: jax.Array) -> jax.Array:
    """hidden f32[B, L, E] -> logits f32[B, L, vocab]."""
    return hidden @ self.embedding.astype(self.dtype).T


class LLM(nn.Module):
  """LLaMA decoder. Fields mirror `config.llm_preset`; see the module docstring for the layout."""
  vocab_size: int
  embed_dim: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  mlp_dim: int
  max_positions: int
  rope_theta: float = 10000.0
  rope_scaling: Mapping[str, Any] | None = None
  norm_eps: float = 1e-5
  tie_embeddings: bool = False
  lora_rank: int = 0
  lora_alpha: float = 16.0
  lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
  dtype: Any = "float32"
  param_dtype: Any = "float32"
  scan_layers: bool = True
  remat_policy: str = "none"
  attention_impl: str = "xla"

  def setup(self):
    dtype, param_dtype = jnp.dtype(self.dtype), jnp.dtype(self.param_dtype)
    self.embedder = Embedder(self.vocab_size, self.embed_dim, dtype, param_dtype,
                             name="embedder")
    layer_kwargs = dict(
        embed_dim=self.embed_dim, num_heads=self.num_heads, num_kv_heads=self.num_kv_heads,
        head_dim=self.head_dim, mlp_dim=self.mlp_dim, rope_theta=self.rope_theta,
        rope_scaling=self.rope_scaling, norm_eps=self.norm_eps, lora_rank=self.lora_rank,
        lora_alpha=self.lora_alpha, lora_targets=tuple(self.lora_targets), dtype=dtype,
        param_dtype=param_dtype, attention_impl=self.attention_impl)
    if self.remat_policy not in REMAT_POLICIES:
      raise ValueError(f"remat_policy={self.remat_policy!r}; choose one of {list(REMAT_POLICIES)}")
    layer_cls = DecoderLayer
    if self.remat_policy != "none":
      layer_cls = nn.remat(DecoderLayer, policy=REMAT_POLICIES[self.remat_policy],
                           prevent_cse=not self.scan_layers)
    if self.scan_layers:
      self.layers = nn.scan(
          layer_cls, variable_axes={"params": 0}, split_rngs={"params": True},
          in_axes=(0, nn.broadcast, nn.broadcast, nn.broadcast), length=self.num_layers,
          metadata_params={nn.PARTITION_NAME: "layers"})(**layer_kwargs, name="layers")
    else:
      self.layers = [layer_cls(**layer_kwargs, name=f"layers_{i}") for i in range(self.num_layers)]
    self.final_norm = RMSNorm(self.norm_eps, dtype, param_dtype, name="final_norm")
    if not self.tie_embeddings:
      self.lm_head = nn.Dense(
          self.vocab_size, use_bias=False, dtype=dtype, param_dtype=param_dtype,
          kernel_init=nn.with_logical_partitioning(nn.initializers.normal(0.02),
                                                   ("embed", "vocab")), name="lm_head")

  def embed(self, tokens: jax.Array) -> jax.Array:
    """tokens: int32[B, L] -> f32[B, L, E]."""
    return self.embedder(tokens)

  def init_cache(self, batch_size: int, cache_size: int, dtype: Any = None) -> dict:
    """An empty KV cache for `cache_size` slots (see the module docstring)."""
    shape = (self.num_layers, batch_size, cache_size, self.num_kv_heads, self.head_dim)
    dtype = jnp.dtype(dtype or self.dtype)
    return dict(k=jnp.zeros(shape, dtype), v=jnp.zeros(shape, dtype),
                valid=jnp.zeros((batch_size, cache_size), bool),
                group=jnp.zeros((batch_size, cache_size), jnp.int32),
                end=jnp.zeros((), jnp.int32), next_position=jnp.zeros((batch_size,), jnp.int32),
                last_group=jnp.zeros((batch_size,), jnp.int32))

  def __call__(self, tokens: jax.Array | None = None, *, embeddings: jax.Array | None = None,
               input_mask: jax.Array | None = None, mask_ar: jax.Array | None = None,
               positions: jax.Array | None = None, cache: Mapping[str, jax.Array] | None = None,
               return_logits: bool = True):
    """Full forward (cache=None) or extend an existing cache with this block of tokens.

    tokens: int32[B, L] or embeddings: f32[B, L, E]; input_mask: bool[B, L] (default all valid);
    mask_ar: int[B, L] (default 1 = causal). Positions default to the running count of valid
    tokens, so padding consumes no position.
    Returns (logits f32[B, L, V] or None, out) with out["hidden"] the final-norm states
    [B, L, E] and out["cache"] the extended cache (when a cache was given).
    """
    if (tokens is None) == (embeddings is None):
      raise ValueError("LLM takes exactly one of tokens or embeddings")
    x = self.embed(tokens) if embeddings is None else embeddings.astype(jnp.dtype(self.dtype))
    batch, length = x.shape[:2]
    input_mask = jnp.ones((batch, length), bool) if input_mask is None else input_mask.astype(bool)
    mask_ar = jnp.ones((batch, length), jnp.int32) if mask_ar is None else mask_ar.astype(jnp.int32)
    start_position = 0 if cache is None else cache["next_position"][:, None]
    start_group = 0 if cache is None else cache["last_group"][:, None]
    if positions is None:
      positions = start_position + jnp.cumsum(input_mask, axis=1, dtype=jnp.int32) - 1
      positions = jnp.maximum(positions, 0)
    groups = start_group + jnp.cumsum(mask_ar, axis=1, dtype=jnp.int32)
    x = nn.with_logical_constraint(x, ("activation_batch", "length", "embed"))

    if cache is None:
      mask = mask_from_groups(groups, input_mask, groups, input_mask)
      layer_caches, cache_end = None, jnp.zeros((), jnp.int32)
    else:
      cache_end = cache["end"]
      valid = jax.lax.dynamic_update_slice(cache["valid"], input_mask, (0, cache_end))
      slot_groups = jax.lax.dynamic_update_slice(cache["group"], groups, (0, cache_end))
      mask = mask_from_groups(groups, input_mask, slot_groups, valid)
      layer_caches = {"k": cache["k"], "v": cache["v"]}

    if self.scan_layers:
      x, new_layer_caches = self.layers(x, layer_caches, mask, positions, cache_end)
    else:
      new_k, new_v = [], []
      for i, layer in enumerate(self.layers):
        layer_cache = None if layer_caches is None else jax.tree.map(lambda a: a[i], layer_caches)
        x, new_cache_i = layer(x, layer_cache, mask, positions, cache_end)
        if new_cache_i is not None:
          new_k.append(new_cache_i["k"])
          new_v.append(new_cache_i["v"])
      new_layer_caches = None if layer_caches is None else {"k": jnp.stack(new_k),
                                                           "v": jnp.stack(new_v)}

    hidden = self.final_norm(x)
    out = {"hidden": hidden, "positions": positions}
    if cache is not None:
      out["cache"] = dict(
          k=new_layer_caches["k"], v=new_layer_caches["v"], valid=valid, group=slot_groups,
          end=cache_end + length,
          next_position=cache["next_position"] + jnp.sum(input_mask, axis=1, dtype=jnp.int32),
          last_group=groups[:, -1])
    logits = None
    if return_logits:
      if self.tie_embeddings:
        logits = self.embedder.attend(hidden)
      else:
        logits = self.lm_head(hidden)
      logits = nn.with_logical_constraint(logits.astype(jnp.float32),
                                          ("activation_batch", "length", "vocab"))
    return logits, out
