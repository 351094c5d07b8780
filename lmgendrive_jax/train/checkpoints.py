"""Orbax checkpoints of a run: async, keep N, restore onto shardings, fall back past corruption.

Items per step: `state` (params, optimizer state, counters), `data` (the input iterator's state as
JSON, so a resumed run reads exactly the batches an uninterrupted one would), `meta` (config JSON,
versions). Orbax writes each step into a temporary folder and renames it when complete, so a
process killed mid-save (kill -9) leaves no half-written step behind; a step that is complete on
disk but unreadable is skipped with a warning and the previous one restored.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Mapping

import jax
import orbax.checkpoint as ocp
from flax import traverse_util

from lmgendrive_jax.errors import CheckpointError


def abstract_like(tree: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs carrying the target shardings (what Orbax restores onto)."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree,
                      shardings)


class Checkpointer:
  """One run's checkpoints under `<work_dir>/checkpoints`."""

  def __init__(self, work_dir: str, keep: int = 2, async_save: bool = True):
    self.directory = os.path.abspath(os.path.join(work_dir, "checkpoints"))
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=async_save,
                                           cleanup_tmp_directories=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state: Any, data_state: dict | None = None,
           meta: dict | None = None, force: bool = False) -> None:
    items = {"state": ocp.args.StandardSave(state),
             "data": ocp.args.JsonSave(data_state or {}),
             "meta": ocp.args.JsonSave(meta or {})}
    self.manager.save(step, args=ocp.args.Composite(**items), force=force)

  def restore_latest(self, abstract_state: Any) -> tuple[int, Any, dict, dict] | None:
    """(step, state, data_state, meta) of the newest readable step, or None if there is none."""
    for step in reversed(self.steps()):
      try:
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore(),
            meta=ocp.args.JsonRestore()))
        return step, restored["state"], dict(restored["data"] or {}), dict(restored["meta"] or {})
      except Exception as e:  # noqa: BLE001  (any unreadable step: fall back to the previous)
        logging.warning("checkpoint step %d in %s is unreadable (%s: %s); falling back to the "
                        "previous one", step, self.directory, type(e).__name__, e)
    if self.steps():
      raise CheckpointError(f"no readable checkpoint in {self.directory} (steps {self.steps()}); "
                            f"delete the folder to start fresh")
    return None

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


# ----------------------------------------------------------------------------------------------
# Hand-off between stages: restore chosen parameter subtrees of another run.


def latest_step_dir(run_dir: str) -> str:
  """`<run_dir>/checkpoints/<newest committed step>` (run_dir may also be the checkpoints dir)."""
  directory = run_dir if os.path.basename(run_dir.rstrip("/")) == "checkpoints" else os.path.join(
      run_dir, "checkpoints")
  steps = sorted(int(d) for d in (os.listdir(directory) if os.path.isdir(directory) else [])
                 if d.isdigit() and os.path.exists(os.path.join(directory, d, "state")))
  if not steps:
    raise CheckpointError(f"init_from: no checkpoint under {directory!r}; train the previous "
                          f"stage first or fix the config's init_from path")
  # Absolute: Orbax refuses or misreads relative paths (the quickstart's run dirs are relative).
  return os.path.abspath(os.path.join(directory, str(steps[-1])))


def restore_subtrees(run_dir: str, subtrees: Mapping[str, str], tree: Any, root: str = "params",
                     skip: str | None = None, droppable: str | None = None) -> Any:
  """Replaces subtrees of `tree` with the same-shaped subtrees of another run's latest state.

  subtrees: {our path: their path}, '/'-joined under `root` of the saved TrainState ("params", or
  "model_state/batch_stats" for frozen statistics); their path "" means their whole root.
  skip: a regex; our leaves matching it keep their value (e.g. "/lora/": fresh adapters on a
  restored base). Every other leaf of each of our subtrees must exist in theirs with the same
  shape, or a CheckpointError names it. Restored arrays land on the shardings of `tree`'s leaves.
  A whole-root entry ({"": ""}, a whole-model restore) also refuses saved leaves that we lack,
  except those matching the regex `droppable` (training-only heads): a model built without one
  of the saved run's parts (e.g. `view_reader_heads` left at 0) would otherwise drop its trained
  weights without a word.
  """
  step_dir = latest_step_dir(run_dir)
  checkpointer = ocp.PyTreeCheckpointer()
  saved = checkpointer.metadata(os.path.join(step_dir, "state")).item_metadata.tree
  for key in root.split("/"):
    saved = saved.get(key, {}) if isinstance(saved, Mapping) else {}
  saved_flat = traverse_util.flatten_dict(saved, sep="/") if saved else {}
  ours_flat = traverse_util.flatten_dict(tree, sep="/")
  skip_re = re.compile(skip) if skip else None
  droppable_re = re.compile(droppable) if droppable else None
  item, wanted = {}, {}
  for ours, theirs in subtrees.items():
    if not ours and not theirs:
      extra = sorted(k for k in saved_flat if k not in ours_flat
                     and not (droppable_re is not None and droppable_re.search(k)))
      if extra:
        raise CheckpointError(
            f"init_from: {step_dir} has {root} that this model lacks ({len(extra)}, e.g. "
            f"{', '.join(repr(k) for k in extra[:3])}); build it with the saved run's model "
            f"settings (config.json's model)")
    leaves = {k: v for k, v in ours_flat.items()
              if not ours or k == ours or k.startswith(ours + "/")}
    if not leaves:
      raise CheckpointError(f"init_from: our {root} have no subtree {ours!r}")
    for path, leaf in leaves.items():
      if skip_re is not None and skip_re.search(path):
        continue
      source = "/".join(p for p in (theirs, path[len(ours):].lstrip("/")) if p)
      if source not in saved_flat:
        raise CheckpointError(f"init_from: {root} entry {source!r} (for our {path!r}) is missing "
                              f"from {step_dir}")
      if tuple(saved_flat[source].shape) != tuple(leaf.shape):
        raise CheckpointError(
            f"init_from: parameter {source!r} in {step_dir} has shape "
            f"{tuple(saved_flat[source].shape)}, our {path!r} needs {tuple(leaf.shape)}")
      item[source] = jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf.sharding)
      wanted[path] = source
  if not item:
    return tree
  target = traverse_util.unflatten_dict(item, sep="/")
  for key in reversed(root.split("/")):
    target = {key: target}
  restored = checkpointer.restore(os.path.join(step_dir, "state"), args=ocp.args.PyTreeRestore(
      item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
      partial_restore=True))
  for key in root.split("/"):
    restored = restored[key]
  restored_flat = traverse_util.flatten_dict(restored, sep="/")
  merged = dict(ours_flat)
  for path, source in wanted.items():
    merged[path] = restored_flat[source]
  return traverse_util.unflatten_dict(merged, sep="/")


def restore_param_subtrees(run_dir: str, subtrees: Mapping[str, str], params: Any) -> Any:
  """`restore_subtrees` of parameters (the common case)."""
  return restore_subtrees(run_dir, subtrees, params, root="params")
