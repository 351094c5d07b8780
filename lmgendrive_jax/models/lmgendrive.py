"""LMGenDrive: vision encoder -> Q-Former -> LLM (+LoRA) with action and generation queries ->
action head (waypoints, instruction completed) and world generator (future multi-view video).

Data flow (DESIGN.md sec. 2), per training example:
  images uint8[B, T, V, H, W, 3], speed f32[B, T]
    -> VisionEncoder (frozen after stage 1: stop_gradient, no backward through it)
       tokens f32[B, T, Nv, Dv]
    -> QFormer: f32[B, T, Nq, D]
    -> frame blocks [Nq visual | A action queries | G generation queries] f32[B, T, Nq+A+G, D]
    -> LLM over [BOS + instruction] ([notice]) [frame 0] ... [frame T-1], block-causal
    -> action states f32[B, T, A, D] (-> ViewReader over the frame's encoder tokens, with
       `view_reader_heads`) -> ActionHead -> waypoints f32[B, T, 5, 2], completed logit
    -> generation states f32[B, T, G, D] -> world generator's conditioning tokens
  With `visual_probe`, a second action head reads the frame's visual tokens alone (no LLM, no
  instruction) -> probe waypoints f32[B, T, 5, 2]: a training-only auxiliary target that makes the
  randomly initialised Q-Former pass on what the cameras show (BLIP-2 likewise trains its Q-Former
  to extract image content before connecting it to the LLM). Off the control path. With
  `layout_probe_size`, a layout probe draws every view's road layout from the same tokens
  (`models/layout_probe.py`), which asks them where the lanes are. With
  `instruction_probe_classes`, a linear head names the instruction from each frame's action
  states (training-only), so those states carry the words that pick the branch at a junction.

Online planning (`prefill` + `extend`): the instruction prefix is encoded once into the KV cache,
each new frame's block extends it, and only the newest frame's action states are read, so the
cost of a control step does not grow with the history length.
"""

from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from lmgendrive_jax.models.action_head import ActionHead
from lmgendrive_jax.models.layout_probe import LayoutProbe
from lmgendrive_jax.models.llm import LLM
from lmgendrive_jax.models.qformer import QFormer
from lmgendrive_jax.models.sequence import block_mask_ar, build_sequence
from lmgendrive_jax.models.vae import AutoencoderKL, images_to_unit
from lmgendrive_jax.models.view_reader import ViewReader
from lmgendrive_jax.models.vision import VisionEncoder
from lmgendrive_jax.models.world import WorldDiT
from lmgendrive_jax.nn.linear import Linear


class LMGenDrive(nn.Module):
  """The unified model. Sub-model fields come from the presets in `config.py`."""
  vision: Mapping[str, Any]
  qformer: Mapping[str, Any]
  llm: Mapping[str, Any]
  action_head: Mapping[str, Any]
  world: Mapping[str, Any] | None = None
  vae: Mapping[str, Any] | None = None
  num_action_queries: int = 4
  num_generation_queries: int = 4
  freeze_vision: bool = True
  visual_probe: bool = False
  # False: the vision encoder is given speed 0 for every frame in stages 2-3 (training, planning
  # and generation alike). Behind a planner that hardly reads the cameras yet, the ego speed is a
  # shortcut: stopped frames are ~99% followed by more stopping (red lights, pedestrians), so the
  # model learns "keep the current speed" and never pulls away (the inertia problem of
  # behaviour cloning, Codevilla et al. 2019). Without it, when to go must come from the images.
  # Measured on the bigger run: no better, and its timeouts were crashes, not stops (README).
  speed_input: bool = True
  # (rows, cols) > 0: a layout probe (`models/layout_probe.py`) draws every view's road layout
  # from the frame's Q-Former tokens alone -> out["probe_layout_logits"]. Training-only.
  layout_probe_size: tuple[int, int] = (0, 0)
  layout_probe_classes: int = 8  # len(data/view_layout.py's VIEW_LAYOUT_CLASSES)
  # > 0: an instruction probe, a linear head on each frame's action states (mean over the action
  # queries) -> out["instruction_logits"] f32[B, T, C], trained to name the instruction's
  # vocabulary id (sim/instructions.py). The branch at a junction is in the words alone; the
  # waypoint loss asks for it only at the few frames where the branches part, the probe on every
  # frame. Training-only, off the control path.
  instruction_probe_classes: int = 0
  # > 0: before the action head, the action states cross-attend to their frame's vision-encoder
  # tokens with this many heads (`models/view_reader.py` says why); on the control path.
  view_reader_heads: int = 0
  view_reader_layers: int = 1

  def setup(self):
    self.vision_encoder = VisionEncoder(**self.vision, name="vision")
    self.frame_compressor = QFormer(**self.qformer, name="qformer")
    self.language_model = LLM(**self.llm, name="llm")
    width = self.language_model.embed_dim
    init = nn.with_logical_partitioning(nn.initializers.normal(0.02), ("queries", "embed"))
    self.action_queries = self.param("action_queries", init, (self.num_action_queries, width))
    self.generation_queries = self.param("generation_queries", init,
                                         (self.num_generation_queries, width))
    self.actions = ActionHead(**self.action_head, name="action_head")
    if self.view_reader_heads > 0:
      self.view_reader = ViewReader(self.view_reader_heads, self.view_reader_layers,
                                    dtype=self.action_head.get("dtype", "float32"),
                                    param_dtype=self.action_head.get("param_dtype", "float32"),
                                    name="view_reader")
    if self.visual_probe:
      self.probe = ActionHead(**self.action_head, name="visual_probe")
    if self.has_layout_probe:
      self.layout_probe = LayoutProbe(
          int(self.vision["num_views"]), tuple(self.layout_probe_size),
          self.layout_probe_classes, int(self.action_head["hidden_dim"]),
          dtype=self.action_head.get("dtype", "float32"),
          param_dtype=self.action_head.get("param_dtype", "float32"), name="layout_probe")
    if self.instruction_probe_classes > 0:
      self.instruction_probe = Linear(
          self.instruction_probe_classes, ("embed", None), use_bias=True,
          dtype=self.action_head.get("dtype", "float32"),
          param_dtype=self.action_head.get("param_dtype", "float32"), name="instruction_probe")
    if self.world is not None:
      self.world_model = WorldDiT(**self.world, name="world")
    if self.vae is not None:
      self.autoencoder = AutoencoderKL(**self.vae, name="vae")

  @property
  def has_layout_probe(self) -> bool:
    return all(int(n) > 0 for n in self.layout_probe_size)

  # --------------------------------------------------------------------------------------------
  # Pieces.

  def encode_frames(self, images: jax.Array, speed: jax.Array) -> jax.Array:
    """images uint8[B, T, V, H, W, 3], speed f32[B, T] -> visual tokens f32[B, T, Nq, D]."""
    return self._encode(images, speed)[0]

  def _encode(self, images: jax.Array, speed: jax.Array) -> tuple[jax.Array, jax.Array]:
    """-> (Q-Former tokens f32[B, T, Nq, D], vision-encoder tokens f32[B, T, Nv, Dv])."""
    if not self.speed_input:
      speed = jnp.zeros_like(speed)
    tokens, _ = self.vision_encoder(images, speed)
    if self.freeze_vision:
      tokens = jax.lax.stop_gradient(tokens)
    visual, _ = self.frame_compressor(tokens)
    return visual, tokens

  def _act(self, action_states: jax.Array, vision_tokens: jax.Array):
    """action states f32[B, T, A, D], encoder tokens f32[B, T, Nv, Dv] -> the action head's
    (waypoints f32[B, T, W, 2], completed logit f32[B, T])."""
    if self.view_reader_heads > 0:
      action_states = self.view_reader(action_states, vision_tokens)
    return self.actions(action_states)

  def frame_blocks(self, visual: jax.Array) -> jax.Array:
    """visual f32[B, T, Nq, D] -> f32[B, T, Nq + A + G, D] with the learnable queries appended."""
    batch, frames = visual.shape[:2]
    queries = jnp.concatenate([self.action_queries, self.generation_queries], axis=0)
    queries = jnp.broadcast_to(queries.astype(visual.dtype)[None, None],
                               (batch, frames, *queries.shape))
    return jnp.concatenate([visual, queries], axis=2)

  def _split_states(self, frame_states: jax.Array) -> tuple[jax.Array, jax.Array]:
    """f32[B, T, Nq + A + G, D] -> (action states [B, T, A, D], generation states [B, T, G, D])."""
    a, g = self.num_action_queries, self.num_generation_queries
    return frame_states[:, :, -(a + g):-g], frame_states[:, :, -g:]

  # --------------------------------------------------------------------------------------------
  # Training forward.

  def __call__(self, images, speed, instruction, instruction_mask, notice, notice_mask,
               notice_frame, frame_mask):
    """Dense over all frames. Token inputs are int32 ids; masks bool.

    images uint8[B, T, V, H, W, 3], speed f32[B, T], instruction int32[B, Li],
    notice int32[B, Ln], notice_frame int32[B] (-1: none), frame_mask bool[B, T].
    Returns (waypoints f32[B, T, W, 2], out) with out["completed_logit"] f32[B, T],
    out["generation_states"] f32[B, T, G, D] and, with `visual_probe`, out["probe_waypoints"]
    f32[B, T, W, 2]; with a layout probe, out["probe_layout_logits"] f32[B, T, V, r, c, C]; with
    an instruction probe, out["instruction_logits"] f32[B, T, C].
    """
    visual, vision_tokens = self._encode(images, speed)
    blocks = self.frame_blocks(visual)
    sequence = build_sequence(self.language_model.embed(instruction), instruction_mask,
                              self.language_model.embed(notice), notice_mask, notice_frame,
                              blocks, frame_mask)
    _, llm_out = self.language_model(embeddings=sequence["embeddings"],
                                     input_mask=sequence["input_mask"],
                                     mask_ar=sequence["mask_ar"], return_logits=False)
    frame_states = jax.vmap(lambda h, idx: h[idx])(llm_out["hidden"], sequence["frame_index"])
    action_states, generation_states = self._split_states(frame_states)
    waypoints, completed_logit = self._act(action_states, vision_tokens)
    out = {"completed_logit": completed_logit, "generation_states": generation_states,
           "visual_tokens": visual, **self._probe_outputs(visual)}
    if self.instruction_probe_classes > 0:
      out["instruction_logits"] = self.instruction_probe(
          action_states.mean(axis=2)).astype(jnp.float32)
    return waypoints, out

  def _probe_outputs(self, visual: jax.Array) -> dict:
    out = {}
    if self.visual_probe:
      out["probe_waypoints"], _ = self.probe(visual)
    if self.has_layout_probe:
      out["probe_layout_logits"] = self.layout_probe(visual)
    return out

  def probe_outputs(self, vision_tokens: jax.Array) -> dict:
    """The training-only probes on the Q-Former's tokens of the vision encoder's tokens, without
    the LLM (Q-Former alignment: `train/qformer_align.py`). vision_tokens f32[B, T, Nv, Dv] ->
    {"probe_waypoints": f32[B, T, W, 2], "probe_layout_logits": f32[B, T, V, r, c, C]} (those the
    model has)."""
    visual, _ = self.frame_compressor(vision_tokens)
    return self._probe_outputs(visual)

  def initialize(self, images, speed, instruction, instruction_mask, notice, notice_mask,
                 notice_frame, frame_mask):
    """Touches every sub-model once so `init` creates all parameters (training `__call__` does not
    run the VAE and the world generator). Same inputs as `__call__`."""
    waypoints, out = self(images, speed, instruction, instruction_mask, notice, notice_mask,
                          notice_frame, frame_mask)
    if self.vae is not None:
      latents = self.encode_latents(images[:, :1])          # [B, 1, V, h, w, c]
      self.decode_latents(latents)
      if self.world is not None:
        times = jnp.zeros(latents.shape[:2], jnp.float32)
        self.world_velocity(latents, times, out["generation_states"][:, 0])
    return waypoints

  # --------------------------------------------------------------------------------------------
  # World generator (the VAE is frozen after stage 1: its latents carry no gradient).

  def encode_latents(self, images: jax.Array) -> jax.Array:
    """images uint8[..., V, H, W, 3] -> scaled latents f32[..., V, h, w, c] (posterior mean)."""
    lead = images.shape[:-3]
    latents = self.autoencoder.encode_latents(images_to_unit(images.reshape(-1, *images.shape[-3:])))
    return jax.lax.stop_gradient(latents.reshape(*lead, *latents.shape[1:]))

  def decode_latents(self, latents: jax.Array) -> jax.Array:
    """Scaled latents f32[..., h, w, c] -> images f32[..., H, W, 3] in about [-1, 1]."""
    lead = latents.shape[:-3]
    images = self.autoencoder.decode_latents(latents.reshape(-1, *latents.shape[-3:]))
    return images.reshape(*lead, *images.shape[1:])

  def world_velocity(self, latents, frame_times, cond, *, cond_mask=None, drop_cond=None,
                     waypoints=None):
    """The denoiser (`models/world.py: WorldDiT.__call__`), for `diffusion.py`'s loss/samplers."""
    return self.world_model(latents, frame_times, cond, cond_mask=cond_mask,
                            drop_cond=drop_cond, waypoints=waypoints)

  # --------------------------------------------------------------------------------------------
  # Online planning with a KV cache.

  def init_cache(self, batch_size: int, cache_size: int) -> dict:
    return self.language_model.init_cache(batch_size, cache_size)

  def prefill(self, instruction: jax.Array, instruction_mask: jax.Array, cache: dict) -> dict:
    """Encodes [BOS + instruction] (one full-attention block) into an empty cache."""
    _, out = self.language_model(embeddings=self.language_model.embed(instruction),
                                 input_mask=instruction_mask,
                                 mask_ar=block_mask_ar(instruction_mask), cache=cache,
                                 return_logits=False)
    return out["cache"]

  def extend_notice(self, notice: jax.Array, notice_mask: jax.Array, cache: dict) -> dict:
    """Appends a notice block (its own block, as in training) to the cache."""
    _, out = self.language_model(embeddings=self.language_model.embed(notice),
                                 input_mask=notice_mask, mask_ar=block_mask_ar(notice_mask),
                                 cache=cache, return_logits=False)
    return out["cache"]

  def extend(self, images: jax.Array, speed: jax.Array, cache: dict):
    """One control step: images uint8[B, V, H, W, 3], speed f32[B] -> (waypoints f32[B, W, 2],
    out) with out["completed_logit"] f32[B], out["generation_states"] f32[B, G, D],
    out["cache"]."""
    visual, vision_tokens = self._encode(images[:, None], speed[:, None])
    block = self.frame_blocks(visual)[:, 0]
    mask = jnp.ones(block.shape[:2], bool)
    _, llm_out = self.language_model(embeddings=block, input_mask=mask,
                                     mask_ar=block_mask_ar(mask), cache=cache,
                                     return_logits=False)
    action_states, generation_states = self._split_states(llm_out["hidden"][:, None])
    waypoints, completed_logit = self._act(action_states, vision_tokens)
    return waypoints[:, 0], {"completed_logit": completed_logit[:, 0],
                             "generation_states": generation_states[:, 0],
                             "cache": llm_out["cache"]}


class WorldView:
  """Presents LMGenDrive's world generator as the `model` of `diffusion.flow_matching_loss` and
  `diffusion.sample_future` (`model.apply(variables, latents, times, cond, ...)`)."""

  def __init__(self, model: LMGenDrive):
    self.model = model

  def apply(self, variables, *args, **kwargs):
    return self.model.apply(variables, *args, method=LMGenDrive.world_velocity, **kwargs)
