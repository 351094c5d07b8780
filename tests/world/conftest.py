"""Shared by the world-generator tests: one tiny-DiT initialisation for every test file.

The DiT's parameters do not depend on the window (frames, views, latent size, condition
tokens), so one init serves every shape; compiling init once saves ~10 s per test file on CPU.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from lmgendrive_jax import config as config_lib
from lmgendrive_jax import diffusion
from lmgendrive_jax.models.world import WorldDiT


@pytest.fixture(scope="session")
def tiny_world():
  """(model, flow config, params) of the tiny preset; rbg keys compile faster on CPU."""
  cfg = config_lib.world_preset("tiny")
  model = WorldDiT(**cfg.dit.to_dict())
  latents = jnp.zeros((1, 4, 2, 8, 8, model.latent_channels))
  cond = jnp.zeros((1, 4, model.cond_dim))
  params = jax.jit(lambda k: nn.meta.unbox(model.init(k, latents, jnp.zeros((1, 4)), cond)))(
      jax.random.key(0, impl="rbg"))
  return model, diffusion.flow_config(cfg.flow), params


def perturbed(params, scale=0.1, seed=1):
  """params + scale * N(0, 1) on every leaf, so zero-initialised gates and outputs are live."""
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed, impl="rbg"), len(leaves))
  return jax.tree.unflatten(tree, [x + scale * jax.random.normal(k, x.shape)
                                   for x, k in zip(leaves, keys)])


@pytest.fixture(scope="session")
def perturb():
  """The jitted `perturbed` function (a fixture: test files cannot import this conftest)."""
  return jax.jit(perturbed, static_argnums=(1, 2))
