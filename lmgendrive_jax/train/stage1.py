"""Task: stage 1, vision pretraining (`configs/stage1.py`).

Trains the multi-view vision encoder with LMDrive's perception heads and losses
(`train/losses_vision.py`) on single frames (the small presets add the BEV road-layout head,
weight `loss.road_layout_weight`, and the per-view road-layout head, `loss.view_layout_weight`),
and, for the embedded default, the tiny VAE from
scratch on the same views (`models/vae.py: vae_loss`). Parameters: `perception/{encoder, heads}`
and `vae/`; stage 2 takes `perception/encoder` as its frozen `vision` and `vae` as its VAE.

The VAE sees `loss.vae_views_per_frame` random views of each frame, each as a random
`loss.vae_crop` square crop (0: all views, full size). Being convolutional (its one attention
block is over latent positions), it learns the same reconstruction from crops as from whole
views, at a fraction of the cost: on a CPU, the whole 5 x 128 x 128 views of a batch of 16 make
the VAE ~12x the perception model's FLOPs and 40 s a step; one 64 x 64 crop per frame, ~1/20 of
that. Stable Diffusion's VAE was trained on crops the same way.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lmgendrive_jax.data import pipeline
from lmgendrive_jax.errors import ConfigError
from lmgendrive_jax.models.vae import AutoencoderKL, vae_loss
from lmgendrive_jax.models.vision import PerceptionModel
from lmgendrive_jax.train.loop import Task
from lmgendrive_jax.train.losses_vision import LMDRIVE_WEIGHTS, stage1_loss


LABEL_KEYS = ("detection", "waypoints", "waypoint_mask", "traffic_light", "stop_sign",
              "red_light_ahead", "road_layout", "road_layout_mask", "view_layout",
              "view_layout_mask")


def _models(config):
  perception = PerceptionModel(**config.model.vision.to_dict())
  vae = AutoencoderKL(**config.model.vae.to_dict()) if config.model.train_vae else None
  return perception, vae


def vae_training_views(images: jax.Array, key: jax.Array, views_per_frame: int,
                       crop: int) -> jax.Array:
  """images uint8[B, V, H, W, 3] -> uint8[B * k, c, c, 3]: k = views_per_frame random distinct
  views of each frame (all V when 0), each cropped to a random c x c square (full when 0)."""
  batch, num_views, height, width = images.shape[:4]
  view_key, y_key, x_key = jax.random.split(key, 3)
  if 0 < views_per_frame < num_views:
    order = jnp.argsort(jax.random.uniform(view_key, (batch, num_views)), axis=1)
    images = jnp.take_along_axis(images, order[:, :views_per_frame, None, None, None], axis=1)
  flat = images.reshape(-1, height, width, 3)
  if crop <= 0 or (crop >= height and crop >= width):
    return flat
  ch, cw = min(crop, height), min(crop, width)
  ys = jax.random.randint(y_key, (flat.shape[0],), 0, height - ch + 1)
  xs = jax.random.randint(x_key, (flat.shape[0],), 0, width - cw + 1)
  return jax.vmap(lambda im, y, x: jax.lax.dynamic_slice(im, (y, x, 0), (ch, cw, 3)))(flat, ys, xs)


def drop_target_points(target_point: jax.Array, key: jax.Array, rate: float) -> jax.Array:
  """f32[B, 2] -> the same with a random `rate` of the rows zeroed ("no target point").

  The waypoint head reads the route's target point; with it, a car off the lane centre can be
  steered back from the target point's direction alone, and the encoder never has to see the
  lane. Stages 2-3 drive from language, without a target point, on the frozen encoder's tokens:
  dropping it here makes the waypoint tokens carry the drivable path seen in the cameras.
  """
  if rate <= 0.0:
    return target_point
  keep = jax.random.uniform(key, target_point.shape[:1]) >= rate
  return jnp.where(keep[:, None], target_point, 0.0)


def build_task(config) -> tuple[Task, PerceptionModel]:
  perception, vae = _models(config)
  batches = pipeline.make_iterator(config.data, 1)
  spec = pipeline.batch_spec(config.data, 1)
  views, height, width = spec["images"][0][1:4]

  weights = dict(LMDRIVE_WEIGHTS)
  if perception.road_layout_classes > 0:
    weights["road_layout"] = float(config.loss.road_layout_weight)
  if perception.view_layout_classes > 0:
    weights["view_layout"] = float(config.loss.view_layout_weight)
  if perception.red_ahead_head:
    if tuple(config.data.views)[-1] != "focus":
      raise ConfigError(f"model.vision.red_ahead_head reads the last view, which must be focus; "
                        f"data.views is {tuple(config.data.views)}")
    if float(config.loss.get("red_light_ahead_weight", 0.0)) > 0:
      weights["red_light_ahead"] = float(config.loss.red_light_ahead_weight)

  def init_fn(key):
    images = jnp.zeros((1, 1, views, height, width, 3), jnp.uint8)
    perception_vars = perception.init(key, images, jnp.zeros((1, 1)), jnp.zeros((1, 1, 2)))
    variables = {"params": {"perception": perception_vars["params"]},
                 "batch_stats": {"perception": perception_vars.get("batch_stats", {})}}
    if vae is not None:
      variables["params"]["vae"] = vae.init(key, jnp.zeros((1, height, width, 3)))["params"]
    return variables

  def loss_fn(params, batch, rng, model_state):
    variables = {"params": params["perception"],
                 "batch_stats": model_state["batch_stats"]["perception"]}
    rng, drop_key = jax.random.split(rng)
    target_point = drop_target_points(batch["target_point"], drop_key,
                                      config.loss.target_point_dropout)
    # train=True: a backbone trained from scratch (frozen_batch_norm=False) normalises by the
    # batch and updates its running statistics, which stages 2-3 then use frozen.
    (predictions, _), updated = perception.apply(
        variables, batch["images"][:, None], batch["speed"][:, None], target_point[:, None],
        train=True, mutable=["batch_stats"])
    labels = {k: batch[k][:, None] for k in LABEL_KEYS if k in batch}
    loss, metrics = stage1_loss(predictions, labels, weights=weights,
                                view_object_boost=float(config.loss.get("view_object_boost", 0.0)))
    metrics = {f"perception/{k}": v for k, v in metrics.items()}
    if vae is not None:
      view_key, noise_key = jax.random.split(rng)
      vae_images = vae_training_views(batch["images"], view_key,
                                      config.loss.vae_views_per_frame, config.loss.vae_crop)
      recon_loss, vae_metrics = vae_loss(vae, {"params": params["vae"]}, vae_images, noise_key,
                                         config.loss.kl_weight)
      loss = loss + config.loss.vae_weight * recon_loss
      metrics.update({f"vae/{k}": v for k, v in vae_metrics.items() if k != "reconstruction"})
    new_state = {**model_state, "batch_stats": {"perception": updated.get("batch_stats", {})}}
    return loss, (metrics, new_state)

  return Task(init_fn=init_fn, loss_fn=loss_fn, batches=batches,
              examples_per_step=config.data.batch_size, updates_model_state=True), perception
