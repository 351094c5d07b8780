"""Task: Q-Former alignment (`configs/qformer.py`), between stage 1 and stage 2.

The from-scratch Q-Former of the embedded default compresses each frame's vision tokens to a few
LLM-width tokens. Trained only inside stage 2, it sees a few thousand frames, and its tokens never
came to carry where the car sits in its lane: the planner, and even a probe reading those tokens
alone, kept any offset or heading error they were given (bench/lane_response.py: slope 1.00).
An MLP on the frozen encoder's tokens, trained on the same data and loss with ~250k frame
samples, steers back. So, as BLIP-2 trains its Q-Former against a frozen image encoder before
connecting it to the LLM, this run trains the Q-Former and the probes on its tokens
(`models/lmgendrive.py`: the visual probe's waypoints, the layout probe's per-view road layout)
on single frames, and stage 2 restores them (`configs/stage2.py: init_from`).

The vision encoder is frozen, so its tokens are computed once: `TokenCache` runs the stage-1
encoder over up to `data.cache_frames` frames of this host's shard (centre crops, no colour
jitter: the evaluation views) and keeps their tokens and labels in host memory. Steps then draw
`data.batch_size` frames from it, seeded by (seed, step, host): the run resumes exactly, and a
step costs the Q-Former and the probes only (thousands of samples a second on a CPU).

Batch (per host): vision_tokens f32[B, 1, Nv, Dv], waypoints f32[B, 1, 5, 2], waypoint_mask
bool[B, 1, 5], frame_mask bool[B, 1] (all True), and with the layout probe view_layout
f32[B, 1, V, r, c, C], view_layout_mask bool[B, 1].
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from lmgendrive_jax.data import pipeline, sources
from lmgendrive_jax.errors import ConfigError, DataError
from lmgendrive_jax.models.lmgendrive import LMGenDrive
from lmgendrive_jax.models.vision import VisionEncoder
from lmgendrive_jax.train import stage2, trained
from lmgendrive_jax.train.loop import Task

LABELS = ("waypoints", "waypoint_mask", "view_layout", "view_layout_mask")


class TokenCache:
  """This host's frames as frozen vision tokens + labels, and seeded batches drawn from them
  (the trainer's `BatchSource`)."""

  def __init__(self, tokens: np.ndarray, labels: dict[str, np.ndarray], batch_size: int,
               seed: int, fingerprint: dict):
    if len(tokens) == 0:
      raise DataError("the Q-Former alignment cache holds no frames: the data split is empty")
    self.tokens, self.labels = tokens, labels
    self.batch_size, self.seed, self.fingerprint = batch_size, seed, fingerprint
    self.step = 0

  @classmethod
  def build(cls, model: LMGenDrive, vision_variables: dict, data, max_frames: int,
            local_batch_size: int, seed: int) -> "TokenCache":
    """Runs the frozen encoder over up to `max_frames` (0: all) of this host's frames."""
    data = data.copy_and_resolve_references()
    with data.unlocked():
      data.random_crop, data.colour_jitter = False, 0.0
    # train=True for the seeded shuffle (a cache of the first frames in record order would hold
    # the first routes only); without crops or jitter the views are the evaluation views.
    frames = pipeline.make_iterator(data, 1, train=True, num_epochs=1)
    # The encoder alone, as LMGenDrive.encode_frames runs it (speed zeroed without speed_input).
    encoder = VisionEncoder(**dict(model.vision))
    encode = jax.jit(lambda variables, images, speed: encoder.apply(
        variables, images[:, None], (speed if model.speed_input else 0.0 * speed)[:, None])[0][
            :, 0])
    tokens, labels, count, step = [], {k: [] for k in LABELS}, 0, 0
    limit = max_frames if max_frames > 0 else None
    # The bar's end: this host's share of the split, if fewer (a cap above it caches them all);
    # an upper bound, as the frames the pipeline drops (drop_blocked) are only known on reading.
    shard_frames = -(-len(sources.frame_source(data.data_dir, data.split)) // jax.process_count())
    with tqdm(total=min(limit or shard_frames, shard_frames), desc="qformer cache",
              unit="frame") as bar:
      while limit is None or count < limit:
        try:
          batch = frames.batch(step)
        except StopIteration:
          break
        step += 1
        keep = len(batch["speed"]) if limit is None else min(len(batch["speed"]), limit - count)
        tokens.append(np.asarray(encode(vision_variables, batch["images"], batch["speed"]))[:keep])
        for key in LABELS:
          if key in batch:
            labels[key].append(np.asarray(batch[key])[:keep])
        count += keep
        bar.update(keep)
    fingerprint = {"kind": "qformer_tokens", "frames": count, "seed": seed,
                   "config_sha": hashlib.sha256(json.dumps(data.to_dict(), sort_keys=True,
                                                           default=str).encode()).hexdigest()[:16]}
    return cls(np.concatenate(tokens) if tokens else np.zeros((0,)),
               {k: np.concatenate(v) for k, v in labels.items() if v}, local_batch_size, seed,
               fingerprint)

  def batch(self, step: int) -> dict:
    if step != self.step:
      raise DataError(f"the Q-Former token cache is at step {self.step} but step {step} was "
                      f"asked for; restore its state first")
    rng = np.random.default_rng([self.seed, step, jax.process_index()])
    index = rng.integers(0, len(self.tokens), self.batch_size)
    self.step += 1
    out = {"vision_tokens": self.tokens[index][:, None],
           "frame_mask": np.ones((self.batch_size, 1), bool)}
    out.update({k: v[index][:, None] for k, v in self.labels.items()})
    return out

  def get_state(self) -> dict:
    return {"step": self.step, "fingerprint": self.fingerprint}

  def set_state(self, state: dict) -> None:
    if not state:
      return
    pipeline.check_fingerprint(state, self.fingerprint, "the Q-Former run", "token cache",
                               "resume with the same data config and stage-1 run")
    self.step = int(state["step"])


def _stage1_run(config) -> str:
  for entry in config.init_from:
    if entry["root"] == "params" and "vision" in entry["subtrees"]:
      return entry["run_dir"]
  raise ConfigError("configs/qformer.py needs an init_from entry restoring `vision` from the "
                    "stage-1 run (its encoder makes the token cache)")


def make_loss_fn(model: LMGenDrive, config):
  weights = config.loss
  if weights.visual_probe_weight <= 0 and weights.layout_probe_weight <= 0:
    raise ConfigError("Q-Former alignment trains through its probes: set loss.visual_probe_weight "
                      "or loss.layout_probe_weight > 0")
  if weights.layout_probe_weight > 0 and (
      tuple(config.data.view_layout_size) != tuple(model.layout_probe_size)):
    raise ConfigError(f"loss.layout_probe_weight needs data.view_layout_size "
                      f"{tuple(config.data.view_layout_size)} == model.lmgendrive."
                      f"layout_probe_size {tuple(model.layout_probe_size)}")

  def loss_fn(params, batch, rng, model_state):
    del rng
    out = model.apply({"params": params, **model_state}, batch["vision_tokens"],
                      method=LMGenDrive.probe_outputs)
    loss, metrics = jnp.float32(0.0), {}
    if weights.visual_probe_weight > 0:
      lateral, forward = stage2.waypoint_axis_l1(out["probe_waypoints"], batch)
      loss = loss + weights.visual_probe_weight * stage2.weighted_l1(
          lateral, forward, weights.waypoint_lateral_weight)
      metrics.update(visual_probe_l1=stage2.weighted_l1(lateral, forward),
                     visual_probe_lateral_l1=lateral)
    if weights.layout_probe_weight > 0:
      metrics["layout_probe_kl"] = stage2.layout_probe_kl(out["probe_layout_logits"], batch,
                                                          weights)
      loss = loss + weights.layout_probe_weight * metrics["layout_probe_kl"]
    return loss, metrics

  return loss_fn


class LazyBatches:
  """A batch source built on its first batch: a rerun of a finished run (the quickstart's resume)
  restores its last checkpoint and trains no step, so it never runs the encoder over the cache's
  frames (~8 min for the big preset's 15k). A restored state waits for the build, which then
  checks its fingerprint; never built, the source hands that state back unchanged."""

  def __init__(self, build: Callable[[], TokenCache]):
    self._build, self._source, self._state = build, None, {}

  def _built(self) -> TokenCache:
    if self._source is None:
      self._source = self._build()
      self._source.set_state(self._state)
    return self._source

  def batch(self, step: int) -> dict:
    return self._built().batch(step)

  def get_state(self) -> dict:
    return self._state if self._source is None else self._source.get_state()

  def set_state(self, state: dict) -> None:
    if self._source is None:
      self._state = dict(state or {})
    else:
      self._source.set_state(state)


def build_task(config) -> tuple[Task, LMGenDrive]:
  model = LMGenDrive(**config.model.lmgendrive.to_dict())
  perception, perception_variables, _ = trained.load_perception(_stage1_run(config))
  del perception
  vision_variables = {"params": perception_variables["params"]["encoder"],
                      "batch_stats": perception_variables["batch_stats"].get("encoder", {})}
  shards = jax.process_count()
  if config.data.batch_size % shards:
    raise ConfigError(f"data.batch_size={config.data.batch_size} is not divisible by the "
                      f"{shards} hosts")
  cache = LazyBatches(lambda: TokenCache.build(
      model, vision_variables, config.data, int(config.data.cache_frames),
      config.data.batch_size // shards, int(config.seed)))
  inputs = stage2.dummy_inputs(config, 2)
  return Task(
      init_fn=lambda key: model.init(key, *inputs, method=LMGenDrive.initialize),
      loss_fn=make_loss_fn(model, config), batches=cache,
      init_from=stage2.make_init_from(config),
      examples_per_step=config.data.batch_size), model

