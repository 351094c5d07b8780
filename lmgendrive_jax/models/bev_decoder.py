"""BEV decoder: fuses all camera views of a frame into a bird's-eye-view grid plus driving tokens.

Second stage of the vision encoder (`models/vision.py`), after the per-view backbone. DETR-style
post-norm transformer (as LMDrive/InterFuser): a few encoder layers over the tokens of all views,
then decoder layers in which the queries -- a learnable `bev_height x bev_width` BEV grid, one
traffic-light query and `num_waypoints` waypoint queries, each with a position embedding and the
ego-speed embedding -- self-attend and cross-attend to those view tokens.

memory: f32[N, M, D] (view tokens with position/view embeddings added), speed: f32[N]
-> f32[N, bev_height * bev_width + 1 + num_waypoints, D] (BEV cells row-major, light, waypoints).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lmgendrive_jax.nn.attention import dot_product_attention
from lmgendrive_jax.nn.linear import Linear
from lmgendrive_jax.nn.mlp import Mlp
from lmgendrive_jax.nn.norms import LayerNorm
from lmgendrive_jax.nn.posenc import sine_1d, sine_2d


class PositionalAttention(nn.Module):
  """DETR attention: q from query + query_pos, k from key + key_pos, v from the bare key.

  query: [N, Lq, D], key: [N, Lk, D] -> [N, Lq, D].
  """
  num_heads: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, query, key, value, query_pos=None, key_pos=None):
    width = query.shape[-1]
    head_dim = width // self.num_heads

    def proj(name, features, axes, in_axes=-1):
      return Linear(features, axes, in_axes=in_axes, use_bias=True, dtype=self.dtype,
                    param_dtype=self.param_dtype, name=name)

    q = proj("q_proj", (self.num_heads, head_dim), ("embed", "heads", "head_dim"))(
        query if query_pos is None else query + query_pos)
    k = proj("k_proj", (self.num_heads, head_dim), ("embed", "heads", "head_dim"))(
        key if key_pos is None else key + key_pos)
    v = proj("v_proj", (self.num_heads, head_dim), ("embed", "heads", "head_dim"))(value)
    q = nn.with_logical_constraint(q, ("batch", "length", "heads", "head_dim"))
    attended = dot_product_attention(q, k, v)
    return proj("o_proj", width, ("heads", "head_dim", "embed"), in_axes=(-2, -1))(attended)


class FusionEncoderLayer(nn.Module):
  """Post-norm self-attention + MLP over the view tokens. x: [N, M, D] -> [N, M, D]."""
  num_heads: int
  mlp_dim: int
  activation: str = "gelu"
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    norm = lambda name: LayerNorm(1e-5, dtype=self.dtype, param_dtype=self.param_dtype,  # noqa
                                  name=name)
    x = norm("norm1")(x + PositionalAttention(self.num_heads, self.dtype, self.param_dtype,
                                              name="self_attn")(x, x, x))
    x = norm("norm2")(x + Mlp(self.mlp_dim, activation=self.activation, dtype=self.dtype,
                              param_dtype=self.param_dtype, name="mlp")(x))
    return nn.with_logical_constraint(x, ("batch", "length", "embed"))


class BEVDecoderLayer(nn.Module):
  """Post-norm self-attention, cross-attention to the views, MLP. tgt: [N, Q, D] -> [N, Q, D]."""
  num_heads: int
  mlp_dim: int
  activation: str = "gelu"
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, tgt, memory, query_pos):
    norm = lambda name: LayerNorm(1e-5, dtype=self.dtype, param_dtype=self.param_dtype,  # noqa
                                  name=name)
    attn = lambda name: PositionalAttention(self.num_heads, self.dtype, self.param_dtype,  # noqa
                                            name=name)
    tgt = norm("norm1")(tgt + attn("self_attn")(tgt, tgt, tgt, query_pos, query_pos))
    tgt = norm("norm2")(tgt + attn("cross_attn")(tgt, memory, memory, query_pos))
    tgt = norm("norm3")(tgt + Mlp(self.mlp_dim, activation=self.activation, dtype=self.dtype,
                                  param_dtype=self.param_dtype, name="mlp")(tgt))
    return nn.with_logical_constraint(tgt, ("batch", "length", "embed"))


class BEVDecoder(nn.Module):
  """View tokens -> BEV grid + traffic-light + waypoint states (see the module docstring)."""
  embed_dim: int = 256
  num_heads: int = 8
  mlp_dim: int = 2048
  num_encoder_layers: int = 2
  num_decoder_layers: int = 4
  bev_height: int = 50
  bev_width: int = 50
  num_waypoints: int = 5
  activation: str = "gelu"
  speed_scale: float = 1.0
  # "normal": N(0, 0.02) BEV queries (LMDrive). "sine": each cell's query starts as its 2D sine
  # position. From scratch, N(0, 0.02) queries are alike at first, and Adam moves them by about
  # the learning rate per step: for the first few hundred steps every cell's state was nearly the
  # same, and no head on them could even learn where the road usually is.
  bev_query_init: str = "normal"
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @property
  def num_queries(self) -> int:
    return self.bev_height * self.bev_width + 1 + self.num_waypoints

  @nn.compact
  def __call__(self, memory: jax.Array, speed: jax.Array) -> jax.Array:
    n = memory.shape[0]
    d = self.embed_dim
    for i in range(self.num_encoder_layers):
      memory = FusionEncoderLayer(self.num_heads, self.mlp_dim, self.activation, self.dtype,
                                  self.param_dtype, name=f"encoder_{i}")(memory)

    init = nn.initializers.normal(0.02)
    if self.bev_query_init not in ("normal", "sine"):
      raise ValueError(f"BEVDecoder.bev_query_init={self.bev_query_init!r}; choose normal or sine")
    cells_init = init if self.bev_query_init == "normal" else (
        lambda key, shape, dtype: sine_2d(self.bev_height, self.bev_width, d).astype(dtype))
    bev_queries = self.param("bev_queries",
                             nn.with_logical_partitioning(cells_init, ("queries", "embed")),
                             (self.bev_height * self.bev_width, d), self.param_dtype)
    extra_queries = self.param("extra_queries",
                               nn.with_logical_partitioning(init, ("queries", "embed")),
                               (1 + self.num_waypoints, d), self.param_dtype)
    extra_pos = self.param("extra_query_pos",
                           nn.with_logical_partitioning(init, ("queries", "embed")),
                           (1 + self.num_waypoints, d), self.param_dtype)
    # The BEV cells get a fixed 2D sine position (their place on the ground grid); the light and
    # waypoint queries have no place, so their position embedding is learnt.
    query_pos = jnp.concatenate([sine_2d(self.bev_height, self.bev_width, d),
                                 extra_pos.astype(jnp.float32)], axis=0).astype(self.dtype)
    speed_embed = Linear(d, (None, "embed"), use_bias=True, dtype=self.dtype,
                         param_dtype=self.param_dtype, name="speed_embed")(
                             sine_1d(speed * self.speed_scale, d).astype(self.dtype))
    queries = jnp.concatenate([bev_queries, extra_queries], axis=0).astype(self.dtype)
    tgt = queries[None] + speed_embed[:, None, :]
    tgt = nn.with_logical_constraint(tgt, ("batch", "length", "embed"))
    query_pos = jnp.broadcast_to(query_pos[None], (n,) + query_pos.shape)
    for i in range(self.num_decoder_layers):
      tgt = BEVDecoderLayer(self.num_heads, self.mlp_dim, self.activation, self.dtype,
                            self.param_dtype, name=f"decoder_{i}")(tgt, memory, query_pos)
    return LayerNorm(1e-5, dtype=self.dtype, param_dtype=self.param_dtype,
                     name="final_norm")(tgt)
