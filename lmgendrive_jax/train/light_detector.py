"""Task: the red-light detector (`configs/light_detector.py`), beside the three-stage curriculum.

Trains `models/light_detector.py: RedLightDetector` on single frames of the focus view (the
telephoto focus camera of a `build_tfds --focus_camera` build; a build without one gives the
front camera's centre crop, where a distant lamp is under a pixel) against `red_light_ahead`
(binary cross-entropy, positives weighted by `loss.positive_weight`). It shares no parameters
with the planner: the agent's light rule (`agent/red_light.py`) reads it beside any stage-2/3
run, so a detector can be retrained without retraining the planner. Logged per batch:
accuracy, recall and precision at 0.5, and recall on the frames where the car moves (> 1 m/s;
a detector that only fires on standing frames has learnt the stop, not the lamp).
"""

from __future__ import annotations

import jax.numpy as jnp
import optax

from lmgendrive_jax.data import pipeline
from lmgendrive_jax.errors import ConfigError
from lmgendrive_jax.models.light_detector import RedLightDetector
from lmgendrive_jax.train.loop import Task

MOVING_MPS = 1.0


def focus_index(views) -> int:
  """The position of the focus view in `data.views` (the detector reads only that one)."""
  views = tuple(views)
  if "focus" not in views:
    raise ConfigError(f"the red-light detector reads the focus view; data.views is {views}")
  return views.index("focus")


def detector_metrics(logits, labels, speed) -> dict:
  """Batch accuracy / recall / precision at 0.5 and the recall on moving frames (f32 scalars)."""
  said = logits > 0.0
  red = labels > 0
  moving = speed > MOVING_MPS
  hits = jnp.sum(said & red)
  safe = lambda num, den: num / jnp.maximum(den, 1)  # noqa: E731
  return {"accuracy": jnp.mean(said == red), "recall": safe(hits, jnp.sum(red)),
          "precision": safe(hits, jnp.sum(said)),
          "recall_moving": safe(jnp.sum(said & red & moving), jnp.sum(red & moving)),
          "label_rate": jnp.mean(red.astype(jnp.float32))}


def build_task(config) -> tuple[Task, RedLightDetector]:
  detector = RedLightDetector(**config.model.light_detector.to_dict())
  view = focus_index(config.data.views)
  batches = pipeline.make_iterator(config.data, 1)
  height, width = (int(s) for s in config.data.view_size)
  positive_weight = float(config.loss.positive_weight)

  def init_fn(key):
    return detector.init(key, jnp.zeros((1, height, width, 3), jnp.uint8))

  def loss_fn(params, batch, rng, model_state):
    del rng, model_state
    logits = detector.apply({"params": params}, batch["images"][:, view])
    labels = batch["red_light_ahead"].astype(jnp.float32)
    per_frame = optax.sigmoid_binary_cross_entropy(logits, labels)
    loss = jnp.mean(per_frame * (1.0 + (positive_weight - 1.0) * labels))
    return loss, detector_metrics(logits, labels, batch["speed"])

  return Task(init_fn=init_fn, loss_fn=loss_fn, batches=batches,
              examples_per_step=config.data.batch_size), detector
