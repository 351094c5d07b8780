"""The three-stage curriculum, tiny, on a fixture dataset: hand-offs restore exactly what the
previous stage saved, frozen parameters stay bit-identical, trainable ones move. (The stage-2
losses on the same data: test_stage2_tiny.py.)"""

import os
import sys

import flax.linen as nn
import imageio.v3 as imageio
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import traverse_util

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from curriculum_fixture import REPO, build_dataset, tiny_config  # noqa: E402

from lmgendrive_jax import parallel  # noqa: E402
from lmgendrive_jax.errors import CheckpointError  # noqa: E402
from lmgendrive_jax.train import llm_text, loop, qformer_align, stage1, stage2, trained  # noqa: E402
from lmgendrive_jax.train import state as train_state  # noqa: E402
from lmgendrive_jax.train.optimizer import make_optimizer  # noqa: E402


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  return build_dataset(tmp_path_factory.mktemp("curriculum"))


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
    config = tiny_config(name, data_dir, runs, steps)
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
  config = tiny_config("qformer", data_dir, runs, 2)
  loop.run(config, qformer_align.build_task(config)[0], log_enabled=False)
  config = tiny_config("stage2", data_dir, runs, 2)
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
  config = tiny_config("stage3", data_dir, runs, 1)
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
