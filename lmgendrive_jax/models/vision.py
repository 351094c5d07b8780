"""Vision encoder: multi-view camera frames -> a few hundred BEV-aware tokens per frame.

First block of LMGenDrive (DESIGN.md sec. 2, step 1). Trained in stage 1 with the perception heads
(`PerceptionModel` below, losses in `train/losses_vision.py`), frozen afterwards; the Q-Former
(`models/qformer.py`) reads its tokens.

Per frame: every view (front, left, right, rear, front focus crop) goes through one shared backbone
(`models/resnet.py` in timm's layout, or `models/vit.py`), a 1x1 projection to `embed_dim`, a
learnt per-view embedding and a fixed 2D sine position; each view adds one global token (mean of
its projected map + view + global embeddings). The BEV decoder (`models/bev_decoder.py`) fuses
all views' tokens into a BEV grid, a traffic-light state and waypoint states. The output tokens
are the BEV grid average-pooled to `pooled_height x pooled_width`, then the light token, then the
waypoint tokens (paper: 10 x 10 + 1 + 5 = 106 tokens of width 256), then, with
`append_view_tokens`, every view's own tokens (its projected feature map and global token,
V * (h * w + 1)). Why the option: stage 1's targets (objects, lights, route waypoints) never ask
the BEV queries where the lane is, so a small encoder trained on a few thousand frames keeps
little of the image in them (~1% change for a 1.5 m lateral offset of the car, against ~17% in
the view tokens); the Q-Former, trained on planning in stage 2, reads the view tokens directly.

images: uint8[B, T, V, H, W, 3], speed: f32[B, T] -> (tokens f32[B, T, Nv, Dv], out) with
out = {"bev_features": f32[B, T, Hb, Wb, Dv], "light_feature": f32[B, T, Dv],
"waypoint_features": f32[B, T, Nw, Dv], "view_tokens": f32[B, T, V * (h * w + 1), Dv],
"view_features": f32[B, T, V, h, w, Dv]} (the projected feature maps inside the view tokens,
before the view and position embeddings).
"""

from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from lmgendrive_jax.models.bev_decoder import BEVDecoder
from lmgendrive_jax.models.perception_heads import PerceptionHeads, RedLightHead, ViewLayoutHead
from lmgendrive_jax.models.resnet import ResNet
from lmgendrive_jax.models.vit import ViT
from lmgendrive_jax.nn.linear import Linear
from lmgendrive_jax.nn.posenc import sine_2d

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VIEW_NAMES = ("front", "left", "right", "rear", "focus")
BACKBONES = {"resnet": ResNet, "vit": ViT}


def normalize_images(images: jax.Array, dtype=jnp.float32) -> jax.Array:
  """uint8[..., 3] in [0, 255] -> ImageNet-normalised float."""
  x = images.astype(jnp.float32) / 255.0
  x = (x - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
  return x.astype(dtype)


class VisionEncoder(nn.Module):
  """Multi-view frames -> per-frame tokens. Fields match `config.vision_preset(name)`."""
  backbone_kind: str = "resnet"
  backbone: Mapping[str, Any] = None
  num_views: int = 5
  embed_dim: int = 256
  num_heads: int = 8
  mlp_dim: int = 2048
  num_encoder_layers: int = 2
  num_decoder_layers: int = 4
  bev_height: int = 50
  bev_width: int = 50
  pooled_height: int = 10
  pooled_width: int = 10
  num_waypoints: int = 5
  activation: str = "gelu"
  append_view_tokens: bool = False
  bev_query_init: str = "normal"  # models/bev_decoder.py: BEVDecoder.bev_query_init
  dtype: Any = "float32"
  param_dtype: Any = "float32"

  @property
  def num_tokens(self) -> int:
    """Tokens per frame without the view tokens (`append_view_tokens` adds V * (h * w + 1))."""
    return self.pooled_height * self.pooled_width + 1 + self.num_waypoints

  def _check(self, images, speed):
    if self.backbone_kind not in BACKBONES:
      raise ValueError(f"VisionEncoder.backbone_kind={self.backbone_kind!r}; choose one of "
                       f"{sorted(BACKBONES)}")
    if self.bev_height % self.pooled_height or self.bev_width % self.pooled_width:
      raise ValueError(f"BEV grid {self.bev_height}x{self.bev_width} is not a multiple of the "
                       f"pooled grid {self.pooled_height}x{self.pooled_width}")
    if images.ndim != 6 or images.shape[-1] != 3:
      raise ValueError(f"images must be uint8[B, T, V, H, W, 3]; got shape {images.shape}")
    if images.shape[2] != self.num_views:
      raise ValueError(f"images have {images.shape[2]} views but the encoder was configured with "
                       f"num_views={self.num_views} ({', '.join(VIEW_NAMES[:self.num_views])})")
    if speed.shape != images.shape[:2]:
      raise ValueError(f"speed must be f32[B, T] = {images.shape[:2]}; got {speed.shape}")

  @nn.compact
  def __call__(self, images: jax.Array, speed: jax.Array, train: bool = False):
    self._check(images, speed)
    dtype, param_dtype = jnp.dtype(self.dtype), jnp.dtype(self.param_dtype)
    b, t, v, height, width, _ = images.shape
    d = self.embed_dim
    pixels = normalize_images(images.reshape(b * t * v, height, width, 3), dtype)
    pixels = nn.with_logical_constraint(pixels, ("batch", "height", "width", "channels"))
    backbone_fields = dict(self.backbone or {})
    backbone_fields.update(dtype=dtype, param_dtype=param_dtype)
    features, _ = BACKBONES[self.backbone_kind](**backbone_fields, name="backbone")(pixels, train)
    fh, fw = features.shape[1:3]
    features = Linear(d, ("channels", "embed"), use_bias=True, dtype=dtype,
                      param_dtype=param_dtype, name="feature_proj")(features)
    view_features = features.reshape(b, t, v, fh, fw, d)
    features = features.reshape(b * t, v, fh * fw, d)

    init = nn.initializers.uniform(1.0)  # LMDrive initialises these embeddings U(0, 1).
    view_embed = self.param("view_embed", nn.with_logical_partitioning(init, ("views", "embed")),
                            (v, d), param_dtype).astype(dtype)
    global_embed = self.param("global_embed",
                              nn.with_logical_partitioning(init, ("views", "embed")), (v, d),
                              param_dtype).astype(dtype)
    global_tokens = jnp.mean(features, axis=2) + view_embed + global_embed  # [BT, V, D]
    tokens = features + view_embed[:, None] + sine_2d(fh, fw, d).astype(dtype)
    memory = jnp.concatenate([tokens, global_tokens[:, :, None]], axis=2)
    memory = memory.reshape(b * t, v * (fh * fw + 1), d)
    memory = nn.with_logical_constraint(memory, ("batch", "length", "embed"))

    decoder = BEVDecoder(d, self.num_heads, self.mlp_dim, self.num_encoder_layers,
                         self.num_decoder_layers, self.bev_height, self.bev_width,
                         self.num_waypoints, self.activation,
                         bev_query_init=self.bev_query_init, dtype=dtype,
                         param_dtype=param_dtype, name="bev_decoder")
    states = decoder(memory, speed.reshape(b * t).astype(jnp.float32))
    cells = self.bev_height * self.bev_width
    bev = states[:, :cells].reshape(b * t, self.bev_height, self.bev_width, d)
    light, waypoint_states = states[:, cells], states[:, cells + 1:]
    window = (self.bev_height // self.pooled_height, self.bev_width // self.pooled_width)
    pooled = nn.avg_pool(bev, window, strides=window).reshape(b * t, -1, d)
    parts = [pooled, light[:, None], waypoint_states] + ([memory] if self.append_view_tokens
                                                         else [])
    frame_tokens = jnp.concatenate(parts, axis=1)
    frame_tokens = frame_tokens.reshape(b, t, frame_tokens.shape[1], d)
    frame_tokens = nn.with_logical_constraint(frame_tokens, ("batch", "frames", "length", "embed"))
    out = {
        "bev_features": bev.reshape(b, t, self.bev_height, self.bev_width, d),
        "light_feature": light.reshape(b, t, d),
        "waypoint_features": waypoint_states.reshape(b, t, self.num_waypoints, d),
        "view_tokens": memory.reshape(b, t, -1, d),
        "view_features": view_features,
    }
    return frame_tokens, out


class PerceptionModel(nn.Module):
  """Stage-1 model: `VisionEncoder` (params under `encoder/`) + `PerceptionHeads` (`heads/`).

  images: uint8[B, T, V, H, W, 3], speed: f32[B, T], target_point: f32[B, T, 2] (ego frame, m)
  -> (predictions, out): predictions = {"detection": f32[B, T, Hb, Wb, 8],
  "waypoints": f32[B, T, Nw, 2], "light_logits": f32[B, T, 2], "stop_logits": f32[B, T, 2]}
  (+ "red_ahead_logits": f32[B, T, 2] with red_ahead_head, "road_layout_logits":
  f32[B, T, Hb, Wb, C] when road_layout_classes > 0, and
  "view_layout_logits": f32[B, T, V, rows, cols, Cv] when view_layout_classes > 0), out = the
  encoder's `out` plus "tokens": f32[B, T, Nv, Dv].
  """
  encoder: Mapping[str, Any]
  detection_hidden: int = 64
  speed_channels: int = 32
  gru_hidden: int = 64
  target_point_scale: float = 1.0
  road_layout_classes: int = 0
  # Per-view road layout in image space (data/view_layout.py), decoded from each view's projected
  # feature map, the part of the view tokens the image sets (0 classes: no such head).
  view_layout_classes: int = 0
  view_layout_size: tuple[int, int] = (16, 16)
  view_layout_hidden: int = 64
  # The speed-independent red-light head (perception_heads.py: RedLightHead) on the feature map
  # of the last view (the data presets put the focus view last).
  red_ahead_head: bool = False

  @nn.compact
  def __call__(self, images, speed, target_point, train: bool = False):
    encoder = VisionEncoder(**dict(self.encoder), name="encoder")
    tokens, out = encoder(images, speed, train)
    b, t = images.shape[:2]
    if target_point.shape != (b, t, 2):
      raise ValueError(f"target_point must be f32[B, T, 2] = {(b, t, 2)}; got {target_point.shape}")
    flat = lambda x: x.reshape((b * t,) + x.shape[2:])  # noqa: E731
    heads = PerceptionHeads(self.detection_hidden, self.speed_channels, self.gru_hidden,
                            self.target_point_scale, self.road_layout_classes,
                            dtype=jnp.dtype(encoder.dtype),
                            param_dtype=jnp.dtype(encoder.param_dtype), name="heads")
    predictions = heads(flat(out["bev_features"]), flat(out["light_feature"]),
                        flat(out["waypoint_features"]), flat(speed), flat(target_point))
    predictions = {k: v.reshape((b, t) + v.shape[1:]) for k, v in predictions.items()}
    if self.red_ahead_head:
      focus = out["view_features"][:, :, -1]  # [B, T, h, w, D]
      logits = RedLightHead(dtype=jnp.dtype(encoder.dtype),
                            param_dtype=jnp.dtype(encoder.param_dtype), name="red_light")(
                                focus.reshape((-1,) + focus.shape[2:]))
      predictions["red_ahead_logits"] = logits.reshape(b, t, 2)
    if self.view_layout_classes > 0:
      features = out["view_features"]
      logits = ViewLayoutHead(self.view_layout_classes, tuple(self.view_layout_size),
                              self.view_layout_hidden, dtype=jnp.dtype(encoder.dtype),
                              param_dtype=jnp.dtype(encoder.param_dtype), name="view_layout")(
                                  features.reshape((-1,) + features.shape[3:]))
      predictions["view_layout_logits"] = logits.reshape(features.shape[:3] + logits.shape[1:])
    return predictions, {**out, "tokens": tokens}
