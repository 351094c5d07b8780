"""ResNet backbone in timm's layout (resnet18/26/34/50/101 and their `d` / `t` variants).

First stage of the vision encoder (`models/vision.py`): each camera view goes through the same
ResNet and leaves as a stride-32 (or `output_stride`) feature map. Module names mirror timm's
state-dict keys (`conv1_0` <-> `conv1.0`, `layer2_1/downsample_1` <-> `layer2.1.downsample.1`) so
that `convert/timm_resnet.py` is a renaming, not a re-implementation.

BatchNorm: parameters `scale`, `bias` in `params`; running statistics `mean`, `var` in their own
`batch_stats` collection. With `frozen_batch_norm=True` (the default, as after importing ImageNet
weights) the running statistics are used in training too and never updated, so the backbone is a
pure function of `params` + `batch_stats` and shards like any other layer.

images: f32[N, H, W, 3] (already normalised) -> features f32[N, H/s, W/s, C], s = output_stride.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

STEM_TYPES = ("", "deep", "deep_tiered")
BLOCKS = ("basic", "bottleneck")
_EXPANSION = {"basic": 1, "bottleneck": 4}


def _conv(features: int, kernel: int, stride: int, name: str, dtype, param_dtype) -> nn.Conv:
  pad = kernel // 2
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                 padding=((pad, pad), (pad, pad)), use_bias=False, dtype=dtype,
                 param_dtype=param_dtype, name=name,
                 kernel_init=nn.with_logical_partitioning(
                     nn.initializers.variance_scaling(2.0, "fan_out", "normal"),
                     (None, None, "conv_in", "conv_out")))


def _batch_norm(name: str, train: bool, frozen: bool, eps: float, dtype, param_dtype,
                zero_init: bool = False) -> nn.BatchNorm:
  """BatchNorm over channels; uses the running statistics unless training an unfrozen model."""
  scale_init = nn.initializers.zeros_init() if zero_init else nn.initializers.ones_init()
  return nn.BatchNorm(
      use_running_average=frozen or not train, momentum=0.9, epsilon=eps, dtype=dtype,
      param_dtype=param_dtype, name=name,
      scale_init=nn.with_logical_partitioning(scale_init, ("conv_out",)),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), ("conv_out",)))


def _avg_pool_ceil(x: jax.Array) -> jax.Array:
  """timm's AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False) on NHWC."""
  pad_h, pad_w = x.shape[1] % 2, x.shape[2] % 2
  pads = ((0, 0), (0, pad_h), (0, pad_w), (0, 0))
  total = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 2, 2, 1), pads)
  ones = jnp.ones((1,) + x.shape[1:3] + (1,), x.dtype)
  count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 2, 2, 1), pads)
  return total / count


class Block(nn.Module):
  """One residual block (timm BasicBlock or Bottleneck, cardinality 1). x: [N, H, W, Cin]."""
  block: str
  planes: int
  stride: int
  downsample: bool
  avg_down: bool
  frozen_batch_norm: bool
  bn_eps: float
  dtype: Any
  param_dtype: Any

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    def bn(name, zero_init=False):
      return _batch_norm(name, train, self.frozen_batch_norm, self.bn_eps, self.dtype,
                         self.param_dtype, zero_init)

    def conv(features, kernel, stride, name):
      return _conv(features, kernel, stride, name, self.dtype, self.param_dtype)

    out_planes = self.planes * _EXPANSION[self.block]
    shortcut = x
    if self.block == "basic":
      y = nn.relu(bn("bn1")(conv(self.planes, 3, self.stride, "conv1")(x)))
      y = bn("bn2", zero_init=True)(conv(out_planes, 3, 1, "conv2")(y))
    else:
      y = nn.relu(bn("bn1")(conv(self.planes, 1, 1, "conv1")(x)))
      y = nn.relu(bn("bn2")(conv(self.planes, 3, self.stride, "conv2")(y)))
      y = bn("bn3", zero_init=True)(conv(out_planes, 1, 1, "conv3")(y))
    if self.downsample:
      if self.avg_down:  # timm: Sequential(pool or Identity, conv 1x1, bn) -> indices 1 and 2.
        if self.stride != 1:
          shortcut = _avg_pool_ceil(shortcut)
        shortcut = bn("downsample_2")(conv(out_planes, 1, 1, "downsample_1")(shortcut))
      else:
        shortcut = bn("downsample_1")(conv(out_planes, 1, self.stride, "downsample_0")(shortcut))
    return nn.relu(y + shortcut)


class ResNet(nn.Module):
  """timm ResNet trunk without the classifier. Fields match `config.vision_preset(...).backbone`.

  block: "basic" | "bottleneck"; layers: blocks per stage; channels: planes per stage;
  stem_type: "" (7x7 conv, width 64), "deep" (3x3 convs stem_width, stem_width, 2 * stem_width),
  "deep_tiered" (3 * stem_width // 4, stem_width, 2 * stem_width); avg_down: the `d`-variant
  shortcut (2x2 average pool then 1x1 conv); output_stride: 32 (timm's default) or 16 / 8, where
  the stages past that stride keep their input resolution (stride-1 first block). timm dilates
  those stages' convolutions instead, to reuse ImageNet weights; a from-scratch trunk has no
  weights to reuse, and at the 64x64 views of the CPU preset the 3x3 receptive fields already
  span the map.
  """
  block: str = "bottleneck"
  layers: Sequence[int] = (3, 4, 6, 3)
  channels: Sequence[int] = (64, 128, 256, 512)
  stem_width: int = 32
  stem_type: str = "deep"
  avg_down: bool = True
  frozen_batch_norm: bool = True
  bn_eps: float = 1e-5
  output_stride: int = 32
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @property
  def num_features(self) -> int:
    return self.channels[-1] * _EXPANSION[self.block]

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False):
    """images: f32[N, H, W, 3] -> (f32[N, H/s, W/s, num_features], {"stage{i}": features}),
    s = output_stride."""
    if self.output_stride not in (8, 16, 32):
      raise ValueError(f"ResNet.output_stride={self.output_stride}; choose 8, 16 or 32")
    if self.block not in BLOCKS:
      raise ValueError(f"ResNet.block={self.block!r}; choose one of {BLOCKS}")
    if self.stem_type not in STEM_TYPES:
      raise ValueError(f"ResNet.stem_type={self.stem_type!r}; choose one of {STEM_TYPES}")

    def bn(name):
      return _batch_norm(name, train, self.frozen_batch_norm, self.bn_eps, self.dtype,
                         self.param_dtype)

    x = images.astype(self.dtype)
    if self.stem_type:
      first, second = ((3 * (self.stem_width // 4), self.stem_width)
                       if self.stem_type == "deep_tiered" else (self.stem_width, self.stem_width))
      x = nn.relu(bn("conv1_1")(_conv(first, 3, 2, "conv1_0", self.dtype, self.param_dtype)(x)))
      x = nn.relu(bn("conv1_4")(_conv(second, 3, 1, "conv1_3", self.dtype, self.param_dtype)(x)))
      x = _conv(2 * self.stem_width, 3, 1, "conv1_6", self.dtype, self.param_dtype)(x)
      in_planes = 2 * self.stem_width
    else:
      x = _conv(64, 7, 2, "conv1", self.dtype, self.param_dtype)(x)
      in_planes = 64
    x = nn.relu(bn("bn1")(x))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    out = {}
    reached = 4  # the stem and the max pool
    for stage, (planes, depth) in enumerate(zip(self.channels, self.layers)):
      stage_stride = 2 if stage > 0 and reached < self.output_stride else 1
      reached *= stage_stride
      for index in range(depth):
        stride = stage_stride if index == 0 else 1
        out_planes = planes * _EXPANSION[self.block]
        downsample = index == 0 and (stride != 1 or in_planes != out_planes)
        x = Block(self.block, planes, stride, downsample, self.avg_down, self.frozen_batch_norm,
                  self.bn_eps, self.dtype, self.param_dtype,
                  name=f"layer{stage + 1}_{index}")(x, train)
        in_planes = out_planes
      x = nn.with_logical_constraint(x, ("batch", "height", "width", "channels"))
      out[f"stage{stage + 1}"] = x
    return x, out
