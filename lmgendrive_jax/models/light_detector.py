"""Red-light detector: a small full-resolution CNN on the telephoto focus camera.

Used by the agent's light rule (`agent/red_light.py`), trained on its own
(`train/light_detector.py`, `configs/light_detector.py`) from the `red_light_zone` label (the
light of the route's next stop line is red and the line at most 8 m ahead, at any speed; or
`red_light_ahead`, red at any distance). Not LMDrive's: its light
head reads the stage-1 encoder's light token, and on the embedded default that head learnt the
ego speed instead of the lamp (`bench/light_heads.py`, README). A lamp ~30 m ahead is a ~3x7 px
blob in a 64x64 focus image and gone after the shared backbone's stride-32 pooling, so the
detector keeps its own convolutions at stride <= 8 and pools the whole map by max (is there a red
lamp anywhere) and mean (the scene: night, the car's own lane). No speed input: a standing car
tells nothing about the lamp.

  uint8[B, H, W, 3] focus images -> f32[B] logits (sigmoid: P(its label: a red light close ahead))
  (with return_objects and object_map: also f32[B, h, w] object logits on the last feature map)
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lmgendrive_jax.models.vision import normalize_images
from lmgendrive_jax.nn.linear import Linear


class RedLightDetector(nn.Module):
  """Fields match `configs/light_detector.py: model.light_detector`.

  widths / strides: one 3x3 convolution (+ GELU) per entry; hidden: the MLP after pooling;
  position_channels: feed each pixel's image coordinates (-1..1, two channels) beside its colour,
  so that a pooled feature can say where the thing is (the hazard detector: a car in the car's
  own lane, low in the middle of the image, not one in the next lane); off for the lamp and sign.
  object_map: a 1x1 head on the last feature map gives per-cell object logits (trained against
  the view's object cover, `data/view_layout.py: object_cover`), and the MLP reads that map
  flattened beside the pooled features. Why (the hazard detector): trained on its one frame-level
  bit, it memorised its training scenes (recall 0.84 there, none on held-out weathers: README);
  the dense target says where the car is, and the frame-level head then only has to decide
  whether that place is in the car's path.
  """
  widths: Sequence[int] = (16, 32, 32, 64)
  strides: Sequence[int] = (1, 2, 2, 2)
  hidden: int = 64
  position_channels: bool = False
  object_map: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, return_objects: bool = False):
    if len(self.widths) != len(self.strides):
      raise ValueError(f"widths {tuple(self.widths)} and strides {tuple(self.strides)} must have "
                       f"one entry per convolution")
    x = normalize_images(images, self.dtype)
    if self.position_channels:
      batch, height, width = x.shape[:3]
      rows, cols = jnp.meshgrid(jnp.linspace(-1.0, 1.0, height, dtype=self.dtype),
                                jnp.linspace(-1.0, 1.0, width, dtype=self.dtype), indexing="ij")
      position = jnp.broadcast_to(jnp.stack([rows, cols], -1), (batch, height, width, 2))
      x = jnp.concatenate([x, position], axis=-1)
    for i, (width, stride) in enumerate(zip(self.widths, self.strides)):
      x = nn.Conv(int(width), (3, 3), strides=(int(stride), int(stride)), padding="SAME",
                  dtype=self.dtype, name=f"conv{i}",
                  kernel_init=nn.with_logical_partitioning(
                      nn.initializers.variance_scaling(2.0, "fan_in", "normal"),
                      (None, None, "conv_in", "conv_out")))(x)
      x = nn.gelu(x)
    pooled = jnp.concatenate([x.max(axis=(1, 2)), x.mean(axis=(1, 2))], axis=-1)
    if self.object_map:
      object_logits = Linear(1, ("conv_out", None), use_bias=True, dtype=self.dtype,
                             name="object_head")(x)[..., 0]
      pooled = jnp.concatenate([pooled, object_logits.reshape(object_logits.shape[0], -1)], -1)
    elif return_objects:
      raise ValueError("return_objects needs object_map=True (the model has no object head)")
    hidden = nn.gelu(Linear(self.hidden, ("embed", "mlp"), use_bias=True, dtype=self.dtype,
                            name="hidden")(pooled))
    logit = Linear(1, ("mlp", None), use_bias=True, dtype=self.dtype, name="logit")(hidden)[..., 0]
    return (logit, object_logits) if return_objects else logit

  def feature_size(self, height: int, width: int) -> tuple[int, int]:
    """(rows, cols) of the last feature map (and the object map) for H x W images."""
    for stride in self.strides:
      height, width = -(-height // int(stride)), -(-width // int(stride))
    return height, width
