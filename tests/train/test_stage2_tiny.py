"""The tiny stage-2 loss on the curriculum's fixture dataset: the same sharded (2x2x2) and on one
device; the world loss on every k-th clip; the visual and layout probes on the Q-Former tokens."""

import os
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from curriculum_fixture import build_dataset, tiny_config  # noqa: E402

from lmgendrive_jax import config as config_lib  # noqa: E402
from lmgendrive_jax import parallel  # noqa: E402
from lmgendrive_jax.data import pipeline, view_layout  # noqa: E402
from lmgendrive_jax.train import stage2  # noqa: E402


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  return build_dataset(tmp_path_factory.mktemp("curriculum"))


def _loss_and_term_jacobian(config, model, params, batch, variables, term: str):
  """One compile, two gradients: of stage 2's whole loss (row 0) and of its `term` metric alone
  (row 1). Returns (jacobian, loss, metrics)."""
  loss_fn = stage2.make_loss_fn(model, config)

  def loss_and_term(p):
    loss, metrics = loss_fn(p, batch, jax.random.key(3), variables)
    return jnp.stack([loss, metrics[term]]), (loss, metrics)

  jacobian, (loss, metrics) = jax.jit(jax.jacrev(loss_and_term, has_aux=True))(params)
  return jacobian, loss, metrics


def _row_norm(tree, row: int) -> float:
  """The global norm of one row of a `_loss_and_term_jacobian` subtree."""
  return float(optax.global_norm(jax.tree.map(lambda g: g[row], tree)))


@pytest.mark.slow
def test_stage2_loss_sharded_equals_single_device(dataset, num_devices):
  data_dir, runs = dataset
  config = tiny_config("stage2", data_dir, runs, 1)
  config.loss.world_weight = 1.0
  model = stage2.LMGenDrive(**config.model.lmgendrive.to_dict())
  loss_fn = stage2.make_loss_fn(model, config)
  inputs = stage2.dummy_inputs(config, 2)
  init = lambda key: model.init(key, *inputs, method=stage2.LMGenDrive.initialize)  # noqa
  variables = nn.meta.unbox(jax.jit(init)(jax.random.key(0)))
  params = variables.pop("params")
  iterator = pipeline.make_iterator(config.data, 2)
  batch = iterator.batch(0)
  key = jax.random.key(3)
  single, _ = jax.jit(loss_fn)(params, jax.tree.map(jnp.asarray, batch), key, variables)

  mesh = parallel.make_mesh(config_lib.mesh_config((2, 2, 2)))
  rules = config_lib.logical_axis_rules()
  _, shardings = parallel.variable_shardings(init, mesh, rules, jax.random.key(0))
  sharded_params = jax.device_put(params, shardings["params"])
  global_batch = parallel.global_batch(batch, mesh, rules)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    sharded, _ = jax.jit(loss_fn)(sharded_params, global_batch, key, variables)
  np.testing.assert_allclose(float(sharded), float(single), rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def stage2_tiny(dataset):
  """A tiny stage-2 config, its random-init model, variables (params popped) and a batch."""
  data_dir, runs = dataset
  config = tiny_config("stage2", data_dir, runs, 1)
  model = stage2.LMGenDrive(**config.model.lmgendrive.to_dict())
  inputs = stage2.dummy_inputs(config, 2)
  variables = nn.meta.unbox(jax.jit(lambda key: model.init(
      key, *inputs, method=stage2.LMGenDrive.initialize))(jax.random.key(0)))
  params = variables.pop("params")
  batch = jax.tree.map(jnp.asarray, pipeline.make_iterator(config.data, 2).batch(0))
  return config, model, variables, params, batch


def test_world_loss_on_every_kth_clip(stage2_tiny):
  """world_clip_stride=2: the flow loss is exactly that of the batch's even clips (same anchors
  and noise), planning still sees every clip; a stride that does not divide the batch is refused."""
  config, model, variables, params, batch = stage2_tiny
  config = config.copy_and_resolve_references()
  key = jax.random.key(3)

  def metrics(stride, batch):
    config.loss.world_clip_stride = stride
    return jax.jit(stage2.make_loss_fn(model, config))(params, batch, key, variables)[1]

  strided = metrics(2, batch)
  even = metrics(1, jax.tree.map(lambda x: x[::2], batch))
  np.testing.assert_allclose(float(strided["flow"]), float(even["flow"]), rtol=1e-6)
  # Planning was not sliced: over all 8 clips its L1 differs from the even clips' alone.
  assert abs(float(strided["waypoint_l1"]) - float(even["waypoint_l1"])) > 1e-6
  with pytest.raises(ValueError, match="world_clip_stride=3"):
    stage2.world_clips(batch, jnp.zeros((8, 4, 2, 16)), 3)


def test_visual_probe_reads_the_qformer_tokens_alone(stage2_tiny):
  """The visual probe's waypoints depend on the images, not on the instruction; its L1 is added
  with loss.visual_probe_weight and trains the Q-Former (not the LLM or the action head); a
  weight without the probe in the model is refused."""
  config, model, variables, params, batch = stage2_tiny
  config = config.copy_and_resolve_references()
  assert config.model.lmgendrive.visual_probe and config.loss.visual_probe_weight == 1.0
  forward = jax.jit(lambda b: model.apply({"params": params, **variables},
                                          *stage2.model_inputs(b))[1]["probe_waypoints"])
  probe = forward(batch)
  assert probe.shape == batch["waypoints"].shape
  blank = batch["instruction_mask"].at[:, 1:].set(False)
  np.testing.assert_array_equal(forward({**batch, "instruction_mask": blank}), probe)
  assert float(jnp.abs(forward({**batch, "images": 255 - batch["images"]}) - probe).max()) > 1e-4

  config.loss.world_weight = 0.0
  config.loss.visual_probe_weight = 0.5
  config.loss.layout_probe_weight = 0.0
  jacobian, loss, metrics = _loss_and_term_jacobian(config, model, params, batch, variables,
                                                    "visual_probe_l1")
  np.testing.assert_allclose(float(metrics["visual_probe_l1"]),
                             float(stage2.waypoint_l1(probe, batch)), rtol=1e-5)
  np.testing.assert_allclose(float(loss), float(
      metrics["waypoint_l1"] + config.loss.completed_weight * metrics["completed_ce"]
      + 0.5 * metrics["visual_probe_l1"]), rtol=1e-5)

  assert _row_norm(jacobian["visual_probe"], 0) > 0  # the loss trains the probe head
  # The probe term trains the Q-Former through the probe head, and never the LLM or the planner.
  assert _row_norm(jacobian["qformer"], 1) > 0 and _row_norm(jacobian["visual_probe"], 1) > 0
  assert _row_norm(jacobian["llm"], 1) == 0 and _row_norm(jacobian["action_head"], 1) == 0

  config.model.lmgendrive.visual_probe = False
  with pytest.raises(ValueError, match="visual_probe"):
    stage2.make_loss_fn(stage2.LMGenDrive(**config.model.lmgendrive.to_dict()), config)


def test_layout_probe_draws_every_views_layout_from_the_qformer_tokens(stage2_tiny):
  """The layout probe reads a frame's Q-Former tokens alone; its KL against the clip frames' view
  layouts (padded frames and frames without a road map left out) is added with
  loss.layout_probe_weight and trains the Q-Former, never the LLM or the action head; a weight
  whose sizes do not match the data's labels is refused."""
  config, model, variables, params, batch = stage2_tiny
  config = config.copy_and_resolve_references()
  size = tuple(config.model.lmgendrive.layout_probe_size)
  assert size == (4, 4) and tuple(config.data.view_layout_size) == size
  assert config.loss.layout_probe_weight == 1.0
  b, t = batch["frame_mask"].shape
  assert batch["view_layout"].shape == (b, t, 5, 4, 4, len(view_layout.VIEW_LAYOUT_CLASSES))
  np.testing.assert_array_equal(batch["view_layout_mask"], batch["frame_mask"])
  forward = jax.jit(lambda b: model.apply({"params": params, **variables},
                                          *stage2.model_inputs(b))[1]["probe_layout_logits"])
  logits = forward(batch)
  assert logits.shape == batch["view_layout"].shape
  blank = batch["instruction_mask"].at[:, 1:].set(False)
  np.testing.assert_array_equal(forward({**batch, "instruction_mask": blank}), logits)

  config.loss.world_weight = 0.0
  config.loss.visual_probe_weight = 0.0
  jacobian, loss, metrics = _loss_and_term_jacobian(config, model, params, batch, variables,
                                                    "layout_probe_kl")
  log_q = np.asarray(jax.nn.log_softmax(logits))
  target = np.asarray(batch["view_layout"])
  kl = (target * (np.log(np.maximum(target, 1e-12)) - log_q)).sum(-1)
  used = np.asarray(batch["frame_mask"] & batch["view_layout_mask"])
  # Each cell weighs 1 + loss.layout_probe_object_boost x its object share.
  boost = config.loss.layout_probe_object_boost
  assert boost > 0
  weights = 1.0 + boost * target[..., view_layout.OBJECT]
  np.testing.assert_allclose(float(metrics["layout_probe_kl"]),
                             (weights * kl)[used].sum() / weights[used].sum(), rtol=1e-4)
  np.testing.assert_allclose(float(loss), float(
      metrics["waypoint_l1"] + config.loss.completed_weight * metrics["completed_ce"]
      + metrics["layout_probe_kl"]), rtol=1e-5)

  assert _row_norm(jacobian["qformer"], 1) > 0 and _row_norm(jacobian["layout_probe"], 1) > 0
  assert _row_norm(jacobian["llm"], 1) == 0 and _row_norm(jacobian["action_head"], 1) == 0

  config.data.view_layout_size = (2, 2)
  with pytest.raises(ValueError, match="layout_probe_size"):
    stage2.make_loss_fn(model, config)
