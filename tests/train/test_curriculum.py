"""The three-stage curriculum, tiny, on a fixture dataset: hand-offs restore exactly what the
previous stage saved, frozen parameters stay bit-identical, trainable ones move; the stage-2 loss
is the same sharded (2x2x2) and on one device."""

import os
import sys

import flax.linen as nn
import imageio.v3 as imageio
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import traverse_util

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "data"))
import lmdrive_fixture as fx  # noqa: E402

from data_pipelines.lmdrive_tfds import BuildConfig, build  # noqa: E402
from lmgendrive_jax import config as config_lib  # noqa: E402
from lmgendrive_jax import parallel  # noqa: E402
from lmgendrive_jax.data import pipeline, view_layout  # noqa: E402
from lmgendrive_jax.errors import CheckpointError  # noqa: E402
from lmgendrive_jax.train import llm_text, loop, qformer_align, stage1, stage2, trained  # noqa: E402
from lmgendrive_jax.train import state as train_state  # noqa: E402
from lmgendrive_jax.train.optimizer import make_optimizer  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  root = tmp_path_factory.mktemp("curriculum")
  r0, r1 = fx.route_name(1, 1, 0), fx.route_name(2, 12, 1)
  fx.write_dataset(str(root / "src"), [dict(name=r0, num_frames=40), dict(name=r1, num_frames=30,
                                                                          weather=12)],
                   clips=[fx.clip_entry(r0, 0, 12, 60), fx.clip_entry(r0, 10, 25, 62),
                          fx.clip_entry(r0, 20, 30, 61), fx.clip_entry(r1, 5, 20, 60)],
                   notices={r0: [{"frame_id": 5, "instruction_id": 57, "instruction_args": []}]})
  build(str(root / "src"), str(root / "out"), BuildConfig(camera_size=(64, 48)), progress=False)
  return str(root / "out"), str(root / "runs")


def _config(name, data_dir, runs_root, steps):
  config = config_lib.load_config(os.path.join(REPO, "configs", f"{name}.py") + ":preset=tiny")
  config.runs_root = runs_root
  config.train.steps = steps
  config.train.checkpoint_every = steps
  if "data" in config and "data_dir" in config.data:
    config.data.data_dir = data_dir
  return config_lib.resolve_run_dirs(config)


def _saved_params(work_dir, root="params"):
  steps = sorted(int(d) for d in os.listdir(os.path.join(work_dir, "checkpoints")) if d.isdigit())
  state = ocp.PyTreeCheckpointer().restore(
      os.path.join(work_dir, "checkpoints", str(steps[-1]), "state"))
  for key in root.split("/"):
    state = state[key]
  return traverse_util.flatten_dict(jax.tree.map(np.asarray, state), sep="/")


@pytest.mark.slow
def test_three_stages_hand_off_and_freeze(dataset, monkeypatch):
  data_dir, runs = dataset
  monkeypatch.chdir(REPO)
  for name, module, steps in [("llm_text", llm_text, 1), ("stage1", stage1, 2)]:
    config = _config(name, data_dir, runs, steps)
    loop.run(config, module.build_task(config)[0], log_enabled=False)

  captured = {}
  original_init_from = stage2.make_init_from

  def spying_init_from(config):
    restore = original_init_from(config)

    def init_from(state):
      restored = restore(state)
      captured[config.stage] = traverse_util.flatten_dict(
          jax.tree.map(np.asarray, restored.params), sep="/")
      return restored
    return init_from

  monkeypatch.setattr(stage2, "make_init_from", spying_init_from)
  config = _config("qformer", data_dir, runs, 2)
  loop.run(config, qformer_align.build_task(config)[0], log_enabled=False)
  config = _config("stage2", data_dir, runs, 2)
  config.train.sample_every = 2
  loop.run(config, stage2.build_task(config)[0], log_enabled=True)
  # The world-generator sample of step 2: per future frame, generated views over the true ones.
  sample = imageio.imread(os.path.join(runs, "stage2_tiny", "samples", "world_0000002.png"))
  height, width = config.data.view_size
  assert sample.shape == (2 * height * len(config.data.future_offsets),
                          width * len(config.data.views), 3)
  assert sample.dtype == np.uint8 and sample.std() > 0
  # Stage 3 starts the same way (its training step is the stage-2 step on longer clips): build
  # its fresh state and apply its hand-off, without compiling another step.
  config = _config("stage3", data_dir, runs, 1)
  task = stage2.build_task(config)[0]
  mesh = parallel.make_mesh(config.mesh)
  _, _, _, make_state = train_state.abstract_state(
      task.init_fn, lambda p: make_optimizer(config.optim, p), mesh,
      parallel.logical_rules(config), jax.random.key(0))
  stage3_state = task.init_from(nn.meta.unbox(jax.jit(make_state)(jax.random.key(0))))

  stage1_saved = _saved_params(os.path.join(runs, "stage1_tiny"))
  text_saved = _saved_params(os.path.join(runs, "llm_text_tiny"))
  qformer_saved = _saved_params(os.path.join(runs, "qformer_tiny"))
  stage2_start = captured["stage2"]
  # Q-Former alignment (configs/qformer.py): the encoder as stage 1 saved it, and only the
  # Q-Former and the probes on its tokens trained.
  qformer_start = captured["qformer"]
  moved = {p for p, v in qformer_saved.items() if not np.array_equal(v, qformer_start[p])}
  assert moved and all(p.startswith(("qformer/", "visual_probe/", "layout_probe/"))
                       for p in moved), sorted(moved)[:5]
  assert any(p.startswith("qformer/") for p in moved)
  for path, value in qformer_start.items():
    if path.startswith("vision/"):
      np.testing.assert_array_equal(value, stage1_saved["perception/encoder/" + path[7:]])
  # Hand-off 1 -> 2: vision and VAE exactly as stage 1 saved them; LLM base from the text run.
  for path, value in stage2_start.items():
    if path.startswith("vision/"):
      np.testing.assert_array_equal(value, stage1_saved["perception/encoder/" + path[7:]])
    elif path.startswith("vae/"):
      np.testing.assert_array_equal(value, stage1_saved[path])
    elif path.startswith("llm/") and "/lora/" not in path:
      np.testing.assert_array_equal(value, text_saved[path[4:]])
    elif path.startswith(("qformer/", "visual_probe/", "layout_probe/")):
      np.testing.assert_array_equal(value, qformer_saved[path])
  stage2_saved = _saved_params(os.path.join(runs, "stage2_tiny"))
  # Frozen in stage 2: bit-identical; trainable: moved.
  for path, value in stage2_saved.items():
    frozen = path.startswith(("vision/", "vae/")) or (path.startswith("llm/") and
                                                      "/lora/" not in path)
    moved = not np.array_equal(value, stage2_start[path])
    if frozen:
      assert not moved, path
  moved_trainable = [p for p, v in stage2_saved.items()
                     if p.startswith(("qformer/", "action_head/", "world/")) and
                     not np.array_equal(v, stage2_start[p])]
  assert len(moved_trainable) > 10
  # Hand-off 2 -> 3: everything as stage 2 saved it.
  for path, value in captured["stage3"].items():
    np.testing.assert_array_equal(value, stage2_saved[path])
  batch_stats = traverse_util.flatten_dict(
      jax.tree.map(np.asarray, stage3_state.model_state["batch_stats"]), sep="/")
  assert batch_stats
  stage1_stats = _saved_params(os.path.join(runs, "stage1_tiny"), "model_state/batch_stats")
  for path, value in batch_stats.items():
    np.testing.assert_array_equal(value, stage1_stats["perception/encoder/" + path[7:]])
  # The tiny backbone trains from scratch: stage 1 learnt its BatchNorm statistics (an encoder
  # left at the identity statistics came out blind to its images).
  learnt = [p for p, v in stage1_stats.items()
            if not np.allclose(v, 0.0 if p.endswith("/mean") else 1.0)]
  assert len(learnt) == len(stage1_stats), sorted(set(stage1_stats) - set(learnt))
  # A stage-1 run reloads for inference as it was saved (bench/planner_inputs.py --work_dir).
  model, variables, config = trained.load_perception(os.path.join(runs, "stage1_tiny"))
  assert config.stage == "stage1" and model.road_layout_classes > 0
  for tree, saved in ((variables["params"], stage1_saved),
                      (variables["batch_stats"], stage1_stats)):
    loaded = traverse_util.flatten_dict(jax.tree.map(np.asarray, tree), sep="/")
    expected = {p[len("perception/"):]: v for p, v in saved.items() if p.startswith("perception/")}
    assert loaded.keys() == expected.keys()
    for path, value in loaded.items():
      np.testing.assert_array_equal(value, expected[path])
  with pytest.raises(CheckpointError, match="from stage 1"):
    trained.load_perception(os.path.join(runs, "stage2_tiny"))


@pytest.mark.slow
def test_stage2_loss_sharded_equals_single_device(dataset, num_devices):
  data_dir, runs = dataset
  config = _config("stage2", data_dir, runs, 1)
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
  config = _config("stage2", data_dir, runs, 1)
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
  loss_fn = stage2.make_loss_fn(model, config)

  def loss_and_probe_term(p):
    loss, metrics = loss_fn(p, batch, jax.random.key(3), variables)
    return jnp.stack([loss, metrics["visual_probe_l1"]]), (loss, metrics)

  # One compile, two gradients: of the whole loss ([0]) and of the probe term alone ([1]).
  jacobian, (loss, metrics) = jax.jit(jax.jacrev(loss_and_probe_term, has_aux=True))(params)
  np.testing.assert_allclose(float(metrics["visual_probe_l1"]),
                             float(stage2.waypoint_l1(probe, batch)), rtol=1e-5)
  np.testing.assert_allclose(float(loss), float(
      metrics["waypoint_l1"] + config.loss.completed_weight * metrics["completed_ce"]
      + 0.5 * metrics["visual_probe_l1"]), rtol=1e-5)

  def norm(tree, row):
    return float(optax.global_norm(jax.tree.map(lambda g: g[row], tree)))

  assert norm(jacobian["visual_probe"], 0) > 0  # the loss trains the probe head
  # The probe term trains the Q-Former through the probe head, and never the LLM or the planner.
  assert norm(jacobian["qformer"], 1) > 0 and norm(jacobian["visual_probe"], 1) > 0
  assert norm(jacobian["llm"], 1) == 0 and norm(jacobian["action_head"], 1) == 0

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
  loss_fn = stage2.make_loss_fn(model, config)

  def loss_and_term(p):
    loss, metrics = loss_fn(p, batch, jax.random.key(3), variables)
    return jnp.stack([loss, metrics["layout_probe_kl"]]), (loss, metrics)

  jacobian, (loss, metrics) = jax.jit(jax.jacrev(loss_and_term, has_aux=True))(params)
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

  def norm(tree, row):
    return float(optax.global_norm(jax.tree.map(lambda g: g[row], tree)))

  assert norm(jacobian["qformer"], 1) > 0 and norm(jacobian["layout_probe"], 1) > 0
  assert norm(jacobian["llm"], 1) == 0 and norm(jacobian["action_head"], 1) == 0

  config.data.view_layout_size = (2, 2)
  with pytest.raises(ValueError, match="layout_probe_size"):
    stage2.make_loss_fn(model, config)
