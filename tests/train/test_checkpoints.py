"""Checkpoints: resume, fallback past a corrupt latest step, and stage hand-off by subtree."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from lmgendrive_jax.errors import CheckpointError
from lmgendrive_jax.train.checkpoints import (Checkpointer, latest_step_dir, restore_param_subtrees,
                                              restore_subtrees)


def _state(scale):
  return {"params": {"vision": {"w": jnp.full((2, 3), scale)}, "llm": {"w": jnp.full((4,), scale)}},
          "step": jnp.int32(scale)}


def _abstract(tree):
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), tree)


def test_corrupt_latest_falls_back_to_previous(tmp_path):
  ckpt = Checkpointer(str(tmp_path), keep=3)
  for step in (1, 2):
    ckpt.save(step, _state(float(step)), {"pos": step}, {"note": "x"})
  ckpt.close()
  # Corrupt step 2's array data (a complete-looking but unreadable step).
  state_dir = tmp_path / "checkpoints" / "2" / "state"
  for root, _, files in os.walk(state_dir):
    for name in files:
      if not name.startswith("_") and "metadata" not in name:
        with open(os.path.join(root, name), "wb") as f:
          f.write(b"garbage")
  restored = Checkpointer(str(tmp_path), keep=3).restore_latest(_abstract(_state(0.0)))
  step, state, data_state, meta = restored
  assert step == 1 and data_state == {"pos": 1} and meta == {"note": "x"}
  np.testing.assert_array_equal(state["params"]["vision"]["w"], np.full((2, 3), 1.0))


def test_half_written_step_is_ignored(tmp_path):
  ckpt = Checkpointer(str(tmp_path), keep=3)
  ckpt.save(1, _state(1.0))
  ckpt.close()
  # What a kill -9 during a save leaves: a temporary folder that was never committed.
  shutil.copytree(tmp_path / "checkpoints" / "1", tmp_path / "checkpoints" / "2.orbax-checkpoint-tmp-99")
  fresh = Checkpointer(str(tmp_path), keep=3)
  assert fresh.steps() == [1]
  assert fresh.restore_latest(_abstract(_state(0.0)))[0] == 1


def test_restore_subtrees_between_stages(tmp_path):
  ckpt = Checkpointer(str(tmp_path / "stage1"), keep=1)
  ckpt.save(5, _state(7.0))
  ckpt.close()
  fresh = _state(0.0)["params"]
  merged = restore_param_subtrees(str(tmp_path / "stage1"), {"vision": "vision"}, fresh)
  np.testing.assert_array_equal(merged["vision"]["w"], np.full((2, 3), 7.0))
  np.testing.assert_array_equal(merged["llm"]["w"], np.zeros(4))  # untouched
  wrong = {"vision": {"w": jnp.zeros((3, 3))}, "llm": fresh["llm"]}
  with pytest.raises(CheckpointError, match=r"'vision/w'.*shape \(2, 3\).*needs \(3, 3\)"):
    restore_param_subtrees(str(tmp_path / "stage1"), {"vision": "vision"}, wrong)
  with pytest.raises(CheckpointError, match=r"'qformer/w'.*missing"):
    restore_param_subtrees(str(tmp_path / "stage1"), {"vision": "qformer"}, fresh)
  with pytest.raises(CheckpointError, match="no checkpoint under"):
    restore_param_subtrees(str(tmp_path / "nowhere"), {"vision": "vision"}, fresh)
  # A whole-model restore into a model without one of the saved parts refuses to drop it.
  whole = restore_param_subtrees(str(tmp_path / "stage1"), {"": ""}, fresh)
  np.testing.assert_array_equal(whole["llm"]["w"], np.full(4, 7.0))
  with pytest.raises(CheckpointError, match=r"lacks \(1, e.g. 'llm/w'\)"):
    restore_param_subtrees(str(tmp_path / "stage1"), {"": ""}, {"vision": fresh["vision"]})
  # Unless the part is named droppable (the training-only probes of a fine-tune).
  kept = restore_subtrees(str(tmp_path / "stage1"), {"": ""}, {"vision": fresh["vision"]},
                          droppable=r"^llm/")
  np.testing.assert_array_equal(kept["vision"]["w"], np.full((2, 3), 7.0))


def test_relative_run_dirs_resume_and_hand_off(tmp_path, monkeypatch):
  # The quickstart's run dirs are relative (work_dirs/quickstart_<preset>/<run>).
  monkeypatch.chdir(tmp_path)
  ckpt = Checkpointer(os.path.join("runs", "stage1"), keep=1)
  ckpt.save(3, _state(5.0))
  ckpt.close()
  assert Checkpointer(os.path.join("runs", "stage1"), keep=1).restore_latest(
      _abstract(_state(0.0)))[0] == 3
  merged = restore_param_subtrees(os.path.join("runs", "stage1"), {"vision": "vision"},
                                  _state(0.0)["params"])
  np.testing.assert_array_equal(merged["vision"]["w"], np.full((2, 3), 5.0))
  # What train/trained.py does to load a run for the agent and the generation job.
  step_dir = latest_step_dir(os.path.join("runs", "stage1"))
  assert os.path.isabs(step_dir)
  restored = ocp.PyTreeCheckpointer().restore(os.path.join(step_dir, "state"))
  np.testing.assert_array_equal(np.asarray(restored["params"]["vision"]["w"]), np.full((2, 3), 5.0))
