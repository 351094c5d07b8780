"""Load a trained LMGenDrive (a stage-2/3 work dir) for inference: the agent, generation, benches.

The run's config travels inside each checkpoint (`meta` item, JSON), so a work dir alone
rebuilds the model: `model, variables, config = load_lmgendrive(work_dir)`;
`load_perception(work_dir)` does the same for a stage-1 run's perception model and
`load_light_detector(work_dir)` for a detector run (`configs/light_detector.py`, the red-light
detector, or `configs/stop_sign_detector.py`).
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util

from lmgendrive_jax.errors import CheckpointError
from lmgendrive_jax.models.light_detector import RedLightDetector
from lmgendrive_jax.models.lmgendrive import LMGenDrive
from lmgendrive_jax.models.vision import PerceptionModel
from lmgendrive_jax.train.checkpoints import latest_step_dir


def _tuples(value: Any) -> Any:
  """JSON lists -> tuples (Linen module fields must be hashable), recursively."""
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  return value


def load_run_config(work_dir: str) -> ml_collections.ConfigDict:
  """The config a run was trained with (from its newest checkpoint's metadata)."""
  step_dir = latest_step_dir(work_dir)
  meta_path = os.path.join(step_dir, "meta", "metadata")
  if not os.path.exists(meta_path):
    raise CheckpointError(f"{step_dir} has no meta item with the run's config; was it written "
                          f"by lmgendrive_jax.train.loop?")
  with open(meta_path) as f:
    meta = json.load(f)
  return ml_collections.ConfigDict(meta["config"])


def encoder_differences(work_dir: str, ours: dict) -> dict[str, tuple[Any, Any]]:
  """The vision encoder settings in which a run (`encoder_config`) and `ours` (a config dict)
  differ: {"backbone.output_stride": (theirs, ours), ...}; {} when built alike."""
  theirs, ours = (traverse_util.flatten_dict(_tuples(tree), sep=".")
                  for tree in (encoder_config(work_dir), ours))
  return {k: (theirs.get(k), ours.get(k)) for k in sorted(set(ours) | set(theirs))
          if theirs.get(k) != ours.get(k)}


def encoder_config(work_dir: str) -> dict:
  """The vision encoder config (`config.vision_preset(...).encoder`) a stage-1, -2 or -3 run
  trained with, as a dict."""
  model = load_run_config(work_dir).get("model", {})
  if "lmgendrive" in model:
    return model["lmgendrive"]["vision"].to_dict()
  if "vision" in model and "encoder" in model["vision"]:
    return model["vision"]["encoder"].to_dict()
  raise CheckpointError(f"{work_dir}'s config has no vision encoder (model.vision.encoder or "
                        f"model.lmgendrive.vision)")


def _restore_state(work_dir: str) -> dict:
  state = ocp.PyTreeCheckpointer().restore(os.path.join(latest_step_dir(work_dir), "state"))
  return jax.tree.map(lambda x: jax.numpy.asarray(np.asarray(x)), state)


def load_perception(work_dir: str) -> tuple[PerceptionModel, dict, ml_collections.ConfigDict]:
  """(model, variables {"params", "batch_stats"}, config) of a stage-1 run's newest step."""
  config = load_run_config(work_dir)
  if config.get("stage") != "stage1":
    raise CheckpointError(f"{work_dir} is a {config.get('stage')!r} run; the perception model "
                          f"comes from stage 1")
  model = PerceptionModel(**_tuples(config.model.vision.to_dict()))
  state = _restore_state(work_dir)
  stats = (state.get("model_state") or {}).get("batch_stats", {}).get("perception", {})
  return model, {"params": state["params"]["perception"], "batch_stats": stats}, config


def load_light_detector(work_dir: str) -> tuple[RedLightDetector, dict,
                                                ml_collections.ConfigDict]:
  """(model, variables {"params"}, config) of a detector run's newest step (red light or stop
  sign: `config.label`)."""
  config = load_run_config(work_dir)
  if config.get("stage") != "light_detector":
    raise CheckpointError(f"{work_dir} is a {config.get('stage')!r} run, not a light detector "
                          f"(configs/light_detector.py)")
  model = RedLightDetector(**_tuples(config.model.light_detector.to_dict()))
  return model, {"params": _restore_state(work_dir)["params"]}, config


def load_lmgendrive(work_dir: str) -> tuple[LMGenDrive, dict, ml_collections.ConfigDict]:
  """(model, variables {"params", "batch_stats", ...}, config) of a stage-2/3 run's newest step."""
  config = load_run_config(work_dir)
  if "lmgendrive" not in config.get("model", {}):
    raise CheckpointError(f"{work_dir} is a {config.get('stage')!r} run; an LMGenDrive model "
                          f"comes from stage 2 or 3")
  model = LMGenDrive(**_tuples(config.model.lmgendrive.to_dict()))
  state = _restore_state(work_dir)
  return model, {"params": state["params"], **(state.get("model_state") or {})}, config
