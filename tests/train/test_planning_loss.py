"""The stage-2/3 waypoint terms on hand-computed cases (train/stage2.py)."""

import jax.numpy as jnp
import numpy as np

from lmgendrive_jax.train import stage2


def _batch():
  """One clip of two frames with two waypoints each; frame 1 is padding, one waypoint masked."""
  truth = jnp.zeros((1, 2, 2, 2))
  return {"waypoints": truth, "frame_mask": jnp.array([[True, False]]),
          "waypoint_mask": jnp.array([[[True, False], [True, True]]])}


def test_lateral_weight_counts_only_the_x_errors_more():
  batch = _batch()
  # Known waypoint: frame 0, waypoint 0, error (x 0.5 right, y 2.0 forward); the rest masked.
  predicted = jnp.full((1, 2, 2, 2), 9.0).at[0, 0, 0].set(jnp.array([0.5, 2.0]))
  np.testing.assert_allclose(float(stage2.waypoint_l1(predicted, batch)), (0.5 + 2.0) / 2)
  np.testing.assert_allclose(float(stage2.waypoint_l1(predicted, batch, lateral_weight=4.0)),
                             (4.0 * 0.5 + 2.0) / 2)
  lateral, forward = stage2.waypoint_axis_l1(predicted, batch)
  np.testing.assert_allclose((float(lateral), float(forward)), (0.5, 2.0))


def test_instruction_probe_loss_is_the_cross_entropy_of_the_id_over_valid_frames():
  # Two classes; clip 0 (id 1) has one valid frame, clip 1 (id 0) two.
  logits = jnp.array([[[0.0, 0.0], [5.0, -5.0]], [[2.0, 0.0], [0.0, 2.0]]])
  batch = {"instruction_id": jnp.array([1, 0]),
           "frame_mask": jnp.array([[True, False], [True, True]])}
  ce, accuracy = stage2.instruction_probe_loss(logits, batch)
  log2, small, large = np.log(2.0), np.log1p(np.exp(-2.0)), 2.0 + np.log1p(np.exp(-2.0))
  np.testing.assert_allclose(float(ce), (log2 + small + large) / 3, rtol=1e-5)
  np.testing.assert_allclose(float(accuracy), 1 / 3)  # frame 0 of clip 0 is a tie: argmax 0
