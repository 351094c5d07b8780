"""Task: a single-view detector beside the three-stage curriculum, for the agent's rules.

Trains `models/light_detector.py: RedLightDetector` on single frames of one view against one
frame label (`config.label`, binary cross-entropy, positives weighted by
`loss.positive_weight`, frames whose label is unknown (-1) left out):
- the red-light detector (`configs/light_detector.py`): the focus view (the telephoto focus
  camera of a `build_tfds --focus_camera` build; a build without one gives the front camera's
  centre crop, where a distant lamp is under a pixel) against `red_light_zone` (or
  `red_light_ahead`); read by the
  agent's light rule (`agent/red_light.py`);
- the stop-sign detector (`configs/stop_sign_detector.py`): the front view against
  `stop_sign_zone`; read by the agent's stop-sign rule (`agent/stop_sign.py`);
- the hazard detector (`configs/hazard_detector.py`): the front view against `hazard_ahead`;
  read by the agent's hazard rule (`agent/hazard.py`).
With `loss.object_weight` > 0 (the hazard detector) the model's object head (`object_map`) also
learns each cell of its last feature map's object cover (`data.view_objects_size`, the share of
the cell's rays meeting a vehicle or pedestrian), by binary cross-entropy with soft targets,
cells holding any object counting `1 + loss.object_boost` times (objects touch ~2% of the cells).
It shares no parameters with the planner, so a detector can be retrained without retraining the
planner. Logged per batch: accuracy, recall and precision at 0.5, and recall on the frames where
the car moves (> 1 m/s; a detector that only fires on standing frames has learnt the stop, not
the lamp or the sign).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lmgendrive_jax.data import pipeline
from lmgendrive_jax.errors import ConfigError, DataError
from lmgendrive_jax.models.light_detector import RedLightDetector
from lmgendrive_jax.train.loop import Task

MOVING_MPS = 1.0
# The frame labels it can learn.
LABELS = ("red_light_zone", "red_light_ahead", "stop_sign_zone", "hazard_ahead")


def check_detector_data(config) -> str:
  """The label a detector run learns (`config.label`; a config without one, from before labels
  were chosen, learns red_light_ahead, as `agent/detector.py` reads such runs), after checking
  that its data has exactly one view (the one it reads) and the label is one of LABELS."""
  views = tuple(config.data.views)
  if len(views) != 1:
    raise ConfigError(f"a detector reads one view; data.views is {views} (the red-light "
                      f"detector reads ('focus',), the stop-sign detector ('front',))")
  label = str(config.get("label", "red_light_ahead"))
  if label not in LABELS:
    raise ConfigError(f"detector label {label!r}: choose one of {LABELS}")
  return label


def _ratio(num, den):
  """num / den, 0 where den counts nothing."""
  return num / jnp.maximum(den, 1)


def detector_metrics(logits, labels, speed) -> dict:
  """Batch accuracy / recall / precision at 0.5 and the recall on moving frames (f32 scalars),
  over the frames whose label is known (>= 0)."""
  known = labels >= 0
  said = (logits > 0.0) & known
  red = labels > 0
  moving = speed > MOVING_MPS
  hits = jnp.sum(said & red)
  return {"accuracy": _ratio(jnp.sum((said == red) & known), jnp.sum(known)),
          "recall": _ratio(hits, jnp.sum(red)),
          "precision": _ratio(hits, jnp.sum(said)),
          "recall_moving": _ratio(jnp.sum(said & red & moving), jnp.sum(red & moving)),
          "label_rate": _ratio(jnp.sum(red), jnp.sum(known)),
          "label_known": jnp.mean(known.astype(jnp.float32))}


def check_object_target(config, detector: RedLightDetector) -> float:
  """`loss.object_weight` (0: no object target), after checking that the model has an object
  head and the data's object cover has its feature map's size."""
  weight = float(config.loss.get("object_weight", 0.0))
  if weight <= 0.0:
    return 0.0
  if not detector.object_map:
    raise ConfigError("loss.object_weight > 0 trains the object head: set "
                      "model.light_detector.object_map=True")
  size = detector.feature_size(*(int(s) for s in config.data.view_size))
  cover = tuple(int(s) for s in config.data.get("view_objects_size", (0, 0)))
  if cover != size:
    raise ConfigError(f"data.view_objects_size is {cover}; the detector's object map on "
                      f"{tuple(config.data.view_size)} views is {size}: set it to that")
  return weight


def object_loss(object_logits, cover, boost: float) -> tuple[jax.Array, dict]:
  """Object logits and cover f32[B, h, w] -> (the boosted soft BCE, {object_recall,
  object_precision}: over cells at least half covered, at 0.5)."""
  per_cell = optax.sigmoid_binary_cross_entropy(object_logits, cover)
  weights = 1.0 + boost * (cover > 0.0)
  loss = jnp.sum(per_cell * weights) / jnp.sum(weights)
  said, held = object_logits > 0.0, cover >= 0.5
  hits = jnp.sum(said & held)
  return loss, {"object_recall": _ratio(hits, jnp.sum(held)),
                "object_precision": _ratio(hits, jnp.sum(said))}


def build_task(config) -> tuple[Task, RedLightDetector]:
  detector = RedLightDetector(**config.model.light_detector.to_dict())
  label = check_detector_data(config)
  object_weight = check_object_target(config, detector)
  object_boost = float(config.loss.get("object_boost", 0.0))
  batches = KnownLabels(pipeline.make_iterator(config.data, 1), label)
  height, width = (int(s) for s in config.data.view_size)
  positive_weight = float(config.loss.positive_weight)

  def init_fn(key):
    return detector.init(key, jnp.zeros((1, height, width, 3), jnp.uint8))

  def loss_fn(params, batch, rng, model_state):
    del rng, model_state
    images = batch["images"][:, 0]
    if object_weight > 0.0:
      logits, object_logits = detector.apply({"params": params}, images, return_objects=True)
    else:
      logits = detector.apply({"params": params}, images)
    labels = batch[label]
    known = (labels >= 0).astype(jnp.float32)
    targets = jnp.maximum(labels, 0).astype(jnp.float32)
    per_frame = optax.sigmoid_binary_cross_entropy(logits, targets)
    weights = known * (1.0 + (positive_weight - 1.0) * targets)
    loss = jnp.sum(per_frame * weights) / jnp.maximum(jnp.sum(known), 1.0)
    metrics = detector_metrics(logits, labels, batch["speed"])
    if object_weight > 0.0:
      objects, object_metrics = object_loss(object_logits, batch["view_objects"][:, 0],
                                            object_boost)
      metrics.update(object_metrics, label_loss=loss, object_loss=objects)
      loss = loss + object_weight * objects
    return loss, metrics

  return Task(init_fn=init_fn, loss_fn=loss_fn, batches=batches,
              examples_per_step=config.data.batch_size), detector


class KnownLabels:
  """The trainer's BatchSource over `batches`, refusing a batch where no frame's `label` is
  known: a build from before the label (or from a source without it) trains nothing and should
  say so, not log a zero loss."""

  def __init__(self, batches, label: str):
    self.batches, self.label = batches, label

  def batch(self, step: int) -> dict:
    batch = self.batches.batch(step)
    if not (np.asarray(batch[self.label]) >= 0).any():
      raise DataError(f"no frame of batch {step} has a known {self.label!r} (-1 everywhere): "
                      f"the data was built from a collection without it; recollect with this "
                      f"version (data_pipelines.collect) and rebuild")
    return batch

  def get_state(self):
    return self.batches.get_state()

  def set_state(self, state) -> None:
    self.batches.set_state(state)
