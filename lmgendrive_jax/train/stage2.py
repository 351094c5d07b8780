"""Tasks: stage 2 (single-step planning and generation) and stage 3 (multi-step long horizon).

One loss for both (`configs/stage2.py`, `configs/stage3.py`): dense per-frame planning over the
clip (waypoint L1, its lateral part counted `waypoint_lateral_weight` times, + `completed_weight`
x completed-flag cross-entropy, valid frames only) plus flow matching of the world generator on
the futures of `world_anchors` frames of every `world_clip_stride`-th clip: for an anchor frame
a, the clean latents of frames a - Fc + 1 .. a are the context, the frames at `future_index[a]` (the data's `future_offsets`) are the targets,
and the LLM's generation-query states of frame a are the condition. Stage 2 uses one anchor per
clip (the next chunk), stage 3 several along a long clip. The VAE is frozen (its latents carry
no gradient), and so is the vision encoder with `model.lmgendrive.freeze_vision` (stop_gradient
inside the model, zero updates in the optimizer; every preset).
With `loss.visual_probe_weight` > 0 (the model built with `visual_probe`), the waypoint L1 of the
probe that reads the Q-Former's tokens alone is added: it trains the Q-Former to carry the lane
geometry and the car's offset, which the planning loss alone did not teach a random-init Q-Former
within a CPU run (`bench/planner_inputs.py`: waypoints unchanged with every image zeroed).
With `loss.layout_probe_weight` > 0, the KL of the layout probe (every view's road layout drawn
from the same tokens, `models/layout_probe.py`) against the frames' `view_layout` labels is added.

Every `train.sample_every` steps the loop logs `make_sample_fn`'s image: for the batch's first
clip, the world generator's future frames at its last anchor-eligible frame, drawn with the
configured sampler from exactly the context and condition the flow loss uses there, tiled per
future frame as the generated views over the true ones.
"""

from __future__ import annotations

import einops
import jax
import jax.numpy as jnp
import optax

from lmgendrive_jax import diffusion
from lmgendrive_jax.data import pipeline
from lmgendrive_jax.errors import ConfigError
from lmgendrive_jax.models.lmgendrive import LMGenDrive, WorldView
from lmgendrive_jax.models.vae import unit_to_images
from lmgendrive_jax.train import trained
from lmgendrive_jax.train.checkpoints import restore_subtrees
from lmgendrive_jax.train.losses_vision import layout_kl, object_cell_weights
from lmgendrive_jax.train.loop import Task

MODEL_INPUTS = ("images", "speed", "instruction_tokens", "instruction_mask", "notice_tokens",
                "notice_mask", "notice_frame", "frame_mask")


def model_inputs(batch: dict) -> tuple:
  """The batch keys `LMGenDrive.__call__` takes, in its order."""
  return tuple(batch[k] for k in MODEL_INPUTS)


def _masked_mean(x, mask):
  mask = jnp.broadcast_to(mask, x.shape).astype(jnp.float32)
  return (x * mask).sum() / jnp.maximum(mask.sum(), 1.0)


def known_waypoints(batch) -> jax.Array:
  """bool[B, T, W]: waypoints of valid frames not past the route's end nor driven with steering
  noise."""
  return batch["frame_mask"][..., None] & batch["waypoint_mask"]


def waypoint_axis_l1(waypoints, batch) -> tuple[jax.Array, jax.Array]:
  """(lateral, forward): mean L1 (metres) of the x (right) and y (forward) parts of waypoints
  f32[B, T, W, 2] over the batch's known waypoints."""
  error = jnp.abs(waypoints - batch["waypoints"])
  known = known_waypoints(batch)
  return _masked_mean(error[..., 0], known), _masked_mean(error[..., 1], known)


def weighted_l1(lateral, forward, lateral_weight: float = 1.0):
  """The waypoint L1 from its two parts (`waypoint_axis_l1`), the lateral one counted
  `lateral_weight` times; 1.0 gives the plain mean over both coordinates."""
  return (lateral_weight * lateral + forward) / 2


def layout_probe_kl(logits: jax.Array, batch, loss_config) -> jax.Array:
  """The layout probe's logits f32[B, T, V, r, c, C] vs the batch's per-view layouts: the KL
  over valid frames with a road map, each cell weighing 1 + `loss.layout_probe_object_boost` x
  its object share (stage 2 and the Q-Former alignment alike)."""
  has_map = batch["frame_mask"] & batch["view_layout_mask"]
  boost = float(loss_config.get("layout_probe_object_boost", 0.0))
  return layout_kl(logits, batch["view_layout"], has_map,
                   object_cell_weights(batch["view_layout"], boost))


def waypoint_l1(waypoints, batch, lateral_weight: float = 1.0):
  """Mean L1 (metres) of waypoints f32[B, T, W, 2] over the batch's known waypoints, the lateral
  (x) errors counted `lateral_weight` times."""
  return weighted_l1(*waypoint_axis_l1(waypoints, batch), lateral_weight)


def instruction_probe_loss(logits, batch) -> tuple[jax.Array, jax.Array]:
  """(cross-entropy, accuracy) of the instruction probe, logits f32[B, T, C], against each
  example's instruction id int32[B], over its valid frames."""
  labels = jnp.broadcast_to(batch["instruction_id"][:, None], logits.shape[:2])
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
  return _masked_mean(ce, batch["frame_mask"]), _masked_mean(correct, batch["frame_mask"])


def planning_losses(waypoints, completed_logit, batch):
  """((lateral, forward) waypoint L1 in metres over the known waypoints of valid frames
  (`waypoint_mask`: not past the route's end, not driven with steering noise), completed-flag CE
  over valid frames)."""
  completed_ce = _masked_mean(optax.sigmoid_binary_cross_entropy(
      completed_logit, batch["completed"].astype(jnp.float32)), batch["frame_mask"])
  return waypoint_axis_l1(waypoints, batch), completed_ce


def world_targets(images, generation_states, batch, anchors, context_frames):
  """Gathers (context, future) frames, future_mask and cond for anchor frames; the anchors fold
  into the batch. Only these frames are VAE-encoded afterwards, not the whole clip.

  images u8[B, T, V, H, W, 3], generation_states f32[B, T, G, D], anchors int32[B, K] ->
  context u8[B*K, Fc, V, H, W, 3], future u8[B*K, F, ...], future_mask [B*K, F], cond [B*K, G, D].
  """
  def per_example(frames, gen, future_index, future_mask, anchor_row):
    def one(a):
      context_idx = jnp.clip(a - jnp.arange(context_frames - 1, -1, -1), 0)
      return frames[context_idx], frames[future_index[a]], future_mask[a], gen[a]
    return jax.vmap(one)(anchor_row)
  context, future, mask, cond = jax.vmap(per_example)(
      images, generation_states, batch["future_index"], batch["future_mask"], anchors)
  fold = lambda x: x.reshape(-1, *x.shape[2:])  # noqa: E731
  return fold(context), fold(future), fold(mask), fold(cond)


def anchor_eligible(batch) -> jax.Array:
  """bool[B, T]: valid frames with at least one valid future frame."""
  return batch["frame_mask"] & jnp.any(batch["future_mask"], axis=-1)


def sample_anchors(key, batch, num_anchors):
  """int32[B, K]: frames with at least one valid future, drawn uniformly (with replacement)."""
  logits = jnp.where(anchor_eligible(batch), 0.0, -1e9)
  return jax.random.categorical(key, logits[:, None, :], axis=-1,
                                shape=(logits.shape[0], num_anchors))


WORLD_KEYS = ("images", "frame_mask", "future_index", "future_mask")


def world_clips(batch: dict, generation_states: jax.Array, stride: int) -> tuple[dict, jax.Array]:
  """Every `stride`-th clip of the batch, for the world loss: the clips' WORLD_KEYS and their
  generation states [B / stride, T, G, D]. Planning still uses every clip; the VAE encode and the
  DiT (most of a CPU step) see 1 / stride of them. A strided slice, not the first B / stride
  clips, so that each data-parallel shard keeps its share of the world work."""
  if stride < 1 or batch["images"].shape[0] % stride:
    raise ValueError(f"loss.world_clip_stride={stride} must be >= 1 and divide the batch "
                     f"({batch['images'].shape[0]} clips)")
  return {k: batch[k][::stride] for k in WORLD_KEYS}, generation_states[::stride]


def make_loss_fn(model: LMGenDrive, config):
  flow = diffusion.flow_config(config.model.flow)
  world = WorldView(model)
  context_frames = config.model.chunk.context_frames
  if config.loss.visual_probe_weight > 0 and not model.visual_probe:
    raise ValueError(f"loss.visual_probe_weight={config.loss.visual_probe_weight} needs the model "
                     "built with model.lmgendrive.visual_probe=True")
  if config.loss.layout_probe_weight > 0 and (
      not model.has_layout_probe
      or tuple(config.data.view_layout_size) != tuple(model.layout_probe_size)):
    raise ValueError(f"loss.layout_probe_weight={config.loss.layout_probe_weight} needs "
                     f"model.lmgendrive.layout_probe_size (now {tuple(model.layout_probe_size)}) "
                     f"> 0 and equal to data.view_layout_size (now "
                     f"{tuple(config.data.view_layout_size)})")

  instruction_weight = float(config.loss.get("instruction_probe_weight", 0.0))
  if instruction_weight > 0 and model.instruction_probe_classes <= 0:
    raise ValueError(f"loss.instruction_probe_weight={instruction_weight} needs "
                     "model.lmgendrive.instruction_probe_classes > 0 (the instruction vocabulary "
                     "size, sim/instructions.py: NUM_INSTRUCTIONS)")
  lateral_weight = config.loss.waypoint_lateral_weight

  def loss_fn(params, batch, rng, model_state):
    variables = {"params": params, **model_state}
    waypoints, out = model.apply(variables, *model_inputs(batch))
    (lateral_l1, forward_l1), completed_ce = planning_losses(waypoints, out["completed_logit"],
                                                             batch)
    loss = (weighted_l1(lateral_l1, forward_l1, lateral_weight)
            + config.loss.completed_weight * completed_ce)
    metrics = {"waypoint_l1": weighted_l1(lateral_l1, forward_l1),
               "waypoint_lateral_l1": lateral_l1, "completed_ce": completed_ce}
    if config.loss.visual_probe_weight > 0:
      probe_l1 = waypoint_axis_l1(out["probe_waypoints"], batch)
      loss = loss + config.loss.visual_probe_weight * weighted_l1(*probe_l1, lateral_weight)
      metrics["visual_probe_l1"] = weighted_l1(*probe_l1)
      metrics["visual_probe_lateral_l1"] = probe_l1[0]
    if config.loss.layout_probe_weight > 0:
      metrics["layout_probe_kl"] = layout_probe_kl(out["probe_layout_logits"], batch,
                                                   config.loss)
      loss = loss + config.loss.layout_probe_weight * metrics["layout_probe_kl"]
    if instruction_weight > 0:
      metrics["instruction_ce"], metrics["instruction_accuracy"] = instruction_probe_loss(
          out["instruction_logits"], batch)
      loss = loss + instruction_weight * metrics["instruction_ce"]
    if config.loss.world_weight > 0:
      anchor_key, flow_key = jax.random.split(rng)
      clips, generation_states = world_clips(batch, out["generation_states"],
                                             config.loss.world_clip_stride)
      anchors = sample_anchors(anchor_key, clips, config.loss.world_anchors)
      context, future, future_mask, cond = world_targets(
          clips["images"], generation_states, clips, anchors, context_frames)
      frames = jnp.concatenate([context, future], axis=1)
      latents = model.apply(variables, frames, method=LMGenDrive.encode_latents)
      context, future = latents[:, :context_frames], latents[:, context_frames:]
      flow_loss, _ = diffusion.flow_matching_loss(world, variables, context, future, cond,
                                                  flow_key, flow, future_mask=future_mask)
      loss = loss + config.loss.world_weight * flow_loss
      metrics["flow"] = flow_loss
    return loss, metrics

  return loss_fn


def last_anchor(batch) -> jax.Array:
  """int32[B, 1]: each clip's last anchor-eligible frame (0 if none)."""
  frames = jnp.arange(batch["frame_mask"].shape[1])
  return jnp.max(jnp.where(anchor_eligible(batch), frames, 0), axis=1,
                 keepdims=True).astype(jnp.int32)


def tile_sample(generated: jax.Array, truth: jax.Array) -> jax.Array:
  """generated, truth uint8[F, V, H, W, 3] -> uint8[F * 2 * H, V * W, 3] (per frame: the
  generated views over the true ones)."""
  pairs = jnp.stack([generated, truth], axis=1)  # [F, 2, V, H, W, 3]
  return einops.rearrange(pairs, "f r v h w c -> (f r h) (v w) c")


def make_sample_fn(model: LMGenDrive, config):
  """sample(params, model_state, batch, rng) -> uint8[F * 2 * H, V * W, 3] for the first clip."""
  flow = diffusion.flow_config(config.model.flow)
  world = WorldView(model)
  context_frames = config.model.chunk.context_frames

  def sample(params, model_state, batch, rng):
    variables = {"params": params, **model_state}
    first = jax.tree.map(lambda x: x[:1], batch)
    _, out = model.apply(variables, *model_inputs(first))
    context, future, _, cond = world_targets(first["images"], out["generation_states"], first,
                                             last_anchor(first), context_frames)
    latents = model.apply(variables, context, method=LMGenDrive.encode_latents)
    generated = diffusion.sample_future(world, variables, latents, cond, rng, future.shape[1],
                                        flow)
    images = model.apply(variables, generated, method=LMGenDrive.decode_latents)
    return tile_sample(unit_to_images(images)[0], future[0])

  return sample


def check_restored_encoder(config) -> None:
  """Raises ConfigError when an init_from entry restores `vision` from a run whose encoder was
  built differently from ours (`model.lmgendrive.vision`). Why: settings such as the backbone's
  output_stride change no parameter shape, so the weights would load and silently compute other
  features than those they were trained on."""
  ours = config.model.lmgendrive.vision.to_dict()
  for entry in config.init_from:
    if entry["root"] != "params" or not {"vision", ""} & set(dict(entry["subtrees"])):
      continue  # "": the whole model (configs/stage2.py: from_run)
    differ = trained.encoder_differences(entry["run_dir"], ours)
    if differ:
      listed = ", ".join(f"{k}: {a!r} there, {b!r} here" for k, (a, b) in differ.items())
      raise ConfigError(f"init_from restores the vision encoder from {entry['run_dir']}, built "
                        f"with other settings ({listed}); set model.lmgendrive.vision.<key> to "
                        f"that run's values")


def make_init_from(config):
  """Fresh TrainState -> with the previous stage's weights (`config.init_from` entries)."""
  check_restored_encoder(config)

  def init_from(state):
    params, model_state = state.params, state.model_state
    for entry in config.init_from:
      root, skip, subtrees = entry["root"], entry.get("skip") or None, dict(entry["subtrees"])
      if root == "params":
        params = restore_subtrees(entry["run_dir"], subtrees, params, root, skip,
                                  entry.get("droppable") or None)
      else:
        collection = root.split("/", 1)[1]
        model_state = {**model_state, collection: restore_subtrees(
            entry["run_dir"], subtrees, model_state[collection], root, skip)}
    return state.replace(params=params, model_state=model_state)
  return init_from


def dummy_inputs(config, stage: int) -> tuple:
  """Batch-1 zeros shaped like the pipeline's batches (for init)."""
  spec = pipeline.batch_spec(config.data, stage)
  zeros = {k: jnp.zeros((1,) + shape[1:], dtype) for k, (shape, dtype) in spec.items()}
  zeros["notice_frame"] = jnp.full((1,), -1, jnp.int32)
  return model_inputs(zeros)


def build_task(config) -> tuple[Task, LMGenDrive]:
  stage = int(config.stage[-1])
  model = LMGenDrive(**config.model.lmgendrive.to_dict())
  batches = pipeline.make_iterator(config.data, stage)
  inputs = dummy_inputs(config, stage)
  return Task(
      init_fn=lambda key: model.init(key, *inputs, method=LMGenDrive.initialize),
      loss_fn=make_loss_fn(model, config), batches=batches,
      init_from=make_init_from(config) if config.init_from else None,
      sample_fn=make_sample_fn(model, config),
      examples_per_step=config.data.batch_size), model
