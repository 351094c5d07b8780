"""Image VAE in diffusers' AutoencoderKL layout: camera views <-> the world generator's latents.

Data flow: views `f32[N, H, W, 3]` in [-1, 1] -> `Encoder` (conv_in, down blocks of ResnetBlock2D
with stride-2 downsamplers, mid block resnet/attention/resnet, GroupNorm-SiLU-conv_out) ->
`quant_conv` -> posterior moments (mean, logvar) `f32[N, h, w, c]` with h = H / 2**(levels-1) ->
latents `z = (mean - shift_factor) * scaling_factor` (what `models/world.py` denoises) ->
`post_quant_conv` -> `Decoder` (mirror image with nearest-neighbour upsamplers) -> views.

Parameter names follow diffusers' state-dict keys with each list index glued to its name
(`encoder.down_blocks.0.resnets.1.conv1` -> `encoder/down_blocks_0/resnets_1/conv1`), so
`convert/diffusers_vae.py` maps Stable Diffusion's VAE (the paper preset) without a table. Conv
kernels are HWIO, GroupNorm `scale`/`bias`, mid-block attention uses `nn/attention.py` (one head of
width C as diffusers' VAE does) with `q_proj, k_proj, v_proj, o_proj` for `to_q, to_k, to_v,
to_out.0`.

Images are NHWC here (diffusers is NCHW); video helpers fold `[B, T, V]` into N.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lmgendrive_jax.errors import ConfigError
from lmgendrive_jax.nn.attention import Attention

ACTIVATIONS = {"silu": nn.silu, "swish": nn.silu, "gelu": nn.gelu, "relu": nn.relu}


def _conv(features: int, kernel: int, name: str, dtype, param_dtype, strides: int = 1,
          padding: Any = "SAME", out_axis: str | None = "conv_out") -> nn.Conv:
  return nn.Conv(features, (kernel, kernel), strides=(strides, strides), padding=padding,
                 dtype=dtype, param_dtype=param_dtype,
                 kernel_init=nn.with_logical_partitioning(
                     nn.initializers.lecun_normal(), (None, None, "conv_in", out_axis)),
                 bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(),
                                                        (out_axis,)),
                 name=name)


def _group_norm(groups: int, name: str, dtype, param_dtype, eps: float = 1e-6) -> nn.GroupNorm:
  return nn.GroupNorm(num_groups=groups, epsilon=eps, dtype=dtype, param_dtype=param_dtype,
                      scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(),
                                                              ("norm",)),
                      bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(),
                                                             ("norm",)),
                      name=name)


class ResnetBlock2D(nn.Module):
  """GroupNorm-act-conv twice plus a (1x1 conv) shortcut. x: [N, H, W, Cin] -> [N, H, W, Cout]."""
  out_channels: int
  groups: int
  act_fn: str
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    act = ACTIVATIONS[self.act_fn]
    h = act(_group_norm(self.groups, "norm1", self.dtype, self.param_dtype)(x))
    h = _conv(self.out_channels, 3, "conv1", self.dtype, self.param_dtype)(h)
    h = act(_group_norm(self.groups, "norm2", self.dtype, self.param_dtype)(h))
    h = _conv(self.out_channels, 3, "conv2", self.dtype, self.param_dtype)(h)
    if x.shape[-1] != self.out_channels:
      x = _conv(self.out_channels, 1, "conv_shortcut", self.dtype, self.param_dtype)(x)
    return x + h


class AttentionBlock(nn.Module):
  """diffusers' VAE attention: GroupNorm, single-head self-attention over H*W, residual."""
  groups: int
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    n, height, width, channels = x.shape
    h = _group_norm(self.groups, "group_norm", self.dtype, self.param_dtype)(x)
    h = h.reshape(n, height * width, channels)
    h, _ = Attention(num_heads=1, head_dim=channels, use_bias=True, dtype=self.dtype,
                     param_dtype=self.param_dtype, name="attention")(h)
    return x + h.reshape(n, height, width, channels)


class MidBlock(nn.Module):
  """resnets_0 -> attentions_0 -> resnets_1 at the lowest resolution."""
  channels: int
  groups: int
  act_fn: str
  add_attention: bool
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kw = dict(groups=self.groups, act_fn=self.act_fn, dtype=self.dtype,
              param_dtype=self.param_dtype)
    x = ResnetBlock2D(self.channels, **kw, name="resnets_0")(x)
    if self.add_attention:
      x = AttentionBlock(self.groups, self.dtype, self.param_dtype, name="attentions_0")(x)
    return ResnetBlock2D(self.channels, **kw, name="resnets_1")(x)


class Resample(nn.Module):
  """diffusers' Downsample2D (pad right/bottom by one, VALID stride-2 3x3 conv: downsample_padding=0)
  or Upsample2D (nearest-neighbour x2, then a 3x3 conv). x: [N, H, W, C]."""
  channels: int
  down: bool
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.down:
      x = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
      return _conv(self.channels, 3, "conv", self.dtype, self.param_dtype, strides=2,
                   padding="VALID")(x)
    x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    return _conv(self.channels, 3, "conv", self.dtype, self.param_dtype)(x)


class DownBlock(nn.Module):
  """DownEncoderBlock2D: `num_layers` resnets, then a downsampler unless it is the last level."""
  channels: int
  num_layers: int
  resample: bool
  groups: int
  act_fn: str
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i in range(self.num_layers):
      x = ResnetBlock2D(self.channels, self.groups, self.act_fn, self.dtype, self.param_dtype,
                        name=f"resnets_{i}")(x)
    if self.resample:
      x = Resample(self.channels, True, self.dtype, self.param_dtype, name="downsamplers_0")(x)
    return x


class UpBlock(DownBlock):
  """UpDecoderBlock2D: `num_layers` resnets, then an upsampler unless it is the last level."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i in range(self.num_layers):
      x = ResnetBlock2D(self.channels, self.groups, self.act_fn, self.dtype, self.param_dtype,
                        name=f"resnets_{i}")(x)
    if self.resample:
      x = Resample(self.channels, False, self.dtype, self.param_dtype, name="upsamplers_0")(x)
    return x


class Encoder(nn.Module):
  """images: f32[N, H, W, Cin] -> moments f32[N, h, w, 2 * latent_channels] (before quant_conv)."""
  latent_channels: int
  block_out_channels: tuple[int, ...]
  layers_per_block: int
  groups: int
  act_fn: str
  mid_block_add_attention: bool
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kw = dict(groups=self.groups, act_fn=self.act_fn, dtype=self.dtype,
              param_dtype=self.param_dtype)
    x = _conv(self.block_out_channels[0], 3, "conv_in", self.dtype, self.param_dtype)(x)
    levels = len(self.block_out_channels)
    for level, channels in enumerate(self.block_out_channels):
      x = DownBlock(channels, self.layers_per_block, level < levels - 1, **kw,
                    name=f"down_blocks_{level}")(x)
    x = MidBlock(self.block_out_channels[-1], add_attention=self.mid_block_add_attention, **kw,
                 name="mid_block")(x)
    x = ACTIVATIONS[self.act_fn](_group_norm(self.groups, "conv_norm_out", self.dtype,
                                             self.param_dtype)(x))
    return _conv(2 * self.latent_channels, 3, "conv_out", self.dtype, self.param_dtype)(x)


class Decoder(nn.Module):
  """latents: f32[N, h, w, latent_channels] (after post_quant_conv) -> f32[N, H, W, Cout]."""
  out_channels: int
  block_out_channels: tuple[int, ...]
  layers_per_block: int
  groups: int
  act_fn: str
  mid_block_add_attention: bool
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    kw = dict(groups=self.groups, act_fn=self.act_fn, dtype=self.dtype,
              param_dtype=self.param_dtype)
    x = _conv(self.block_out_channels[-1], 3, "conv_in", self.dtype, self.param_dtype)(z)
    x = MidBlock(self.block_out_channels[-1], add_attention=self.mid_block_add_attention, **kw,
                 name="mid_block")(x)
    reversed_channels = tuple(reversed(self.block_out_channels))
    for level, channels in enumerate(reversed_channels):
      x = UpBlock(channels, self.layers_per_block + 1, level < len(reversed_channels) - 1, **kw,
                  name=f"up_blocks_{level}")(x)
    x = ACTIVATIONS[self.act_fn](_group_norm(self.groups, "conv_norm_out", self.dtype,
                                             self.param_dtype)(x))
    # Three RGB channels rarely divide a tensor axis: keep the last conv's output unsharded.
    return _conv(self.out_channels, 3, "conv_out", self.dtype, self.param_dtype, out_axis=None)(x)


class AutoencoderKL(nn.Module):
  """Fields mirror diffusers' AutoencoderKL config (see `config.vae_preset`).

  `__call__(images, key=None)` -> (reconstruction f32[N, H, W, out_channels], out) with out
  {"mean", "logvar": f32[N, h, w, c] (posterior, unscaled), "latents": scaled latents fed to the
  decoder path}; with a `key` the posterior is sampled, else its mean is used.
  """
  block_out_channels: tuple[int, ...]
  layers_per_block: int
  norm_num_groups: int
  in_channels: int = 3
  out_channels: int = 3
  latent_channels: int = 4
  act_fn: str = "silu"
  scaling_factor: float = 0.18215
  shift_factor: float | None = None
  use_quant_conv: bool = True
  use_post_quant_conv: bool = True
  mid_block_add_attention: bool = True
  dtype: Any = "float32"
  param_dtype: Any = "float32"

  def setup(self):
    if self.act_fn not in ACTIVATIONS:
      raise ConfigError(f"VAE act_fn={self.act_fn!r}; choose one of {sorted(ACTIVATIONS)}")
    for channels in self.block_out_channels:
      if channels % self.norm_num_groups:
        raise ConfigError(f"VAE block_out_channels {tuple(self.block_out_channels)} must be "
                          f"multiples of norm_num_groups={self.norm_num_groups}")
    dtype, param_dtype = jnp.dtype(self.dtype), jnp.dtype(self.param_dtype)
    common = dict(block_out_channels=tuple(self.block_out_channels),
                  layers_per_block=self.layers_per_block, groups=self.norm_num_groups,
                  act_fn=self.act_fn, mid_block_add_attention=self.mid_block_add_attention,
                  dtype=dtype, param_dtype=param_dtype)
    self.encoder = Encoder(self.latent_channels, **common, name="encoder")
    self.decoder = Decoder(self.out_channels, **common, name="decoder")
    if self.use_quant_conv:
      self.quant_conv = _conv(2 * self.latent_channels, 1, "quant_conv", dtype, param_dtype)
    if self.use_post_quant_conv:
      self.post_quant_conv = _conv(self.latent_channels, 1, "post_quant_conv", dtype, param_dtype)

  @property
  def downsample_factor(self) -> int:
    return 2 ** (len(self.block_out_channels) - 1)

  def encode(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """images: f32[N, H, W, in_channels] in [-1, 1] -> (mean, logvar) f32[N, h, w, c], unscaled."""
    factor = self.downsample_factor
    if images.ndim != 4 or images.shape[1] % factor or images.shape[2] % factor:
      raise ValueError(f"VAE.encode needs images [N, H, W, C] with H, W divisible by {factor}; "
                       f"got shape {images.shape}")
    moments = self.encoder(images)
    if self.use_quant_conv:
      moments = self.quant_conv(moments)
    mean, logvar = jnp.split(moments.astype(jnp.float32), 2, axis=-1)
    return mean, jnp.clip(logvar, -30.0, 20.0)  # diffusers' DiagonalGaussianDistribution clamp

  def decode(self, latents: jax.Array) -> jax.Array:
    """latents: f32[N, h, w, c] unscaled (posterior space) -> images f32[N, H, W, out_channels]."""
    if self.use_post_quant_conv:
      latents = self.post_quant_conv(latents)
    return self.decoder(latents).astype(jnp.float32)

  def scale(self, posterior: jax.Array) -> jax.Array:
    """Posterior sample/mean -> the world generator's latent space."""
    return (posterior - (self.shift_factor or 0.0)) * self.scaling_factor

  def unscale(self, latents: jax.Array) -> jax.Array:
    return latents / self.scaling_factor + (self.shift_factor or 0.0)

  def encode_latents(self, images: jax.Array) -> jax.Array:
    """images in [-1, 1] f32[N, H, W, 3] -> scaled latents (posterior mean) f32[N, h, w, c]."""
    return self.scale(self.encode(images)[0])

  def decode_latents(self, latents: jax.Array) -> jax.Array:
    """Scaled latents f32[N, h, w, c] -> images f32[N, H, W, 3] in about [-1, 1]."""
    return self.decode(self.unscale(latents))

  def __call__(self, images: jax.Array, key: jax.Array | None = None):
    mean, logvar = self.encode(images)
    posterior = mean
    if key is not None:
      posterior = mean + jnp.exp(0.5 * logvar) * jax.random.normal(key, mean.shape, mean.dtype)
    reconstruction = self.decode(posterior)
    return reconstruction, {"mean": mean, "logvar": logvar, "latents": self.scale(posterior)}


def images_to_unit(images: jax.Array) -> jax.Array:
  """uint8[...] in [0, 255] -> f32[...] in [-1, 1] (the VAE's input range)."""
  return images.astype(jnp.float32) / 127.5 - 1.0


def unit_to_images(x: jax.Array) -> jax.Array:
  """f32[...] in about [-1, 1] -> uint8[...] (clipped, rounded)."""
  return jnp.clip(jnp.round((x + 1.0) * 127.5), 0, 255).astype(jnp.uint8)


def encode_video(vae: AutoencoderKL, variables, images: jax.Array) -> jax.Array:
  """images: uint8[B, T, V, H, W, 3] -> scaled latents f32[B, T, V, h, w, c] (posterior means)."""
  lead = images.shape[:-3]
  flat = images_to_unit(images.reshape(-1, *images.shape[-3:]))
  latents = vae.apply(variables, flat, method=AutoencoderKL.encode_latents)
  return latents.reshape(*lead, *latents.shape[1:])


def decode_video(vae: AutoencoderKL, variables, latents: jax.Array) -> jax.Array:
  """latents: f32[B, T, V, h, w, c] (scaled) -> uint8[B, T, V, H, W, 3]."""
  lead = latents.shape[:-3]
  images = vae.apply(variables, latents.reshape(-1, *latents.shape[-3:]),
                     method=AutoencoderKL.decode_latents)
  return unit_to_images(images).reshape(*lead, *images.shape[1:])


def vae_loss(vae: AutoencoderKL, variables, images: jax.Array, key: jax.Array,
             kl_weight: float = 1e-6) -> tuple[jax.Array, dict]:
  """Reconstruction (L1 + L2 in [-1, 1]) + kl_weight * KL(q(z|x) || N(0, 1)) per latent element.

  images: uint8[N, H, W, 3] or f32 in [-1, 1]. The stage-1 loss of the tiny VAE trained from
  scratch (no perceptual/GAN terms: no pretrained LPIPS network can be loaded here).
  """
  x = images_to_unit(images) if images.dtype == jnp.uint8 else images
  reconstruction, out = vae.apply(variables, x, key)
  l1 = jnp.mean(jnp.abs(reconstruction - x))
  l2 = jnp.mean(jnp.square(reconstruction - x))
  kl = 0.5 * jnp.mean(jnp.square(out["mean"]) + jnp.exp(out["logvar"]) - 1.0 - out["logvar"])
  loss = l1 + l2 + kl_weight * kl
  return loss, {"l1": l1, "l2": l2, "kl": kl, "reconstruction": reconstruction}
