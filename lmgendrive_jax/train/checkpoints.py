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
from typing import Any

import jax
import orbax.checkpoint as ocp

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
                                           enable_async_checkpointing=async_save)
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
