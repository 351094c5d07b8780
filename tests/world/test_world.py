"""World generator DiT: overfits a 2-view clip, null condition, sharded == single device."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lmgendrive_jax import config as config_lib
from lmgendrive_jax import diffusion
from lmgendrive_jax.metrics.image import psnr
from lmgendrive_jax.models.world import WorldDiT


def moving_clip(frames=4, size=8, channels=4) -> np.ndarray:
  """f32[1, frames, 2, size, size, channels] in [-0.9, 0.9]: view 0 slides right, view 1 up,
  2 pixels per frame (a quarter period), so copying the last frame is a poor prediction."""
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
  clip = np.zeros((1, frames, 2, size, size, channels), np.float32)
  for t in range(frames):
    for c in range(channels):
      clip[0, t, 0, :, :, c] = np.sin(2 * np.pi * (xx - 2 * t) / size + c)
      clip[0, t, 1, :, :, c] = np.cos(2 * np.pi * (yy + 2 * t) / size + 0.7 * c)
  return 0.9 * clip


def tiny_model(**overrides):
  cfg = config_lib.world_preset("tiny")
  model = WorldDiT(**{**cfg.dit.to_dict(), **overrides})
  return model, diffusion.flow_config(cfg.flow)


@pytest.mark.slow
def test_dit_overfits_two_view_clip(tiny_world):
  model, flow, params = tiny_world
  flow = dataclasses.replace(flow, cond_drop_prob=0.0, num_steps=8, sampler="euler")
  video = jnp.asarray(moving_clip())
  context, future = video[:, :2], video[:, 2:]
  cond = jax.random.normal(jax.random.key(5), (1, 4, model.cond_dim))
  batch = 4  # the same clip under 4 noise draws per step
  tiled = [jnp.repeat(a, batch, 0) for a in (context, future, cond)]
  rbg = lambda i: jax.random.key(i, impl="rbg")  # noqa: E731  (compiles faster on CPU)
  steps = 160
  optimizer = optax.adam(optax.warmup_cosine_decay_schedule(0.0, 3e-3, 10, steps, 3e-4))
  state = optimizer.init(params)

  @jax.jit
  def train_step(params, state, key):
    (loss, _), grads = jax.value_and_grad(
        lambda p: diffusion.flow_matching_loss(model, p, *tiled[:2], tiled[2], key, flow),
        has_aux=True)(params)
    updates, state = optimizer.update(grads, state, params)
    return optax.apply_updates(params, updates), state, loss

  losses = []
  for i in range(steps):
    params, state, loss = train_step(params, state, rbg(i + 1))
    losses.append(float(loss))
  assert np.mean(losses[-20:]) < 0.2 * np.mean(losses[:5]), (losses[:5], losses[-20:])
  sample = jax.jit(lambda p, k: diffusion.sample_future(model, p, context, cond, k, 2, flow))(
      params, jax.random.key(123))
  sample_psnr = float(psnr(sample, future, data_range=2.0).mean())
  copy_last_psnr = float(psnr(jnp.repeat(context[:, -1:], 2, 1), future, data_range=2.0).mean())
  assert copy_last_psnr < 8.0
  assert sample_psnr > copy_last_psnr + 10.0, (sample_psnr, copy_last_psnr)


@pytest.fixture(scope="module")
def window(tiny_world, perturb):
  """A 4-sample window (2 context + 2 future frames, 3 views) and perturbed tiny-DiT params."""
  model, flow, params = tiny_world
  rng = np.random.default_rng(0)
  context = jnp.asarray(rng.normal(size=(4, 2, 3, 8, 8, 4)), jnp.float32)
  future = jnp.asarray(rng.normal(size=(4, 2, 3, 8, 8, 4)), jnp.float32)
  cond = jnp.asarray(rng.normal(size=(4, 4, model.cond_dim)), jnp.float32)
  return model, flow, perturb(params, 0.1, 1), context, future, cond


def test_null_condition_ignores_the_condition_and_conditioned_output_uses_it(window):
  model, _, params, context, future, cond_a = window
  video = jnp.concatenate([context, future], 1)
  cond_b = jax.random.normal(jax.random.key(3), cond_a.shape)
  times = jnp.array([[0.0, 0.0, 0.3, 0.3], [0.0, 0.0, 0.8, 0.8]] * 2)
  apply = jax.jit(lambda c, drop, mask: model.apply(params, video, times, c, cond_mask=mask,
                                                     drop_cond=drop)[0])
  keep, drop = jnp.zeros((4,), bool), jnp.array([True, False, True, False])
  valid = jnp.ones((4, 4), bool)
  with_a, with_b = apply(cond_a, keep, valid), apply(cond_b, keep, valid)
  assert float(jnp.abs(with_a - with_b).max()) > 1e-3  # the condition matters
  dropped_a, dropped_b = apply(cond_a, drop, valid), apply(cond_b, drop, valid)
  np.testing.assert_allclose(dropped_a[0], dropped_b[0], atol=1e-6)  # sample 0: null condition
  assert float(jnp.abs(dropped_a[1] - dropped_b[1]).max()) > 1e-3  # sample 1 still conditioned
  # A masked-out condition token changes nothing.
  mask = jnp.array([[True, True, True, False]] * 4)
  np.testing.assert_allclose(apply(cond_a, keep, mask), apply(cond_a.at[:, 3].set(100.0), keep, mask),
                             atol=1e-5)


def test_bad_shapes_are_clear_errors():
  model, _ = tiny_model()
  cond = jnp.zeros((1, 2, model.cond_dim))
  with pytest.raises(ValueError, match="divisible by patch_size"):
    model.init(jax.random.key(0), jnp.zeros((1, 2, 2, 5, 4, 4)), jnp.zeros((1, 2)), cond)
  with pytest.raises(ValueError, match="cond_dim"):
    model.init(jax.random.key(0), jnp.zeros((1, 2, 2, 4, 4, 4)), jnp.zeros((1, 2)),
               jnp.zeros((1, 2, 7)))
  with pytest.raises(ValueError, match="max_frames"):
    model.init(jax.random.key(0), jnp.zeros((1, 17, 2, 4, 4, 4)), jnp.zeros((1, 17)),
               cond)


def test_sharded_loss_matches_single_device(num_devices, window):
  """2x2x2 mesh (data, fsdp, tensor) vs one device: the same flow-matching loss within 1e-5."""
  from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
  from lmgendrive_jax import parallel

  model, flow, params, context, future, cond = window
  video = jnp.concatenate([context, future], 1)
  init_fn = lambda key: model.init(key, video, jnp.zeros((4, 4)), cond)  # noqa: E731
  loss_fn = jax.jit(lambda p, c, f, y: diffusion.flow_matching_loss(
      model, p, c, f, y, jax.random.key(7), flow)[0])
  single_loss = float(loss_fn(params, context, future, cond))

  mesh = jax.make_mesh((2, 2, 2), ("data", "fsdp", "tensor"), axis_types=(AxisType.Auto,) * 3)
  rules = config_lib.logical_axis_rules()
  _, shardings = parallel.variable_shardings(init_fn, mesh, rules, jax.random.key(0))
  sharded_params = jax.device_put(params, shardings)
  assert sum(not x.sharding.is_fully_replicated for x in jax.tree.leaves(sharded_params)) > 10
  batch = lambda x: jax.device_put(x, NamedSharding(mesh, P(("data", "fsdp"))))  # noqa: E731
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    sharded_loss = float(loss_fn(sharded_params, batch(context), batch(future), batch(cond)))
  assert abs(sharded_loss - single_loss) <= 1e-5 * max(1.0, abs(single_loss)), (sharded_loss,
                                                                                 single_loss)
