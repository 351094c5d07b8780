"""The agent's KV-cached planning gives the waypoints of one full `LMGenDrive.__call__` over the
frames it has seen (stride 1 and stride 2 with the newest frame riding along, and a notice)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from lmgendrive_jax import config as config_lib
from lmgendrive_jax.agent.lmgendrive_agent import LMGenDriveAgent
from lmgendrive_jax.agent.planner import CachedPlanner, resolve_path
from lmgendrive_jax.data.tokenizer import load_tokenizer
from lmgendrive_jax.models.lmgendrive import LMGenDrive

LI, LN = 12, 8
_APPLY = {}


@pytest.fixture(scope="module")
def model_and_variables():
  model = LMGenDrive(**config_lib.lmgendrive_preset("tiny").to_dict())
  images = jnp.zeros((1, 1, 5, 32, 32, 3), jnp.uint8)
  variables = nn.meta.unbox(jax.jit(model.init)(
      jax.random.key(0), images, jnp.zeros((1, 1)), jnp.ones((1, LI), jnp.int32),
      jnp.ones((1, LI), bool), jnp.ones((1, LN), jnp.int32), jnp.ones((1, LN), bool),
      jnp.array([-1]), jnp.ones((1, 1), bool)))
  return model, variables


def _drive(planner, stride, notice_at=None, steps=5):
  agent = LMGenDriveAgent(planner)
  agent.setup(dict(frame_stride=stride, completed_threshold=2.0, camera_size=(40, 30)))
  rng = np.random.default_rng(stride)
  seen = []
  for tick in range(20 + 2 * steps):
    data = {f"rgb_{v}": (tick, rng.integers(0, 255, (30, 40, 3), np.uint8))
            for v in ("front", "left", "right", "rear")}
    data.update(speed=(tick, {"speed": float(rng.uniform(0, 5))}),
                instruction=(tick, "turn left at the next intersection"),
                notice=(tick, "mind the pedestrian" if notice_at is not None
                        and tick >= 20 + 2 * notice_at else ""))
    before = agent.model_steps
    agent.run_step(data, tick * 0.05)
    if agent.model_steps > before:
      seen.append((agent.last_views, data["speed"][1]["speed"], agent.last_waypoints))
  return agent, seen


def _full(apply, variables, planner, frames, speeds, notice_frame, length=5):
  """One dense forward over `frames` (padded to `length` masked frames: one compile)."""
  tokens, mask = planner.tokens("turn left at the next intersection", LI)
  notice, notice_mask = planner.tokens("mind the pedestrian", LN)
  n = len(frames)
  images = np.zeros((1, length, *frames[0].shape), np.uint8)
  images[0, :n] = np.stack(frames)
  speed = np.zeros((1, length), np.float32)
  speed[0, :n] = speeds
  waypoints, _ = apply(variables, images, speed, tokens, mask, notice, notice_mask,
                       np.array([notice_frame], np.int32), np.arange(length)[None] < n)
  return np.asarray(waypoints[0, n - 1])


@pytest.fixture(scope="module")
def planner(model_and_variables):
  model, variables = model_and_variables
  data = ml_collections.ConfigDict(dict(
      views=("front", "left", "right", "rear", "focus"), view_size=(32, 32), crop_scale=0.875,
      stride=1, data_dir=""))
  return CachedPlanner(model, variables, load_tokenizer(resolve_path("assets/tokenizer")),
                       LI, LN, max_frames=8, data=data)


@pytest.mark.parametrize("stride,notice_at", [(1, None), (2, None), (1, 2)])
def test_cached_agent_waypoints_equal_full_recompute(model_and_variables, planner, stride,
                                                     notice_at):
  model, variables = model_and_variables
  apply = _APPLY.setdefault("apply", jax.jit(model.apply))
  agent, seen = _drive(planner, stride, notice_at)
  assert agent.resets == 1 and len(seen) == 5
  for t, (_, _, cached) in enumerate(seen):
    kept = [k for k in range(t) if k % stride == 0] + [t]  # strided history + the newest frame
    notice_frame = -1 if notice_at is None or t < notice_at else kept.index(notice_at)
    expected = _full(apply, variables, planner, [seen[k][0] for k in kept],
                     [seen[k][1] for k in kept], notice_frame)
    np.testing.assert_allclose(cached, expected, atol=2e-5, err_msg=f"step {t}")
