"""Stage-1 (vision pretraining) losses with LMDrive's weights.

Consumes `models/vision.py: PerceptionModel` predictions and the stage-1 labels of
`specs/lmdrive_format.md`:

  total = 0.5 * detection + 0.5 * waypoints + 0.05 * detection_speed + 0.1 * traffic_light
          + 0.01 * stop_sign

- detection (LMDrive's LAV-style loss over the BEV grid; channel order in
  `models/perception_heads.DETECTION_CHANNELS`): 0.4 * objectness + 0.2 * offset + 0.2 * box +
  0.2 * orientation. Objectness is binary cross-entropy re-weighted per cell by
  sigmoid(logit * (1 - 2 * target)), the probability of the wrong answer, normalised by its mean
  (a focal-style weight that stops the ~99% empty cells from dominating; unlike LMDrive the weight
  is a constant in the gradient). Offset, box, orientation
  and speed are L1 weighted by the target objectness and normalised by its mean, so only occupied
  cells count.
- waypoints: mean L1 (metres, ego frame).
- traffic light (red light affecting ego) and stop sign: 2-way cross-entropy.
- red light ahead (not LMDrive's; with a "red_light_ahead" label): 2-way cross-entropy of
  "red_ahead_logits"; weight `weights["red_light_ahead"]` (absent: reported, not trained).

- road layout (not LMDrive's; present when the model has the head, `models/perception_heads.py`):
  per BEV cell the KL divergence from the road map's class shares (`data/topdown.py`) to the
  predicted softmax, over frames that have a road map (`road_layout_mask`). Its weight is the
  caller's (`weights["road_layout"]`; absent: reported, not trained).
- view layout (not LMDrive's; with the model's view-layout head): the same KL per pixel cell of
  every view against `data/view_layout.py`'s labels (`view_layout`, `view_layout_mask`); weight
  `weights["view_layout"]`.

Every mean runs over valid frames only (`frame_mask`), so padded frames of a clip cost nothing.
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import optax

from lmgendrive_jax.data import view_layout

LMDRIVE_WEIGHTS = {"detection": 0.5, "waypoints": 0.5, "detection_speed": 0.05,
                   "traffic_light": 0.1, "stop_sign": 0.01}
DETECTION_TERM_WEIGHTS = {"objectness": 0.4, "offset": 0.2, "box": 0.2, "orientation": 0.2}


def _masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean of x over entries where mask (broadcast to x) is set."""
  mask = jnp.broadcast_to(mask, x.shape).astype(jnp.float32)
  return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def detection_losses(logits: jax.Array, target: jax.Array, frame_mask: jax.Array
                     ) -> dict[str, jax.Array]:
  """logits, target: f32[B, T, Hb, Wb, 8]; frame_mask: bool[B, T] -> the named detection terms."""
  cells = frame_mask[:, :, None, None]
  objectness = target[..., 0]
  # Floor as in LMDrive: a batch with no object keeps finite (zero) regression terms.
  occupied = jnp.maximum(_masked_mean(objectness, cells), 1e-7)
  # The weight is held constant in the gradient. LMDrive differentiates through it, and through
  # the normaliser that rewards making every cell *more* wrong; objectness then stalls.
  wrong = jax.lax.stop_gradient(jax.nn.sigmoid(logits[..., 0] * (1.0 - 2.0 * objectness)))
  bce = optax.sigmoid_binary_cross_entropy(logits[..., 0], objectness)
  terms = {"objectness": _masked_mean(wrong * bce, cells) / _masked_mean(wrong, cells)}
  for name, lo, hi in (("offset", 1, 3), ("orientation", 3, 5), ("box", 5, 7), ("speed", 7, 8)):
    l1 = objectness[..., None] * jnp.abs(logits[..., lo:hi] - target[..., lo:hi])
    terms[name] = _masked_mean(l1, cells[..., None]) / occupied
  return terms


def layout_kl(logits: jax.Array, target: jax.Array, has_map: jax.Array,
              cell_weights: jax.Array | None = None) -> jax.Array:
  """logits, target (class shares) f32[B, T, ..., C], has_map bool[B, T] -> the mean per-cell KL
  divergence from the target to the predicted softmax over the frames with a map (0 when the
  prediction is exact); with cell_weights f32[B, T, ...], their weighted mean."""
  target = target.astype(jnp.float32)
  entropy = -jnp.sum(target * jnp.log(jnp.maximum(target, 1e-12)), axis=-1)
  kl = optax.softmax_cross_entropy(logits, target) - entropy
  mask = jnp.broadcast_to(has_map.reshape(has_map.shape + (1,) * (kl.ndim - 2)), kl.shape)
  if cell_weights is None:
    return _masked_mean(kl, mask)
  weights = mask * cell_weights.astype(jnp.float32)
  return jnp.sum(weights * kl) / jnp.maximum(jnp.sum(weights), 1e-6)


def object_confidence(logits: jax.Array, target: jax.Array, has_map: jax.Array
                      ) -> dict[str, jax.Array]:
  """View-layout logits and target f32[B, T, V, r, c, C], has_map bool[B, T] -> the predicted
  P(object) averaged over the cells the objects cover ("view_layout/object_p", weighted by their
  share) and over the rest ("view_layout/object_p_elsewhere"): whether the encoder sees the cars
  (a head at its loss's best constant reads the same on both). Metrics only."""
  p = jax.lax.stop_gradient(jax.nn.softmax(logits.astype(jnp.float32))[..., view_layout.OBJECT])
  share = target[..., view_layout.OBJECT].astype(jnp.float32)
  frames = has_map.reshape(has_map.shape + (1,) * (share.ndim - 2)).astype(jnp.float32)
  on, off = share * frames, (1.0 - share) * frames
  return {"view_layout/object_p": jnp.sum(p * on) / jnp.maximum(jnp.sum(on), 1e-6),
          "view_layout/object_p_elsewhere": jnp.sum(p * off) / jnp.maximum(jnp.sum(off), 1e-6)}


def _labelled_layout_kl(logits: jax.Array, labels: Mapping[str, jax.Array], frame_mask: jax.Array,
                        key: str, missing: str, mismatch: str, object_boost: float = 0.0
                        ) -> jax.Array:
  """`layout_kl` of logits vs labels[key] over valid frames whose labels[key + "_mask"] is set,
  after checking the label is there (else KeyError + `missing`) with the logits' shape (else
  ValueError + `mismatch`); object_boost > 0 weighs each cell 1 + object_boost x its object
  share (`view_layout.OBJECT`)."""
  if key not in labels:
    raise KeyError(f"the model predicts {key}_logits but the labels lack {key!r}: {missing}")
  if logits.shape != labels[key].shape:
    raise ValueError(f"{key} prediction {logits.shape} and label {labels[key].shape} differ: "
                     f"{mismatch}")
  has_map = frame_mask & labels.get(f"{key}_mask", jnp.ones_like(frame_mask)).astype(bool)
  return layout_kl(logits, labels[key], has_map, object_cell_weights(labels[key], object_boost))


def object_cell_weights(view_layouts: jax.Array, object_boost: float) -> jax.Array | None:
  """Per-view layout labels f32[..., C] (`data/view_layout.py`) -> cell weights f32[...]:
  1 + object_boost x each cell's `object` share (None when object_boost is 0: unweighted)."""
  if object_boost <= 0:
    return None
  return 1.0 + object_boost * view_layouts[..., view_layout.OBJECT].astype(jnp.float32)


def road_layout_loss(logits: jax.Array, labels: Mapping[str, jax.Array], frame_mask: jax.Array
                     ) -> jax.Array:
  """logits f32[B, T, Hb, Wb, C] vs labels["road_layout"] (class shares, same shape) -> the mean
  per-cell KL divergence over valid frames with a road map (0 when the prediction is exact)."""
  return _labelled_layout_kl(
      logits, labels, frame_mask, "road_layout",
      missing="the stage-1 labels carry the road map of data/topdown.py",
      mismatch="the BEV grid and the road classes of the model and the labels must match")


def view_layout_loss(logits: jax.Array, labels: Mapping[str, jax.Array], frame_mask: jax.Array,
                     object_boost: float = 0.0) -> jax.Array:
  """logits f32[B, T, V, rows, cols, C] vs labels["view_layout"] (per-pixel class shares of each
  view, `data/view_layout.py`) -> the mean per-cell KL over valid frames with a road map.

  object_boost: each cell weighs 1 + object_boost x its `object` share. Why: objects cover ~0.3%
  of the cells of the embedded default's views, and unweighted a 400-step stage 1 left P(object)
  at 0.03 on them (0.005 elsewhere): the KL's cheapest answer is the road under them.
  """
  return _labelled_layout_kl(
      logits, labels, frame_mask, "view_layout",
      missing="set data.view_layout_size to the model's view_layout_size",
      mismatch="data.view_layout_size, the views and the classes must match the model's "
               "view_layout_size and classes", object_boost=object_boost)


def stage1_loss(predictions: Mapping[str, jax.Array], labels: Mapping[str, jax.Array],
                frame_mask: jax.Array | None = None,
                weights: Mapping[str, float] = LMDRIVE_WEIGHTS, view_object_boost: float = 0.0
                ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Weighted stage-1 loss and its parts.

  predictions: `PerceptionModel` output ("detection", "waypoints", "light_logits",
  "stop_logits"). labels: {"detection": f32[B, T, Hb, Wb, 8], "waypoints": f32[B, T, Nw, 2],
  "traffic_light": int[B, T] (1 = red light affecting ego), "stop_sign": int[B, T]}, optional
  "waypoint_mask": bool[B, T, Nw] (unknown waypoints: past the route's end, after steering noise),
  and with "road_layout_logits" predictions "road_layout": f32[B, T, Hb, Wb, C] class shares,
  optional "road_layout_mask": bool[B, T] (frames with a road map).
  frame_mask: bool[B, T] (default all valid). Returns (total f32[], metrics {name: f32[]}).
  """
  for key in ("detection", "waypoints", "traffic_light", "stop_sign"):
    if key not in labels:
      raise KeyError(f"stage-1 labels lack {key!r}; they need detection, waypoints, "
                     f"traffic_light and stop_sign")
  if predictions["detection"].shape != labels["detection"].shape:
    raise ValueError(f"detection prediction {predictions['detection'].shape} and label "
                     f"{labels['detection'].shape} differ: the BEV grid of the model and the "
                     f"labels must match")
  if predictions["waypoints"].shape != labels["waypoints"].shape:
    raise ValueError(f"waypoint prediction {predictions['waypoints'].shape} and label "
                     f"{labels['waypoints'].shape} differ")
  b, t = labels["traffic_light"].shape[:2]
  frame_mask = jnp.ones((b, t), bool) if frame_mask is None else frame_mask.astype(bool)

  det = detection_losses(predictions["detection"], labels["detection"].astype(jnp.float32),
                         frame_mask)
  detection = sum(w * det[k] for k, w in DETECTION_TERM_WEIGHTS.items())
  known = frame_mask[:, :, None]
  if "waypoint_mask" in labels:
    known = known & labels["waypoint_mask"].astype(bool)
  waypoints = _masked_mean(jnp.abs(predictions["waypoints"] - labels["waypoints"]),
                           known[..., None])

  def classification(logits, label):
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, label.astype(jnp.int32))
    return _masked_mean(ce, frame_mask)

  metrics = {
      "detection": detection,
      "waypoints": waypoints,
      "detection_speed": det["speed"],
      "traffic_light": classification(predictions["light_logits"], labels["traffic_light"]),
      "stop_sign": classification(predictions["stop_logits"], labels["stop_sign"]),
  }
  if "red_ahead_logits" in predictions and "red_light_ahead" in labels:
    metrics["red_light_ahead"] = classification(predictions["red_ahead_logits"],
                                                labels["red_light_ahead"])
  if "road_layout_logits" in predictions:
    metrics["road_layout"] = road_layout_loss(predictions["road_layout_logits"], labels,
                                              frame_mask)
  if "view_layout_logits" in predictions:
    metrics["view_layout"] = view_layout_loss(predictions["view_layout_logits"], labels,
                                              frame_mask, view_object_boost)
    if predictions["view_layout_logits"].shape[-1] == len(view_layout.VIEW_LAYOUT_CLASSES):
      metrics.update(object_confidence(predictions["view_layout_logits"], labels["view_layout"],
                                       frame_mask & labels.get("view_layout_mask", frame_mask)
                                       .astype(bool)))
  missing = [k for k in weights if k not in metrics]
  if missing:
    raise KeyError(f"stage-1 loss weights {missing} have no term: the road- and view-layout "
                   f"weights need a model with road_layout_classes / view_layout_classes > 0, "
                   f"red_light_ahead a red_light_ahead label")
  total = sum(weights[k] * metrics[k] for k in weights)
  metrics.update({f"detection/{k}": v for k, v in det.items() if k != "speed"})
  metrics["total"] = total
  return total, metrics
