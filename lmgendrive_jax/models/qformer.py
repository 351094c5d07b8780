"""Q-Former: compresses each frame's vision tokens into a few LLM-width tokens (BLIP-2 layout).

Second block of LMGenDrive (DESIGN.md sec. 2, step 2), between the frozen vision encoder
(`models/vision.py`) and the LLM (`models/llm.py`). BERT-style post-norm layers over `num_queries`
learnt query tokens (optionally followed by the instruction's text tokens, InstructBLIP-style:
queries and text share self-attention, only the queries cross-attend to the frame and they have
their own feed-forward); every `cross_attention_frequency`-th layer (0, f, 2f, ...) cross-attends
to the frame's tokens. The query states are projected to the LLM width by an MLP.

Parameter names follow transformers' `Blip2QFormerModel` one-to-one (see `convert/hf_qformer.py`):
query_tokens [Nq, H]; text_embed/{word,position}_embeddings; embed_norm; layer_{i}/{self_attn,
self_attn_norm, cross_attn, cross_attn_norm, mlp_query, mlp_query_norm, mlp_text, mlp_text_norm};
projection/{fc1, fc2} (or projection/fc1 for a linear projection).

frame_tokens: f32[B, T, Nv, Dv], text_ids: int32[B, L] (optional), text_mask: bool[B, L]
-> (f32[B, T, Nq, out_dim], {"query_states": f32[B, T, Nq, H], "text_states": f32[B, T, L, H]}).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lmgendrive_jax.nn.attention import Attention
from lmgendrive_jax.nn.linear import Linear
from lmgendrive_jax.nn.mlp import ACTIVATIONS, Mlp
from lmgendrive_jax.nn.norms import LayerNorm

PROJECTIONS = ("linear", "mlp2x_gelu")


class QFormerLayer(nn.Module):
  """One BLIP-2 Q-Former layer. x: [N, Nq + L, H], frame: [N, Nv, Dv] -> [N, Nq + L, H]."""
  num_queries: int
  num_heads: int
  intermediate_size: int
  has_cross_attention: bool
  has_text: bool
  layer_norm_eps: float
  activation: str
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x, frame, self_mask, frame_mask):
    hidden = x.shape[-1]
    head_dim = hidden // self.num_heads

    def norm(name):
      return LayerNorm(self.layer_norm_eps, dtype=self.dtype, param_dtype=self.param_dtype,
                       name=name)

    def attention(name):
      return Attention(self.num_heads, head_dim, use_bias=True, dtype=self.dtype,
                       param_dtype=self.param_dtype, name=name)

    def mlp(name):
      return Mlp(self.intermediate_size, activation=self.activation, dtype=self.dtype,
                 param_dtype=self.param_dtype, name=name)

    attended, _ = attention("self_attn")(x, mask=self_mask)
    x = norm("self_attn_norm")(x + attended)
    queries, text = x[:, :self.num_queries], x[:, self.num_queries:]
    if self.has_cross_attention:
      attended, _ = attention("cross_attn")(queries, frame, mask=frame_mask)
      queries = norm("cross_attn_norm")(queries + attended)
    queries = norm("mlp_query_norm")(queries + mlp("mlp_query")(queries))
    if self.has_text:
      text = norm("mlp_text_norm")(text + mlp("mlp_text")(text))
      queries = jnp.concatenate([queries, text], axis=1)
    return nn.with_logical_constraint(queries, ("batch", "length", "embed"))


class QFormer(nn.Module):
  """Frame tokens -> `num_queries` LLM-width tokens per frame. Fields match `qformer_preset`."""
  num_queries: int = 4
  hidden_size: int = 768
  num_layers: int = 12
  num_heads: int = 12
  intermediate_size: int = 3072
  cross_attention_frequency: int = 2
  encoder_hidden_size: int = 256
  out_dim: int = 4096
  layer_norm_eps: float = 1e-12
  activation: str = "gelu"
  use_text_input: bool = False
  vocab_size: int = 30522
  max_text_positions: int = 512
  pad_token_id: int = 0
  projection: str = "mlp2x_gelu"
  dtype: Any = "float32"
  param_dtype: Any = "float32"

  def _encode(self, frames: jax.Array, text_ids: jax.Array | None = None,
             text_mask: jax.Array | None = None, frame_mask: jax.Array | None = None):
    """The Q-Former proper on flattened frames (what `Blip2QFormerModel` computes).

    frames: f32[N, Nv, Dv]; text_ids: int[N, L]; masks bool -> f32[N, Nq + L, H].
    """
    dtype, param_dtype = jnp.dtype(self.dtype), jnp.dtype(self.param_dtype)
    n = frames.shape[0]
    if frames.shape[-1] != self.encoder_hidden_size:
      raise ValueError(f"frame tokens have width {frames.shape[-1]} but the Q-Former expects "
                       f"encoder_hidden_size={self.encoder_hidden_size}")
    queries = self.param("query_tokens", nn.with_logical_partitioning(
        nn.initializers.normal(0.02), ("queries", "embed")), (self.num_queries, self.hidden_size),
                         param_dtype)
    x = jnp.broadcast_to(queries.astype(dtype)[None], (n,) + queries.shape)
    valid = jnp.ones((n, self.num_queries), bool)
    has_text = self.use_text_input and text_ids is not None
    if text_ids is not None and not self.use_text_input:
      raise ValueError("text_ids given to a Q-Former built with use_text_input=False")
    if has_text:
      length = text_ids.shape[1]
      if length > self.max_text_positions:
        raise ValueError(f"instruction of {length} tokens exceeds the Q-Former's "
                         f"max_text_positions={self.max_text_positions}")
      init = nn.initializers.normal(0.02)
      words = self.param("word_embeddings", nn.with_logical_partitioning(init, ("vocab", "embed")),
                         (self.vocab_size, self.hidden_size), param_dtype)
      positions = self.param("position_embeddings",
                             nn.with_logical_partitioning(init, ("length", "embed")),
                             (self.max_text_positions, self.hidden_size), param_dtype)
      text = (jnp.take(words, text_ids, axis=0) + positions[:length]).astype(dtype)
      x = jnp.concatenate([x, text], axis=1)
      text_mask = jnp.ones(text_ids.shape, bool) if text_mask is None else text_mask.astype(bool)
      valid = jnp.concatenate([valid, text_mask], axis=1)
    x = LayerNorm(self.layer_norm_eps, dtype=dtype, param_dtype=param_dtype, name="embed_norm")(x)
    self_mask = jnp.broadcast_to(valid[:, None, None, :], (n, 1, x.shape[1], x.shape[1]))
    cross_mask = None
    if frame_mask is not None:
      cross_mask = jnp.broadcast_to(frame_mask.astype(bool)[:, None, None, :],
                                    (n, 1, self.num_queries, frames.shape[1]))
    frames = frames.astype(dtype)
    for i in range(self.num_layers):
      x = QFormerLayer(self.num_queries, self.num_heads, self.intermediate_size,
                       i % self.cross_attention_frequency == 0, has_text, self.layer_norm_eps,
                       self.activation, dtype, param_dtype, name=f"layer_{i}")(
                           x, frames, self_mask, cross_mask)
    return x

  @nn.compact
  def __call__(self, frame_tokens: jax.Array, text_ids: jax.Array | None = None,
               text_mask: jax.Array | None = None, frame_mask: jax.Array | None = None):
    """frame_tokens: f32[B, T, Nv, Dv]; text_ids: int[B, L] (the instruction, shared by all
    frames); text_mask: bool[B, L]; frame_mask: bool[B, T, Nv] (valid vision tokens)."""
    if self.projection not in PROJECTIONS:
      raise ValueError(f"QFormer.projection={self.projection!r}; choose one of {PROJECTIONS}")
    b, t, nv, dv = frame_tokens.shape
    dtype, param_dtype = jnp.dtype(self.dtype), jnp.dtype(self.param_dtype)
    per_frame = lambda x: None if x is None else jnp.repeat(x, t, axis=0)  # noqa: E731
    states = self._encode(frame_tokens.reshape(b * t, nv, dv), per_frame(text_ids),
                         per_frame(text_mask),
                         None if frame_mask is None else frame_mask.reshape(b * t, nv))
    query_states = states[:, :self.num_queries]
    hidden = Linear(self.out_dim, ("embed", "mlp"), use_bias=True, dtype=dtype,
                    param_dtype=param_dtype, name="projection_fc1")(query_states)
    if self.projection == "mlp2x_gelu":
      hidden = Linear(self.out_dim, ("mlp", "embed"), use_bias=True, dtype=dtype,
                      param_dtype=param_dtype, name="projection_fc2")(ACTIVATIONS["gelu"](hidden))
    llm_tokens = hidden.reshape(b, t, self.num_queries, self.out_dim)
    llm_tokens = nn.with_logical_constraint(llm_tokens, ("batch", "frames", "queries", "embed"))
    out = {"query_states": query_states.reshape(b, t, self.num_queries, self.hidden_size)}
    if states.shape[1] > self.num_queries:
      out["text_states"] = states[:, self.num_queries:].reshape(b, t, -1, self.hidden_size)
    return llm_tokens, out
