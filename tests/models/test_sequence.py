"""The block-causal LMGenDrive sequence: blocks land where they should, the notice included."""

import jax.numpy as jnp
import numpy as np

from lmgendrive_jax.models.sequence import build_sequence
from lmgendrive_jax.nn.attention import make_attn_mask


def test_blocks_are_placed_and_masked():
  batch, li, ln, t, nf = 2, 3, 2, 3, 2
  # Embedding value = a code saying which block/token it is.
  prefix = jnp.broadcast_to(jnp.arange(li, dtype=jnp.float32)[None, :, None], (batch, li, 1)) + 100
  notice = jnp.broadcast_to(jnp.arange(ln, dtype=jnp.float32)[None, :, None], (batch, ln, 1)) + 200
  frames = (jnp.arange(t)[:, None] * 10 + jnp.arange(nf)[None]).astype(jnp.float32)
  frames = jnp.broadcast_to(frames[None, :, :, None], (batch, t, nf, 1))
  seq = build_sequence(prefix, jnp.array([[1, 1, 0], [1, 1, 1]], bool), notice,
                       jnp.ones((batch, ln), bool), jnp.array([1, -1]), frames,
                       jnp.array([[1, 1, 1], [1, 1, 0]], bool))
  codes = np.asarray(seq["embeddings"][..., 0]).astype(int)
  # Example 0: notice before frame 1. Example 1: no notice (its room at the end, masked).
  np.testing.assert_array_equal(codes[0], [100, 101, 102, 0, 1, 200, 201, 10, 11, 20, 21])
  np.testing.assert_array_equal(codes[1], [100, 101, 102, 0, 1, 10, 11, 20, 21, 200, 201])
  np.testing.assert_array_equal(np.asarray(seq["input_mask"][0]), [1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1])
  np.testing.assert_array_equal(np.asarray(seq["input_mask"][1]), [1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0])
  np.testing.assert_array_equal(np.asarray(seq["frame_index"][0]), [[3, 4], [7, 8], [9, 10]])
  # Block-causal: frame 0 (example 0) does not see the notice; frame 1 does.
  mask = np.asarray(make_attn_mask(seq["input_mask"], seq["mask_ar"])[0, 0])
  assert mask[3, :2].all() and not mask[3, 5] and mask[3, 4]
  assert mask[7, 5] and mask[7, 6] and mask[7, 3] and not mask[7, 9]
  assert not mask[5, 7]  # the notice does not see the future frame
