"""World generator denoiser: a latent spatio-temporal multi-view DiT (LMGenDrive's imagination).

Data flow (see `diffusion.py` for the flow-matching wrapper and `generate/rollout.py` for chunks):

  latents f32[B, F, V, h, w, c]  (F = context frames, clean, then future frames, noisy)
    -> p x p patches -> Linear -> tokens f32[B, F, V, S, E]   (S = h/p * w/p)
       + sine(row, column) + sine(frame index in the window) + learned view embedding
    -> num_blocks x DiTBlock (nn.scan over a stacked `layers` axis, optional remat):
         spatial self-attention   inside one view-frame   [B*F*V, S, E]
         cross-view attention     the views of one patch  [B*F*S, V, E]
         temporal attention       across frames           [B*V*S, F, E]
         cross-attention          to the conditioning tokens (LLM generation-query states,
                                  projected from cond_dim to E; + optional ego waypoints)
         MLP
       each self-attention branch and the MLP are AdaLN-Zero modulated (shift, scale, gate from the
       frame's flow time + pooled condition; the modulation projection is zero-initialised, so
       every block starts as the identity)
    -> AdaLN final layer -> Linear (zero-init) -> unpatchify -> velocity f32[B, F, V, h, w, c]

Every frame carries its own flow time (`frame_times: f32[B, F]`), so clean context frames
(time 0) and noisy future frames share one sequence. Classifier-free guidance: `drop_cond: bool[B]`
swaps a sample's conditioning tokens for a learned null token (`null_cond`).
Parameters: patch_embed, view_embed, time_mlp, cond_proj, null_cond, (waypoint_mlp), blocks
(stacked on `layers` when scanned), final_modulation, final_proj.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lmgendrive_jax.errors import ConfigError
from lmgendrive_jax.models.llm import REMAT_POLICIES
from lmgendrive_jax.nn.attention import Attention
from lmgendrive_jax.nn.linear import Linear
from lmgendrive_jax.nn.mlp import Mlp
from lmgendrive_jax.nn.norms import LayerNorm
from lmgendrive_jax.nn.posenc import sine_1d, sine_2d, timestep_embedding

TOKENS = ("activation_batch", "frames", "views", "length", "embed")
TIME_FREQUENCY_DIM = 256
NUM_MODULATED = 4  # spatial, cross-view, temporal, MLP
zeros = nn.initializers.zeros_init()


def _modulate(x: jax.Array, shift: jax.Array, scale: jax.Array) -> jax.Array:
  return x * (1.0 + scale) + shift


class DiTBlock(nn.Module):
  """One factorized block. x: [B, F, V, S, E], modulation input c: [B, F, E],
  cond: [B, Nc, E], cond_mask: bool[B, Nc] -> ([B, F, V, S, E], None) (scan carry form)."""
  embed_dim: int
  num_heads: int
  mlp_dim: int
  qkv_bias: bool
  norm_eps: float
  dtype: Any
  param_dtype: Any
  attention_impl: str

  def _attention(self, name):
    return Attention(num_heads=self.num_heads, head_dim=self.embed_dim // self.num_heads,
                     use_bias=self.qkv_bias, dtype=self.dtype, param_dtype=self.param_dtype,
                     attention_impl=self.attention_impl, name=name)

  def _norm(self, name, affine=False):
    return LayerNorm(self.norm_eps, use_bias=affine, use_scale=affine, dtype=self.dtype,
                     param_dtype=self.param_dtype, name=name)

  @nn.compact
  def __call__(self, x, c, cond, cond_mask):
    b, f, v, s, e = x.shape
    # [B, F, branch, (shift, scale, gate), E]; zero init = AdaLN-Zero.
    mod = Linear((NUM_MODULATED, 3, e), ("embed", None, None, "mlp"), use_bias=True,
                 dtype=self.dtype, param_dtype=self.param_dtype, kernel_init=zeros,
                 name="modulation")(nn.silu(c))
    mod = mod[:, :, :, :, None, None, :]  # broadcast over views and patches

    def branch(x, k, norm_name, op):
      h = _modulate(self._norm(norm_name)(x), mod[:, :, k, 0], mod[:, :, k, 1])
      return x + mod[:, :, k, 2] * op(h)

    def spatial(h):
      y, _ = self._attention("spatial_attn")(h.reshape(b * f * v, s, e))
      return y.reshape(b, f, v, s, e)

    def cross_view(h):
      h = h.transpose(0, 1, 3, 2, 4).reshape(b * f * s, v, e)
      y, _ = self._attention("view_attn")(h)
      return y.reshape(b, f, s, v, e).transpose(0, 1, 3, 2, 4)

    def temporal(h):
      h = h.transpose(0, 2, 3, 1, 4).reshape(b * v * s, f, e)
      y, _ = self._attention("temporal_attn")(h)
      return y.reshape(b, v, s, f, e).transpose(0, 3, 1, 2, 4)

    x = branch(x, 0, "spatial_norm", spatial)
    x = nn.with_logical_constraint(x, TOKENS)
    x = branch(x, 1, "view_norm", cross_view)
    x = nn.with_logical_constraint(x, TOKENS)
    x = branch(x, 2, "temporal_norm", temporal)
    x = nn.with_logical_constraint(x, TOKENS)
    # Cross-attention to the condition (PixArt-style: plain pre-norm, no modulation).
    h = self._norm("cross_norm", affine=True)(x).reshape(b, f * v * s, e)
    y, _ = self._attention("cross_attn")(h, cond, mask=cond_mask[:, None, None, :])
    x = x + y.reshape(b, f, v, s, e)
    x = nn.with_logical_constraint(x, TOKENS)
    mlp = Mlp(self.mlp_dim, activation="gelu_tanh", dtype=self.dtype,
              param_dtype=self.param_dtype, name="mlp")
    x = branch(x, 3, "mlp_norm", mlp)
    return nn.with_logical_constraint(x, TOKENS), None


class WorldDiT(nn.Module):
  """Fields mirror `config.world_preset(name).dit`. See the module docstring for the layout."""
  latent_channels: int
  embed_dim: int
  num_blocks: int
  num_heads: int
  mlp_dim: int
  cond_dim: int
  patch_size: int = 2
  num_views: int = 5
  max_frames: int = 16
  use_waypoints: bool = False
  qkv_bias: bool = True
  norm_eps: float = 1e-6
  dtype: Any = "float32"
  param_dtype: Any = "float32"
  scan_blocks: bool = True
  remat_policy: str = "none"
  attention_impl: str = "xla"

  def _linear(self, features, axes, name, **kw):
    return Linear(features, axes, use_bias=True, dtype=jnp.dtype(self.dtype),
                  param_dtype=jnp.dtype(self.param_dtype), name=name, **kw)

  def _check(self, latents, frame_times, cond):
    if self.embed_dim % self.num_heads or (self.embed_dim // self.num_heads) % 2:
      raise ConfigError(f"world dit embed_dim={self.embed_dim} must split into num_heads="
                        f"{self.num_heads} heads of even width")
    if self.embed_dim % 4:
      raise ConfigError(f"world dit embed_dim={self.embed_dim} must be divisible by 4 (2D sine)")
    if self.remat_policy not in REMAT_POLICIES:
      raise ConfigError(f"world dit remat_policy={self.remat_policy!r}; choose one of "
                        f"{list(REMAT_POLICIES)}")
    if latents.ndim != 6:
      raise ValueError(f"latents must be [B, F, V, h, w, c]; got shape {latents.shape}")
    b, f, v, h, w, c = latents.shape
    p = self.patch_size
    if c != self.latent_channels or h % p or w % p:
      raise ValueError(f"latents {latents.shape}: expected {self.latent_channels} channels and "
                       f"h, w divisible by patch_size={p}")
    if v > self.num_views or f > self.max_frames:
      raise ValueError(f"latents {latents.shape}: at most num_views={self.num_views} views and "
                       f"max_frames={self.max_frames} frames per window")
    if frame_times.shape != (b, f):
      raise ValueError(f"frame_times {frame_times.shape} must be [B, F] = {(b, f)}")
    if cond.ndim != 3 or cond.shape[0] != b or cond.shape[-1] != self.cond_dim:
      raise ValueError(f"cond {cond.shape} must be [B, Nc, cond_dim={self.cond_dim}] with B={b}")

  @nn.compact
  def __call__(self, latents: jax.Array, frame_times: jax.Array, cond: jax.Array, *,
               cond_mask: jax.Array | None = None, drop_cond: jax.Array | None = None,
               waypoints: jax.Array | None = None):
    """latents: f32[B, F, V, h, w, c]; frame_times: f32[B, F] in [0, 1] (0 = clean);
    cond: f32[B, Nc, cond_dim]; cond_mask: bool[B, Nc] (default all valid); drop_cond: bool[B]
    (True -> learned null condition); waypoints: f32[B, Nw, 2] when use_waypoints.

    Returns (velocity f32[B, F, V, h, w, c], out) with out["tokens"] the final tokens
    [B, F, V, S, E].
    """
    self._check(latents, frame_times, cond)
    dtype, param_dtype = jnp.dtype(self.dtype), jnp.dtype(self.param_dtype)
    b, f, v, h, w, c = latents.shape
    p, e = self.patch_size, self.embed_dim
    hp, wp = h // p, w // p

    patches = latents.reshape(b, f, v, hp, p, wp, p, c).transpose(0, 1, 2, 3, 5, 4, 6, 7)
    patches = patches.reshape(b, f, v, hp * wp, p * p * c).astype(dtype)
    x = self._linear(e, ("channels", "embed"), "patch_embed")(patches)
    view_embed = self.param("view_embed", nn.with_logical_partitioning(
        nn.initializers.normal(0.02), ("views", "embed")), (self.num_views, e), param_dtype)
    frame_pos = sine_1d(jnp.arange(f, dtype=jnp.float32), e)
    x = (x + sine_2d(hp, wp, e)[None, None, None].astype(dtype)
         + frame_pos[None, :, None, None].astype(dtype)
         + view_embed[None, None, :v, None].astype(dtype))
    x = nn.with_logical_constraint(x, TOKENS)

    # Conditioning tokens (projected) with the learned null condition for guidance.
    cond_tokens = self._linear(e, ("embed", "mlp"), "cond_proj")(cond.astype(dtype))
    cond_mask = (jnp.ones(cond.shape[:2], bool) if cond_mask is None else
                 cond_mask.astype(bool))
    if self.use_waypoints:
      if waypoints is None:
        raise ValueError("WorldDiT(use_waypoints=True) needs waypoints f32[B, Nw, 2]")
      way = Mlp(e, e, activation="silu", dtype=dtype, param_dtype=param_dtype,
                name="waypoint_mlp")(waypoints.astype(dtype))
      way = way + sine_1d(jnp.arange(waypoints.shape[1], dtype=jnp.float32), e).astype(dtype)
      cond_tokens = jnp.concatenate([cond_tokens, way], axis=1)
      cond_mask = jnp.concatenate([cond_mask, jnp.ones(waypoints.shape[:2], bool)], axis=1)
    null = self.param("null_cond", nn.with_logical_partitioning(
        nn.initializers.normal(0.02), ("embed",)), (e,), param_dtype).astype(dtype)
    if drop_cond is not None:
      dropped = drop_cond.astype(bool)[:, None]
      cond_tokens = jnp.where(dropped[..., None], null, cond_tokens)
      cond_mask = cond_mask | dropped
    cond_tokens = nn.with_logical_constraint(cond_tokens, ("activation_batch", "length", "embed"))
    weights = cond_mask.astype(dtype)[..., None]
    pooled_cond = (cond_tokens * weights).sum(1) / jnp.maximum(weights.sum(1), 1.0)

    # Per-frame modulation input: flow-time embedding + pooled condition.
    t_freq = timestep_embedding(frame_times.reshape(-1) * 1000.0, TIME_FREQUENCY_DIM)
    temb = Mlp(e, e, activation="silu", dtype=dtype, param_dtype=param_dtype,
               name="time_mlp")(t_freq.astype(dtype)).reshape(b, f, e)
    modulation_input = temb + pooled_cond[:, None]

    block_kwargs = dict(embed_dim=e, num_heads=self.num_heads, mlp_dim=self.mlp_dim,
                        qkv_bias=self.qkv_bias, norm_eps=self.norm_eps, dtype=dtype,
                        param_dtype=param_dtype, attention_impl=self.attention_impl)
    block_cls = DiTBlock
    if self.remat_policy != "none":
      block_cls = nn.remat(DiTBlock, policy=REMAT_POLICIES[self.remat_policy],
                           prevent_cse=not self.scan_blocks)
    if self.scan_blocks:
      blocks = nn.scan(block_cls, variable_axes={"params": 0}, split_rngs={"params": True},
                       in_axes=(nn.broadcast, nn.broadcast, nn.broadcast),
                       length=self.num_blocks,
                       metadata_params={nn.PARTITION_NAME: "layers"})(**block_kwargs,
                                                                     name="blocks")
      x, _ = blocks(x, modulation_input, cond_tokens, cond_mask)
    else:
      for i in range(self.num_blocks):
        x, _ = block_cls(**block_kwargs, name=f"blocks_{i}")(x, modulation_input, cond_tokens,
                                                             cond_mask)

    final_mod = Linear((2, e), ("embed", None, "mlp"), use_bias=True, dtype=dtype,
                       param_dtype=param_dtype, kernel_init=zeros,
                       name="final_modulation")(nn.silu(modulation_input))
    final_mod = final_mod[:, :, :, None, None, :]
    y = _modulate(LayerNorm(self.norm_eps, use_bias=False, use_scale=False, dtype=dtype,
                            name="final_norm")(x), final_mod[:, :, 0], final_mod[:, :, 1])
    y = self._linear(p * p * c, ("embed", "channels"), "final_proj", kernel_init=zeros)(y)
    velocity = y.reshape(b, f, v, hp, wp, p, p, c).transpose(0, 1, 2, 3, 5, 4, 6, 7)
    velocity = velocity.reshape(b, f, v, h, w, c).astype(jnp.float32)
    return velocity, {"tokens": x}
