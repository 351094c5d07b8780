"""Red-light brake: stage 1's traffic-light head read on the planner's frame, as a safety rule.

Where it sits: `planner.CachedPlanner` computes, with every planned frame, the probability that a
red light affects the ego (`red_light_probability`); `LMGenDriveAgent` brakes while it is above
its `red_light_brake` threshold, whatever the waypoints say (InterFuser's and TCP's agents
likewise put a rule on perception outputs between the planner and the PID).

Why it is sound: the vision encoder is frozen after stage 1 (every preset: `freeze_vision`, and
`vision/.*` in `optim.frozen`), so the light token the stage-2/3 model computes is the one stage
1's light head was trained on; `load_light_head` checks that the run's encoder weights equal
the stage-1 run's before using its head. Why it is needed: on the bigger run the light head
names the red lights of held-out frames with recall 0.94 / precision 0.95 (threshold 0.7), yet
the LLM planner on top of the same tokens ran 11 red lights on 40 held-out routes
(`bench/drive_quality.py` row of the README).

The stage-1 run is found by following `init_from` from the run (stage 3 -> stage 2 -> the run
whose `perception/encoder` became `vision`), or given as `perception_dir`.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from lmgendrive_jax.errors import CheckpointError

MAX_INIT_FROM_DEPTH = 8  # stage 3 -> stage 2 -> stage 1 is 2 links; more is a loop


def perception_run_dir(work_dir: str) -> str:
  """The stage-1 run whose encoder `work_dir`'s model uses, by following `init_from`."""
  from lmgendrive_jax.agent.planner import resolve_path  # Local: planner imports this module.
  from lmgendrive_jax.train.trained import load_run_config  # Local: pulls in orbax.
  run = work_dir
  for _ in range(MAX_INIT_FROM_DEPTH):
    config = load_run_config(run)
    if config.get("stage") == "stage1":
      return run
    sources = [entry["run_dir"] for entry in config.get("init_from", [])
               if entry.get("root") == "params" and "vision" in dict(entry["subtrees"])]
    if not sources:
      raise CheckpointError(f"{run} has no init_from entry for its vision encoder; give the "
                            f"stage-1 run as the agent's perception_dir")
    run = resolve_path(sources[0])  # relative: from where the run was trained
  raise CheckpointError(f"following init_from from {work_dir} did not reach a stage-1 run in "
                        f"{MAX_INIT_FROM_DEPTH} links")


def load_light_head(perception_dir: str, vision_params: dict) -> dict:
  """Stage 1's light head {"kernel": f32[Dv, 2], "bias": f32[2]} from the stage-1 run
  `perception_dir`, for a planner whose `params["vision"]` are `vision_params`."""
  from lmgendrive_jax.train.trained import load_perception  # Local: pulls in orbax.
  _, variables, _ = load_perception(perception_dir)
  return light_head_from(variables["params"], vision_params, perception_dir)


def light_head_from(perception_params: dict, vision_params: dict, source: str = "stage 1") -> dict:
  """The light head of stage-1 params {"encoder", "heads"}, after checking that their encoder
  equals `vision_params` (else a CheckpointError: the head would read another encoder's token)."""
  theirs = traverse_util.flatten_dict(perception_params["encoder"], sep="/")
  ours = traverse_util.flatten_dict(vision_params, sep="/")
  if set(theirs) != set(ours):
    raise CheckpointError(f"{source}'s encoder has other parameters than the planner's vision "
                          f"encoder (e.g. {sorted(set(theirs) ^ set(ours))[:3]}): its light "
                          f"head does not apply")
  differ = [k for k in sorted(ours) if not np.array_equal(np.asarray(ours[k]),
                                                          np.asarray(theirs[k]))]
  if differ:
    raise CheckpointError(f"the planner's vision encoder differs from {source}'s at "
                          f"{differ[:3]} (trained after stage 1?): its light head does not apply")
  try:
    head = perception_params["heads"]["light_head"]
  except KeyError as e:
    raise CheckpointError(f"{source} has no heads/light_head parameters") from e
  return {"kernel": jnp.asarray(head["kernel"]), "bias": jnp.asarray(head["bias"])}


def red_light_probability(light_feature: jax.Array, head: dict) -> jax.Array:
  """light_feature f32[B, Dv] -> P(a red light affects the ego) f32[B] (label 1 of stage 1's
  `traffic_light`)."""
  logits = light_feature.astype(jnp.float32) @ head["kernel"].astype(jnp.float32) + head["bias"]
  return jax.nn.softmax(logits, axis=-1)[..., 1]


def resolve_perception_dir(work_dir: str, perception_dir: str = "") -> str:
  """`perception_dir` when given, else the stage-1 run found from `work_dir`."""
  return os.path.abspath(perception_dir) if perception_dir else perception_run_dir(work_dir)
