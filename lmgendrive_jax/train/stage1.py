"""Task: stage 1, vision pretraining (`configs/stage1.py`).

Trains the multi-view vision encoder with LMDrive's perception heads and losses
(`train/losses_vision.py`) on single frames, and, for the embedded default, the tiny VAE from
scratch on the same views (`models/vae.py: vae_loss`). Parameters: `perception/{encoder, heads}`
and `vae/`; stage 2 takes `perception/encoder` as its frozen `vision` and `vae` as its VAE.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lmgendrive_jax.data import pipeline
from lmgendrive_jax.models.vae import AutoencoderKL, vae_loss
from lmgendrive_jax.models.vision import PerceptionModel
from lmgendrive_jax.train.loop import Task
from lmgendrive_jax.train.losses_vision import stage1_loss


def _models(config):
  perception = PerceptionModel(**config.model.vision.to_dict())
  vae = AutoencoderKL(**config.model.vae.to_dict()) if config.model.train_vae else None
  return perception, vae


def build_task(config) -> tuple[Task, PerceptionModel]:
  perception, vae = _models(config)
  batches = pipeline.make_iterator(config.data, 1)
  spec = pipeline.batch_spec(config.data, 1)
  views, height, width = spec["images"][0][1:4]

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
    predictions, _ = perception.apply(variables, batch["images"][:, None],
                                      batch["speed"][:, None], batch["target_point"][:, None])
    labels = {k: batch[k][:, None] for k in ("detection", "waypoints", "traffic_light",
                                              "stop_sign")}
    loss, metrics = stage1_loss(predictions, labels)
    metrics = {f"perception/{k}": v for k, v in metrics.items()}
    if vae is not None:
      flat_views = batch["images"].reshape(-1, height, width, 3)
      recon_loss, vae_metrics = vae_loss(vae, {"params": params["vae"]}, flat_views, rng,
                                         config.loss.kl_weight)
      loss = loss + config.loss.vae_weight * recon_loss
      metrics.update({f"vae/{k}": v for k, v in vae_metrics.items() if k != "reconstruction"})
    return loss, metrics

  return Task(init_fn=init_fn, loss_fn=loss_fn, batches=batches,
              examples_per_step=config.data.batch_size), perception
