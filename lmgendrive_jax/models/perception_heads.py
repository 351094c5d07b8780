"""Stage-1 perception heads on the BEV decoder's states (LMDrive's vision pretraining heads).

Used only in stage 1 (`models/vision.py: PerceptionModel`); later stages keep the encoder and drop
these. Per frame:
- dense BEV detection: per BEV cell an MLP over [cell state, speed repeated `speed_channels`
  times] -> `DETECTION_CHANNELS` (objectness logit, then box regression targets);
- waypoints: a GRU over the waypoint queries' states whose initial state encodes the target point;
  each step predicts a displacement and the waypoints are their running sum (ego frame, metres);
- traffic light (is the light affecting ego red) and stop sign: 2-way logits from the light token;
- red light ahead (not LMDrive's; `RedLightHead`, used by `PerceptionModel` with
  `red_ahead_head`): 2-way logits for the speed-independent label `red_light_ahead` (is the light
  of the route's next stop line red) from the focus view's own feature map (mean and max pooled),
  which the ego speed does not reach: LMDrive's traffic-light label holds almost only while the
  car stands, and heads on the light token (the BEV decoder reads the speed) answer from the
  speed alone, this one's label included (`bench/light_heads.py`);
- road layout (not LMDrive's; `road_layout_classes` > 0): per BEV cell, logits over the road classes
  of `data/topdown.py` by one linear map of the cell state plus a learnt per-cell bias, so the
  state itself must hold where this frame's lanes are (the auxiliary BEV semantics of TransFuser
  / InterFuser);
- view layout (`ViewLayoutHead`, not LMDrive's; `PerceptionModel.view_layout_classes` > 0): per
  view, the road layout in image space (`data/view_layout.py`) decoded from the view's own
  feature map, so the backbone is taught to see the lane without going through the BEV decoder.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lmgendrive_jax.nn.linear import Linear

# Per-cell detection layout, the order of `specs/lmdrive_format.md` (stage-1 labels).
DETECTION_CHANNELS = ("objectness", "dx", "dy", "sin_yaw", "cos_yaw", "length", "width", "speed")


class GRU(nn.Module):
  """PyTorch-convention GRU (gates r, z, n) unrolled over a short sequence.

  inputs: f32[N, S, Din], initial: f32[N, H] -> states f32[N, S, H].
  """
  hidden: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, inputs: jax.Array, initial: jax.Array) -> jax.Array:
    from_input = Linear(3 * self.hidden, ("embed", "mlp"), use_bias=True, dtype=self.dtype,
                        param_dtype=self.param_dtype, name="input_gates")(inputs)
    recurrent = Linear(3 * self.hidden, (None, "mlp"), use_bias=True, dtype=self.dtype,
                       param_dtype=self.param_dtype, name="hidden_gates")
    state, states = initial.astype(self.dtype), []
    for step in range(inputs.shape[1]):  # A handful of waypoints: unrolled.
      xr, xz, xn = jnp.split(from_input[:, step], 3, axis=-1)
      hr, hz, hn = jnp.split(recurrent(state), 3, axis=-1)
      reset, update = nn.sigmoid(xr + hr), nn.sigmoid(xz + hz)
      candidate = jnp.tanh(xn + reset * hn)
      state = (1.0 - update) * candidate + update * state
      states.append(state)
    return jnp.stack(states, axis=1)


class PerceptionHeads(nn.Module):
  """BEV / light / waypoint states -> stage-1 predictions.

  bev: f32[N, Hb, Wb, D], light: f32[N, D], waypoint_states: f32[N, Nw, D], speed: f32[N],
  target_point: f32[N, 2] -> {"detection": f32[N, Hb, Wb, 8], "waypoints": f32[N, Nw, 2],
  "light_logits": f32[N, 2], "stop_logits": f32[N, 2]}, plus "road_layout_logits":
  f32[N, Hb, Wb, road_layout_classes] when road_layout_classes > 0.
  """
  detection_hidden: int = 64
  speed_channels: int = 32
  gru_hidden: int = 64
  # The target point enters the GRU's initial state through one Linear. LMDrive feeds raw
  # metres (1.0; its targets lie up to ~50 m ahead), which at initialisation makes that state
  # tens of times larger than the GRU's tanh updates from the image features, so the waypoints
  # follow the target point and the encoder is hardly asked to see the lane.
  target_point_scale: float = 1.0
  road_layout_classes: int = 0  # 0: no road-layout head (LMDrive's heads)
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, bev, light, waypoint_states, speed, target_point):
    def linear(features, axes, name):
      return Linear(features, axes, use_bias=True, dtype=self.dtype, param_dtype=self.param_dtype,
                    name=name)

    n, height, width, _ = bev.shape
    # LMDrive feeds the raw ego speed to every cell as `speed_channels` copies next to its state.
    speed_copies = jnp.broadcast_to(speed.astype(self.dtype)[:, None, None, None],
                                    (n, height, width, self.speed_channels))
    cells = jnp.concatenate([bev.astype(self.dtype), speed_copies], axis=-1)
    hidden = nn.relu(linear(self.detection_hidden, ("embed", "mlp"), "detection_fc1")(cells))
    detection = linear(len(DETECTION_CHANNELS), ("mlp", None), "detection_fc2")(hidden)

    initial = linear(self.gru_hidden, (None, "mlp"), "target_point_embed")(
        target_point.astype(self.dtype) * self.target_point_scale)
    states = GRU(self.gru_hidden, self.dtype, self.param_dtype, name="waypoint_gru")(
        waypoint_states, initial)
    steps = linear(2, ("mlp", None), "waypoint_out")(states)
    predictions = {
        "detection": detection.astype(jnp.float32),
        "waypoints": jnp.cumsum(steps.astype(jnp.float32), axis=1),
        "light_logits": linear(2, ("embed", None), "light_head")(light).astype(jnp.float32),
        "stop_logits": linear(2, ("embed", None), "stop_head")(light).astype(jnp.float32),
    }
    if self.road_layout_classes > 0:
      # A learnt per-cell bias holds the layout every frame shares (the road under and ahead of
      # the ego), so the gradient that reaches the encoder is what this frame's cameras add.
      cell_bias = self.param("road_layout_cell_bias", nn.with_logical_partitioning(
          nn.initializers.zeros, (None, None, None)),
          (height, width, self.road_layout_classes), self.param_dtype)
      logits = linear(self.road_layout_classes, ("embed", None), "road_layout_head")(bev)
      predictions["road_layout_logits"] = (logits + cell_bias).astype(jnp.float32)
    return predictions


class ViewLayoutHead(nn.Module):
  """A view's feature map -> per-pixel road-layout logits (`data/view_layout.py`).

  features: f32[N, h, w, D] -> logits f32[N, rows, cols, classes]. A 1x1 projection to `hidden`,
  then bilinear 2x upsampling + 3x3 convolution + GELU until the map reaches (rows, cols) (a last
  resize when they are not h, w times a power of two), then per-pixel logits. Nothing skips the
  feature map: whatever the head can draw, the view tokens the Q-Former reads hold.
  """
  classes: int
  size: tuple[int, int]
  hidden: int = 64
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def _conv(self, features: int, kernel: int, name: str) -> nn.Conv:
    return nn.Conv(features, (kernel, kernel), padding="SAME", dtype=self.dtype,
                   param_dtype=self.param_dtype, name=name,
                   kernel_init=nn.with_logical_partitioning(
                       nn.initializers.lecun_normal(), (None, None, "conv_in", "conv_out")),
                   bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(),
                                                          ("conv_out",)))

  @nn.compact
  def __call__(self, features: jax.Array) -> jax.Array:
    rows, cols = self.size
    x = self._conv(self.hidden, 1, "proj")(features.astype(self.dtype))
    step = 0
    while x.shape[1] < rows or x.shape[2] < cols:
      size = (min(2 * x.shape[1], rows), min(2 * x.shape[2], cols))
      x = jax.image.resize(x, (x.shape[0], *size, x.shape[3]), "bilinear")
      x = nn.gelu(self._conv(self.hidden, 3, f"up_{step}")(x))
      step += 1
    if x.shape[1:3] != (rows, cols):
      x = jax.image.resize(x, (x.shape[0], rows, cols, x.shape[3]), "bilinear")
    return self._conv(self.classes, 1, "logits")(x).astype(jnp.float32)


class RedLightHead(nn.Module):
  """One view's feature map f32[N, h, w, D] -> red-light-ahead logits f32[N, 2]: an MLP over its
  mean and max over positions (a lamp is a few pixels: the max keeps it)."""
  hidden: int = 64
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: jax.Array) -> jax.Array:
    x = features.astype(self.dtype)
    pooled = jnp.concatenate([x.mean(axis=(1, 2)), x.max(axis=(1, 2))], axis=-1)
    hidden = nn.relu(Linear(self.hidden, ("embed", "mlp"), use_bias=True, dtype=self.dtype,
                            param_dtype=self.param_dtype, name="fc1")(pooled))
    return Linear(2, ("mlp", None), use_bias=True, dtype=self.dtype,
                  param_dtype=self.param_dtype, name="fc2")(hidden).astype(jnp.float32)


def decode_detections(detection: jax.Array, threshold: float = 0.5, cell_size: float = 1.0
                      ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Dense head output -> per-cell object centres on the BEV grid.

  detection: f32[..., Hb, Wb, 8] -> (present bool[..., Hb, Wb], centres f32[..., Hb, Wb, 2] as
  (row, col) in metres from the grid's top-left corner, scores f32[..., Hb, Wb]). A cell's centre
  is its middle plus the predicted (dy, dx) offset (metres). Static shapes: use `present` as mask.
  """
  height, width = detection.shape[-3:-1]
  scores = jax.nn.sigmoid(detection[..., 0])
  rows, cols = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing="ij")
  middle = (jnp.stack([rows, cols], axis=-1).astype(jnp.float32) + 0.5) * cell_size
  centres = middle + jnp.stack([detection[..., 2], detection[..., 1]], axis=-1)
  return scores > threshold, centres, scores
