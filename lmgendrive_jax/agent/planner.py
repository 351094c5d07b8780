"""Online planning with LMGenDrive's KV cache: one jitted step per control step, fixed shapes.

Where it sits: between the agent (`lmgendrive_agent.py`: when to reset, which frames to keep)
and the model (`models/lmgendrive.py`: `init_cache`, `prefill`, `extend_notice`, `extend`).
`CachedPlanner` holds the trained model, its jitted functions and the tokenizer; it is shared by
all agents of an evaluation (one per route), and keeps no per-route state: a route's state is
the `PlanState` it passes in and gets back.

  state = planner.start(instruction)            # [BOS + instruction] prefilled (cached per text)
  state = planner.add_notice(state, notice)     # the notice block, before the next frame
  waypoints, completed_prob, state = planner.step(state, views, speed, commit=True)

Cache layout (slots): instruction (`max_instruction_tokens`) + one notice (`max_notice_tokens`)
+ (`max_frames` + 1) frame blocks: `max_frames` kept frames and one slot for the newest frame
when it is not kept (`commit=False`, LMDrive's "strided history + the newest frame").
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lmgendrive_jax.data.tokenizer import encode_padded, load_tokenizer
from lmgendrive_jax.errors import ConfigError
from lmgendrive_jax.models.lmgendrive import LMGenDrive

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclasses.dataclass
class PlanState:
  """One route's planning state: the KV cache (device pytree) and what it holds."""
  cache: Any
  frames: int = 0          # frame blocks kept in the cache
  has_notice: bool = False


def resolve_path(path: str) -> str:
  """A relative path from the working directory, else from the repository root."""
  if os.path.isabs(path) or os.path.exists(path):
    return path
  return os.path.join(REPO_ROOT, path)


def frame_block_len(model: LMGenDrive) -> int:
  """Tokens per frame block: Q-Former queries + action + generation queries."""
  return int(model.qformer["num_queries"]) + model.num_action_queries + \
      model.num_generation_queries


class CachedPlanner:
  """Trained model + tokenizer + jitted cache functions (see the module docstring).

  data: the run's data config (views, view_size, crop_scale, stride, data_dir), which the agent
  preprocesses camera images by.
  """

  def __init__(self, model: LMGenDrive, variables: dict, tokenizer, instruction_len: int,
               notice_len: int, max_frames: int, data: Any = None):
    if max_frames < 1:
      raise ConfigError(f"max_frames={max_frames}: the KV cache needs room for >= 1 frame")
    self.model, self.variables, self.tokenizer = model, variables, tokenizer
    self.instruction_len, self.notice_len = int(instruction_len), int(notice_len)
    self.max_frames = int(max_frames)
    self.data = data  # the run's data config: views, sizes, stride (the agent's preprocessing)
    self.block_len = frame_block_len(model)
    self.cache_size = self.instruction_len + self.notice_len + (self.max_frames + 1) * \
        self.block_len
    cache_size = self.cache_size

    def prefill(variables, tokens, mask):
      cache = model.apply(variables, tokens.shape[0], cache_size, method=LMGenDrive.init_cache)
      return model.apply(variables, tokens, mask, cache, method=LMGenDrive.prefill)

    # Variables are arguments, not closed-over constants (XLA would embed and fold them). The
    # cache is not donated to `extend`: a step that does not keep its frame (commit=False) reads
    # the same cache again next time, and prefilled caches are shared between routes.
    self._prefill = jax.jit(prefill)
    self._notice = jax.jit(lambda variables, tokens, mask, cache: model.apply(
        variables, tokens, mask, cache, method=LMGenDrive.extend_notice))
    self._extend = jax.jit(lambda variables, images, speed, cache: model.apply(
        variables, images, speed, cache, method=LMGenDrive.extend))
    self._prefix_cache: dict[str, Any] = {}

  @classmethod
  def from_run(cls, work_dir: str, max_frames: int = 0, tokenizer: str = "") -> "CachedPlanner":
    """From a trained stage-2/3 run dir; max_frames 0 = the run's `data.window_frames`."""
    from lmgendrive_jax.train.trained import load_lmgendrive  # Local: pulls in orbax.
    model, variables, config = load_lmgendrive(work_dir)
    data = config.data
    tok = load_tokenizer(resolve_path(tokenizer or data.tokenizer))
    return cls(model, variables, tok, int(data.max_instruction_tokens),
               int(data.max_notice_tokens), int(max_frames or data.window_frames), data)

  def tokens(self, text: str, length: int) -> tuple[np.ndarray, np.ndarray]:
    """text -> (int32[1, length], bool[1, length]) as the training data tokenised it."""
    ids, mask, _ = encode_padded(self.tokenizer, text, length)
    return ids[None], mask[None]

  def start(self, instruction: str) -> PlanState:
    """A fresh state with [BOS + instruction] prefilled (prefilled caches are kept per text)."""
    if instruction not in self._prefix_cache:
      if len(self._prefix_cache) > 64:
        self._prefix_cache.clear()
      self._prefix_cache[instruction] = self._prefill(
          self.variables, *self.tokens(instruction, self.instruction_len))
    return PlanState(cache=self._prefix_cache[instruction])

  def add_notice(self, state: PlanState, notice: str) -> PlanState:
    """Appends the notice block (the caller resets first when one is already in the cache)."""
    if state.has_notice:
      raise ConfigError("the KV cache has room for one notice per window; reset it first")
    cache = self._notice(self.variables, *self.tokens(notice, self.notice_len), state.cache)
    return PlanState(cache=cache, frames=state.frames, has_notice=True)

  def step(self, state: PlanState, views: np.ndarray, speed: float, commit: bool = True,
           input_data: dict | None = None) -> tuple[np.ndarray, float, PlanState]:
    """views uint8[V, H, W, 3], speed m/s -> (waypoints f32[5, 2] ego frame, completed
    probability, state). commit: keep the frame in the cache (else it only conditions this
    step's waypoints, and the next step overwrites its slot)."""
    del input_data  # a scripted planner (tests) reads privileged data from it; the model not
    if commit and state.frames >= self.max_frames:
      raise ConfigError(f"the KV cache holds {self.max_frames} frames; reset it first")
    waypoints, out = self._extend(self.variables, jnp.asarray(views)[None],
                                  jnp.asarray([speed], jnp.float32), state.cache)
    waypoints, logit = jax.device_get((waypoints[0], out["completed_logit"][0]))
    prob = float(1.0 / (1.0 + np.exp(-float(logit))))
    if commit:
      state = PlanState(cache=out["cache"], frames=state.frames + 1, has_notice=state.has_notice)
    return np.asarray(waypoints, np.float32), prob, state


@functools.lru_cache(maxsize=4)
def planner_for_run(work_dir: str, max_frames: int = 0, tokenizer: str = "") -> CachedPlanner:
  """One shared planner per run (agents are built once per route; the model loads once)."""
  return CachedPlanner.from_run(os.path.abspath(work_dir), max_frames, tokenizer)
