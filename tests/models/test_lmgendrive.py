"""The unified model: shapes, frozen vision (no gradient), and KV-cached planning == recompute."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lmgendrive_jax import config as config_lib
from lmgendrive_jax.models.lmgendrive import LMGenDrive

B, T, V, H = 2, 3, 5, 32


def _inputs(seed=0):
  rng = np.random.default_rng(seed)
  return dict(
      images=jnp.asarray(rng.integers(0, 255, (B, T, V, H, H, 3)), jnp.uint8),
      speed=jnp.asarray(rng.uniform(0, 6, (B, T)), jnp.float32),
      instruction=jnp.asarray(rng.integers(3, 1000, (B, 6)), jnp.int32),
      instruction_mask=jnp.array([[1] * 6, [1] * 4 + [0] * 2], bool),
      notice=jnp.asarray(rng.integers(3, 1000, (B, 3)), jnp.int32),
      notice_mask=jnp.ones((B, 3), bool), notice_frame=jnp.array([-1, -1]),
      frame_mask=jnp.ones((B, T), bool))


@pytest.fixture(scope="module")
def model_and_variables():
  model = LMGenDrive(**config_lib.lmgendrive_preset("tiny").to_dict())
  variables = nn.meta.unbox(jax.jit(model.init)(jax.random.key(0), **_inputs()))
  return model, variables, jax.jit(model.apply)


def test_forward_shapes_and_frozen_vision(model_and_variables):
  model, variables, apply = model_and_variables
  inputs = _inputs()
  waypoints, out = apply(variables, **inputs)
  assert waypoints.shape == (B, T, 5, 2)
  assert out["completed_logit"].shape == (B, T)
  assert out["generation_states"].shape == (B, T, 4, 64)

  def loss(params):
    wp, o = model.apply({**variables, "params": params}, **inputs)
    return jnp.sum(wp ** 2) + jnp.sum(o["completed_logit"])
  grads = jax.jit(jax.grad(loss))(variables["params"])
  vision_norm = sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads["vision"]))
  qformer_norm = sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads["qformer"]))
  assert vision_norm == 0.0 and qformer_norm > 0.0


def test_kv_cached_planning_equals_full_recompute(model_and_variables):
  model, variables, apply = model_and_variables
  inputs = _inputs(1)
  full_waypoints, full_out = apply(variables, **inputs)
  cache = model.apply(variables, B, 64, method=LMGenDrive.init_cache)
  prefill = jax.jit(lambda v, i, m, c: model.apply(v, i, m, c, method=LMGenDrive.prefill))
  extend = jax.jit(lambda v, im, sp, c: model.apply(v, im, sp, c, method=LMGenDrive.extend))
  cache = prefill(variables, inputs["instruction"], inputs["instruction_mask"], cache)
  for t in range(T):
    waypoints, out = extend(variables, inputs["images"][:, t], inputs["speed"][:, t], cache)
    cache = out["cache"]
    np.testing.assert_allclose(waypoints, full_waypoints[:, t], atol=1e-5)
    np.testing.assert_allclose(out["completed_logit"], full_out["completed_logit"][:, t],
                               atol=1e-5)


def test_speed_input_off_makes_outputs_independent_of_speed(model_and_variables):
  model, variables, apply = model_and_variables
  inputs = _inputs(2)
  other_speed = {**inputs, "speed": inputs["speed"] + 3.0}
  with_speed = apply(variables, **inputs)[0], apply(variables, **other_speed)[0]
  assert not np.allclose(*with_speed, atol=1e-6)  # the speed embedding reaches the waypoints

  blind = model.clone(speed_input=False)
  without_speed = blind.apply(variables, **inputs)[0], blind.apply(variables, **other_speed)[0]
  np.testing.assert_array_equal(*without_speed)


def test_instruction_probe_reads_the_instruction_and_stays_off_the_waypoints(model_and_variables):
  model, variables, apply = model_and_variables
  inputs = _inputs(3)
  probed = model.clone(instruction_probe_classes=7)
  params = nn.meta.unbox(jax.jit(probed.init)(jax.random.key(1), **inputs))["params"]
  params = {**variables["params"], "instruction_probe": params["instruction_probe"]}
  probed_apply = jax.jit(probed.apply)
  waypoints, out = probed_apply({**variables, "params": params}, **inputs)
  assert out["instruction_logits"].shape == (B, T, 7)
  np.testing.assert_allclose(waypoints, apply(variables, **inputs)[0], atol=1e-5)
  reworded = {**inputs, "instruction": inputs["instruction"].at[:, 0].add(1)}
  other = probed_apply({**variables, "params": params}, **reworded)[1]["instruction_logits"]
  assert not np.allclose(other, out["instruction_logits"], atol=1e-6)


def test_training_only_heads_are_named_as_the_config_lists_them(model_and_variables):
  """A fine-tune may leave exactly these subtrees behind (configs/stage2.py: whole_model_from)."""
  model, variables, _ = model_and_variables
  probed = model.clone(visual_probe=True, layout_probe_size=(4, 4), instruction_probe_classes=7)
  shapes = jax.eval_shape(probed.init, jax.random.key(1), **_inputs(3))["params"]
  assert set(shapes) - set(variables["params"]) == set(config_lib.TRAINING_ONLY_HEADS)


@pytest.fixture(scope="module")
def reader_model_and_variables():
  model = LMGenDrive(**{**config_lib.lmgendrive_preset("tiny").to_dict(), "view_reader_heads": 2})
  variables = nn.meta.unbox(jax.jit(model.init)(jax.random.key(0), **_inputs()))
  return model, variables, jax.jit(model.apply)


def test_view_reader_planning_is_cached_equal_and_reads_only_its_frame(reader_model_and_variables):
  model, variables, apply = reader_model_and_variables
  assert "view_reader" in variables["params"]
  inputs = _inputs(4)
  full_waypoints, _ = apply(variables, **inputs)
  cache = model.apply(variables, B, 64, method=LMGenDrive.init_cache)
  cache = model.apply(variables, inputs["instruction"], inputs["instruction_mask"], cache,
                      method=LMGenDrive.prefill)
  extend = jax.jit(lambda v, im, sp, c: model.apply(v, im, sp, c, method=LMGenDrive.extend))
  for t in range(T):
    waypoints, out = extend(variables, inputs["images"][:, t], inputs["speed"][:, t], cache)
    cache = out["cache"]
    np.testing.assert_allclose(waypoints, full_waypoints[:, t], atol=1e-5)
  # The reader adds a path from the frame's encoder tokens: without it the waypoints differ.
  without = model.clone(view_reader_heads=0).apply(variables, **inputs)[0]
  assert not np.allclose(without, full_waypoints, atol=1e-4)
  # Block-causal as the LLM: the last frame's images change only the last frame's waypoints.
  later = {**inputs, "images": inputs["images"].at[:, -1].set(255 - inputs["images"][:, -1])}
  changed = apply(variables, **later)[0]
  np.testing.assert_allclose(changed[:, :-1], full_waypoints[:, :-1], atol=1e-5)
  assert not np.allclose(changed[:, -1], full_waypoints[:, -1], atol=1e-4)


def test_view_reader_trains_and_the_encoder_stays_frozen(reader_model_and_variables):
  model, variables, _ = reader_model_and_variables
  inputs = _inputs(5)

  def loss(params):
    return jnp.sum(model.apply({**variables, "params": params}, **inputs)[0] ** 2)
  grads = jax.jit(jax.grad(loss))(variables["params"])
  norm = lambda tree: sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(tree))
  assert norm(grads["view_reader"]) > 0.0 and norm(grads["vision"]) == 0.0
