"""The LLM's input sequence for LMGenDrive: instruction prefix, optional notice, frame blocks.

  [BOS + instruction] ([notice]) [frame 0: Nq visual | A action | G generation] ... [frame T-1]

The prefix is one full-attention block (prefix-LM, as PaliGemma); the notice, when an example has
one, is its own block placed right before frame `notice_frame`; each frame is one block. Attention
is block-causal (`nn/attention.make_attn_mask`): frame t sees the instruction, the notice if it
came before t, and frames <= t. Shapes are static: every example has room for the notice; an
example without one keeps that room, masked out, at the end of the sequence.
"""

import jax
import jax.numpy as jnp


def block_mask_ar(block_mask: jax.Array) -> jax.Array:
  """int32 with a 1 on the first slot of a block (starts a new attention group), else 0."""
  return jnp.zeros(block_mask.shape, jnp.int32).at[..., 0].set(1)


def frame_offsets(prefix_len: int, notice_len: int, frame_len: int, num_frames: int,
                  notice_frame: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Where each frame block and the notice block start in the sequence.

  notice_frame: int32[B] (-1: no notice) -> (frame_start int32[B, T], notice_start int32[B]).
  """
  t = jnp.arange(num_frames)[None]
  has_notice = notice_frame[:, None] >= 0
  frame_start = prefix_len + t * frame_len + jnp.where(has_notice & (t >= notice_frame[:, None]),
                                                       notice_len, 0)
  notice_start = jnp.where(notice_frame >= 0, prefix_len + notice_frame * frame_len,
                           prefix_len + num_frames * frame_len)
  return frame_start, notice_start


def build_sequence(prefix: jax.Array, prefix_mask: jax.Array, notice: jax.Array,
                   notice_mask: jax.Array, notice_frame: jax.Array, frames: jax.Array,
                   frame_mask: jax.Array) -> dict:
  """Assembles the sequence by scattering each block to its place.

  prefix: f32[B, Li, D], prefix_mask: bool[B, Li]; notice: f32[B, Ln, D], notice_mask: bool[B, Ln],
  notice_frame: int32[B]; frames: f32[B, T, Nf, D], frame_mask: bool[B, T].
  Returns {"embeddings": f32[B, S, D], "input_mask": bool[B, S], "mask_ar": int32[B, S],
  "frame_index": int32[B, T, Nf]} with S = Li + Ln + T * Nf; frame_index[b, t, j] is where token j
  of frame t sits.
  """
  batch, num_frames, frame_len, _ = frames.shape
  prefix_len, notice_len = prefix.shape[1], notice.shape[1]
  notice_mask = notice_mask & (notice_frame[:, None] >= 0)
  frame_start, notice_start = frame_offsets(prefix_len, notice_len, frame_len, num_frames,
                                            notice_frame)
  frame_index = frame_start[:, :, None] + jnp.arange(frame_len)[None, None]
  notice_index = notice_start[:, None] + jnp.arange(notice_len)[None]
  destination = jnp.concatenate([
      jnp.broadcast_to(jnp.arange(prefix_len)[None], (batch, prefix_len)), notice_index,
      frame_index.reshape(batch, -1)], axis=1)
  per_frame_mask = jnp.broadcast_to(frame_mask[:, :, None], frame_index.shape)
  sources = {
      "embeddings": jnp.concatenate([prefix, notice, frames.reshape(batch, -1, frames.shape[-1])],
                                    axis=1),
      "input_mask": jnp.concatenate([prefix_mask, notice_mask, per_frame_mask.reshape(batch, -1)],
                                    axis=1),
      "mask_ar": jnp.concatenate([
          block_mask_ar(prefix_mask), block_mask_ar(notice_mask),
          block_mask_ar(per_frame_mask).reshape(batch, -1)], axis=1),
  }
  scatter = jax.vmap(lambda dest, values: jnp.zeros_like(values).at[dest].set(values))
  sequence = {name: scatter(destination, values) for name, values in sources.items()}
  sequence["frame_index"] = frame_index
  return sequence
